"""Two-stage retrieval for mteb: the embedder's top 100, reordered by a reranker.

This implements mteb's ``SearchProtocol`` (``index`` then ``search``) rather than its
cross-encoder protocol: mteb only sends a cross-encoder the candidates of a *reranking*
task's ``top_ranked`` lists, while here the candidates come from our own first stage, on
any retrieval task. ``search`` returns the ``rerank_top_k`` candidates with reranker
logits as scores (the order of the probabilities, without float32 ties where a listwise
head's sigmoids round to 1.0), so metrics past 100 (``recall_at_1000``) equal those at 100.

The reranker reads the task's query instruction (falling back to its own default), the
raw query text, and the document text as mteb builds it (``title + " " + text``).
"""

from __future__ import annotations

from typing import Any

from mteb.types import PromptType

from embedforge.eval.mteb_encoder import MtebEncoder, build_model_meta, task_instruction
from embedforge.eval.retrieval import exact_top_k
from embedforge.models.reranker import CrossEncoderReranker, YesNoReranker


def document_text(row: dict) -> str:
    """A corpus row as mteb feeds it to models: title and text joined by a space."""
    title = row.get("title") or ""
    return f"{title} {row['text']}".strip() if title else row["text"].strip()


class RerankingSearch:
    """mteb ``SearchProtocol``: dense top-``rerank_top_k`` from ``encoder``, reordered by ``reranker``.

    Args:
        encoder: first stage (its instructions apply to the dense search).
        reranker: a Qwen3 yes/no judge or a cross-encoder (``embedforge.models.reranker``).
        rerank_top_k: candidates per query handed to the reranker (the recipe reranks 100).
        batch_size: (query, document) pairs per reranker forward pass.
        name: the model name mteb records.
    """

    def __init__(
        self,
        encoder: MtebEncoder,
        reranker: YesNoReranker | CrossEncoderReranker,
        *,
        rerank_top_k: int = 100,
        batch_size: int = 16,
        name: str = "embedforge/reranked",
    ):
        self.encoder = encoder
        self.reranker = reranker
        self.rerank_top_k = rerank_top_k
        self.batch_size = batch_size
        self.mteb_model_meta = build_model_meta(name, encoder.embedder, use_instructions=True, model_type="cross-encoder")
        self.corpus_ids: list[str] = []
        self.corpus_texts: list[str] = []
        self.corpus_embeddings = None

    def index(self, corpus: Any, *, task_metadata: Any, hf_split: str, hf_subset: str, encode_kwargs: dict, num_proc: int | None = None, **kwargs: Any) -> None:
        """Embed the corpus once per task subset."""
        self.corpus_ids = list(corpus["id"])
        self.corpus_texts = [document_text(row) for row in corpus]
        self.corpus_embeddings = self.encoder.embedder.encode(
            self.corpus_texts, dimensions=self.encoder.dimensions, batch_size=self.encoder.batch_size
        )

    def search(
        self,
        queries: Any,
        *,
        task_metadata: Any,
        hf_split: str,
        hf_subset: str,
        top_k: int,
        encode_kwargs: dict,
        top_ranked: Any = None,
        num_proc: int | None = None,
        **kwargs: Any,
    ) -> dict[str, dict[str, float]]:
        """``{query_id: {doc_id: reranker probability}}`` over each query's dense top candidates."""
        if self.corpus_embeddings is None:
            raise ValueError("index() must run before search()")
        query_ids = list(queries["id"])
        query_texts = list(queries["text"])
        dense_instruction = self.encoder.instruction_for(task_metadata, PromptType.query)
        query_embeddings = self.encoder.embedder.encode(
            query_texts,
            query=dense_instruction is not None,
            instruction=dense_instruction,
            dimensions=self.encoder.dimensions,
            batch_size=self.encoder.batch_size,
        )
        candidates, _ = exact_top_k(query_embeddings, self.corpus_embeddings, min(self.rerank_top_k, top_k))  # (Q, k)
        rerank_instruction = self.encoder.instructions.get(task_metadata.name) or task_instruction(task_metadata, PromptType.query)
        results = {}
        for row, query_id in enumerate(query_ids):
            documents = [self.corpus_texts[index] for index in candidates[row]]
            scores = self.reranker.score(query_texts[row], documents, instruction=rerank_instruction, batch_size=self.batch_size, logits=True)
            results[query_id] = {self.corpus_ids[index]: float(score) for index, score in zip(candidates[row], scores)}
        return results
