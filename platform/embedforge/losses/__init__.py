"""Losses over embeddings and reranker logits; none of them holds a model."""

from embedforge.losses.infonce import ImprovedInfoNCE
from embedforge.losses.matryoshka import EmbeddingLoss, MatryoshkaLoss
from embedforge.losses.reranker import ListwiseLoss, PointwiseLogitLoss, PointwiseYesNoLoss, yes_no_logit

__all__ = [
    "EmbeddingLoss",
    "ImprovedInfoNCE",
    "ListwiseLoss",
    "MatryoshkaLoss",
    "PointwiseLogitLoss",
    "PointwiseYesNoLoss",
    "yes_no_logit",
]
