"""What the CPU can do fast: native bfloat16 arithmetic decides whether bf16 autocast pays."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

#: /proc/cpuinfo flags of native bfloat16 matrix arithmetic (x86: AVX-512 BF16 or AMX; Arm: BF16).
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (read from ``/proc/cpuinfo``; False elsewhere).

    Without it, PyTorch emulates bfloat16: a 3D U-Net training step ran 34x slower than in
    float32 on an AMD EPYC without AVX-512 (24 s vs 0.7 s), against 1.5-3x faster with it.
    """
    cpuinfo = Path("/proc/cpuinfo")
    if platform.system() != "Linux" or not cpuinfo.is_file():
        return False
    return bf16_in_cpuinfo(cpuinfo.read_text(errors="replace"))


def bf16_in_cpuinfo(text: str) -> bool:
    """Whether the first ``flags`` (x86) or ``Features`` (Arm) line of a cpuinfo text names a
    native bfloat16 instruction set."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return bool(BF16_FLAGS & set(value.split()))
    return False
