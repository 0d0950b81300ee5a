"""The HTTP ingress: a FastAPI app on a Serve deployment that calls the model deployments.

Routes: ``POST /v1/embeddings`` (OpenAI), ``POST /v1/rerank`` (Cohere/Jina),
``GET /v1/models``, ``GET /health``; FastAPI serves the spec at ``/openapi.json``.
Every client mistake is a 4xx with an OpenAI-style ``{"error": {...}}`` body.
"""

# No `from __future__ import annotations`: Serve pickles the routes by value, and FastAPI must see
# real classes (not strings to resolve in a partial copy of the module globals).

import asyncio
import logging
import uuid
from dataclasses import dataclass

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException

from embedforge.models.embedder import check_dimensions
from embedforge.serving.deployments import InputError
from embedforge.serving.keys import is_authorized
from embedforge.serving.schemas import (
    Embedding,
    EmbeddingRequest,
    EmbeddingResponse,
    ErrorResponse,
    ModelCard,
    ModelList,
    QUERY_INPUT_TYPES,
    RerankRequest,
    RerankResponse,
    RerankUsage,
    Usage,
    encode_embedding,
    ranked_results,
    truncate_rows,
)

logger = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
RETRY_AFTER_S = 1
REQUEST_FIELDS = frozenset(EmbeddingRequest.model_fields) | frozenset(RerankRequest.model_fields) | {"text"}
ERRORS = {400: {"model": ErrorResponse}, 401: {"model": ErrorResponse}}


@dataclass(frozen=True)
class Limits:
    """What the ingress enforces before any model sees a request."""

    max_inputs: int
    max_body_bytes: int
    key_digests: frozenset[str] = frozenset()


class APIError(Exception):
    """A request that gets an error response; ``status`` < 500 means the client's mistake."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers


def error_body(message: str, error_type: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def error_response(status: int, message: str, param: str | None = None, code: str | None = None, headers: dict | None = None) -> JSONResponse:
    error_type = "invalid_request_error" if status < 500 else ("overloaded_error" if status == 503 else "server_error")
    if status == 401:
        error_type = "authentication_error"
    return JSONResponse(error_body(message, error_type, param, code), status_code=status, headers=headers)


class RequestGuard:
    """ASGI middleware: bearer keys (except on public paths), then the body size limit.

    The whole body is read here, at most ``max_body_bytes`` of it, and replayed to the app,
    so chunked uploads without ``Content-Length`` are bounded too.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        limits: Limits | None = getattr(scope["app"].state, "limits", None) if scope["type"] == "http" else None
        if limits is None:
            return await self.app(scope, receive, send)
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        if scope["path"] not in PUBLIC_PATHS and not is_authorized(headers.get("authorization"), limits.key_digests):
            response = error_response(401, "Invalid or missing API key: send 'Authorization: Bearer <key>'.", code="invalid_api_key")
            response.headers["WWW-Authenticate"] = "Bearer"
            return await response(scope, receive, send)
        too_big = error_response(413, f"Request body is larger than {limits.max_body_bytes} bytes.", code="body_too_large")
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_body_bytes:
            return await too_big(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > limits.max_body_bytes:
                return await too_big(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


api = FastAPI(
    title="embedforge",
    version="0.1.0",
    description="Embeddings (OpenAI-compatible) and reranking (Cohere/Jina-compatible) on Ray Serve. See docs/serving.md.",
)
api.add_middleware(RequestGuard)


@api.exception_handler(APIError)
async def _api_error(request: Request, error: APIError) -> JSONResponse:
    return error_response(error.status, error.message, error.param, error.code, error.headers)


@api.exception_handler(RequestValidationError)
async def _invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = error.errors()
    if any(problem.get("type") == "json_invalid" for problem in problems):
        return error_response(400, "Malformed JSON body: it does not parse as JSON.", code="invalid_json")
    # A union field (str | list[str]) reports one error per branch; the deepest is the useful one.
    problem = max(problems, key=lambda item: len(item.get("loc", ())))
    location = [str(part) for part in problem.get("loc", ()) if isinstance(part, int) or part in REQUEST_FIELDS]
    param = ".".join(location) or None
    return error_response(400, f"{param or 'body'}: {problem.get('msg', 'invalid value')}", param=param, code="invalid_value")


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    return error_response(error.status_code, str(error.detail), headers=getattr(error, "headers", None))


@api.exception_handler(Exception)
async def _server_error(request: Request, error: Exception) -> JSONResponse:
    logger.exception("internal error on %s", request.url.path)
    return error_response(500, "Internal server error.")


def json_response(model) -> Response:
    return Response(model.model_dump_json(exclude_none=True), media_type="application/json")


def card_fields(info: dict) -> dict:
    return {"kind": info["kind"], "dimensions": info.get("dimensions"), "max_length": info["max_length"]}


async def call_model(response):
    """Await a model deployment, mapping its client errors to 400 and a full queue to 503."""
    try:
        return await response
    except InputError as error:
        raise APIError(400, str(error), param=error.param, code="invalid_value") from None
    except BackPressureError:
        raise APIError(503, "The model is overloaded; retry shortly.", code="overloaded", headers={"Retry-After": str(RETRY_AFTER_S)}) from None
    except RayActorError:
        # The replica died mid-request; Serve starts a new one, so the client may retry.
        raise APIError(503, "The model replica failed; retry shortly.", code="replica_failed", headers={"Retry-After": str(RETRY_AFTER_S)}) from None


# Everything the class uses is defined above it: `serve.ingress` serialises the class when
# it decorates it, so a name defined further down would be missing in the replica.
@serve.deployment(
    name="Ingress",
    max_ongoing_requests=256,
    max_queued_requests=1024,
    backpressure_config={"status_code": 503, "retry_after_s": RETRY_AFTER_S},
    ray_actor_options={"num_cpus": 0.25},
)
@serve.ingress(api)
class Ingress:
    """Checks requests, forwards them to the model deployments, and shapes the responses."""

    def __init__(
        self,
        embedder: DeploymentHandle,
        reranker: DeploymentHandle | None,
        embedder_names: list[str],
        reranker_names: list[str] | None,
        limits: Limits,
    ):
        self.embedder, self.reranker = embedder, reranker
        # Requests may use any of a model's names; responses carry the first.
        self.embedder_names, self.reranker_names = list(embedder_names), list(reranker_names or [])
        self.embedder_name = self.embedder_names[0]
        self.reranker_name = self.reranker_names[0] if self.reranker_names else None
        self.limits = limits
        self._info: dict[str, dict] = {}
        api.state.limits = limits

    async def info(self, kind: str) -> dict:
        if kind not in self._info:
            handle = self.embedder if kind == "embedder" else self.reranker
            self._info[kind] = await call_model(handle.info.remote())
        return self._info[kind]

    @api.post("/v1/embeddings", response_model=EmbeddingResponse, responses=ERRORS, summary="Create embeddings (OpenAI-compatible)")
    async def embeddings(self, body: EmbeddingRequest) -> Response:
        texts = [body.input] if isinstance(body.input, str) else body.input
        if body.model not in self.embedder_names:
            raise APIError(404, f"The model '{body.model}' does not exist; this server embeds with '{self.embedder_name}'.", param="model", code="model_not_found")
        self.check_count(texts, "input")
        info = await self.info("embedder")
        try:
            check_dimensions(body.dimensions, info["dimensions"])
        except ValueError as error:
            raise APIError(400, str(error), param="dimensions", code="invalid_value") from None
        query = body.input_type in QUERY_INPUT_TYPES or body.prompt_name == "query" or body.instruction is not None
        vectors, tokens = await call_model(self.embedder.embed.remote(texts, query, body.instruction))
        vectors = truncate_rows(vectors, body.dimensions)
        data = [Embedding(index=index, embedding=encode_embedding(vector, body.encoding_format)) for index, vector in enumerate(vectors)]
        return json_response(EmbeddingResponse(data=data, model=self.embedder_name, usage=Usage(prompt_tokens=tokens, total_tokens=tokens)))

    @api.post("/v1/rerank", response_model=RerankResponse, responses=ERRORS, summary="Rerank documents for a query (Cohere/Jina-compatible)")
    async def rerank(self, body: RerankRequest) -> Response:
        if self.reranker is None:
            raise APIError(404, "This server has no reranker.", param="model", code="model_not_found")
        if body.model is not None and body.model not in self.reranker_names:
            raise APIError(404, f"The model '{body.model}' does not exist; this server reranks with '{self.reranker_name}'.", param="model", code="model_not_found")
        documents = [document if isinstance(document, str) else document.text for document in body.documents]
        self.check_count(documents, "documents")
        scores, tokens = await call_model(self.reranker.rerank.remote(body.query, documents, body.instruction))
        results = ranked_results(np.asarray(scores), documents, body.top_n, body.return_documents)
        return json_response(RerankResponse(id=str(uuid.uuid4()), model=self.reranker_name, results=results, usage=RerankUsage(total_tokens=tokens)))

    @api.get("/v1/models", response_model=ModelList, summary="The served models")
    async def models(self) -> ModelList:
        cards = [ModelCard(id=name, **card_fields(await self.info("embedder"))) for name in self.embedder_names]
        if self.reranker is not None:
            cards += [ModelCard(id=name, **card_fields(await self.info("reranker"))) for name in self.reranker_names]
        return ModelList(data=cards)

    @api.get("/health", summary="Liveness and readiness: 200 once every model deployment answers")
    async def health(self) -> JSONResponse:
        handles = [handle for handle in (self.embedder, self.reranker) if handle is not None]
        try:  # uncached: a model deployment with no live replica makes the service not ready
            await asyncio.wait_for(asyncio.gather(*(call_model(handle.info.remote()) for handle in handles)), timeout=10)
        except Exception as error:  # noqa: BLE001 - any failure means not ready
            return error_response(503, f"Not ready: {type(error).__name__}", headers={"Retry-After": str(RETRY_AFTER_S)})
        return JSONResponse({"status": "ok", "models": [self.embedder_name] + ([self.reranker_name] if self.reranker is not None else [])})

    def check_count(self, items: list[str], param: str) -> None:
        if not items:
            raise APIError(400, f"'{param}' must not be empty.", param=param, code="invalid_value")
        if len(items) > self.limits.max_inputs:
            raise APIError(400, f"'{param}' has {len(items)} items; the limit is {self.limits.max_inputs}.", param=param, code="too_many_inputs")
