"""The served API against a real ``serve.run`` on 127.0.0.1: MiniLM embedder, tiny Qwen3 reranker.

One application serves the whole module (about a minute, mostly start-up); it requires an
API key, so every client here sends one.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from embedforge.cli import main as cli_main

pytestmark = pytest.mark.slow

KEY = "sk-test-key-not-a-secret"
TEXTS = [
    "The moon pulls the oceans and makes the tides.",
    "Bananas are yellow.",
    "Gradient descent minimises a loss by following the negative gradient.",
    "Ray Serve batches requests dynamically.",
    "short",
]
QUERY = "what causes tides"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(local_ray, minilm_dir, tiny_reranker_dir, tmp_path_factory):
    from ray import serve

    from embedforge.serving.app import start_local, stop_local

    key_file = tmp_path_factory.mktemp("keys") / "keys.txt"
    key_file.write_text(KEY + "\n")
    settings = {
        "embedder": str(minilm_dir),  # the packaged MiniLM's folder: served under its packaged names
        "reranker": str(tiny_reranker_dir),
        "reranker_name": "tiny-reranker",
        "max_inputs": 64,
        "max_body_bytes": 64 * 1024,
        "over_length": "reject",
        "api_key_env": "EMBEDFORGE_TEST_UNSET_KEYS",
        "api_key_file": str(key_file),
    }
    url = start_local(settings, port=free_port())
    yield url
    stop_local()
    assert not serve.status().applications


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as http:
        yield http


@pytest.fixture(scope="module")
def reference(minilm_dir, tmp_path_factory):
    """``embedforge encode`` output for TEXTS, as documents."""
    folder = tmp_path_factory.mktemp("encode")
    (folder / "texts.txt").write_text("\n".join(TEXTS) + "\n")
    assert cli_main(["encode", "--model", str(minilm_dir), "--input", str(folder / "texts.txt"), "--output", str(folder / "out.npy")]) == 0
    return np.load(folder / "out.npy")


@pytest.fixture(scope="module")
def embedder(minilm_dir):
    from embedforge.models.embedder import Embedder

    return Embedder.load(minilm_dir, device="cpu")


def test_the_serving_docs_snippet_runs_against_this_server(server):
    from docs_snippets import all_snippets, run_snippet

    (snippet,) = [code for name, code in all_snippets().items() if name.startswith("docs/serving.md")]
    run_snippet(snippet, {"http://127.0.0.1:8000": server, "sk-...": KEY})


def test_openai_client_vectors_equal_embedforge_encode(server, reference, embedder):
    import openai

    client = openai.OpenAI(base_url=f"{server}/v1", api_key=KEY)
    response = client.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS)  # the client asks for base64
    vectors = np.array([item.embedding for item in response.data], dtype=np.float32)
    np.testing.assert_allclose(vectors, reference, atol=1e-5)
    assert [item.index for item in response.data] == list(range(len(TEXTS)))
    expected_tokens = sum(len(ids) for ids in embedder.tokenizer(TEXTS)["input_ids"])
    assert response.usage.prompt_tokens == response.usage.total_tokens == expected_tokens

    floats = client.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS[0], encoding_format="float", dimensions=128)
    np.testing.assert_allclose(floats.data[0].embedding, embedder.encode(TEXTS[:1], dimensions=128)[0], atol=1e-5)
    assert len(floats.data[0].embedding) == 128

    queries = client.embeddings.create(
        model="all-MiniLM-L6-v2", input=[QUERY], extra_body={"input_type": "query", "instruction": "Find the cause"}
    )
    np.testing.assert_allclose(queries.data[0].embedding, embedder.encode([QUERY], query=True, instruction="Find the cause")[0], atol=1e-5)
    plain = embedder.encode([QUERY])[0]
    assert np.abs(np.asarray(queries.data[0].embedding) - plain).max() > 1e-3  # the instruction really applied


def test_rerank_scores_equal_embedforge_score(client, tiny_reranker_dir, tmp_path):
    documents = ["Tides come from the moon's gravity.", "Bananas are yellow.", "tides " * 300, "The sun also matters."]
    (tmp_path / "docs.txt").write_text("\n".join(documents) + "\n")
    args = ["score", "--model", str(tiny_reranker_dir), "--query", QUERY, "--input", str(tmp_path / "docs.txt"), "--output", str(tmp_path / "s.json")]
    assert cli_main(args) == 0
    expected = json.loads((tmp_path / "s.json").read_text())

    body = {"query": QUERY, "documents": [documents[0], {"text": documents[1]}, *documents[2:]], "return_documents": True}
    response = client.post("/v1/rerank", json=body)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    scores = [result["relevance_score"] for result in results]
    assert scores == sorted(scores, reverse=True)
    for result in results:
        assert result["relevance_score"] == pytest.approx(expected[result["index"]], abs=1e-5)
        assert result["document"]["text"] == documents[result["index"]]
    assert response.json()["usage"]["total_tokens"] > 300

    top = client.post("/v1/rerank", json={"query": QUERY, "documents": documents, "top_n": 2, "model": "tiny-reranker"}).json()
    assert [r["index"] for r in top["results"]] == [r["index"] for r in results[:2]]
    assert "document" not in top["results"][0]


def test_every_listed_model_id_and_the_tei_and_cohere_spellings_work(client, embedder):
    ids = [card["id"] for card in client.get("/v1/models").json()["data"]]
    assert ids == ["all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "tiny-reranker"]
    expected = embedder.encode([QUERY], query=True)[0]
    for extra in ({"input_type": "search_query"}, {"prompt_name": "query"}, {"input_type": "query"}):
        response = client.post("/v1/embeddings", json={"model": ids[1], "input": [QUERY], **extra})
        assert response.status_code == 200, response.text
        assert response.json()["model"] == "all-MiniLM-L6-v2"
        np.testing.assert_allclose(response.json()["data"][0]["embedding"], expected, atol=1e-5)
    for input_type in ("search_document", "classification", "clustering"):
        assert client.post("/v1/embeddings", json={"model": ids[0], "input": [QUERY], "input_type": input_type}).status_code == 200
    bad = client.post("/v1/embeddings", json={"model": ids[0], "input": [QUERY], "prompt_name": "passage"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "prompt_name"


def test_models_health_and_openapi(client):
    models = client.get("/v1/models").json()
    cards = {card["id"]: card for card in models["data"]}
    assert cards["all-MiniLM-L6-v2"]["dimensions"] == 384 and cards["all-MiniLM-L6-v2"]["kind"] == "embedder"
    assert cards["tiny-reranker"]["kind"] == "reranker"
    assert client.get("/health").json()["status"] == "ok"
    spec = client.get("/openapi.json").json()
    assert {"/v1/embeddings", "/v1/rerank", "/v1/models", "/health"} <= set(spec["paths"])
    assert "input_type" in spec["components"]["schemas"]["EmbeddingRequest"]["properties"]


def test_64_concurrent_requests_all_succeed_with_correct_vectors(client, embedder):
    texts = [f"request number {i}: {TEXTS[i % len(TEXTS)]}" for i in range(64)]
    expected = embedder.encode(texts)
    barrier = threading.Barrier(64)

    def call(text):
        barrier.wait()
        return client.post("/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": text})

    with ThreadPoolExecutor(64) as pool:
        responses = list(pool.map(call, texts))
    assert [r.status_code for r in responses] == [200] * 64
    vectors = np.array([r.json()["data"][0]["embedding"] for r in responses], dtype=np.float32)
    np.testing.assert_allclose(vectors, expected, atol=1e-5)


def test_10000_requests_at_concurrency_64_lose_nothing_and_each_gets_its_own_vector(server, embedder):
    """A bounded load test on loopback: every response is a 200 whose vector is its own text's."""
    import asyncio

    import aiohttp

    distinct = [f"load probe {i}: {TEXTS[i % len(TEXTS)]}" for i in range(100)]
    expected = embedder.encode(distinct)
    total, concurrency = 10_000, 64
    order = list(range(total))[::-1]
    mismatches, statuses = [], []

    async def client(http):
        while order:
            index = order.pop()
            async with http.post("/v1/embeddings", json={**OK, "input": distinct[index % 100]}) as response:
                statuses.append(response.status)
                vector = np.asarray((await response.json())["data"][0]["embedding"], dtype=np.float32)
            if np.abs(vector - expected[index % 100]).max() > 1e-5:
                mismatches.append(index)

    async def run():
        headers = {"Authorization": f"Bearer {KEY}"}
        async with aiohttp.ClientSession(server, headers=headers, connector=aiohttp.TCPConnector(limit=concurrency)) as http:
            await asyncio.gather(*(client(http) for _ in range(concurrency)))

    asyncio.run(asyncio.wait_for(run(), timeout=600))
    assert len(statuses) == total and set(statuses) == {200} and not mismatches


def test_fuzzed_requests_from_the_openapi_spec_never_get_a_5xx(server):
    """Schemathesis generates 500 valid and 500 invalid requests for every route of ``/openapi.json``.

    Routes without inputs (``GET /health``) have fewer distinct requests than that; Hypothesis
    stops once it has tried them all.
    """
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.generation import GenerationMode

    schema = schemathesis.openapi.from_url(f"{server}/openapi.json")
    headers = {"Authorization": f"Bearer {KEY}"}
    sent: dict[tuple[str, str], int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in GenerationMode if operation.method.upper() == "POST" else [GenerationMode.POSITIVE]:  # GETs take no input

            @settings(max_examples=500, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case):
                response = case.call(base_url=server, headers=headers, timeout=60)
                sent[operation.label, mode.value] = sent.get((operation.label, mode.value), 0) + 1
                assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}"

            check()
    posts = {key: count for key, count in sent.items() if key[0].startswith("POST")}
    assert {label for label, _ in posts} == {"POST /v1/embeddings", "POST /v1/rerank"}
    assert min(posts.values()) >= 500, posts


OK = {"model": "all-MiniLM-L6-v2", "input": "hello"}
BAD_EMBEDDINGS = {
    "empty input list": ({**OK, "input": []}, 400, "input"),
    "too many inputs": ({**OK, "input": ["x"] * 65}, 400, "input"),
    "non-string items": ({**OK, "input": ["a", 3]}, 400, "input.1"),
    "token arrays": ({**OK, "input": [[1, 2, 3]]}, 400, "input"),
    "over-length text": ({**OK, "input": ["word " * 400]}, 400, "input"),
    "unknown model": ({**OK, "model": "gpt-nothing"}, 404, "model"),
    "missing model": ({"input": "hello"}, 400, "model"),
    "dimensions too large": ({**OK, "dimensions": 385}, 400, "dimensions"),
    "dimensions too small": ({**OK, "dimensions": 0}, 400, "dimensions"),
    "bad encoding_format": ({**OK, "encoding_format": "int8"}, 400, "encoding_format"),
}


@pytest.mark.parametrize("case", list(BAD_EMBEDDINGS))
def test_bad_embedding_requests_get_4xx_with_openai_error_bodies(client, case):
    body, status, param = BAD_EMBEDDINGS[case]
    response = client.post("/v1/embeddings", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and error["type"] == "invalid_request_error"
    assert (error["param"] or "").startswith(param)


def test_malformed_json_oversized_body_and_bad_rerank_requests_get_4xx(client):
    malformed = client.post("/v1/embeddings", content=b'{"model": "x", "input": ', headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "invalid_json"
    oversized = client.post("/v1/embeddings", json={**OK, "input": "x" * (65 * 1024)})
    assert oversized.status_code == 413 and "bytes" in oversized.json()["error"]["message"]

    def chunks():
        for _ in range(70):
            yield b"x" * 1024

    chunked = client.post("/v1/embeddings", content=chunks(), headers={"Content-Type": "application/json"})
    assert chunked.status_code == 413
    assert client.post("/v1/rerank", json={"query": "q", "documents": []}).status_code == 400
    assert client.post("/v1/rerank", json={"query": "q", "documents": ["d"], "model": "nope"}).status_code == 404
    assert client.post("/v1/rerank", json={"query": "q", "documents": [{"title": "no text"}]}).status_code == 400
    assert client.post("/v1/rerank", json={"query": "q", "documents": ["d"], "top_n": 0}).status_code == 400
    assert client.post("/v1/rerank", json={"query": "q " * 400, "documents": ["d"]}).status_code == 400
    assert client.get("/v1/nothing-here").status_code == 404
    assert client.get("/health").status_code == 200  # still healthy after all that


def test_api_key_is_required(server):
    with httpx.Client(base_url=server, timeout=30) as anonymous:
        missing = anonymous.post("/v1/embeddings", json=OK)
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = anonymous.post("/v1/embeddings", json=OK, headers={"Authorization": "Bearer sk-wrong"})
        assert wrong.status_code == 401
        assert anonymous.get("/v1/models").status_code == 401
        assert anonymous.post("/v1/rerank", json={"query": "q", "documents": ["d"]}).status_code == 401  # the reranker's own app
        assert anonymous.get("/health").status_code == 200
        assert anonymous.get("/openapi.json").status_code == 200


def test_killing_the_embedder_replica_loses_only_in_flight_requests(client, embedder):
    import ray

    expected = embedder.encode(["recovery probe"])[0]
    concurrency, statuses, stop = 8, [], threading.Event()

    def worker():
        while not stop.is_set():
            started = time.monotonic()
            try:
                response = client.post("/v1/embeddings", json={**OK, "input": "recovery probe"})
                status = response.status_code
                if status == 500 and response.text == "Internal Server Error":  # HAProxy's 502/503/504, rewritten by Ray
                    status = "proxy 500"
            except httpx.TransportError:  # the replica held this request and died: the proxy closes the connection
                status = "disconnected"
            statuses.append((started, time.monotonic(), status))

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    time.sleep(2)
    replica = next(actor for actor in ray.util.list_named_actors(all_namespaces=True) if "Embedder" in actor["name"])
    killed_at = time.monotonic()
    ray.kill(ray.get_actor(replica["name"], namespace=replica["namespace"]), no_restart=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not any(ended > killed_at + 1 and code == 200 for _, ended, code in statuses):
        time.sleep(0.5)
    time.sleep(1)
    stop.set()
    for thread in threads:
        thread.join()
    failures = [code for _, _, code in statuses if code != 200]
    late = [round(started - killed_at, 3) for started, _, code in statuses if code != 200 and started > killed_at + 1]
    recovered = [ended - killed_at for started, ended, code in statuses if code == 200 and started > killed_at]
    assert recovered and min(recovered) < 60, "the deployment did not serve again within 60 s"
    # Lost: the request each client had in flight when the replica died (ray.kill lands a few ms
    # after it returns), plus at most one each sent to its socket before HAProxy dropped it.
    assert len(failures) <= 2 * concurrency and not late, (failures, late)
    assert set(failures) <= {502, 503, "proxy 500", "disconnected"}, failures  # lost with its replica, never our own 500
    after = client.post("/v1/embeddings", json={**OK, "input": "recovery probe"})
    np.testing.assert_allclose(after.json()["data"][0]["embedding"], expected, atol=1e-5)
