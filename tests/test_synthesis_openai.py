"""The ``openai`` engine end to end: real HTTP through the project's ``ChatClient`` actors.

No LLM can run here, so the endpoint is the scripted OpenAI-compatible server on 127.0.0.1
(``chat_server`` in conftest) that answers each step with valid JSON (the first candidate persona; a question about the
passage title). Everything else is real: the client actors, retries, headers, parsing,
teacher scores, shards. This is the one offline run where pairs are *accepted*, so it also
carries synthesized rows through ``filter`` and ``mine``. A second run puts the same
answers behind 429s, 500s, slow answers and a request budget (``flaky_chat``).
"""

import json
import re

import pyarrow.parquet as pq
import pytest
from conftest import is_brief_step, scripted_answer
from flaky_chat import FlakyChatServer, Reply

from embedforge.config import parse_config


@pytest.mark.slow
def test_openai_engine_synthesize_filter_mine(local_ray, chat_server, tmp_path, monkeypatch):
    from embedforge.synthesis.filter import FilterConfig, run_filter
    from embedforge.synthesis.synthesize import SynthesizeConfig, run_synthesize
    from embedforge.synthesis.mine import MineConfig, run_mine

    url, requests = chat_server.url, chat_server.requests
    monkeypatch.setenv("EMBEDFORGE_TEST_KEY", "sk-local")
    corpus = {"paths": ["${EMBEDFORGE_DATA}/retrieval/scifact/corpus.jsonl"], "max_docs": 6, "chunk_tokens": 512}
    config = parse_config(
        {
            "output_dir": str(tmp_path / "synth"),
            "corpus": corpus,
            "generator": {"engine": "openai", "model": "scripted", "openai": {"url": url, "api_key_env": "EMBEDFORGE_TEST_KEY", "qps": 50, "max_retries": 1, "batch_size": 4}},
            "teacher": {"num_cpus": 0.5},
            "shard_size": 3,
        },
        SynthesizeConfig,
    )
    stats = run_synthesize(config)
    assert stats["attempted"] == stats["records"] and stats["accepted"] == stats["records"] > 0, stats["rejected_by_reason"]
    pairs = pq.read_table(str(tmp_path / "synth" / "pairs")).to_pylist()
    assert {p["engine"] for p in pairs} == {"openai"} and {p["model"] for p in pairs} == {"scripted"}
    assert all(p["query"].startswith("What does research show about") and p["persona"] and p["question_type"] == "acquire_knowledge" for p in pairs)
    assert all(-1 <= p["teacher_score"] <= 1 and p["instruction"] for p in pairs)
    assert len(requests) == 2 * stats["records"]  # one brief and one query request per record
    assert all(r["auth"] == "Bearer sk-local" and r["body"]["response_format"]["type"] == "json_schema" for r in requests)
    for request in requests:  # the brief step's schema: character is one of the prompt's candidates
        user = request["body"]["messages"][-1]["content"]
        schema = request["body"]["response_format"]["json_schema"]["schema"]
        if is_brief_step(user):
            assert schema["properties"]["character"]["enum"] == re.findall(r"^\d+\. (.+)$", user.split("Candidate characters:")[1], re.MULTILINE)
        else:
            assert schema["required"] == ["query"]

    filtered = run_filter(FilterConfig.model_validate({"input_dir": str(tmp_path / "synth"), "output_dir": str(tmp_path / "filtered"), "rules": {"min_teacher_score": 0.0}}))
    assert filtered["input"] == len(pairs) == filtered["kept"] + filtered["removed"]
    assert {p["teacher_model"] for p in pairs} == {"all-MiniLM-L6-v2 | no instructions"}
    assert filtered["scoring"] == {"teacher_model": "all-MiniLM-L6-v2 | no instructions", "reused": len(pairs), "recomputed": 0}  # same teacher: nothing re-scored
    mined = run_mine(MineConfig.model_validate({"output_dir": str(tmp_path / "mined"), "pairs_dir": str(tmp_path / "filtered"), "corpus": corpus, "num_negatives": 2}))
    rows = pq.read_table(str(tmp_path / "mined" / "pairs")).to_pylist()
    assert len(rows) == filtered["kept"] == mined["pairs"]
    for row in rows:
        assert row["source_doc_id"] not in {n.split("#")[0] for n in row["negative_ids"]}
        assert all(score < 0.95 * row["teacher_score"] for score in row["negative_scores"])


def misbehaving(prompt: str, nth: int) -> Reply:
    """Every prompt fails once, by prompt: a 429 with Retry-After, a 500, or a 2 s answer (past the 1 s timeout)."""
    if nth > 0:
        return Reply(content=scripted_answer(prompt))
    return [Reply(429, headers={"Retry-After": "1"}), Reply(500), Reply(content=scripted_answer(prompt), delay_s=2.0)][sum(prompt.encode()) % 3]


@pytest.mark.slow
def test_openai_engine_under_429_500_slow_and_budget_rejects_with_reasons_and_counts_retries(local_ray, tmp_path):
    """6 records need 4 requests each (two steps, one failure each); a budget of 21 stops the last 3."""
    from embedforge.synthesis.synthesize import SynthesizeConfig, run_synthesize

    server = FlakyChatServer(misbehaving)
    try:
        openai = {"url": server.url, "api_key_env": None, "max_retries": 3, "base_retry_wait_s": 0.05, "request_timeout_s": 1.0, "max_requests": 21}
        config = parse_config(
            {
                "output_dir": str(tmp_path / "synth"),
                "corpus": {"paths": ["${EMBEDFORGE_DATA}/retrieval/scifact/corpus.jsonl"], "max_docs": 6, "chunk_tokens": 512},
                "generator": {"engine": "openai", "model": "scripted", "openai": openai},
                "teacher": {"num_cpus": 0.5},
                "shard_size": 3,
            },
            SynthesizeConfig,
        )
        stats = run_synthesize(config)
    finally:
        server.close()
    requests = stats["requests"]
    assert stats["records"] == 6
    assert len(server.requests) == requests["requests sent"] == 21  # the budget is a hard cap
    assert stats["attempted"] == stats["accepted"] + stats["rejected"] == 6 and stats["accepted"] >= 3
    assert stats["rejected_by_reason"] == {"query:no_generation": stats["rejected"]}
    assert requests["outcome budget_exhausted"] == stats["rejected"]  # every rejection is a row the budget stopped
    assert requests["http 429"] > 0 and requests["http 5xx"] > 0 and requests["timeouts"] > 0
    assert requests["retries"] == requests["outcome ok"] == 6 + stats["accepted"]  # each ok step took exactly one retry
    assert json.loads((tmp_path / "synth" / "stats.json").read_text())["requests"] == requests
    assert f"| requests | retries | {requests['retries']} |" in (tmp_path / "synth" / "report.md").read_text()
