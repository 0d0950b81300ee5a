"""The CPU recipe, proven: ``embedforge run jobs/configs/minilm-scifact.yaml`` against the base and a plain MNRL fine-tune.

1. Runs the preset exactly as a user would (``embedforge run``, a subprocess, local Ray):
   weak pairs, labelled mining, stage 1 when configured, stage 2, merge, the cross-encoder
   reranker and the pipeline's own evaluation. It resumes: completed stages are skipped.
2. Trains the baseline: sentence-transformers ``MultipleNegativesRankingLoss`` on the same
   labelled rows (query, positive, first hard negative) with stage 2's steps, global batch,
   learning rate, schedule and temperature.
3. Scores every model on the SciFact dev split (155 queries) over the benchmark's
   1,565-document subset (every judged document plus 1,000 seeded others, as
   ``bench_training_quality.py``) at max length 128, the reranker over the final model's top
   20, and STSb-dev Spearman (all 1,500 pairs) for forgetting.
4. Says which differences the 155 queries can resolve: the paired bootstrap of per-query
   nDCG@10 (``embedforge.eval.significance``) for the comparisons the goals name.

Run: PYTHONPATH=$PWD/platform:$PWD python tests/benchmarks/bench_minilm_scifact.py
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

PRESET = ROOT / "jobs/configs/minilm-scifact.yaml"
RUN_DIR = ROOT / "runs/minilm-scifact"
OTHER_DOCS = 1000  # bench_training_quality.scifact_benchmark_split's
EVAL_MAX_LENGTH = 128
RERANK_TOP_K = 20


def run_preset() -> float:
    started = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'platform'}:{os.environ.get('PYTHONPATH', '')}")
    subprocess.run([sys.executable, "-m", "embedforge.cli", "run", str(PRESET)], check=True, cwd=ROOT, env=env)
    return time.perf_counter() - started


def stage_summary(name: str) -> dict:
    folders = sorted(RUN_DIR.glob(f"{name}-*/_COMPLETE.json"), key=lambda path: path.stat().st_mtime)
    return json.loads(folders[-1].read_text())


def stage_output(name: str) -> Path:
    return Path(stage_summary(name)["summary"]["output"])


def dev_subset():
    from tests.benchmarks.bench_training_quality import scifact_benchmark_split

    _, queries, qrels, _, dev_ids, subset = scifact_benchmark_split()
    return subset, {query_id: queries[query_id] for query_id in dev_ids}, {query_id: qrels[query_id] for query_id in dev_ids}


def load_embedder(folder: Path):
    from embedforge.models.embedder import Embedder

    model = Embedder.load(folder, device="cpu")
    model.settings = model.settings.model_copy(update={"max_length": EVAL_MAX_LENGTH})
    return model


def scores(folder: Path, data, reranker: Path | None = None) -> dict[str, float]:
    """nDCG@10 on the dev subset (dense, and reranked when a reranker is given), per query too, and STSb-dev Spearman."""
    from embedforge.eval.metrics import query_ndcg
    from embedforge.eval.retrieval import search
    from embedforge.eval.runner import run_evaluate
    from embedforge.eval.settings import EvaluateConfig

    corpus, queries, qrels = data
    model = load_embedder(folder)
    run = search(model, corpus, queries, k=100, batch_size=64)
    per_query = query_ndcg(run, qrels)
    out = {"ndcg_at_10": statistics.fmean(per_query.values()), "per_query": per_query}
    if reranker is not None:
        from embedforge.models.reranker import load_reranker

        judge = load_reranker(reranker, device="cpu")
        reranked = {}
        for query_id, hits in run.items():
            top = sorted(hits, key=hits.get, reverse=True)[:RERANK_TOP_K]
            values = judge.score(queries[query_id], [corpus[doc_id].full_text for doc_id in top], batch_size=32, logits=True)
            reranked[query_id] = {doc_id: float(value) for doc_id, value in zip(top, values)}
        out["per_query_reranked"] = query_ndcg(reranked, qrels)
        out["reranked_ndcg_at_10"] = statistics.fmean(out["per_query_reranked"].values())
    sts = run_evaluate(folder, Path("/tmp/bench-minilm-scifact-sts") / folder.name, EvaluateConfig(tasks=["stsb-dev"], batch_size=64), device="cpu", label="sts")
    out["stsb_spearman"] = sts["sts"]["stsb-dev"].metrics["main_score"]
    return out


def paired_differences(per_query: dict[str, dict[str, float]], labels: list[str]) -> list[list]:
    """Paired bootstrap rows: the final model against the base, MNRL and each single checkpoint; the reranker against both."""
    from embedforge.eval.significance import paired_bootstrap

    mnrl, final = labels[1], labels[-1]
    comparisons = [(final, other) for other in labels[:-1]] + [("final + reranker", final), ("final + reranker", mnrl)]
    rows = []
    for first, second in comparisons:
        if first in per_query:
            difference = paired_bootstrap(per_query[first], per_query[second])
            rows.append([f"{short(first)} - {short(second)}", f"{difference.mean:+.4f}", f"[{difference.low:+.4f}, {difference.high:+.4f}]", f"{difference.better} / {difference.worse}"])
    return rows


def loss_terms(loss) -> str:
    """The in-batch terms of a stage's improved InfoNCE, in a table label's words."""
    terms = ["q-d"] + ["q-q"] * loss.use_query_query + ["d-d"] * loss.use_doc_doc
    return "+".join(terms) + " terms" + (", shared hard negatives" if loss.share_hard_negatives else "")


def short(label: str) -> str:
    """A model's table label up to its first colon or comma: enough to name it in a comparison."""
    return label.split(":")[0].split(",")[0]


def main() -> None:
    from embedforge.config import load_config
    from embedforge.models.registry import resolve_model
    from embedforge.pipeline.config import PipelineConfig
    from embedforge.training.pairs import read_pair_rows
    from tests.benchmarks.bench_training_quality import sentence_transformers_mnrl
    from tests.benchmarks.report import markdown_table, write_section

    started = time.perf_counter()
    pipeline_seconds = run_preset()
    config = load_config(PRESET, PipelineConfig)
    stage2 = config.stage2
    labelled = Path(stage_summary("mine_labelled")["summary"]["output"])
    rows = read_pair_rows(labelled, num_negatives=max(1, stage2.data.num_negatives)).rows
    work = ROOT / "bench-out" / "minilm-scifact"
    negatives = stage2.data.num_negatives
    st_dir, _ = sentence_transformers_mnrl(resolve_model("all-MiniLM-L6-v2"), rows, stage2, work, negatives=negatives)

    data = dev_subset()
    models = [("base all-MiniLM-L6-v2", resolve_model("all-MiniLM-L6-v2"), None)]
    models.append(("sentence-transformers MNRL, same rows/steps/batch/lr", st_dir, None))
    if (RUN_DIR / "stage1").exists():
        models.append(("embedforge stage 1 alone (weak ICT pairs)", RUN_DIR / "stage1", None))
    models.append((f"embedforge stage 2 from {'stage 1' if config.stage1 else 'the base'} (lr {stage2.optim.lr:g}; {loss_terms(stage2.loss)})", RUN_DIR / "stage2", None))
    for name, section in config.variant_stages.items():
        models.append((f"embedforge {name}: stage 2 from {section.model.base.removeprefix('@')} (lr {section.optim.lr:g}; {loss_terms(section.loss)})", stage_output(name), None))
    merge = stage_summary("merge")["summary"]
    models.append((f"embedforge final: {merge['method']} merge of {', '.join(config.merge.checkpoints or ['stage-2 checkpoints'])} (`runs/minilm-scifact/final`)", RUN_DIR / "final", RUN_DIR / "reranker" if config.reranker else None))

    table, results, per_query = [], {}, {}
    base_scores = None
    for label, folder, reranker in models:
        measured = scores(Path(folder), data, reranker)
        per_query[label] = measured.pop("per_query")
        if reranker is not None:
            per_query["final + reranker"] = measured.pop("per_query_reranked")
        base_scores = base_scores or measured
        results[label] = measured
        table.append([label, f"{measured['ndcg_at_10']:.4f}", f"{measured['ndcg_at_10'] - base_scores['ndcg_at_10']:+.4f}", f"{measured['stsb_spearman']:.4f}", f"{measured['stsb_spearman'] - base_scores['stsb_spearman']:+.4f}"])
        if reranker is not None:
            table.append([f"final + reranker (`runs/minilm-scifact/reranker`, top {RERANK_TOP_K})", f"{measured['reranked_ndcg_at_10']:.4f}", f"{measured['reranked_ndcg_at_10'] - base_scores['ndcg_at_10']:+.4f}", "-", "-"])
        print(table[-1], flush=True)
    (work / "results.json").write_text(json.dumps(results, indent=1))
    headers = ["model", "nDCG@10 (dev)", "vs base", "STSb-dev Spearman", "vs base"]
    paired_table = paired_differences(per_query, [label for label, _, _ in models])
    body = f"""
`embedforge run jobs/configs/minilm-scifact.yaml` took {pipeline_seconds:.0f} s (stages that
were already complete are skipped and count as 0). SciFact dev split ({len(data[1])} queries)
over the benchmark's {len(data[0])}-document subset (every judged document plus {OTHER_DOCS}
seeded others) at max length {EVAL_MAX_LENGTH}; the reranker reorders the final model's top
{RERANK_TOP_K}; STSb-dev Spearman over all 1,500 pairs. The MNRL baseline trains on the same
{len(rows)} labelled rows (query, positive, its first {negatives} hard negatives) with stage 2's
{stage2.optim.steps} steps, global batch {stage2.optim.batch_size * stage2.scaling.num_workers},
lr {stage2.optim.lr} and temperature {stage2.loss.temperature}.

{markdown_table(headers, table)}

Which of these differences the {len(data[1])} dev queries can resolve: the mean per-query
difference in nDCG@10, its 95 % paired bootstrap interval (10,000 resamples of the queries,
`embedforge.eval.significance`), and the queries where the first model ranks better or worse.
An interval that holds 0 is a difference this query set cannot tell from chance.

{markdown_table(["comparison", "mean difference", "95 % interval", "queries better / worse"], paired_table)}

Total benchmark time {time.perf_counter() - started:.0f} s.
"""
    write_section("minilm_scifact", "The CPU recipe: minilm-scifact preset (SciFact dev split)", "python tests/benchmarks/bench_minilm_scifact.py", body)
    print(markdown_table(headers, table))


if __name__ == "__main__":
    main()
