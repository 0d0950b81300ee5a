"""Loss computation of one training step, for the embedder and the reranker.

Each function takes the forward module (DDP wrapper, DeepSpeed engine or the bare
module), the loss and a batch of token columns from Ray Data, and returns the loss.
:func:`grad_cache_embedder_step` is the GradCache strategy: it gives the same loss and
parameter gradients as :func:`embedder_loss` followed by ``backward``, in memory that
grows with the chunk size instead of the batch size.
"""

from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import torch
from torch import Tensor, nn

from embedforge.losses import ListwiseLoss, PointwiseLogitLoss, PointwiseYesNoLoss, yes_no_logit
from embedforge.training.batches import trim_padding, used_span


def embed(model: nn.Module, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """Embeddings ``(B, D)`` of fixed-length token rows, padding columns trimmed first."""
    input_ids, attention_mask = trim_padding(input_ids, attention_mask)
    return model(input_ids, attention_mask)


def text_groups(batch: dict[str, Tensor]) -> list[tuple[Tensor, Tensor]]:
    """``[(ids, mask)]`` for queries (B, Lq), positives (B, L) and, if any, negatives (B * K, L)."""
    groups = [
        (batch["query_input_ids"], batch["query_attention_mask"]),
        (batch["positive_input_ids"], batch["positive_attention_mask"]),
    ]
    if "negative_input_ids" in batch:
        ids, mask = batch["negative_input_ids"], batch["negative_attention_mask"]
        groups.append((ids.flatten(0, 1), mask.flatten(0, 1)))
    return groups


def loss_inputs(embeddings: list[Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor | None]:
    """The embedding loss's keyword arguments: query and positive ``(B, D)``, negatives ``(B, K, D)``, text ids."""
    query, positive = embeddings[0], embeddings[1]
    negatives, negative_ids = None, None
    if len(embeddings) > 2:
        b, k = batch["negative_ids"].shape
        negatives = embeddings[2].view(b, k, -1)  # (B, K, D)
        negative_ids = batch["negative_ids"]
    return {
        "query": query,
        "positive": positive,
        "negatives": negatives,
        "positive_ids": batch["positive_ids"],
        "negative_ids": negative_ids,
        "query_ids": batch.get("query_ids"),
    }


def embedder_loss(model: nn.Module, loss_fn: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    """Plain step: embed every text with gradients, then the contrastive loss."""
    embeddings = [embed(model, ids, mask) for ids, mask in text_groups(batch)]
    return loss_fn(**loss_inputs(embeddings, batch))


def _chunks(ids: Tensor, mask: Tensor, size: int):
    for start in range(0, ids.shape[0], size):
        yield ids[start : start + size], mask[start : start + size]


def grad_cache_embedder_step(
    model: nn.Module,
    loss_fn: nn.Module,
    batch: dict[str, Tensor],
    chunk_size: int,
    no_sync: Callable[[], ContextManager] = contextlib.nullcontext,
    autocast: Callable[[], ContextManager] = contextlib.nullcontext,
) -> Tensor:
    """GradCache: forward and backward in chunks; returns the (detached) loss.

    1. Embed every chunk without a graph, saving the RNG state before each chunk.
    2. Compute the loss on the cached embeddings (leaf tensors) and backpropagate to them.
    3. Re-embed each chunk with a graph under the same RNG state (so dropout masks match)
       and backpropagate the cached embedding gradients into the parameters. Gradient
       synchronisation (DDP) runs only on the last chunk.
    """
    groups = text_groups(batch)
    cached, states = [], []
    with torch.no_grad(), autocast():
        for ids, mask in groups:
            parts = []
            for chunk_ids, chunk_mask in _chunks(ids, mask, chunk_size):
                states.append(_rng_state(ids.device))
                parts.append(embed(model, chunk_ids, chunk_mask))
            cached.append(torch.cat(parts))
    leaves = [embedding.detach().requires_grad_() for embedding in cached]
    loss = loss_fn(**loss_inputs(leaves, batch))
    loss.backward()
    work = [
        (chunk_ids, chunk_mask, chunk_grad)
        for (ids, mask), leaf in zip(groups, leaves)
        for (chunk_ids, chunk_mask), chunk_grad in zip(_chunks(ids, mask, chunk_size), leaf.grad.split(chunk_size))
    ]
    for index, ((chunk_ids, chunk_mask, chunk_grad), state) in enumerate(zip(work, states)):
        sync = index == len(work) - 1
        with (contextlib.nullcontext() if sync else no_sync()):
            _set_rng_state(state, chunk_ids.device)
            with autocast():
                embedding = embed(model, chunk_ids, chunk_mask)
            # d(loss)/d(params) = sum over rows of (d loss / d embedding) . (d embedding / d params)
            (embedding.float() * chunk_grad).sum().backward()
    return loss.detach()


def _rng_state(device: torch.device):
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def _set_rng_state(state, device: torch.device) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda, device)


def group_inputs(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The reranker's model inputs: ``(B, G, L)`` token columns as ``(B * G, L')``, padding columns trimmed."""
    span = used_span(batch["attention_mask"])
    names = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in batch]
    return {name: batch[name].flatten(0, 1)[:, span] for name in names}


def reranker_loss(
    model: nn.Module, loss_fn: nn.Module, batch: dict[str, Tensor], yes_id: int | None = None, no_id: int | None = None
) -> Tensor:
    """Pointwise or listwise loss over groups of (positive, negatives) inputs ``(B, G, L)``, positive first.

    A ``prior`` column ``(B, G)`` (:class:`embedforge.training.batches.TokenizePairGroups`) is
    added to a cross-encoder's logits before the loss.

    With ``yes_id``/``no_id`` the model is the yes/no judge and returns last-position logits
    ``(B * G, V)``; without them it is a cross-encoder and returns one relevance logit per
    pair, ``(B * G,)``.
    """
    b, g, _ = batch["input_ids"].shape
    output = model(**group_inputs(batch))  # (B * G, V) judge logits or (B * G,) scores
    if "prior" in batch:  # a cross-encoder learning a correction: its logit is prior + output
        output = output + batch["prior"].to(output.dtype).flatten()
    if isinstance(loss_fn, ListwiseLoss):
        scores = output if yes_id is None else yes_no_logit(output, yes_id, no_id)
        return loss_fn(scores.view(b, g))  # scores (B, G), positive first
    labels = torch.zeros(b, g, dtype=torch.long, device=output.device)
    labels[:, 0] = 1
    return loss_fn(output, labels.flatten())


def build_loss(config, yes_id: int | None = None, no_id: int | None = None) -> nn.Module:
    """The loss module a :class:`TrainConfig` asks for; a reranker without yes/no ids is a cross-encoder."""
    from embedforge.losses import ImprovedInfoNCE, MatryoshkaLoss

    section = config.loss
    if config.model.kind == "reranker":
        if section.reranker_loss == "listwise":
            return ListwiseLoss(section.listwise_temperature)
        if yes_id is None:
            return PointwiseLogitLoss()
        return PointwiseYesNoLoss(yes_id, no_id, restrict_to_yes_no=section.restrict_to_yes_no)
    loss = ImprovedInfoNCE(
        temperature=section.temperature,
        margin=section.margin,
        use_hard_negatives=section.use_hard_negatives,
        use_query_query=section.use_query_query,
        use_doc_doc=section.use_doc_doc,
        use_query_doc=section.use_query_doc,
        share_hard_negatives=section.share_hard_negatives,
        gather_across_ranks=section.gather_across_ranks,
    )
    if section.matryoshka_dimensions:
        return MatryoshkaLoss(loss, section.matryoshka_dimensions, section.matryoshka_weights)
    return loss
