"""Throughput of the ``openai`` engine's client against a slow loopback endpoint.

The endpoint (``tests/flaky_chat.py``, asyncio, so never the bottleneck) answers every
request after 200 ms. With 32 requests in flight the ideal is 32 / 0.2 s = 160 requests/s;
the goal is at least 0.8x that. Two figures per setting: the steady rate (requests between
the server's first and last arrival) and end to end (``materialize`` of the stage, actor
start included).

Run: PYTHONPATH=$PWD/platform:$PWD python tests/benchmarks/bench_openai_client.py [rows]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO_ROOT / "platform"), str(REPO_ROOT)]
os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "platform"), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])

import ray  # noqa: E402

from embedforge.config import parse_config  # noqa: E402
from embedforge.synthesis.engines import GeneratorConfig, openai_stage  # noqa: E402
from tests.benchmarks.report import markdown_table, write_section  # noqa: E402
from tests.flaky_chat import FlakyChatServer, Reply  # noqa: E402

LATENCY_S = 0.2
SETTINGS = [  # (actors, in flight per actor, batch size)
    (1, 32, 32),
    (1, 32, 8),
    (2, 16, 16),
]


def run_once(server: FlakyChatServer, rows: int, actors: int, in_flight: int, batch_size: int) -> dict:
    config = parse_config(
        {"engine": "openai", "model": "bench", "openai": {"url": server.url, "api_key_env": None, "concurrency": actors, "max_in_flight": in_flight, "batch_size": batch_size}},
        GeneratorConfig,
    )
    dataset = ray.data.from_items([{"id": f"{actors}-{in_flight}-{batch_size}-{i}", "prompt": f"p{actors}-{in_flight}-{batch_size}-{i}", "generation_seed": i} for i in range(rows)], override_num_blocks=max(1, rows // 64))
    first = len(server.requests)
    server.peak_in_flight = 0
    started = time.monotonic()
    out = openai_stage(config)(dataset).materialize()
    seconds = time.monotonic() - started
    outcomes = out.to_pandas()["outcome"].value_counts().to_dict()
    times = [r["time"] for r in server.requests[first:]]
    steady = (len(times) - 1) / (max(times) - min(times)) if len(times) > 1 else 0.0
    ideal = actors * in_flight / LATENCY_S
    startup = min(times) - started
    return dict(actors=actors, in_flight=in_flight, batch_size=batch_size, rows=rows, ok=outcomes.get("ok", 0), peak=server.peak_in_flight, steady=steady, end_to_end=rows / seconds, startup=startup, ideal=ideal)


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1600
    server = FlakyChatServer(lambda prompt, nth: Reply(delay_s=LATENCY_S))
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        results = [run_once(server, rows, *setting) for setting in SETTINGS]
    finally:
        ray.shutdown()
        server.close()
    headers = ["actors", "in flight/actor", "batch size", "rows", "ok", "peak in flight (server)", "steady req/s", "end-to-end req/s", "s to first request", "ideal req/s", "steady / ideal"]
    table = markdown_table(
        headers, [[r["actors"], r["in_flight"], r["batch_size"], r["rows"], r["ok"], r["peak"], r["steady"], r["end_to_end"], r["startup"], r["ideal"], r["steady"] / r["ideal"]] for r in results]
    )
    print(table)
    body = (
        f"The `openai` engine (`ChatClient`) against a loopback endpoint that answers after {int(LATENCY_S * 1000)} ms; "
        "32 requests in flight in all, so the ideal is 160 requests/s and the goal at least 128. "
        "Steady: requests between the server's first and last arrival; end to end: the stage's `materialize`, "
        "actor start included (the seconds before the first request arrives are shown apart).\n\n" + table
    )
    write_section("openai_client", "OpenAI engine client throughput (loopback, 200 ms latency)", "python tests/benchmarks/bench_openai_client.py", body)


if __name__ == "__main__":
    main()
