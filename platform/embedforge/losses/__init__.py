"""Losses over embeddings and reranker logits; none of them holds a model."""

from embedforge.losses.infonce import ImprovedInfoNCE
from embedforge.losses.matryoshka import EmbeddingLoss, MatryoshkaLoss
from embedforge.losses.reranker import ListwiseLoss, PointwiseYesNoLoss, yes_no_logit

__all__ = [
    "EmbeddingLoss",
    "ImprovedInfoNCE",
    "ListwiseLoss",
    "MatryoshkaLoss",
    "PointwiseYesNoLoss",
    "yes_no_logit",
]
