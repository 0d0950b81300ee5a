"""The synthesis pipeline end to end on SciFact, through the CLI, plus a kill-and-resume run.

The generator is the tiny random Qwen3: it writes no valid JSON, so every record is
rejected with a reason. These tests therefore assert the schema, that the counts add up
(accepted + rejected == attempted == planned, reasons sum to rejected), and that ids are
unique with no gaps; filtering and mining with real rows are exercised on labelled
SciFact pairs, in this module and in tests/test_synthesis_mining.py.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from embedforge.cli import main
from embedforge.synthesis.shards import PAIR_SCHEMA, REJECT_SCHEMA

REPO = Path(__file__).resolve().parents[1]


def synth_config(output_dir: Path, *, max_docs: int, shard_size: int, batch_size: int = 8, max_attempts: int = 2) -> dict:
    return {
        "output_dir": str(output_dir),
        "corpus": {"paths": ["${EMBEDFORGE_DATA}/retrieval/scifact/corpus.jsonl"], "max_docs": max_docs, "chunk_tokens": 512},
        "plan": {"tasks": {"retrieval": 0.5, "bitext": 0.2, "classification": 0.15, "sts": 0.15}, "query_languages": {"English": 0.5, "German": 0.5}},
        "generator": {"engine": "hf", "model": "tiny-qwen3-random", "max_new_tokens": 8, "hf": {"num_cpus": 0.5, "batch_size": batch_size, "max_attempts": max_attempts}},
        "teacher": {"model": "all-MiniLM-L6-v2", "num_cpus": 0.5, "batch_size": batch_size},
        "shard_size": shard_size,
        "ray_data": {"rows_per_block": batch_size},
    }


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def check_synthesis_folder(folder: Path, planned: int) -> tuple[list[dict], list[dict]]:
    stats = json.loads((folder / "stats.json").read_text())
    pairs = pq.read_table(str(folder / "pairs")).to_pylist() if list((folder / "pairs").glob("*.parquet")) else []
    rejected = pq.read_table(str(folder / "rejected"), schema=REJECT_SCHEMA).to_pylist()
    assert stats["records"] == planned == stats["attempted"]
    assert stats["accepted"] + stats["rejected"] == stats["attempted"]
    assert sum(stats["rejected_by_reason"].values()) == stats["rejected"]
    assert len(pairs) == stats["accepted"] and len(rejected) == stats["rejected"]
    ids = [r["id"] for r in pairs] + [r["id"] for r in rejected]
    assert len(ids) == len(set(ids)) == planned
    assert all(r["reason"].split(":")[0] in ("brief", "query") for r in rejected)
    assert stats["shards_done"] == stats["shards"]
    return pairs, rejected


@pytest.mark.slow
def test_cli_synthesize_filter_mine(local_ray, tmp_path, capsys):
    synthesized = tmp_path / "synthesized"
    assert main(["synthesize", "--config", str(write_yaml(tmp_path / "s.yaml", synth_config(synthesized, max_docs=3, shard_size=2)))]) == 0
    printed = capsys.readouterr().out
    assert "== synthesize summary" in printed and "attempted" in printed
    for shard in (synthesized / "pairs").glob("*.parquet"):
        assert pq.read_schema(shard).equals(PAIR_SCHEMA, check_metadata=False)
    stats = json.loads((synthesized / "stats.json").read_text())
    pairs, rejected = check_synthesis_folder(synthesized, stats["records"])
    assert stats["corpus"]["documents"] == 3 and stats["records"] >= 3
    assert "brief:malformed_json" in stats["rejected_by_reason"]  # what a random generator writes
    assert all(r["generated_text"] for r in rejected)
    report = (synthesized / "report.md").read_text()
    assert "teacher_scores.png" in report and "| synthesize | attempted |" in report
    assert (synthesized / "teacher_scores.png").read_bytes()[:4] == b"\x89PNG"

    filtered, mined = tmp_path / "filtered", tmp_path / "mined"
    assert main(["filter", "--config", str(write_yaml(tmp_path / "f.yaml", {"input_dir": str(synthesized), "output_dir": str(filtered)}))]) == 0
    assert json.loads((filtered / "stats.json").read_text())["kept"] == len(pairs)
    mine_config = {"output_dir": str(mined), "pairs_dir": str(filtered), "corpus": synth_config(mined, max_docs=3, shard_size=2)["corpus"], "num_negatives": 2}
    assert main(["mine", "--config", str(write_yaml(tmp_path / "m.yaml", mine_config))]) == 0
    assert json.loads((mined / "stats.json").read_text())["pairs"] == len(pairs)


@pytest.mark.slow
def test_filter_on_labelled_scifact_pairs(local_ray, shared_data, tmp_path):
    """Real rows through the filter: counts add up and every kept pair obeys every rule."""
    from embedforge.synthesis.corpus import CorpusConfig, read_passages
    from embedforge.synthesis.filter import FilterConfig, normalise_query, run_filter
    from embedforge.synthesis.labelled import LabelledPairsConfig, labelled_pairs
    from embedforge.synthesis.shards import check_manifest, write_shard

    passages, _ = read_passages(CorpusConfig(paths=[shared_data / "retrieval/scifact/corpus.jsonl"], max_docs=400))
    rows, counts = labelled_pairs(LabelledPairsConfig(queries=shared_data / "retrieval/scifact/queries.jsonl", qrels=shared_data / "retrieval/scifact/qrels/train.tsv"), passages)
    assert counts["pairs"] == len(rows) > 20
    rows = rows[:60]
    rows.append(dict(rows[0], id="dup-exact", query=rows[0]["query"].upper() + "!"))  # an exact duplicate after normalising
    source = tmp_path / "labelled"
    check_manifest(source, {"stage": "labelled", "fingerprint": "test"})
    write_shard(source, 0, rows, [], {"pairs": len(rows)})
    stats = run_filter(FilterConfig.model_validate({"input_dir": str(source), "output_dir": str(tmp_path / "out"), "rules": {"min_teacher_score": 0.5}}))
    kept = pq.read_table(str(tmp_path / "out" / "pairs")).to_pylist()
    removed = pq.read_table(str(tmp_path / "out" / "rejected"), schema=REJECT_SCHEMA).to_pylist()
    assert stats["input"] == len(rows) == stats["kept"] + stats["removed"] == len(kept) + len(removed)
    assert sum(stats["removed_by_reason"].values()) == stats["removed"]
    assert stats["removed_by_reason"].get("teacher_score_low", 0) > 0
    assert all(r["teacher_score"] > 0.5 and 2 <= len(r["query"].split()) <= 64 for r in kept)
    assert len({normalise_query(r["query"]) for r in kept}) == len(kept)
    assert {r["id"] for r in kept} | {r["id"] for r in removed} == {r["id"] for r in rows}
    assert "dup-exact" not in {r["id"] for r in kept}


@pytest.mark.slow
def test_killed_synthesis_resumes_without_duplicates_or_gaps(local_ray, chat_server, tmp_path, capsys):
    """SIGKILL ``embedforge synthesize`` mid-run, then re-run it through the CLI.

    The killed job joins this module's Ray (saving a Ray start-up); Ray ends the job's
    workers when its driver dies. The scripted endpoint answers one query and holds the rest,
    so exactly one shard is done when the kill lands, however fast the machine.
    """
    output = tmp_path / "synthesized"
    settings = synth_config(output, max_docs=4, shard_size=1, batch_size=1)
    settings["generator"] = {"engine": "openai", "model": "scripted", "openai": {"url": chat_server.url, "api_key_env": None, "batch_size": 1, "max_retries": 1}}
    config = write_yaml(tmp_path / "s.yaml", settings)
    chat_server.query_budget = 1
    python_path = os.pathsep.join([str(REPO / "platform"), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=python_path, RAY_ADDRESS=local_ray)
    command = [sys.executable, "-m", "embedforge", "synthesize", "--config", str(config)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not list((output / "done").glob("*.json")) if (output / "done").exists() else True:
            assert process.poll() is None, "the job ended before any shard was written"
            assert time.monotonic() < deadline, "no shard finished in time"
            time.sleep(0.1)
        time.sleep(1.0)  # room for a wrongly written second shard to show up
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the job's driver: ours
        process.wait()
    manifest = json.loads((output / "manifest.json").read_text())
    before = {p.name: p.stat().st_mtime_ns for p in (output / "done").glob("*.json")}
    assert len(before) == 1 < manifest["shards"], "the kill should land after exactly one shard"

    chat_server.release()
    capsys.readouterr()
    assert main(["synthesize", "--config", str(config)]) == 0
    assert "1 already done" in capsys.readouterr().out
    check_synthesis_folder(output, manifest["records"])
    assert {p.name: p.stat().st_mtime_ns for p in (output / "done").glob("*.json") if p.name in before} == before
