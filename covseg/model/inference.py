"""Sliding-window inference: fold ensembles, test-time augmentation, CPU speed-ups."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from covseg.model.cpu import native_bf16
from covseg.model.networks import build_network
from covseg.model.plan import PlanError

#: Checkpoint format this covseg writes and reads.
CHECKPOINT_FORMAT = 1


def fold_dirs(model_dir: Path) -> list[Path]:
    """The trained folds of a model folder (``fold_K/`` holding ``best.pt`` or ``last.pt``)."""
    return sorted(
        d
        for d in model_dir.glob("fold_*")
        if (d / "best.pt").is_file() or (d / "last.pt").is_file()
    )


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A covseg checkpoint, refusing corrupt files and those of another format."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        raise PlanError(f"{path}: corrupt checkpoint ({exc.__class__.__name__})") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise PlanError(f"{path}: not a covseg checkpoint of format {CHECKPOINT_FORMAT}")
    return state


def load_models(model_dir: Path, plan: dict[str, Any]) -> list[torch.nn.Module]:
    """The networks of every trained fold (best checkpoint, else last), in eval mode on CPU."""
    folds = fold_dirs(model_dir)
    if not folds:
        raise PlanError(f"{model_dir}: no trained fold (fold_K/best.pt or last.pt)")
    nets = []
    for fold in folds:
        path = fold / "best.pt" if (fold / "best.pt").is_file() else fold / "last.pt"
        net = build_network(plan)
        try:
            net.load_state_dict(load_checkpoint(path)["model"])
        except RuntimeError as exc:
            raise PlanError(f"{path}: weights do not fit the plan's network") from exc
        nets.append(net.eval())
    return nets


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    """bfloat16 autocast on CPU, float16 on GPU, or nothing when not ``enabled``.

    On a CPU without native bfloat16 (:func:`covseg.model.cpu.native_bf16`) it stays float32:
    emulated bfloat16 is many times slower there, never faster.
    """
    if not enabled or (device.type == "cpu" and not native_bf16()):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if device.type == "cpu" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def _tta_passes(
    image: torch.Tensor, infer: dict[str, Any], tta: bool
) -> Iterator[tuple[torch.Tensor, tuple[int, ...]]]:
    """Test-time augmentation passes, as (input, flipped tensor dims): the image; with
    ``tta_mirror`` its mirrorings along every set of ``tta_flip_axes``; then (the baseline's)
    ``tta_noise_repeats`` noisy copies, each also flipped along every ``tta_flip_axes`` axis
    (baseline: 1 + 4 x 3 = 13 passes)."""
    yield image, ()
    if not tta:
        return
    if infer.get("tta_mirror"):  # nnU-Net's mirroring: every non-empty set of flip axes
        axes = [int(a) + 2 for a in infer["tta_flip_axes"]]
        for n in range(1, len(axes) + 1):
            for dims in itertools.combinations(axes, n):
                yield image.flip(dims), dims
    gen = torch.Generator().manual_seed(0)  # the same noise for every run
    for _ in range(int(infer["tta_noise_repeats"])):
        noise = torch.randn(image.shape, generator=gen) * float(infer["tta_noise_std"])
        noisy = image + noise.to(image.device)
        yield noisy, ()
        for axis in infer["tta_flip_axes"]:
            dims = (int(axis) + 2,)
            yield noisy.flip(dims), dims


def predict_probabilities(
    image: torch.Tensor,
    nets: list[torch.nn.Module],
    plan: dict[str, Any],
    *,
    tta: bool = False,
    bf16: bool = True,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Class probabilities (C, X, Y, Z) of a model-grid image (1, X, Y, Z).

    Softmax averaged over the folds and the test-time augmentation passes; sliding window with
    the plan's ``inference`` values (window, overlap, Gaussian blending, padding).
    """
    from monai.inferers import sliding_window_inference

    device = device or torch.device("cpu")
    infer = plan["inference"]
    batch = image[None].to(device)
    total: torch.Tensor | None = None
    count = 0
    with torch.inference_mode(), autocast(device, bf16):
        for net in nets:
            net.to(device)
            predictor = _float_logits(net)
            for x, dims in _tta_passes(batch, infer, tta):
                logits = sliding_window_inference(
                    x,
                    roi_size=tuple(infer["roi_size"]),
                    sw_batch_size=int(infer["sw_batch_size"]),
                    predictor=predictor,
                    overlap=float(infer["overlap"]),
                    mode=infer["blend_mode"],
                    padding_mode=infer["padding_mode"],
                )
                assert isinstance(logits, torch.Tensor)
                prob = logits.float().softmax(1)
                prob = prob.flip(dims) if dims else prob
                total = prob if total is None else total + prob
                count += 1
    assert total is not None
    return (total / count)[0].cpu()


def _float_logits(net: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The network's logits as float32, whatever autocast computed them in."""

    def run(x: torch.Tensor) -> torch.Tensor:
        out = net(x)
        return (out[0] if isinstance(out, list | tuple) else out).float()

    return run
