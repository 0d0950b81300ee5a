"""The ``openai`` engine's client against a loopback endpoint that answers 429, 5xx, 400 and slowly.

Real Ray Data actors, real HTTP (``flaky_chat.FlakyChatServer`` on 127.0.0.1); the pure
parts (Retry-After, backoff bounds, log counting) are checked on their own first.
"""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest
from flaky_chat import FlakyChatServer, Reply

from embedforge.config import parse_config
from embedforge.synthesis.chat_client import RetryPolicy, backoff_seconds, request_counts, retry_after_seconds
from embedforge.synthesis.engines import GeneratorConfig, openai_payload, openai_stage


def generator(url: str, **openai) -> GeneratorConfig:
    settings = {"url": url, "api_key_env": None, "base_retry_wait_s": 0.05, "max_retry_wait_s": 0.2, **openai}
    return parse_config({"engine": "openai", "model": "scripted", "openai": settings}, GeneratorConfig)


def run_rows(config: GeneratorConfig, prompts: list[str], schema=None) -> dict[str, dict]:
    import ray

    rows = [{"id": f"r{i}", "prompt": prompt, "generation_seed": i, "keep": i * 10} for i, prompt in enumerate(prompts)]
    out = openai_stage(config, schema)(ray.data.from_items(rows, override_num_blocks=2)).take_all()
    return {row["id"]: row for row in out}


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(formatdate(1_000_010.0, usegmt=True), now=1_000_000.0) == 10.0
    assert retry_after_seconds(formatdate(999_990.0, usegmt=True), now=1_000_000.0) == 0.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_backoff_is_full_jitter_capped_and_floored_by_retry_after():
    policy, rng = RetryPolicy(max_retries=5, base_wait_s=1.0, max_wait_s=4.0), random.Random(0)
    waits = [backoff_seconds(policy, retry, None, rng) for retry in range(6) for _ in range(200)]
    assert min(waits) >= 0 and max(waits) <= 4.0
    assert max(backoff_seconds(policy, 0, None, rng) for _ in range(200)) <= 1.0  # retry 0: [0, base]
    assert max(backoff_seconds(policy, 4, None, rng) for _ in range(200)) > 2.0  # spread up to the cap
    assert min(backoff_seconds(policy, 0, 7.0, rng) for _ in range(50)) == 7.0  # Retry-After beyond the cap is honoured


def test_request_counts_sum_attempts_retries_and_outcomes():
    counts = request_counts(["429 200 =ok", "500 503 timeout =retries_exhausted 200 =ok", "=budget_exhausted", "", None, "400 =http_400"])
    assert counts == {
        "requests sent": 7,
        "retries": 3,
        "http 429": 1,
        "http 5xx": 2,
        "timeouts": 1,
        "connection_errors": 0,
        "outcome budget_exhausted": 1,
        "outcome http_400": 1,
        "outcome ok": 2,
        "outcome retries_exhausted": 1,
    }


def test_payload_sends_the_rows_json_schema_or_json_object():
    config = generator("http://127.0.0.1:1/v1/chat/completions")
    row = {"prompt": "hi", "generation_seed": 3, "personas": ["a", "b"]}
    schema = lambda row: {"type": "object", "properties": {"character": {"enum": list(row["personas"])}}}  # noqa: E731
    assert openai_payload(config, row, schema)["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "embedforge_step", "schema": {"type": "object", "properties": {"character": {"enum": ["a", "b"]}}}, "strict": True},
    }
    assert openai_payload(config, row)["response_format"] == {"type": "json_object"}
    assert openai_payload(generator("x", json_schema=False), row, schema)["response_format"] == {"type": "json_object"}
    assert "response_format" not in openai_payload(generator("x", json_mode=False), row, schema)


def scripted(prompt: str, nth: int) -> Reply:
    """429 (Retry-After 1 s) then ok; 500, 408, ok; slow then ok; 400; 503 forever; ok."""
    plans = {
        "rate-limited": [Reply(429, headers={"Retry-After": "1"})],
        "flaky": [Reply(500), Reply(408)],
        "slow": [Reply(delay_s=3.0)],
        "bad-request": [Reply(400)] * 9,
        "down": [Reply(503)] * 9,
    }
    plan = plans.get(prompt, [])
    return plan[nth] if nth < len(plan) else Reply(content=f"answer to {prompt}")


@pytest.fixture
def flaky_server():
    server = FlakyChatServer(scripted)
    yield server
    server.close()


def test_every_row_ends_with_an_outcome_and_retry_after_is_honoured(local_ray, flaky_server):
    prompts = ["rate-limited", "flaky", "slow", "bad-request", "down", "", "fine"]
    rows = run_rows(generator(flaky_server.url, max_retries=2, request_timeout_s=1.0), prompts)
    by_prompt = {row["prompt"]: row for row in rows.values()}
    assert {p: (r["outcome"], r["attempts"]) for p, r in by_prompt.items()} == {
        "rate-limited": ("ok", 2),
        "flaky": ("ok", 3),
        "slow": ("ok", 2),
        "bad-request": ("http_400", 1),
        "down": ("retries_exhausted", 3),
        "": ("skipped", 0),
        "fine": ("ok", 1),
    }
    assert all(r["generated_text"] == (f"answer to {p}" if r["outcome"] == "ok" else "") for p, r in by_prompt.items())
    assert all(r["keep"] == int(i[1:]) * 10 for i, r in rows.items())  # other columns pass through
    assert [r["prompt"] for r in flaky_server.requests].count("bad-request") == 1  # a 400 is final
    assert "" not in {r["prompt"] for r in flaky_server.requests}
    first, second = flaky_server.times_of("rate-limited")
    assert second - first >= 1.0, "Retry-After: 1 was not honoured"
    assert request_counts(r["request_log"] for r in rows.values()) == {
        "requests sent": 12,
        "retries": 6,
        "http 429": 1,
        "http 5xx": 4,
        "timeouts": 1,
        "connection_errors": 0,
        "outcome http_400": 1,
        "outcome ok": 4,
        "outcome retries_exhausted": 1,
    }


def test_budget_stops_requests_and_rejects_the_rest(local_ray, flaky_server):
    prompts = [f"row {i}" for i in range(12)]
    config = generator(flaky_server.url, max_requests=5, concurrency=2, max_in_flight=1, batch_size=3)  # blocks of one permit: none left idle
    rows = run_rows(config, prompts)
    outcomes = [r["outcome"] for r in rows.values()]
    assert len(flaky_server.requests) == 5 == outcomes.count("ok")
    assert outcomes.count("budget_exhausted") == 7
    assert all(r["attempts"] == 0 and r["generated_text"] == "" for r in rows.values() if r["outcome"] == "budget_exhausted")


def test_a_connection_refused_endpoint_ends_rows_as_retries_exhausted(local_ray):
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    rows = run_rows(generator(f"http://127.0.0.1:{port}/v1/chat/completions", max_retries=1), ["a", "b"])
    assert [(r["outcome"], r["request_log"]) for r in rows.values()] == [("retries_exhausted", "connection_error connection_error =retries_exhausted")] * 2


def test_in_flight_cap_holds_across_concurrent_batches(local_ray):
    """Batches of 4 rows, 8 requests in flight: only concurrent batches can fill the cap, and nothing exceeds it."""
    server = FlakyChatServer(lambda prompt, nth: Reply(content="ok", delay_s=0.3))
    try:
        rows = run_rows(generator(server.url, max_in_flight=8, batch_size=4), [f"row {i}" for i in range(64)])
    finally:
        server.close()
    assert {r["outcome"] for r in rows.values()} == {"ok"} and len(server.requests) == 64
    assert server.peak_in_flight == 8
