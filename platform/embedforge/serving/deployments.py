"""The model deployments, each its own HTTP ingress: an embedder and a reranker.

A request crosses one Python process: Serve's proxy (HAProxy in the throughput-optimised
mode that :mod:`embedforge.serving.app` turns on) hands it to a model replica, whose event
loop parses and checks it, puts its texts on the replica's
:class:`~embedforge.serving.batching.ContinuousBatcher` and awaits the result. The model
thread tokenises everything it took in one call and runs the forward passes.

- ``Embedder`` (app ``embedforge``, route ``/``): ``POST /v1/embeddings``, plus the light
  routes ``GET /v1/models``, ``GET /health`` and ``/openapi.json``, which ask the reranker
  deployment for its ``info`` when there is one.
- ``Reranker`` (app ``embedforge-reranker``, route ``/v1/rerank``): ``POST /v1/rerank``.
"""

# No `from __future__ import annotations`: Serve pickles the routes by value (see api.py).

import time
import uuid
from collections import Counter

import torch
from fastapi.responses import JSONResponse, Response
from ray import serve

from embedforge.models.embedder import Embedder, check_dimensions
from embedforge.models.reranker import load_reranker, probabilities, with_prior
from embedforge.serving.api import (
    ERRORS,
    APIError,
    Limits,
    call_model,
    card_fields,
    check_count,
    check_model,
    embeddings_body,
    healthy,
    json_bytes,
    make_api,
)
from embedforge.serving.batching import ContinuousBatcher, TokenRow, forward_groups, pad_rows, unpad
from embedforge.serving.schemas import (
    QUERY_INPUT_TYPES,
    EmbeddingRequest,
    EmbeddingResponse,
    ModelCard,
    ModelList,
    RerankRequest,
    RerankResponse,
    RerankUsage,
    ranked_results,
    truncate_rows,
)
from embedforge.serving.settings import RERANKER_APP, BatchSettings

embedder_api = make_api("embedforge")
reranker_api = make_api("embedforge reranker")


def replica_threads(settings: BatchSettings) -> int:
    """Torch threads for this replica: the setting, else one per CPU the replica reserved."""
    if settings.torch_threads:
        return settings.torch_threads
    import ray

    return max(1, round(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))


def count_pass(stats: Counter, batch: dict[str, torch.Tensor]) -> None:
    stats["forward_passes"] += 1
    stats["rows"] += batch["input_ids"].shape[0]
    stats["padded_tokens"] += batch["input_ids"].numel()
    stats["real_tokens"] += int(batch["attention_mask"].sum())


class ModelReplica:
    """What both model replicas share: threads, the batcher, counters, and the forward loop."""

    def start(self, settings: BatchSettings, limits: Limits, api) -> None:
        if settings.max_batch_tokens < self.max_length:
            raise ValueError(f"max_batch_tokens={settings.max_batch_tokens} is below the model's max_length={self.max_length}")
        torch.set_num_threads(replica_threads(settings))
        self.max_batch_tokens = settings.max_batch_tokens
        self.limits = limits
        api.state.limits = limits
        self.stats: Counter = Counter()
        self.batcher = ContinuousBatcher(self.process, settings.max_batch_size)

    def batch_stats(self) -> dict:
        """Totals since start: takes, requests, forward passes, rows, real and padded tokens, seconds."""
        return dict(self.stats)

    def run_passes(self, rows: list[TokenRow], pad_id: int, side: str, model) -> list[torch.Tensor]:
        """``model(padded batch)`` over every row, in token-budget passes (:func:`forward_groups`); one output per row, in order."""
        start = time.perf_counter()
        outputs: list[torch.Tensor] = [None] * len(rows)  # type: ignore[list-item]
        with torch.inference_mode():
            for group in forward_groups([len(row) for row in rows], self.max_batch_tokens):
                batch = pad_rows([rows[i] for i in group], pad_id, side)
                count_pass(self.stats, batch)
                for index, output in zip(group, model(batch)):
                    outputs[index] = output
        self.stats["forward_s"] += time.perf_counter() - start
        return outputs


@serve.deployment(
    name="Embedder",
    max_ongoing_requests=256,
    max_queued_requests=1024,
    ray_actor_options={"num_cpus": 1},
    health_check_period_s=5,
)
@serve.ingress(embedder_api)
class EmbedderServer(ModelReplica):
    """One embedder replica and the routes every deployment has."""

    def __init__(self, model: str, names: list[str], limits: Limits, batching: dict | None = None, over_length: str = "truncate", reranker_names: list[str] | None = None):
        settings = BatchSettings.model_validate(batching or {})
        self.embedder = Embedder.load(model, device=settings.device)
        self.tokenizer = self.embedder.tokenizer
        self.max_length = self.embedder.settings.max_length
        self.over_length = over_length
        self.names, self.reranker_names = list(names), list(reranker_names or [])
        self.reranker = serve.get_deployment_handle("Reranker", RERANKER_APP) if self.reranker_names else None
        self.start(settings, limits, embedder_api)
        self.process([["warm up"]])
        self.stats.clear()

    def info(self) -> dict:
        return {
            "kind": "embedder",
            "dimensions": self.embedder.hidden_size,
            "max_length": self.max_length,
            "matryoshka_dimensions": self.embedder.settings.matryoshka_dimensions,
        }

    def process(self, payloads: list[list[str]]) -> list:
        """On the model thread: tokenise every text of the take at once, embed, split per request."""
        start = time.perf_counter()
        texts = [text for payload in payloads for text in payload]
        # One token of headroom tells an over-long text apart from one of exactly max_length.
        limit = self.max_length + (1 if self.over_length == "reject" else 0)
        ids = self.tokenizer(texts, truncation=True, max_length=limit)["input_ids"]
        self.stats["tokenize_s"] += time.perf_counter() - start
        self.stats["takes"] += 1
        self.stats["requests"] += len(payloads)
        results, rows, spans, offset = [], [], [], 0
        for payload in payloads:
            own = ids[offset : offset + len(payload)]
            offset += len(payload)
            over = next((index for index, row in enumerate(own) if len(row) > self.max_length), None)
            if over is not None:
                results.append(APIError(400, f"input[{over}] is longer than the model's limit of {self.max_length} tokens", param="input", code="invalid_value"))
                continue
            spans.append((len(results), len(rows), len(rows) + len(own)))
            results.append(None)
            rows += [TokenRow(row) for row in own]
        if rows:
            device = self.embedder.device
            vectors = self.run_passes(rows, self.tokenizer.pad_token_id, self.tokenizer.padding_side, lambda batch: self.embedder(batch["input_ids"].to(device), batch["attention_mask"].to(device)))
            matrix = torch.stack(vectors).float().cpu().numpy()  # (N, H)
            for slot, begin, end in spans:
                results[slot] = (matrix[begin:end], sum(len(row) for row in rows[begin:end]))
        return results

    @embedder_api.post("/v1/embeddings", response_model=EmbeddingResponse, responses=ERRORS, summary="Create embeddings (OpenAI-compatible)")
    async def embeddings(self, body: EmbeddingRequest) -> Response:
        texts = [body.input] if isinstance(body.input, str) else body.input
        check_model(body.model, self.names, "embeds")
        check_count(texts, "input", self.limits)
        try:
            check_dimensions(body.dimensions, self.embedder.hidden_size)
        except ValueError as error:
            raise APIError(400, str(error), param="dimensions", code="invalid_value") from None
        query = body.input_type in QUERY_INPUT_TYPES or body.prompt_name == "query" or body.instruction is not None
        prepared = self.embedder.prepare_texts(texts, query=query, instruction=body.instruction)
        vectors, tokens = await self.batcher.submit(prepared, len(prepared))
        return embeddings_body(truncate_rows(vectors, body.dimensions), body.encoding_format, self.names[0], tokens)

    @embedder_api.post("/v1/rerank", response_model=RerankResponse, responses=ERRORS, summary="Rerank documents for a query (Cohere/Jina-compatible)")
    async def no_reranker(self, body: RerankRequest) -> Response:
        """Reached only when no reranker app is deployed: its route prefix takes ``/v1/rerank`` otherwise."""
        raise APIError(404, "This server has no reranker.", param="model", code="model_not_found")

    @embedder_api.get("/v1/models", response_model=ModelList, summary="The served models")
    async def models(self) -> Response:
        cards = [ModelCard(id=name, **card_fields(self.info())) for name in self.names]
        if self.reranker is not None:
            info = await call_model(self.reranker.info.remote())
            cards += [ModelCard(id=name, **card_fields(info)) for name in self.reranker_names]
        return json_bytes(ModelList(data=cards).model_dump(exclude_none=True))

    @embedder_api.get("/health", summary="Liveness and readiness: 200 once every model deployment answers")
    async def health(self) -> JSONResponse:
        if self.reranker is not None:  # uncached: a reranker with no live replica makes the service not ready
            problem = await healthy([self.reranker.info.remote()])
            if problem is not None:
                return problem
        return JSONResponse({"status": "ok", "models": self.names[:1] + self.reranker_names[:1]})


@serve.deployment(
    name="Reranker",
    max_ongoing_requests=128,
    max_queued_requests=512,
    ray_actor_options={"num_cpus": 1},
    health_check_period_s=5,
)
@serve.ingress(reranker_api)
class RerankerServer(ModelReplica):
    """One reranker replica, serving ``/v1/rerank`` under its own route prefix."""

    def __init__(self, model: str, names: list[str], limits: Limits, batching: dict | None = None):
        settings = BatchSettings.model_validate(batching or {"max_batch_size": 32})
        self.reranker = load_reranker(model, device=settings.device)
        self.tokenizer = self.reranker.tokenizer
        self.max_length = self.reranker.settings.max_length
        self.padding_side = "left" if self.reranker.settings.prompt_format == "qwen3" else self.tokenizer.padding_side
        self.names = list(names)
        self.start(settings, limits, reranker_api)
        self.process([("warm up", ["warm up"], None)])
        self.stats.clear()

    def info(self) -> dict:
        return {"kind": "reranker", "max_length": self.max_length}

    def process(self, payloads: list[tuple[str, list[str], str | None]]) -> list:
        """On the model thread: build each request's judge inputs, score all rows together."""
        start = time.perf_counter()
        self.stats["takes"] += 1
        self.stats["requests"] += len(payloads)
        results, rows, spans = [], [], []
        for query, documents, instruction in payloads:
            try:
                own = unpad(self.reranker.build_inputs(query, documents, instruction))
            except ValueError as error:  # the query and instruction alone overflow max_length
                results.append(APIError(400, str(error), param="query", code="invalid_value"))
                continue
            spans.append((len(results), len(rows), len(rows) + len(own), query, documents))
            results.append(None)
            rows += own
        self.stats["tokenize_s"] += time.perf_counter() - start
        if rows:
            device = self.reranker.device
            logits = self.run_passes(rows, self.tokenizer.pad_token_id, self.padding_side, lambda batch: self.reranker(**{key: value.to(device) for key, value in batch.items()}))
            logits = torch.stack(logits).float().cpu().numpy()  # (N,): the spans are contiguous, in row order
            logits = with_prior(self.reranker, [span[3] for span in spans], [span[4] for span in spans], logits)
            for slot, begin, end, _, _ in spans:
                results[slot] = (probabilities(logits[begin:end]), sum(len(row) for row in rows[begin:end]))
        return results

    @reranker_api.post("/", response_model=RerankResponse, responses=ERRORS, summary="Rerank documents for a query (Cohere/Jina-compatible)")
    async def rerank(self, body: RerankRequest) -> Response:
        check_model(body.model, self.names, "reranks")
        documents = [document if isinstance(document, str) else document.text for document in body.documents]
        check_count(documents, "documents", self.limits)
        scores, tokens = await self.batcher.submit((body.query, documents, body.instruction), len(documents))
        results = ranked_results(scores, documents, body.top_n, body.return_documents)
        response = RerankResponse(id=str(uuid.uuid4()), model=self.names[0], results=results, usage=RerankUsage(total_tokens=tokens))
        return Response(response.model_dump_json(exclude_none=True), media_type="application/json")
