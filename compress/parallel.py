"""Distributed training on PyTorch's own engine: ``torchrun`` starts the processes, we join them.

``DistContext.from_env()`` reads the variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK) and
initialises the process group (NCCL on GPUs, gloo on CPUs). Only the trainable parts are wrapped in
DDP: the method module is wrapped as a whole and DDP ignores parameters without gradients (frozen
teachers). Only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def single(cls) -> "DistContext":
        return cls()

    @classmethod
    def from_env(cls, backend: str | None = None) -> "DistContext":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls.single()
        import torch.distributed as dist

        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if not dist.is_initialized():
            chosen = backend or ("nccl" if torch.cuda.is_available() else "gloo")
            if chosen == "nccl":
                torch.cuda.set_device(local)
            dist.init_process_group(chosen)
        return cls(rank, world, local)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def device(self, requested: str) -> str:
        """Each rank takes its own GPU under torchrun."""
        if self.enabled and requested in ("auto", "cuda") and torch.cuda.is_available():
            return f"cuda:{self.local_rank}"
        return requested

    def wrap(self, module: nn.Module) -> nn.Module:
        if not self.enabled:
            return module
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.local_rank] if next(module.parameters()).device.type == "cuda" else None
        # broadcast_buffers=False: BN statistics stay per-rank (use SyncBatchNorm to share them).
        return DistributedDataParallel(module, device_ids=device_ids, broadcast_buffers=False)

    def all_reduce_sum(self, tensor: torch.Tensor) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()
