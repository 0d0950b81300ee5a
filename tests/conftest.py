"""Shared fixtures: real tiny Qwen3 models, the packaged MiniLM, the shared data, and a
scripted OpenAI-compatible chat server."""

from __future__ import annotations

import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from embedforge.serving.app import use_fast_path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
use_fast_path()  # every Ray the tests start serves the way `embedforge serve` does

REPO_ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    """Modules with a slow test run first (order otherwise kept), so that a parallel run
    (``pytest -n 2 --dist loadfile --no-loadscope-reorder``; ``make test`` is serial, see
    docs/benchmarks.md, test_suite) ends on short modules, not on one long one."""
    slow_modules = {item.module.__name__ for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.module.__name__ not in slow_modules)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    from embedforge.paths import shared_data_dir

    return shared_data_dir()


@pytest.fixture(scope="session")
def tiny_embedder_dir(tmp_path_factory) -> Path:
    from embedforge.models.qwen3 import build_embedder

    return build_embedder("tiny", max_length=64).save(tmp_path_factory.mktemp("tiny-embedder"))


@pytest.fixture(scope="session")
def tiny_reranker_dir(tmp_path_factory) -> Path:
    from embedforge.models.qwen3 import build_reranker

    return build_reranker("tiny", max_length=256).save(tmp_path_factory.mktemp("tiny-reranker"))


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    from embedforge.models.registry import resolve_model

    return resolve_model("all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def local_ray():
    """A private local Ray for one test module, started as every command starts one, shut down afterwards.

    Logical CPUs are over-provisioned (4 on a 2-core machine) so fractional actors and the
    read stage can run side by side; workers' output stays out of the test's. Yields the
    address that other processes join it at.
    """
    import ray

    from embedforge.session import RayConfig, ensure_ray

    if ray.is_initialized():
        ray.shutdown()
    ensure_ray(RayConfig(address="local", num_cpus=4, log_to_driver=False))
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def is_brief_step(user: str) -> bool:
    """Whether a synthesis prompt is the first (brief) step rather than the query step."""
    return "Candidate characters:" in user


def scripted_answer(user: str) -> str:
    """Valid JSON for either synthesis step: the first candidate persona, or a question about the title."""
    if is_brief_step(user):
        first = re.search(r"^1\. (.+)$", user, re.MULTILINE).group(1)
        return json.dumps({"character": first, "question_type": "acquire_knowledge", "difficulty": "university"})
    title = user.split('"""')[1].strip().splitlines()[0]
    return json.dumps({"query": "What does research show about " + " ".join(title.split()[:6]).lower().rstrip(".") + "?"})


class ScriptedChatServer:
    """An OpenAI-compatible ``/v1/chat/completions`` on 127.0.0.1 that answers with :func:`scripted_answer`.

    ``query_budget`` makes runs stop part-way deterministically: once that many query-step
    requests were answered, later ones wait until :meth:`release` (brief-step
    requests are always answered).
    """

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.query_budget: int | None = None
        self.answered_queries = 0
        self.released = threading.Event()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/chat/completions"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def release(self) -> None:
        self.query_budget = None
        self.released.set()

    def wait_for_turn(self, user: str) -> None:
        if is_brief_step(user):
            return
        with self.lock:
            over_budget = self.query_budget is not None and self.answered_queries >= self.query_budget
            self.answered_queries += not over_budget
        if over_budget:
            self.released.wait(timeout=300)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        chat = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                chat.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                user = body["messages"][-1]["content"]
                chat.wait_for_turn(user)
                data = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": scripted_answer(user)}}]}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client was killed while its request was held

            def log_message(self, *args):
                pass

        return Handler

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def chat_server():
    server = ScriptedChatServer()
    yield server
    server.close()
