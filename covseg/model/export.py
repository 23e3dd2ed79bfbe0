"""Export trained fold networks to TorchScript and ONNX, checked against the original."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from covseg.model.inference import load_models
from covseg.model.plan import read_plan

FORMATS = ("torchscript", "onnx")
#: Largest absolute logit difference accepted between an export and the original network.
TOLERANCE = 1e-3


def export_model(
    model_dir: Path, out_dir: Path | None = None, formats: tuple[str, ...] = FORMATS
) -> list[Path]:
    """Write ``fold_K.pt`` (TorchScript) and ``fold_K.onnx`` for each trained fold.

    Inputs are (batch, 1, X, Y, Z) model-grid patches, normalised as the plan says; outputs are
    logits (batch, classes, X, Y, Z). Batch and spatial sizes are dynamic in ONNX; every export is
    run once on a random window of the plan's ``roi_size`` and compared with the original.

    Raises
    ------
    ValueError
        When an export differs from the original network by more than :data:`TOLERANCE`.
    """
    plan = read_plan(model_dir)
    out_dir = out_dir or model_dir / "export"
    out_dir.mkdir(parents=True, exist_ok=True)
    example = torch.randn(
        1, 1, *plan["inference"]["roi_size"], generator=torch.Generator().manual_seed(0)
    )
    written = []
    for fold, net in enumerate(load_models(model_dir, plan)):
        with torch.inference_mode():
            expected = net(example).numpy()
        for fmt in formats:
            path = out_dir / f"fold_{fold}.{'pt' if fmt == 'torchscript' else 'onnx'}"
            _EXPORTERS[fmt](net, example, path)
            got = load_exported(path)(example).numpy()
            error = float(np.abs(got - expected).max())
            if error > TOLERANCE:
                raise ValueError(f"{path}: export differs from the network by {error:.2g}")
            written.append(path)
    return written


def load_exported(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable computing logits with an exported network (``.pt`` or ``.onnx``)."""
    if path.suffix == ".onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: torch.from_numpy(session.run(None, {"image": x.numpy()})[0])
    module = torch.jit.load(str(path), map_location="cpu").eval()

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return module(x)

    return run


def _torchscript(net: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent branches
        torch.jit.trace(net, example).save(str(path))


def _onnx(net: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    spatial = {0: "batch", 2: "x", 3: "y", 4: "z"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The TorchScript-based exporter: the dynamo one needs onnxscript, not a dependency.
        torch.onnx.export(
            net,
            (example,),
            str(path),
            dynamo=False,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": spatial, "logits": spatial},
        )


_EXPORTERS: dict[str, Callable[[torch.nn.Module, torch.Tensor, Path], Any]] = {
    "torchscript": _torchscript,
    "onnx": _onnx,
}
