"""The ``openai`` engine end to end: real HTTP through Ray's HttpRequestProcessor.

No LLM can run here, so the endpoint is the scripted OpenAI-compatible server on 127.0.0.1
(``chat_server`` in conftest) that answers each step with valid JSON (the first candidate persona; a question about the
passage title). Everything else is real: the processor, retries config, headers, parsing,
teacher scores, shards. This is the one offline run where pairs are *accepted*, so it also
carries synthesized rows through ``filter`` and ``mine``.
"""

import pyarrow.parquet as pq
import pytest

from embedforge.config import parse_config


@pytest.mark.slow
def test_openai_engine_synthesize_filter_mine(local_ray, chat_server, tmp_path, monkeypatch):
    from embedforge.synthesis.filtering import FilterConfig, run_filter
    from embedforge.synthesis.generate import SynthesisConfig, run_synthesis
    from embedforge.synthesis.mining import MiningConfig, run_mining

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
        SynthesisConfig,
    )
    stats = run_synthesis(config)
    assert stats["attempted"] == stats["records"] and stats["accepted"] == stats["records"] > 0, stats["rejected_by_reason"]
    pairs = pq.read_table(str(tmp_path / "synth" / "pairs")).to_pylist()
    assert {p["engine"] for p in pairs} == {"openai"} and {p["model"] for p in pairs} == {"scripted"}
    assert all(p["query"].startswith("What does research show about") and p["persona"] and p["question_type"] == "acquire_knowledge" for p in pairs)
    assert all(-1 <= p["teacher_score"] <= 1 and p["instruction"] for p in pairs)
    assert len(requests) == 2 * stats["records"]  # one configuration and one query request per record
    assert all(r["auth"] == "Bearer sk-local" and r["body"]["response_format"] == {"type": "json_object"} for r in requests)

    filtered = run_filter(FilterConfig.model_validate({"input_dir": str(tmp_path / "synth"), "output_dir": str(tmp_path / "filtered"), "rules": {"min_teacher_score": 0.0}}))
    assert filtered["input"] == len(pairs) == filtered["kept"] + filtered["removed"]
    assert {p["teacher_model"] for p in pairs} == {"all-MiniLM-L6-v2 | no instructions"}
    assert filtered["scoring"] == {"teacher_model": "all-MiniLM-L6-v2 | no instructions", "reused": len(pairs), "recomputed": 0}  # same teacher: nothing re-scored
    mined = run_mining(MiningConfig.model_validate({"output_dir": str(tmp_path / "mined"), "pairs_dir": str(tmp_path / "filtered"), "corpus": corpus, "num_negatives": 2}))
    rows = pq.read_table(str(tmp_path / "mined" / "pairs")).to_pylist()
    assert len(rows) == filtered["kept"] == mined["pairs"]
    for row in rows:
        assert row["source_doc_id"] not in {n.split("#")[0] for n in row["negative_ids"]}
        assert all(score < 0.95 * row["teacher_score"] for score in row["negative_scores"])
