"""The filter: rules, MinHash/LSH duplicates (smallest id kept), streaming on real Ray, resume."""

import json
import shutil

import pyarrow.parquet as pq
import pytest

from embedforge.synthesis.dedup import Banding, Signer, bucket_rows, resolve_buckets, shingles
from embedforge.synthesis.filter import FilterConfig, FilterRules, length_reason, normalise_query, row_reason, run_filter, score_reason
from embedforge.synthesis.shards import REJECT_SCHEMA, check_manifest, write_shard
from embedforge.synthesis.teacher import TeacherConfig, configured_identity


@pytest.mark.parametrize(
    "score,reason",
    [(0.71, None), (0.7, "teacher_score_low"), (0.69, "teacher_score_low"), (-0.2, "teacher_score_low"), (1.0, None), (None, "no_teacher_score"), (float("nan"), "no_teacher_score")],
)
def test_default_band_keeps_scores_above_0_7(score, reason):
    assert score_reason(score, FilterRules()) == reason


def test_custom_band_and_length_bounds():
    rules = FilterRules(min_teacher_score=0.5, max_teacher_score=0.9, min_query_words=3, max_query_words=5)
    assert score_reason(0.95, rules) == "teacher_score_high"
    assert score_reason(0.6, rules) is None
    assert length_reason("two words", rules) == "too_short"
    assert length_reason("one two three", rules) is None
    assert length_reason("one two three four five six", rules) == "too_long"
    assert row_reason("two words", 0.1, rules) == "too_short"  # length first, then score
    assert row_reason(None, 0.8, rules) == "too_short"


def test_old_cosine_threshold_is_refused_with_its_replacement_named():
    with pytest.raises(ValueError, match="near_duplicate_threshold .* replaced by near_duplicate_jaccard"):
        FilterRules.model_validate({"near_duplicate_threshold": 0.95})
    with pytest.raises(ValueError):
        FilterRules(near_duplicate_jaccard=1.5)
    with pytest.raises(ValueError, match="no LSH banding"):
        FilterRules(near_duplicate_jaccard=0.97, minhash_permutations=64)


def test_shingles_and_normalised_keys():
    assert normalise_query("What is  ASPIRIN?") == normalise_query("what is aspirin") == "what is aspirin"
    assert shingles("what is aspirin", 1) == [b"what", b"is", b"aspirin"]
    assert shingles("what is aspirin", 2) == [b"what is", b"is aspirin"]
    assert shingles("aspirin", 2) == [b"aspirin"] and shingles("", 1) == []


def resolved(queries: dict[str, str], threshold: float | None, candidates: set[str] | None = None) -> dict[str, str]:
    """Bucket resolution over every row at once, rows given in reverse id order."""
    banding = Banding.for_threshold(threshold or 0.8, 64, 1)
    signer = Signer(banding)
    ids = [i for i in sorted(queries, reverse=True) if candidates is None or i in candidates]
    keys = [normalise_query(queries[i]) for i in ids]
    table = bucket_rows(ids, keys, [signer.signature(k).tobytes() for k in keys], banding if threshold is not None else None)
    verdicts: dict[str, str] = {}
    for row in resolve_buckets(table, threshold).to_pylist():
        if verdicts.get(row["id"]) != "exact_duplicate":
            verdicts[row["id"]] = row["duplicate"]
    return verdicts


QUERIES = {
    "a": "what are the side effects of daily low dose aspirin in older adults",
    "b": "What are the side effects of daily low-dose aspirin in older adults?",
    "c": "what are the side effects of daily low dose aspirin in older adults today",
    "d": "how do statins lower ldl cholesterol in the liver",
    "e": "which vitamin deficiency causes scurvy in sailors",
    "f": "how do statins lower ldl cholesterol in the liver quickly and safely",
}


def test_bucket_resolution_keeps_the_smallest_id_of_each_group():
    assert resolved(QUERIES, 0.8) == {"b": "exact_duplicate", "c": "near_duplicate"}
    assert resolved(QUERIES, None) == {"b": "exact_duplicate"}
    assert resolved(QUERIES, 0.7) == {"b": "exact_duplicate", "c": "near_duplicate", "f": "near_duplicate"}  # Jaccard(d, f) = 0.75
    # without a (removed earlier for another reason), b is the smallest of its group
    assert resolved(QUERIES, 0.8, candidates={"b", "c", "d", "e", "f"}) == {"c": "near_duplicate"}


def write_input(folder, rows, shards=1):
    check_manifest(folder, {"stage": "test", "fingerprint": f"{len(rows)}-{shards}"})
    size = -(-len(rows) // shards)
    for index in range(shards):
        write_shard(folder, index, rows[index * size : (index + 1) * size], [], {"pairs": len(rows[index * size : (index + 1) * size])})


def outputs(folder):
    kept = pq.read_table(str(folder / "pairs")).to_pylist()
    removed = pq.read_table(str(folder / "rejected"), schema=REJECT_SCHEMA).to_pylist()
    return kept, removed


def generated_rows(identity: str) -> list[dict]:
    """Distinct queries plus planted duplicates; ids deliberately not in input order."""
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu", "nu", "xi", "omicron", "pi", "rho", "sigma"]
    rows = []
    for n in range(30):
        query = " ".join(words[(n * 5 + k * 7) % len(words)] + str((n * k) % 11) for k in range(9))
        rows.append({"id": f"q{n:03d}", "query": query, "positive": f"passage {n}", "teacher_score": 0.9, "teacher_model": identity})
    rows.append({"id": "q100", "query": rows[3]["query"].upper() + "!", "positive": "p", "teacher_score": 0.9, "teacher_model": identity})
    rows.append({"id": "q101", "query": rows[4]["query"] + " extra", "positive": "p", "teacher_score": 0.9, "teacher_model": identity})
    rows.append({"id": "q102", "query": rows[4]["query"] + " extra", "positive": "p", "teacher_score": 0.9, "teacher_model": identity})
    rows.append({"id": "q103", "query": "short", "positive": "p", "teacher_score": 0.9, "teacher_model": identity})
    # the smallest id of this group fails the score band: it must not shadow the next one
    rows.append({"id": "a000", "query": rows[7]["query"] + "?", "positive": "p", "teacher_score": 0.2, "teacher_model": identity})
    return rows[::-1]


@pytest.mark.slow
def test_streaming_filter_removes_duplicates_keeps_smallest_ids_and_loads_no_model(local_ray, tiny_embedder_dir, tmp_path):
    """Real Ray Data run; the teacher folder has no weights, so loading it would fail: all
    scores were recorded by this teacher, so none is recomputed and no model is loaded."""
    teacher = tmp_path / "teacher-without-weights"
    shutil.copytree(tiny_embedder_dir, teacher, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    from embedforge.synthesis.teacher import load_teacher

    with pytest.raises(Exception):
        load_teacher(str(teacher))
    identity = configured_identity(TeacherConfig(model=str(teacher)))
    rows = generated_rows(identity)
    write_input(tmp_path / "in", rows, shards=3)
    config = {"input_dir": str(tmp_path / "in"), "output_dir": str(tmp_path / "out"), "teacher": {"model": str(teacher)}, "shard_size": 8, "batch_rows": 5}
    stats = run_filter(FilterConfig.model_validate(config))
    kept, removed = outputs(tmp_path / "out")
    reasons = {row["id"]: row["reason"] for row in removed}
    assert reasons == {"q100": "filter:exact_duplicate", "q101": "filter:near_duplicate", "q102": "filter:exact_duplicate", "q103": "filter:too_short", "a000": "filter:teacher_score_low"}
    assert "q007" in {row["id"] for row in kept}
    assert [row["id"] for row in kept] == sorted(row["id"] for row in kept) and len(kept) == 30
    assert stats["removed_by_reason"] == {"exact_duplicate": 2, "near_duplicate": 1, "teacher_score_low": 1, "too_short": 1}
    assert stats["scoring"] == {"teacher_model": identity, "reused": len(rows), "recomputed": 0}
    assert stats["input"] == len(rows) == stats["kept"] + stats["removed"]
    assert stats["teacher_score"]["count"] == len(rows) and stats["teacher_score"]["min"] == pytest.approx(0.2)
    assert len(list((tmp_path / "out" / "done").glob("shard-*.json"))) == -(-len(rows) // 8)


@pytest.mark.slow
def test_result_is_the_same_across_runs_blockings_and_resumes(local_ray, tmp_path):
    identity = configured_identity(TeacherConfig())
    rows = generated_rows(identity)
    write_input(tmp_path / "one", rows, shards=1)
    write_input(tmp_path / "four", rows[::-1], shards=4)
    base = {"shard_size": 10, "rules": {"near_duplicate_jaccard": 0.8}}
    run_filter(FilterConfig.model_validate(dict(base, input_dir=str(tmp_path / "one"), output_dir=str(tmp_path / "a"), batch_rows=4096)))
    run_filter(FilterConfig.model_validate(dict(base, input_dir=str(tmp_path / "four"), output_dir=str(tmp_path / "b"), batch_rows=3)))
    for name in ("shard-00000", "shard-00001", "shard-00002", "shard-00003"):
        for folder in ("pairs", "rejected"):
            assert pq.read_table(tmp_path / "a" / folder / f"{name}.parquet").to_pylist() == pq.read_table(tmp_path / "b" / folder / f"{name}.parquet").to_pylist()

    # a killed run: the last shard never finished; the re-run writes only it, and skips the work steps
    (tmp_path / "b" / "done" / "shard-00003.json").unlink()
    (tmp_path / "b" / "pairs" / "shard-00003.parquet").unlink()
    (tmp_path / "b" / "work" / "filter.done").unlink()
    before = {path: path.stat().st_mtime_ns for path in (tmp_path / "b").rglob("*.parquet")}
    stats = run_filter(FilterConfig.model_validate(dict(base, input_dir=str(tmp_path / "four"), output_dir=str(tmp_path / "b"), batch_rows=7)))
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in before.items() if "shard-00003" not in path.name)
    assert pq.read_table(tmp_path / "b" / "pairs" / "shard-00003.parquet").to_pylist() == pq.read_table(tmp_path / "a" / "pairs" / "shard-00003.parquet").to_pylist()
    assert stats["kept"] == 30 and json.loads((tmp_path / "b" / "stats.json").read_text())["removed"] == len(rows) - 30

    # a finished run is returned as is; a changed rule is refused
    assert run_filter(FilterConfig.model_validate(dict(base, input_dir=str(tmp_path / "four"), output_dir=str(tmp_path / "b"))))["kept"] == 30
    with pytest.raises(ValueError, match="different plan"):
        run_filter(FilterConfig.model_validate(dict(base, input_dir=str(tmp_path / "four"), output_dir=str(tmp_path / "b"), rules={"near_duplicate_jaccard": 0.9})))
