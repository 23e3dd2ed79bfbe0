"""covseg export: TorchScript and ONNX files that give the original network's output."""

from pathlib import Path

import pytest
import torch
from model_fixtures import one_thread, tiny_model  # noqa: F401 (fixture)
from typer.testing import CliRunner

from covseg.cli import app
from covseg.model.export import load_exported
from covseg.model.inference import load_models, predict_probabilities
from covseg.model.plan import read_plan

pytestmark = pytest.mark.usefixtures("one_thread")


def test_exports_give_the_same_output(tmp_path: Path) -> None:
    model = tiny_model(tmp_path / "model")
    result = CliRunner().invoke(app, ["export", str(model)])
    assert result.exit_code == 0, result.output
    plan = read_plan(model)
    net = load_models(model, plan)[0]
    image = torch.rand(1, 40, 36, 20)  # not a multiple of the window: padding and blending too
    expected = predict_probabilities(image, [net], plan, bf16=False)
    for name in ("fold_0.pt", "fold_0.onnx"):
        exported = load_exported(model / "export" / name)
        wrapped = _Module(exported)
        got = predict_probabilities(image, [wrapped], plan, bf16=False)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


class _Module(torch.nn.Module):
    """An exported callable seen as a network by the sliding-window code."""

    def __init__(self, fn) -> None:  # noqa: ANN001
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x.contiguous())
