"""bfloat16 autocast only where the CPU computes bfloat16 natively."""

import contextlib

import pytest
import torch

from covseg.model import inference
from covseg.model.cpu import bf16_in_cpuinfo
from covseg.model.slices2d.budget import fold_processes

EPYC = "processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma\n"
SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


def test_native_bf16_is_read_from_the_cpu_flags() -> None:
    assert not bf16_in_cpuinfo(EPYC)
    assert bf16_in_cpuinfo(SAPPHIRE_RAPIDS)
    assert bf16_in_cpuinfo(GRAVITON3)
    assert not bf16_in_cpuinfo("")


@pytest.mark.parametrize("native", [False, True])
def test_cpu_autocast_follows_native_bf16(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    monkeypatch.setattr(inference, "native_bf16", lambda: native)
    net = torch.nn.Conv2d(1, 1, 3)
    with inference.autocast(torch.device("cpu"), True):
        out = net(torch.zeros(1, 1, 8, 8))
    assert out.dtype == (torch.bfloat16 if native else torch.float32)
    assert isinstance(inference.autocast(torch.device("cpu"), False), contextlib.nullcontext)


def test_folds_run_one_per_core(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert fold_processes(5, "auto") == (2, 1)
    assert fold_processes(5, None) == (2, 1)
    assert fold_processes(1, "auto") == (1, 2)  # one fold: all cores to it
    assert fold_processes(5, 1) == (1, 2)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert fold_processes(5, "auto") == (5, 3)
