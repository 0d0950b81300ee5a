"""Reranker losses over next-token logits (yes/no judge) or relevance logits (cross-encoders), not models."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def yes_no_logit(logits_last: Tensor, yes_id: int, no_id: int) -> Tensor:
    """Relevance as one logit, ``logit_yes - logit_no``, shape (B,).

    ``sigmoid`` of it is the recipe's score ``softmax([logit_yes, logit_no])[0]``, and it
    is what a one-logit cross-encoder head (``w_yes - w_no``) computes.
    """
    return logits_last[..., yes_id] - logits_last[..., no_id]


class PointwiseYesNoLoss(nn.Module):
    r"""The recipe's supervised next-token loss on the label token "yes" or "no".

    For each (query, document) prompt the causal LM's logits at the position right after
    the prompt suffix are scored against the label token: "yes" when relevant, "no" when
    not:

    .. math::

        L = -\frac{1}{B} \sum_b \log \mathrm{softmax}(z_b)[t_b], \quad
        t_b = \text{yes\_id if } y_b = 1 \text{ else no\_id}

    By default the softmax runs over the full vocabulary, which is exactly the SFT loss
    of the recipe: it also pushes down every other token. With
    ``restrict_to_yes_no=True`` it runs over the two logits [yes, no] only, i.e. binary
    cross-entropy on ``logit_yes - logit_no``, which trains the served score directly and
    leaves the rest of the vocabulary alone.

    Args:
        yes_id: token id of "yes" in the reranker's tokenizer.
        no_id: token id of "no".
        restrict_to_yes_no: two-way softmax instead of the full-vocabulary one.

    References:
        - Qwen3 Embedding, https://arxiv.org/abs/2506.05176 (reranker training).

    Requirements:
        1. Logits at the scoring position (after the suffix), not the whole sequence.
        2. Binary labels.

    Inputs:
        +-----------------+------------+------------------------------------------+
        | Argument        | Shape      | Meaning                                  |
        +=================+============+==========================================+
        | ``logits_last`` | (B, V)     | next-token logits at the scoring position|
        +-----------------+------------+------------------------------------------+
        | ``labels``      | (B,)       | 1 relevant, 0 not relevant               |
        +-----------------+------------+------------------------------------------+

    Example:
        ::

            import torch
            from embedforge.losses import PointwiseYesNoLoss

            loss_fn = PointwiseYesNoLoss(yes_id=9693, no_id=2152)
            logits = torch.randn(2, 10000, requires_grad=True)
            loss = loss_fn(logits, torch.tensor([1, 0]))
            loss.backward()
            assert loss.item() > 0
    """

    def __init__(self, yes_id: int, no_id: int, restrict_to_yes_no: bool = False) -> None:
        super().__init__()
        if yes_id < 0 or no_id < 0 or yes_id == no_id:
            raise ValueError(f"yes_id and no_id must be distinct ids >= 0, got {yes_id}, {no_id}")
        self.yes_id = int(yes_id)
        self.no_id = int(no_id)
        self.restrict_to_yes_no = restrict_to_yes_no

    def forward(self, logits_last: Tensor, labels: Tensor) -> Tensor:
        """Return the mean negative log-likelihood of the label tokens, a scalar."""
        if logits_last.dim() != 2 or labels.shape != logits_last.shape[:1]:
            raise ValueError(
                f"expected logits_last (B, V) and labels (B,), got {tuple(logits_last.shape)} "
                f"and {tuple(labels.shape)}"
            )
        if ((labels != 0) & (labels != 1)).any():
            raise ValueError("labels must be 0 or 1")
        relevant = labels.bool()
        if self.restrict_to_yes_no:
            pair = logits_last[:, [self.yes_id, self.no_id]].float()  # (B, 2)
            return F.cross_entropy(pair, (~relevant).long())
        targets = torch.where(relevant, self.yes_id, self.no_id)  # (B,)
        return F.cross_entropy(logits_last.float(), targets)


class PointwiseLogitLoss(nn.Module):
    r"""Binary cross-entropy on one relevance logit per (query, document) pair.

    The pointwise loss of one-logit cross-encoders, whose score is ``sigmoid(s)``:

    .. math::

        L = -\frac{1}{N} \sum_i \big(y_i \log \sigma(s_i) + (1 - y_i) \log(1 - \sigma(s_i))\big)

    It is :class:`PointwiseYesNoLoss` with ``restrict_to_yes_no=True`` once the judge's
    ``logit_yes - logit_no`` is the relevance logit. Pairs are weighted equally, so with
    one positive and K negatives per query the negatives carry K times the weight.

    References:
        - Passage Re-ranking with BERT (monoBERT), https://arxiv.org/abs/1901.04085

    Requirements:
        1. One logit per pair; binary labels.

    Inputs:
        +------------+--------+------------------------------+
        | Argument   | Shape  | Meaning                      |
        +============+========+==============================+
        | ``scores`` | (N,)   | relevance logits             |
        +------------+--------+------------------------------+
        | ``labels`` | (N,)   | 1 relevant, 0 not relevant   |
        +------------+--------+------------------------------+

    Example:
        ::

            import torch
            from embedforge.losses import PointwiseLogitLoss

            scores = torch.tensor([4.0, -4.0], requires_grad=True)
            loss = PointwiseLogitLoss()(scores, torch.tensor([1, 0]))
            loss.backward()
            assert 0 < loss.item() < 0.02
    """

    def forward(self, scores: Tensor, labels: Tensor) -> Tensor:
        """Return the mean binary cross-entropy, a scalar."""
        if scores.dim() != 1 or labels.shape != scores.shape:
            raise ValueError(f"expected scores (N,) and labels (N,), got {tuple(scores.shape)} and {tuple(labels.shape)}")
        if ((labels != 0) & (labels != 1)).any():
            raise ValueError("labels must be 0 or 1")
        return F.binary_cross_entropy_with_logits(scores.float(), labels.float())


class ListwiseLoss(nn.Module):
    r"""Cross-entropy over one positive and n negatives per query, positive in column 0.

    Each query's candidates are scored independently by the reranker, as
    :func:`yes_no_logit` or a cross-encoder's one logit; the loss asks the positive to win a softmax over its list:

    .. math::

        L = -\frac{1}{B} \sum_b \log
            \frac{e^{s_{b0}/T}}{\sum_{c=0}^{n} e^{s_{bc}/T}}

    The recipe names this as a common, stronger alternative to the pointwise loss.

    Args:
        temperature: T, dividing every score; 1.0 uses the logits as they are.

    References:
        - Qwen3 Embedding, https://arxiv.org/abs/2506.05176
        - Rethink Training of BERT Rerankers in Multi-Stage Retrieval Pipeline (LCE loss),
          https://arxiv.org/abs/2101.08751

    Requirements:
        1. Every query has the same number of candidates, the positive first.

    Inputs:
        +-------------+-------------+----------------------------------------------+
        | Argument    | Shape       | Meaning                                      |
        +=============+=============+==============================================+
        | ``scores``  | (B, 1 + n)  | relevance logits, column 0 the positive      |
        +-------------+-------------+----------------------------------------------+

    Example:
        ::

            import torch
            from embedforge.losses import ListwiseLoss

            scores = torch.tensor([[3.0, 0.0, -1.0]], requires_grad=True)
            loss = ListwiseLoss()(scores)
            loss.backward()
            assert 0 < loss.item() < 0.1
    """

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
        self.temperature = float(temperature)

    def forward(self, scores: Tensor) -> Tensor:
        """Return the mean cross-entropy with target column 0, a scalar."""
        if scores.dim() != 2 or scores.shape[1] < 2:
            raise ValueError(f"scores must be (B, 1 + n) with n >= 1, got {tuple(scores.shape)}")
        targets = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)  # (B,)
        return F.cross_entropy(scores.float() / self.temperature, targets)
