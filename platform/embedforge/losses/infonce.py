"""The improved InfoNCE loss of the Qwen3 Embedding recipe."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from embedforge import distributed


class ImprovedInfoNCE(nn.Module):
    r"""Contrastive loss with hard negatives, four in-batch terms and false-negative masking.

    For N queries :math:`q_i`, their positives :math:`d_i^+`, optional K hard negatives
    :math:`d_{ik}^-` and cosine similarity :math:`s`:

    .. math::

        L = -\frac{1}{N} \sum_i \log \frac{e^{s(q_i, d_i^+)/\tau}}{Z_i}

        Z_i = e^{s(q_i, d_i^+)/\tau}
            + \sum_k m_{ik} e^{s(q_i, d_{ik}^-)/\tau}
            + \sum_{j \ne i} m_{ij} e^{s(q_i, q_j)/\tau}
            + \sum_{j \ne i} m_{ij} e^{s(d_i^+, d_j)/\tau}
            + \sum_{j \ne i} m_{ij} e^{s(q_i, d_j)/\tau}

    The other documents :math:`d_j` are the in-batch positives :math:`d_j^+` of the other
    queries. By default a query's hard negatives only compete against that query, the
    simplest faithful reading of the recipe. With ``share_hard_negatives=True`` the other
    rows' hard negatives count as in-batch documents too, in the query-document term only:

    .. math::

        Z_i \mathrel{+}= \sum_{j \ne i} \sum_k m_{ijk} e^{s(q_i, d_{jk}^-)/\tau}

    so each query meets N(K + 1) documents instead of K + N, as sentence-transformers'
    ``MultipleNegativesRankingLoss`` scores them. The mask :math:`m` drops a term (sets it
    to 0) when its similarity exceeds the positive's by more than ``margin``,
    :math:`s_{ij} > s(q_i, d_i^+) + \text{margin}`: such a candidate is more likely an
    unlabelled positive than a negative. The same rule applies to every term, hard
    negatives included, each compared with the raw cosine of its own pair. The mask is a
    0/1 selection, so no gradient flows through the threshold.

    Rows of the same query (a query with several judged positives gives one row per
    positive) must not push each other apart: with ``query_ids``, every in-batch term of
    row i against a row j with ``query_ids[j] == query_ids[i]`` is dropped, in all three
    in-batch blocks, so another judged positive of the same query is never a negative.

    A term is also dropped when the candidate document is the same text as :math:`d_i^+`.
    The loss sees only embeddings, so this check runs only when the caller passes text ids
    (for example a 64-bit hash of each text): ``positive_ids`` and ``negative_ids``. With
    ids, ``d_j^+`` is dropped from query i's doc-doc and query-doc terms when
    ``positive_ids[j] == positive_ids[i]``, and hard negative k when
    ``negative_ids[i, k] == positive_ids[i]``. The query-query term compares queries, not
    documents, so only the margin rule masks it.

    With ``gather_across_ranks=True`` under an initialised process group of more than one
    rank, queries, positives and positive ids are gathered from every rank with gradients
    (:func:`embedforge.distributed.gather_with_grad`), and this rank's N queries (global
    rows ``rank * N`` to ``rank * N + N - 1``) are scored against all ``world_size * N``
    in-batch candidates. Hard negatives stay local unless they are shared, in which case
    they and their ids are gathered as well. Every rank must hold the same N. The loss
    returned is the mean over local rows; averaging it over ranks, as DDP and DeepSpeed do
    with gradients, gives the mean over the global batch.

    Similarities are computed in at least float32 whatever the input dtype: at
    ``tau = 0.05``, bf16's 8-bit mantissa would blur logits by about 0.1.

    Args:
        temperature: tau; the recipe leaves it open (0.01, 0.02 and 0.1 all circulate).
            0.05 is this project's default.
        margin: a candidate whose similarity exceeds the positive's by more than this is
            masked out. 0.1 as in the recipe; ``math.inf`` turns the margin rule off.
        use_hard_negatives: include the :math:`s(q_i, d_{ik}^-)` term when negatives are
            passed; when False, passed negatives are ignored.
        use_query_query: include the :math:`s(q_i, q_j)` term.
        use_doc_doc: include the :math:`s(d_i^+, d_j^+)` term.
        use_query_doc: include the :math:`s(q_i, d_j^+)` term (the classic in-batch
            negatives).
        share_hard_negatives: also score each query against the other rows' hard
            negatives (see above); needs hard negatives and ``use_query_doc``.
        gather_across_ranks: draw in-batch candidates from every rank (see above).

    References:
        - Qwen3 Embedding: Advancing Text Embedding and Reranking Through Foundation
          Models, https://arxiv.org/abs/2506.05176
        - Towards General Text Embeddings with Multi-stage Contrastive Learning (GTE),
          https://arxiv.org/abs/2308.03281, where the improved contrastive loss comes from.

    Requirements:
        1. (query, positive) pairs, one relevant document per query, no duplicate queries
           unless text ids let the mask catch duplicate positives.
        2. Optionally K hard negatives per query, the same K for every query.
        3. With ``gather_across_ranks``, the same N on every rank, and ``positive_ids``
           and ``query_ids`` each passed on every rank or on none (the gather is a
           collective).

    Inputs:
        +--------------------+------------------+------------------------------------------+
        | Argument           | Shape            | Meaning                                  |
        +====================+==================+==========================================+
        | ``query``          | (N, D) float     | query embeddings, normalised inside      |
        +--------------------+------------------+------------------------------------------+
        | ``positive``       | (N, D) float     | embedding of each query's positive       |
        +--------------------+------------------+------------------------------------------+
        | ``negatives``      | (N, K, D) float  | optional hard negatives                  |
        +--------------------+------------------+------------------------------------------+
        | ``positive_ids``   | (N,) long        | optional text ids of the positives       |
        +--------------------+------------------+------------------------------------------+
        | ``negative_ids``   | (N, K) long      | optional text ids of the hard negatives  |
        +--------------------+------------------+------------------------------------------+

    Example:
        ::

            import torch
            from embedforge.losses import ImprovedInfoNCE

            loss_fn = ImprovedInfoNCE(temperature=0.05)
            q = torch.randn(4, 32, requires_grad=True)
            d_pos, d_neg = torch.randn(4, 32), torch.randn(4, 2, 32)
            loss = loss_fn(q, d_pos, d_neg)
            loss.backward()
            assert loss.item() > 0 and q.grad is not None
    """

    def __init__(
        self,
        temperature: float = 0.05,
        margin: float = 0.1,
        use_hard_negatives: bool = True,
        use_query_query: bool = True,
        use_doc_doc: bool = True,
        use_query_doc: bool = True,
        share_hard_negatives: bool = False,
        gather_across_ranks: bool = False,
    ) -> None:
        super().__init__()
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
        if math.isnan(margin) or margin < 0:
            raise ValueError(f"margin must be >= 0 (math.inf disables it), got {margin}")
        self.temperature = float(temperature)
        self.margin = float(margin)
        self.use_hard_negatives = use_hard_negatives
        self.use_query_query = use_query_query
        self.use_doc_doc = use_doc_doc
        self.use_query_doc = use_query_doc
        self.share_hard_negatives = share_hard_negatives
        self.gather_across_ranks = gather_across_ranks

    def forward(
        self,
        query: Tensor,
        positive: Tensor,
        negatives: Tensor | None = None,
        positive_ids: Tensor | None = None,
        negative_ids: Tensor | None = None,
        query_ids: Tensor | None = None,
    ) -> Tensor:
        """Return the mean loss over the local queries, a scalar."""
        _check_inputs(query, positive, negatives, positive_ids, negative_ids, query_ids)
        if not self.use_hard_negatives:
            negatives, negative_ids = None, None
        work = torch.promote_types(query.dtype, torch.float32)
        q = F.normalize(query.to(work), dim=-1)  # (N, D)
        d = F.normalize(positive.to(work), dim=-1)  # (N, D)

        n = None if negatives is None else F.normalize(negatives.to(work), dim=-1)  # (N, K, D)
        shared = self.share_hard_negatives and self.use_query_doc and n is not None
        all_q, all_d, all_ids, all_query_ids, offset = q, d, positive_ids, query_ids, 0
        all_n, all_negative_ids = n, negative_ids
        if self.gather_across_ranks and distributed.is_distributed():
            distributed.check_same_shape_across_ranks(q, "query")
            if self.use_query_query:
                all_q = distributed.gather_with_grad(q)  # (R * N, D)
            all_d = distributed.gather_with_grad(d)  # (R * N, D)
            if positive_ids is not None:
                all_ids = distributed.gather_with_grad(positive_ids)  # (R * N,)
            if query_ids is not None:
                all_query_ids = distributed.gather_with_grad(query_ids)  # (R * N,)
            if shared:
                all_n = distributed.gather_with_grad(n)  # (R * N, K, D)
                if negative_ids is not None:
                    all_negative_ids = distributed.gather_with_grad(negative_ids)  # (R * N, K)
            offset = distributed.rank() * q.shape[0]

        rows = torch.arange(q.shape[0], device=q.device) + offset  # (N,)
        s_pos = (q * d).sum(-1)  # (N,)
        threshold = s_pos.detach().unsqueeze(1) + self.margin  # (N, 1)
        # Off-diagonal entries of the (N, R * N) in-batch blocks: j != i.
        other_rows = torch.arange(all_d.shape[0], device=q.device)[None, :] != rows[:, None]
        if query_ids is not None:
            other_rows = other_rows & (all_query_ids[None, :] != query_ids[:, None])
        same_text = None
        if positive_ids is not None:
            same_text = all_ids[None, :] == positive_ids[:, None]  # (N, R * N)

        logits = [s_pos.unsqueeze(1)]  # (N, 1)
        if n is not None:
            s_neg = torch.einsum("nd,nkd->nk", q, n)  # (N, K)
            drop = s_neg > threshold
            if negative_ids is not None:
                drop = drop | (negative_ids == positive_ids[:, None])
            logits.append(s_neg.masked_fill(drop, -math.inf))
        blocks = []
        if self.use_query_query:
            blocks.append((q @ all_q.T, None))  # (N, R * N)
        if self.use_doc_doc:
            blocks.append((d @ all_d.T, same_text))  # (N, R * N)
        if self.use_query_doc:
            blocks.append((q @ all_d.T, same_text))  # (N, R * N)
        for sims, same in blocks:
            drop = (sims > threshold) | ~other_rows
            if same is not None:
                drop = drop | same
            logits.append(sims.masked_fill(drop, -math.inf))
        if shared:
            logits.append(_shared_negative_logits(q, all_n, all_negative_ids, positive_ids, other_rows, threshold))

        scaled = torch.cat(logits, dim=1) / self.temperature  # (N, 1 + K + up to 3 * R * N [+ R * N * K])
        return (torch.logsumexp(scaled, dim=1) - scaled[:, 0]).mean()


def _shared_negative_logits(
    q: Tensor,
    all_n: Tensor,
    all_negative_ids: Tensor | None,
    positive_ids: Tensor | None,
    other_rows: Tensor,
    threshold: Tensor,
) -> Tensor:
    """``s(q_i, d_jk^-)`` for every other row j, masked like the query-document term; (N, R * N * K)."""
    rows, k = all_n.shape[0], all_n.shape[1]
    sims = q @ all_n.reshape(rows * k, -1).T  # (N, R * N * K)
    drop = (sims > threshold) | ~other_rows.repeat_interleave(k, dim=1)
    if all_negative_ids is not None and positive_ids is not None:
        drop = drop | (all_negative_ids.reshape(1, rows * k) == positive_ids[:, None])
    return sims.masked_fill(drop, -math.inf)


def _check_inputs(
    query: Tensor,
    positive: Tensor,
    negatives: Tensor | None,
    positive_ids: Tensor | None,
    negative_ids: Tensor | None,
    query_ids: Tensor | None = None,
) -> None:
    """Raise ValueError on shapes the loss cannot interpret."""
    if query.dim() != 2 or query.shape != positive.shape:
        raise ValueError(
            f"query and positive must both be (N, D), got {tuple(query.shape)} "
            f"and {tuple(positive.shape)}"
        )
    n, dim = query.shape
    if negatives is not None and (negatives.dim() != 3 or negatives.shape[::2] != (n, dim)):
        raise ValueError(f"negatives must be (N={n}, K, D={dim}), got {tuple(negatives.shape)}")
    for name, ids in (("positive_ids", positive_ids), ("query_ids", query_ids)):
        if ids is not None and ids.shape != (n,):
            raise ValueError(f"{name} must be (N={n},), got {tuple(ids.shape)}")
    if negative_ids is not None:
        if negatives is None or positive_ids is None:
            raise ValueError("negative_ids needs negatives and positive_ids as well")
        if negative_ids.shape != negatives.shape[:2]:
            raise ValueError(
                f"negative_ids must be (N, K)={tuple(negatives.shape[:2])}, "
                f"got {tuple(negative_ids.shape)}"
            )
