"""Cross-worker helpers for contrastive losses.

A contrastive loss gets stronger with more in-batch negatives, and the cheapest way to get
more is to borrow the embeddings every other worker already computed. These helpers gather
them along dim 0 while keeping the autograd graph, so gradients flow back to the rank that
produced each row.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """True when torch.distributed is initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank, 0 when not distributed."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """The number of ranks, 1 when not distributed."""
    return dist.get_world_size() if is_distributed() else 1


def check_same_shape_across_ranks(t: Tensor, name: str) -> None:
    """Raise ValueError unless ``t`` has the same shape on every rank.

    ``all_gather`` needs equal sizes, and a loss that offsets its labels by ``rank * N``
    is only right when every rank holds N rows. The check is one tiny collective.
    """
    if not is_distributed():
        return
    shape = torch.tensor(t.shape, dtype=torch.long, device=t.device)
    shapes = [torch.empty_like(shape) for _ in range(dist.get_world_size())]
    dist.all_gather(shapes, shape)
    distinct = {tuple(s.tolist()) for s in shapes}
    if len(distinct) > 1:
        per_rank = [tuple(s.tolist()) for s in shapes]
        raise ValueError(
            f"gathering {name!r} across ranks needs the same shape on every rank, "
            f"got {per_rank} (rank order); use equal per-rank batch sizes (drop_last=True)"
        )


class GatherWithGrad(torch.autograd.Function):
    """All-gather that keeps the graph: forward returns every rank's tensor, in rank order;
    backward sums each part's gradient over the ranks and hands a rank the sum for its own part.

    Written here rather than taken from ``torch.distributed.nn.functional.all_gather``, which
    does the same but warns on every worker that it is deprecated.
    """

    @staticmethod
    def forward(ctx, t: Tensor) -> tuple[Tensor, ...]:
        parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, t)
        return tuple(parts)

    @staticmethod
    def backward(ctx, *grads: Tensor) -> Tensor:
        summed = torch.stack(grads)  # (world, *t.shape)
        dist.all_reduce(summed)
        return summed[dist.get_rank()]


def gather_with_grad(t: Tensor) -> Tensor:
    """Concatenate ``t`` from every rank along dim 0, in rank order.

    A tensor that requires grad goes through :class:`GatherWithGrad`, whose backward sums
    the gradients every rank computed for a row and hands the sum to the rank that owns it.
    So if each rank's loss is the mean over its own rows, the local input gradient is
    ``world_size`` times the gradient of the global mean; DDP and DeepSpeed divide parameter
    gradients by ``world_size``, which gives back exactly the gradient of the global mean.
    Tensors without grad (text ids) use a plain all-gather. Returns ``t`` unchanged when not
    distributed.
    """
    if not is_distributed():
        return t
    if t.requires_grad:
        return torch.cat(GatherWithGrad.apply(t.contiguous()), dim=0)
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts, dim=0)
