"""Multi-process training under ``torchrun`` (DistributedDataParallel).

``torchrun --nproc-per-node N -m covseg.cli train ...`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set; :func:`setup` joins them into one process group (NCCL on
GPUs, gloo on CPUs). Without torchrun every helper here is a no-op for a single process.
"""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

import torch
import torch.distributed as td


def setup() -> None:
    """Join the torchrun process group when launched by torchrun (else do nothing)."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and not td.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        td.init_process_group(backend)


def teardown() -> None:
    """Leave the process group (if any)."""
    if td.is_initialized():
        td.destroy_process_group()


def end_worker() -> NoReturn:
    """End a torchrun worker whose work is done and written, skipping interpreter finalisation.

    With gloo on the CPU (torch 2.13) about one worker exit in 30 to 60 aborted during the
    interpreter's finalisation, after the process group was destroyed and every file written
    ("terminate called without an active exception", no Python frame left); torchrun then
    reports the whole run as failed. Exiting at once, after flushing the output, avoids it.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def active() -> bool:
    """True inside a process group of more than one process."""
    return td.is_initialized() and td.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without torchrun)."""
    return td.get_rank() if td.is_initialized() else 0


def is_main() -> bool:
    """True for the process that validates and writes files."""
    return rank() == 0


def default_device() -> torch.device:
    """This process's GPU (``LOCAL_RANK``) when there is one, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def sampler(dataset: Any, seed: int) -> Any:
    """A ``DistributedSampler`` giving each process its share of the cases, or ``None``."""
    if not active():
        return None
    from torch.utils.data.distributed import DistributedSampler

    return DistributedSampler(dataset, shuffle=True, seed=seed)


def wrap(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` in DistributedDataParallel when in a process group (gradients averaged)."""
    if not active():
        return net
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [torch.cuda.current_device()] if torch.cuda.is_available() else None
    return DistributedDataParallel(net, device_ids=device_ids)


def mean(value: float) -> float:
    """The mean of ``value`` over all processes."""
    if not active():
        return value
    t = torch.tensor([value], dtype=torch.float64)
    td.all_reduce(t)
    return float(t) / td.get_world_size()


def agree(flag: bool) -> bool:
    """True on every process when process 0 says so (stopping together on a time budget)."""
    if not active():
        return flag
    t = torch.tensor([int(flag)])
    td.broadcast(t, src=0)
    return bool(t)


def barrier() -> None:
    """Wait for every process (no-op alone)."""
    if active():
        td.barrier()
