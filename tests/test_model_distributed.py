"""Training under torchrun: 2 CPU processes (gloo) train one model on a tiny phantom set."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from covseg.io import write_mask, write_volume
from covseg.model.inference import load_checkpoint
from covseg.phantom import make_phantom

TINY = [
    "network.features=[4, 4, 8, 8, 8, 4]",
    "preprocessing.spacing_mm=[12.0, 12.0, 10.0]",
    "augmentation.pad_to=[32, 32]",
    "augmentation.crop_size=[32, 32, 16]",
    "augmentation.crop_samples=1",
    "inference.roi_size=[32, 32, 16]",
    "training.batch_size=1",
    "training.folds=2",
]


@pytest.mark.slow
def test_torchrun_trains_with_two_gloo_processes(tmp_path: Path) -> None:
    for seed in range(4):
        case = make_phantom(seed=seed, source="A", size=64, n_slices=32, n_lesions=4)
        write_volume(case.ct, tmp_path / "data" / f"volume-covid19-A-{seed:04d}_ct.nii.gz")
        write_mask(
            case.lesion.array,
            case.ct,
            tmp_path / "data" / f"volume-covid19-A-{seed:04d}_seg.nii.gz",
        )
    covseg = str(Path(sys.executable).with_name("covseg"))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
    ]
    command += [covseg, "train", str(tmp_path / "data"), "-o", str(tmp_path / "model")]
    command += ["--epochs", "2", "--no-progress", *[a for s in TINY for a in ("--set", s)]]
    env = {
        "OMP_NUM_THREADS": "1",
        "PATH": str(Path(sys.executable).parent),
        "PYTHONFAULTHANDLER": "1",  # a worker's crash names where it happened
    }
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    # the worker's own message comes first; torchrun's summary of it last
    assert done.returncode == 0, done.stderr[:3000] + "\n...\n" + done.stderr[-1500:]
    log = (tmp_path / "model" / "fold_0" / "log.csv").read_text().splitlines()
    assert len(log) == 3  # header + 2 epochs, written once (by rank 0)
    state = load_checkpoint(tmp_path / "model" / "fold_0" / "last.pt")
    assert state["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_a_finished_worker_ends_with_its_output_flushed() -> None:
    code = "from covseg.model.distributed import end_worker; print('written', end=''); end_worker()"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stdout == "written"
