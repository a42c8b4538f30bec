"""Data-parallel training across processes (``torchrun``): one process per GPU, or several
CPU processes with the gloo backend.

Every rank holds the whole model. Each optimizer step, the ranks take disjoint shares of one
stream of batches, and their gradients are averaged before the step, so N ranks with
accumulation A take the same steps as one process with accumulation N x A. Rank 0 alone
evaluates, checkpoints and writes files; the others follow its decisions.

Outside ``torchrun`` (no ``WORLD_SIZE`` above 1 in the environment) everything here is a no-op
on a world of one.
"""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)

T = TypeVar("T")

COLLECTIVE_TIMEOUT = timedelta(hours=2)
"""How long a rank waits for the others: rank 0's dev evaluations and checkpoints run while
the rest wait at the next collective, so this is far above NCCL's ten-minute default."""


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that evaluates, checkpoints and writes."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_environment(environ: dict[str, str] | None = None) -> World:
    """The world ``torchrun`` describes in ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``.

    >>> world_from_environment({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    World(rank=1, size=2, local_rank=1)
    >>> world_from_environment({})
    World(rank=0, size=1, local_rank=0)
    """
    env = os.environ if environ is None else environ
    try:
        size = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local_rank = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError as error:
        raise ValueError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers: {error}") from None
    if size < 1 or not 0 <= rank < size or local_rank < 0:
        raise ValueError(f"inconsistent torchrun environment: RANK={rank}, WORLD_SIZE={size}")
    return World(rank=rank, size=size, local_rank=local_rank)


def current_world() -> World:
    """The initialised process group's world, or a world of one."""
    if dist.is_available() and dist.is_initialized():
        return World(
            rank=dist.get_rank(),
            size=dist.get_world_size(),
            local_rank=int(os.environ.get("LOCAL_RANK", dist.get_rank())),
        )
    return World()


def init_from_environment() -> World:
    """Join the process group ``torchrun`` set up (idempotent); a world of one otherwise.

    Call it before building models: on CUDA it makes ``cuda`` mean this rank's GPU
    (``LOCAL_RANK``), so ``--device cuda`` and the default device need no rank in them."""
    world = world_from_environment()
    if not world.distributed or dist.is_initialized():
        return current_world()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    cuda = torch.cuda.is_available() and dist.is_nccl_available()
    if cuda:
        torch.cuda.set_device(world.local_rank % torch.cuda.device_count())
    dist.init_process_group(
        backend="cpu:gloo,cuda:nccl" if cuda else "gloo", timeout=COLLECTIVE_TIMEOUT
    )
    atexit.register(_leave)
    log.info("rank %d of %d joined the process group", world.rank, world.size)
    return current_world()


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank_share(batches: Iterator[T], world: World) -> Iterator[T]:
    """This rank's share of a stream every rank draws alike: of each ``world.size``
    consecutive batches, the one at position ``rank``.

    >>> list(rank_share(iter(range(7)), World(rank=1, size=3)))
    [1, 4]
    >>> list(rank_share(iter(range(3)), World()))
    [0, 1, 2]
    """
    while True:
        group = [next(batches, None) for _ in range(world.size)]
        if group[-1] is None:
            return
        yield group[world.rank]  # type: ignore[misc]  # not None: the group is complete


def average_gradients(
    parameters: Iterable[nn.Parameter], loss: float, world: World, device: torch.device
) -> float:
    """Average the parameters' gradients over the ranks in place (a missing gradient counts
    as zeros) with one all-reduce, and return the mean of the ranks' losses."""
    params = list(parameters)
    if not world.distributed:
        return loss
    grads = [
        p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), device=p.device)
        for p in params
    ]
    parts = [g.to(device, torch.float32) for g in grads]
    flat = torch.cat([*parts, torch.tensor([loss], device=device)])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world.size
    offset = 0
    for p in params:
        n = p.numel()
        averaged = flat[offset : offset + n].view_as(p).to(p.dtype)
        if p.grad is None:
            p.grad = averaged.clone()
        else:
            p.grad.copy_(averaged)
        offset += n
    return float(flat[-1])


class _AllGather(torch.autograd.Function):
    """Every rank's tensor (all of one shape); backward hands each rank the sum, over the
    ranks, of the gradients that reached its tensor."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
        pieces = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(pieces, tensor)
        return tuple(pieces)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> torch.Tensor:
        summed = torch.stack(grads).contiguous()
        dist.all_reduce(summed, op=dist.ReduceOp.SUM)
        return summed[dist.get_rank()]


def gather_padded(
    tensor: torch.Tensor, world: World, pad_dims: Sequence[int] = ()
) -> tuple[torch.Tensor, int]:
    """Every rank's tensor, rank by rank along dim 0, where ranks may differ in dim 0 and in
    ``pad_dims`` (padded with zeros to the largest, as masks pad token matrices); and where
    this rank's rows begin. A tensor that requires a gradient gets its gradient back from
    every rank's use of it."""
    if not world.distributed:
        return tensor, 0
    if tensor.dtype == torch.bool:  # masks travel as bytes
        gathered, first = gather_padded(tensor.to(torch.uint8), world, pad_dims)
        return gathered.bool(), first
    shape = torch.tensor(tensor.shape, dtype=torch.int64, device=tensor.device)
    shapes = [torch.zeros_like(shape) for _ in range(world.size)]
    dist.all_gather(shapes, shape)
    widest = torch.stack(shapes).max(dim=0).values
    padding: list[int] = []
    for dim in reversed(range(1, tensor.dim())):  # F.pad lists the last dimension first
        padding += [0, int(widest[dim]) - tensor.shape[dim] if dim in pad_dims else 0]
    padding += [0, int(widest[0]) - tensor.shape[0]]
    padded = torch.nn.functional.pad(tensor, padding).contiguous()
    if padded.requires_grad:
        pieces = list(_AllGather.apply(padded))
    else:
        pieces = [torch.zeros_like(padded) for _ in range(world.size)]
        dist.all_gather(pieces, padded)
    rows = [int(s[0]) for s in shapes]
    gathered = torch.cat([piece[:n] for piece, n in zip(pieces, rows, strict=True)])
    return gathered, sum(rows[: world.rank])


def broadcast_parameters(parameters: Iterable[nn.Parameter], world: World) -> None:
    """Give every rank rank 0's values, so that ranks which initialised their heads
    differently start alike."""
    if not world.distributed:
        return
    with torch.no_grad():
        for p in parameters:
            dist.broadcast(p.data, src=0)


def main_decides(flag: bool, world: World, device: torch.device) -> bool:
    """Rank 0's ``flag`` on every rank (for example: stop early)."""
    if not world.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.broadcast(value, src=0)
    return bool(value.item())


def from_main(value: T, world: World) -> T:
    """Rank 0's ``value`` (any picklable object) on every rank."""
    if not world.distributed:
        return value
    box: list[object] = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[return-value]  # rank 0 sent a T


def from_each_rank(value: T, world: World) -> Iterator[T]:
    """Every rank's ``value`` (any picklable object), in rank order, on every rank, one rank
    at a time: a caller that consumes each before the next holds one other rank's value at
    once, not all of them (an all-gather would). Each step is a collective: every rank must
    consume all of it."""
    if not world.distributed:
        yield value
        return
    for source in range(world.size):
        box: list[object] = [value if world.rank == source else None]
        dist.broadcast_object_list(box, src=source)
        yield box[0]  # type: ignore[misc]  # the source rank sent a T


def agreed_step(step: int, world: World, device: torch.device) -> int:
    """The step every rank resumed from; refuses ranks that read different checkpoints."""
    if not world.distributed:
        return step
    low = torch.tensor([step], dtype=torch.int64, device=device)
    high = low.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    if int(low) != int(high):
        raise RuntimeError(
            f"ranks resumed from different steps ({int(low)} to {int(high)}): give --out a "
            "folder every rank sees (a shared filesystem), or start without a checkpoint"
        )
    return step
