"""Distributed helpers that are no-ops in a single process (rank from the environment).

``ppsi train --gpus N`` / ``--procs N`` spawns N local processes itself; under ``torchrun`` (one or
many nodes) the environment already names RANK / WORLD_SIZE / LOCAL_RANK and the same entry point
joins the group.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                    int(os.environ.get("LOCAL_RANK", 0)))


def init(device_type: str) -> DistInfo:
    """Join the process group named by the environment (if WORLD_SIZE > 1)."""
    info = env_info()
    if info.world > 1 and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return info


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_mean(value: float, device: torch.device) -> float:
    """Mean of a float over ranks (identity in one process)."""
    if not dist.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.item() / dist.get_world_size()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if it is true on any (for stopping together)."""
    if not dist.is_initialized():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t)
    return t.item() > 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(local_rank: int, world: int, port: int, fn, args) -> None:
    os.environ.update({"RANK": str(local_rank), "LOCAL_RANK": str(local_rank),
                       "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(port)})
    from ..runtime import keep_freed_memory

    keep_freed_memory()
    fn(*args)


def spawn(fn, args: tuple, nprocs: int) -> None:
    """Run ``fn(*args)`` in ``nprocs`` local processes forming one group (fn must be picklable)."""
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(nprocs, free_port(), fn, args), nprocs=nprocs, join=True)
