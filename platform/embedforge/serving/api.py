"""The HTTP layer every served app shares: errors, keys and limits, and fast response bodies.

Each model deployment is its own HTTP ingress (see :mod:`embedforge.serving.deployments`);
this module gives each one a FastAPI app from :func:`make_api` with the same middleware
and error handling. Every client mistake is a 4xx with an OpenAI-style
``{"error": {...}}`` body. Nothing here imports torch.
"""

# No `from __future__ import annotations`: Serve pickles the routes by value, and FastAPI must see
# real classes (not strings to resolve in a partial copy of the module globals).

import asyncio
import logging
from dataclasses import dataclass

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError
from starlette.exceptions import HTTPException as StarletteHTTPException

from embedforge.serving.keys import is_authorized
from embedforge.serving.schemas import EmbeddingRequest, ErrorResponse, RerankRequest, encode_embedding

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

    A request for an app's own route prefix (``/v1/rerank`` on the reranker's app) is
    routed as ``/``, so the prefix works with and without a trailing slash.

    The whole body is read here, at most ``max_body_bytes`` of it, and replayed to the app,
    so chunked uploads without ``Content-Length`` are bounded too.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        limits: Limits | None = getattr(scope["app"].state, "limits", None) if scope["type"] == "http" else None
        if scope["type"] == "http" and scope.get("root_path") and scope["path"] == scope["root_path"]:
            scope = dict(scope, path=scope["path"] + "/")
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


def make_api(title: str) -> FastAPI:
    """A FastAPI app with the shared middleware and error handlers; its owner sets ``state.limits``."""
    api = FastAPI(
        title=title,
        version="0.1.0",
        description="Embeddings (OpenAI-compatible) and reranking (Cohere/Jina-compatible) on Ray Serve. See docs/serving.md.",
    )
    api.add_middleware(RequestGuard)
    api.add_exception_handler(APIError, _api_error)
    api.add_exception_handler(RequestValidationError, _invalid_request)
    api.add_exception_handler(StarletteHTTPException, _http_error)
    api.add_exception_handler(Exception, _server_error)
    return api


async def _api_error(request: Request, error: APIError) -> JSONResponse:
    return error_response(error.status, error.message, error.param, error.code, error.headers)


async def _invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = error.errors()
    if any(problem.get("type") == "json_invalid" for problem in problems):
        return error_response(400, "Malformed JSON body: it does not parse as JSON.", code="invalid_json")
    # A union field (str | list[str]) reports one error per branch; the deepest is the useful one.
    problem = max(problems, key=lambda item: len(item.get("loc", ())))
    location = [str(part) for part in problem.get("loc", ()) if isinstance(part, int) or part in REQUEST_FIELDS]
    param = ".".join(location) or None
    return error_response(400, f"{param or 'body'}: {problem.get('msg', 'invalid value')}", param=param, code="invalid_value")


async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    return error_response(error.status_code, str(error.detail), headers=getattr(error, "headers", None))


async def _server_error(request: Request, error: Exception) -> JSONResponse:
    logger.exception("internal error on %s", request.url.path)
    return error_response(500, "Internal server error.")


def json_bytes(body) -> Response:
    """A JSON response from plain data; numpy arrays are written directly (float32 stays shortest)."""
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


def embeddings_body(vectors: np.ndarray, encoding_format: str, model: str, tokens: int) -> Response:
    """OpenAI's embeddings response for ``(N, H)`` float32 vectors, without a pydantic object per row."""
    if encoding_format == "base64":
        rows = [encode_embedding(vector, "base64") for vector in vectors]
    else:  # numpy rows: orjson writes float32 in its shortest form, no Python floats in between
        rows = list(np.ascontiguousarray(vectors, dtype=np.float32))
    data = [{"object": "embedding", "index": index, "embedding": row} for index, row in enumerate(rows)]
    return json_bytes({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def check_model(requested: str | None, names: list[str], what: str) -> None:
    """404 unless a request's ``model`` (when given) is one of the served names."""
    if requested is not None and requested not in names:
        raise APIError(404, f"The model '{requested}' does not exist; this server {what} with '{names[0]}'.", param="model", code="model_not_found")


def check_count(items: list[str], param: str, limits: Limits) -> None:
    if not items:
        raise APIError(400, f"'{param}' must not be empty.", param=param, code="invalid_value")
    if len(items) > limits.max_inputs:
        raise APIError(400, f"'{param}' has {len(items)} items; the limit is {limits.max_inputs}.", param=param, code="too_many_inputs")


async def call_model(response):
    """Await another deployment, mapping a full queue and a dead replica to 503."""
    try:
        return await response
    except BackPressureError:
        raise APIError(503, "The model is overloaded; retry shortly.", code="overloaded", headers={"Retry-After": str(RETRY_AFTER_S)}) from None
    except RayActorError:
        # The replica died mid-request; Serve starts a new one, so the client may retry.
        raise APIError(503, "The model replica failed; retry shortly.", code="replica_failed", headers={"Retry-After": str(RETRY_AFTER_S)}) from None


async def healthy(calls: list) -> JSONResponse | None:
    """``None`` when every call (an ``info`` of each model deployment) answers within 10 s, else a 503."""
    try:
        await asyncio.wait_for(asyncio.gather(*(call_model(call) for call in calls)), timeout=10)
    except Exception as error:  # noqa: BLE001 - any failure means not ready
        return error_response(503, f"Not ready: {type(error).__name__}", headers={"Retry-After": str(RETRY_AFTER_S)})
    return None


def card_fields(info: dict) -> dict:
    return {"kind": info["kind"], "dimensions": info.get("dimensions"), "max_length": info["max_length"]}
