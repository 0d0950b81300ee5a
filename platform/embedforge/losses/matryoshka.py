"""Matryoshka representation learning as an explicit wrapper around an embedding loss."""

from __future__ import annotations

from typing import Any, Protocol, Sequence

from torch import Tensor, nn


class EmbeddingLoss(Protocol):
    """A loss over query, positive and optional negative embeddings."""

    def __call__(
        self, query: Tensor, positive: Tensor, negatives: Tensor | None = None, **kwargs: Any
    ) -> Tensor: ...


class MatryoshkaLoss(nn.Module):
    r"""Weighted sum of a base loss over the first ``d`` components of every embedding.

    Training the prefixes of the embedding makes every truncation
    :math:`d \in` ``dimensions`` usable on its own, which is how the Qwen3 embedders serve
    any output size from 32 to the hidden size (truncate, then re-normalise):

    .. math::

        L = \sum_m w_m \, L_\text{base}(q_{:d_m}, d^+_{:d_m}, d^-_{:d_m})

    The wrapper only slices the last dimension of its inputs; the base loss must normalise
    them itself, as :class:`ImprovedInfoNCE` does. It holds no model reference and patches
    nothing: the embeddings are computed once by the caller and sliced here. Which
    dimensions the recipe trained is open; a common choice is the full size plus halvings
    down to 32.

    Args:
        base_loss: any callable (usually an ``nn.Module``, then registered as a submodule)
            called as ``base_loss(query, positive, negatives, **kw)``.
        dimensions: the prefix sizes to train, each > 0, without repeats. Each must not
            exceed the embedding size seen at call time.
        weights: one non-negative weight per dimension, not all zero; default all 1.
            They are used as given, not normalised, so the loss scale grows with the
            number of dimensions.

    References:
        - Matryoshka Representation Learning, https://arxiv.org/abs/2205.13147
        - Qwen3 Embedding, https://arxiv.org/abs/2506.05176 (MRL support).

    Requirements:
        1. A base loss that normalises its inputs (cosine similarity).

    Inputs:
        +---------------+-----------------+------------------------------------+
        | Argument      | Shape           | Meaning                            |
        +===============+=================+====================================+
        | ``query``     | (N, D)          | query embeddings                   |
        +---------------+-----------------+------------------------------------+
        | ``positive``  | (N, D)          | positive embeddings                |
        +---------------+-----------------+------------------------------------+
        | ``negatives`` | (N, K, D)       | optional hard negatives            |
        +---------------+-----------------+------------------------------------+
        | ``**kwargs``  | any             | passed unchanged to the base loss  |
        +---------------+-----------------+------------------------------------+

    Example:
        ::

            import torch
            from embedforge.losses import ImprovedInfoNCE, MatryoshkaLoss

            loss_fn = MatryoshkaLoss(ImprovedInfoNCE(), dimensions=[64, 32], weights=[1, 0.5])
            q, d = torch.randn(4, 64), torch.randn(4, 64)
            loss = loss_fn(q, d)
            assert loss.item() > 0
    """

    def __init__(
        self,
        base_loss: EmbeddingLoss,
        dimensions: Sequence[int],
        weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        dimensions = [int(d) for d in dimensions]
        if not dimensions or any(d <= 0 for d in dimensions):
            raise ValueError(f"dimensions must be a non-empty list of ints > 0, got {dimensions}")
        if len(set(dimensions)) != len(dimensions):
            raise ValueError(f"dimensions must not repeat, got {dimensions}")
        weights = [1.0] * len(dimensions) if weights is None else [float(w) for w in weights]
        if len(weights) != len(dimensions):
            raise ValueError(
                f"need one weight per dimension, got {len(weights)} weights "
                f"for {len(dimensions)} dimensions"
            )
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"weights must be >= 0 and not all zero, got {weights}")
        self.base_loss = base_loss
        self.dimensions = dimensions
        self.weights = weights

    def forward(
        self, query: Tensor, positive: Tensor, negatives: Tensor | None = None, **kwargs: Any
    ) -> Tensor:
        """Return the weighted sum of the base loss at every truncation, a scalar."""
        full = query.shape[-1]
        too_big = [d for d in self.dimensions if d > full]
        if too_big:
            raise ValueError(f"dimensions {too_big} exceed the embedding size {full}")
        losses = []
        for dim in self.dimensions:
            truncated_neg = None if negatives is None else negatives[..., :dim]  # (N, K, d)
            losses.append(
                self.base_loss(query[..., :dim], positive[..., :dim], truncated_neg, **kwargs)
            )
        return sum(w * loss for w, loss in zip(self.weights, losses))
