"""Held-out gates: each produced model against its starting point, and what the pipeline does with a failed one."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedforge.eval.gates import failed, gate_table, gates_from_dicts, run_gates

RESULTS = {
    "base": {"scifact-dev": {"main_score": 0.7701}, "stsb-dev": {"main_score": 0.8672}},
    "stage2": {"scifact-dev": {"main_score": 0.7902}, "stsb-dev": {"main_score": 0.8600}},
    "merged": {"scifact-dev": {"main_score": 0.7850}, "stsb-dev": {"main_score": 0.8669}},
    "merged+reranker": {"scifact-dev": {"main_score": 0.5048}},
}


def test_the_final_model_is_gated_against_the_base_and_the_reranked_run_against_its_dense_run():
    gates = run_gates(RESULTS, final="merged", max_drop=0.005)
    assert [(g.model, g.reference, g.task, g.verdict) for g in gates] == [
        ("merged", "base", "scifact-dev", "better"),
        ("merged", "base", "stsb-dev", "level"),  # -0.0003 is within max_drop
        ("merged+reranker", "merged", "scifact-dev", "worse"),
    ]
    assert gates[2].delta == pytest.approx(0.5048 - 0.7850)
    assert [g.model for g in failed(gates)] == ["merged+reranker"]
    assert failed(gates, "merged") == []


def test_a_drop_beyond_max_drop_fails_and_stage_models_are_not_gated():
    gates = run_gates({**RESULTS, "merged": RESULTS["stage2"]}, final="merged", max_drop=0.005)
    sts = next(g for g in gates if g.task == "stsb-dev")
    assert sts.verdict == "worse" and not sts.passed and sts.delta == pytest.approx(-0.0072)
    assert {g.model for g in gates} == {"merged", "merged+reranker"}


def test_gates_survive_a_stage_summary_and_render_as_a_table():
    gates = run_gates(RESULTS, final="merged")
    assert gates_from_dicts([gate.to_dict() for gate in gates]) == gates
    table = gate_table(gates)
    assert "| merged+reranker | merged | scifact-dev | 0.5048 | 0.7850 | -0.2802 | - | worse |" in table
    old_summary = [{key: value for key, value in gate.to_dict().items() if key not in ("low", "high")} for gate in gates]
    assert gates_from_dicts(old_summary) == gates  # summaries written before gates had intervals


def per_query(scores: list[float]) -> dict[str, float]:
    return {f"dev/default/q{i}": score for i, score in enumerate(scores)}


def test_a_rise_the_queries_cannot_resolve_is_level_and_a_clear_one_is_better():
    """With per-query scores the verdict follows the paired bootstrap interval, not the mean alone."""
    base = [0.5, 0.2, 0.9, 0.4, 0.6, 0.3, 0.7, 0.1]
    noisy = [0.9, 0.0, 1.0, 0.1, 0.9, 0.1, 0.9, 0.0]  # mean +0.025, half the queries worse
    clear = [score + 0.03 for score in base]  # every query +0.03
    mean = lambda scores: sum(scores) / len(scores)
    runs = {label: {"scifact-dev": {"main_score": mean(scores)}} for label, scores in (("base", base), ("noisy", noisy), ("clear", clear))}
    query_scores = {label: {"scifact-dev": per_query(scores)} for label, scores in (("base", base), ("noisy", noisy), ("clear", clear))}

    [noisy_gate] = run_gates(runs, final="noisy", max_drop=0.005, query_scores=query_scores)
    assert noisy_gate.delta == pytest.approx(0.025) and noisy_gate.low < 0 < noisy_gate.high
    assert noisy_gate.verdict == "level" and noisy_gate.passed
    assert "95 % interval [" in noisy_gate.line()
    [clear_gate] = run_gates(runs, final="clear", max_drop=0.005, query_scores=query_scores)
    assert clear_gate.low == pytest.approx(0.03) and clear_gate.high == pytest.approx(0.03)
    assert clear_gate.verdict == "better"
    assert "| clear | base | scifact-dev | " in gate_table([clear_gate]) and "| [+0.0300, +0.0300] | better |" in gate_table([clear_gate])
    assert gates_from_dicts([clear_gate.to_dict()]) == [clear_gate]
    [without] = run_gates(runs, final="noisy", max_drop=0.005)  # no per-query scores: the mean rule
    assert without.verdict == "better" and without.low is None


def test_runs_scored_on_different_queries_get_no_interval():
    runs = {"base": {"t": {"main_score": 0.5}}, "merged": {"t": {"main_score": 0.6}}}
    query_scores = {"base": {"t": per_query([0.5, 0.5])}, "merged": {"t": per_query([0.6, 0.6, 0.6])}}
    [gate] = run_gates(runs, final="merged", query_scores=query_scores)
    assert gate.low is None and gate.verdict == "better"


def test_an_sts_gate_bootstraps_spearman_over_the_same_pairs():
    """STS gates get an interval from each pair's gold and predicted similarity (``pair_scores.json``)."""
    import numpy as np
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    gold = rng.uniform(0, 5, 200)
    predicted = {"base": gold + rng.normal(0, 2.0, 200), "noisy": gold + rng.normal(0, 2.0, 200), "sharp": gold + rng.normal(0, 0.5, 200)}
    pairs = lambda values: {"stsb-dev": {"dev/default": {"gold": gold.tolist(), "predicted": values.tolist()}}}
    runs = {label: {"stsb-dev": {"main_score": spearmanr(values, gold)[0]}} for label, values in predicted.items()}
    pair_scores = {label: pairs(values) for label, values in predicted.items()}

    [noisy] = run_gates(runs, final="noisy", pair_scores=pair_scores)
    assert noisy.delta == pytest.approx(0.0430, abs=1e-4) and noisy.low < 0 < noisy.high
    assert noisy.verdict == "level"  # the mean rule alone would call +0.043 better
    [sharp] = run_gates(runs, final="sharp", pair_scores=pair_scores)
    assert 0 < sharp.low < sharp.delta < sharp.high and sharp.verdict == "better"
    shorter = {"stsb-dev": {"dev/default": {"gold": gold[:100].tolist(), "predicted": predicted["noisy"][:100].tolist()}}}
    [unpaired] = run_gates(runs, final="noisy", pair_scores={**pair_scores, "noisy": shorter})
    assert unpaired.low is None and unpaired.verdict == "better"  # scored on other pairs: the mean rule


def test_the_pipeline_does_not_serve_a_reranker_that_failed_its_gate():
    from embedforge.pipeline.actions import served_reranker
    from embedforge.pipeline.stages import StageResult

    reranker = StageResult("reranker", "k", Path("r"), {"output": "/m/reranker"}, skipped=False)
    gates = [gate.to_dict() for gate in run_gates(RESULTS, final="merged")]
    evaluate = StageResult("evaluate", "k", Path("e"), {"output": "e", "gates": gates}, skipped=False)
    chosen, why = served_reranker({"reranker": reranker, "evaluate": evaluate})
    assert chosen is None
    assert why == "not serving the reranker /m/reranker: its held-out gate failed (merged+reranker vs merged on scifact-dev: 0.5048 vs 0.7850 (-0.2802, worse))"
    better = {**RESULTS, "merged+reranker": {"scifact-dev": {"main_score": 0.80}}}
    evaluate_ok = StageResult("evaluate", "k", Path("e"), {"output": "e", "gates": [g.to_dict() for g in run_gates(better, final="merged")]}, skipped=False)
    assert served_reranker({"reranker": reranker, "evaluate": evaluate_ok}) == ("/m/reranker", None)
    assert served_reranker({"reranker": reranker}) == ("/m/reranker", None)
    assert served_reranker({}) == (None, None)


def test_the_run_report_lists_the_gates_and_names_the_failed_ones(tmp_path):
    from embedforge.pipeline.report import write_run_report

    gates = [gate.to_dict() for gate in run_gates(RESULTS, final="merged")]
    summaries = {"evaluate": {"results": RESULTS, "models": {"base": "/m/base", "merged": "/m/merged"}, "reranker": "/m/rr", "gates": gates}}
    report = write_run_report(summaries, tmp_path).read_text()
    assert "## Held-out gates: does each produced model beat its starting point?" in report
    assert "| merged | base | scifact-dev | 0.7850 | 0.7701 | +0.0149 | - | better |" in report
    assert "Failed: merged+reranker vs merged on scifact-dev: 0.5048 vs 0.7850 (-0.2802, worse)." in report
