"""torch.distributed from torchrun's environment: NCCL on GPU, gloo on CPU.

Without RANK/WORLD_SIZE in the environment everything here is a no-op on one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialised_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def setup() -> DistInfo:
    """Join the process group torchrun describes (if any) and pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1)) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    info = DistInfo(rank=rank, world=world, local_rank=local_rank, device=device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo", init_method="env://")
        info.initialised_here = True
    if dist.is_initialized():
        info.rank, info.world = dist.get_rank(), dist.get_world_size()
    return info


def teardown(info: DistInfo) -> None:
    if info.initialised_here and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Sum a few numbers over all processes (float64 for exact counts)."""
    if not info.active:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=info.device if info.device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().tolist()


def any_true(flag: bool, info: DistInfo) -> bool:
    return all_reduce_sum([1.0 if flag else 0.0], info)[0] > 0


def gather_objects(obj, info: DistInfo) -> list:
    """Every process's object, in rank order, on every process."""
    if not info.active:
        return [obj]
    out = [None] * info.world
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.active:
        dist.barrier()


def broadcast_object(obj, info: DistInfo):
    if not info.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
