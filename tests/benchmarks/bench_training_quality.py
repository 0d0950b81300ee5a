"""Stage-2 quality on CPU: base MiniLM vs our Ray Train fine-tune vs sentence-transformers MNRL vs merged.

Data: SciFact train qrels (809 queries) split by ``embedforge.data.splits.split_ids``
(seed 13, dev fraction 0.2). Training rows are the train-split (query, positive) pairs with
one hard negative mined by the base model (exact search, judged positives excluded,
score <= 0.95 x the positive's). Evaluation: nDCG@10 on the dev-split queries over a corpus
subset (all dev positives plus 200 other seeded-random abstracts, 128 tokens), because MiniLM
encodes about 15 abstracts/s on this (shared, 2-core) machine and the full 5,183-doc corpus
would take ~6 min per model.
Both fine-tunes use the same rows, steps, global batch, learning rate and max length.

Run: PYTHONPATH=$PWD/platform:$PWD python tests/benchmarks/bench_training_quality.py
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache/embedforge/torch_extensions"))

OTHER_DOCS = 200
EVAL_MAX_LENGTH = 128


def encode_docs(embedder, corpus, doc_ids):
    return embedder.encode([corpus[d].full_text for d in doc_ids], batch_size=32)


def ndcg_at_10(embedder, corpus, queries, qrels, dev_ids, doc_ids) -> float:
    from embedforge.eval.metrics import retrieval_scores
    from embedforge.eval.retrieval import exact_top_k

    docs = encode_docs(embedder, corpus, doc_ids)
    q = embedder.encode([queries[i] for i in dev_ids], query=True, batch_size=64)
    top, scores = exact_top_k(q, docs, 100)
    run = {qid: {doc_ids[j]: float(s) for j, s in zip(top[r], scores[r])} for r, qid in enumerate(dev_ids)}
    return retrieval_scores(run, {qid: qrels[qid] for qid in dev_ids})["ndcg_at_10"]


def sentence_transformers_mnrl(base: Path, rows, cfg, output: Path) -> tuple[Path, float]:
    """The standard MultipleNegativesRankingLoss fine-tune on the same triplets; returns samples/s."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    model = SentenceTransformer(str(base), device="cpu")
    model.max_seq_length = cfg.model.max_length
    data = Dataset.from_dict(
        {"anchor": [r["query"] for r in rows], "positive": [r["positive"] for r in rows], "negative": [r["negatives"][0] for r in rows]}
    )
    global_batch = cfg.optim.batch_size * cfg.scaling.num_workers
    args = SentenceTransformerTrainingArguments(
        output_dir=str(output / "st-trainer"),
        max_steps=cfg.optim.steps,
        per_device_train_batch_size=global_batch,
        learning_rate=cfg.optim.lr,
        warmup_steps=cfg.optim.warmup_steps,
        lr_scheduler_type="linear",
        weight_decay=cfg.optim.weight_decay,
        max_grad_norm=cfg.optim.max_grad_norm,
        seed=cfg.optim.seed,
        save_strategy="no",
        report_to=[],
        logging_steps=10,
        dataloader_drop_last=True,
        use_cpu=True,
    )
    loss = MultipleNegativesRankingLoss(model, scale=1.0 / cfg.loss.temperature)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=loss)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    model.save(str(output / "st-mnrl"))
    return output / "st-mnrl", cfg.optim.steps * global_batch / seconds



def start_ray(attempts: int = 3) -> None:
    """Ray 2.60 gives its raylet a fixed 30 s to register, which a loaded machine can miss."""
    import ray

    for attempt in range(attempts):
        try:
            ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
            return
        except Exception as error:  # noqa: BLE001 - Ray raises a bare Exception on this timeout
            if "timed out during startup" not in str(error) or attempt == attempts - 1:
                raise
            ray.shutdown()


def main() -> None:
    import ray

    from embedforge.config import parse_config
    from embedforge.data.beir import load_corpus, load_qrels, load_queries
    from embedforge.data.splits import split_ids
    from embedforge.merge import merge_checkpoints
    from embedforge.models.embedder import Embedder
    from embedforge.models.registry import resolve_model
    from embedforge.paths import shared_data_dir
    from embedforge.training import run_training
    from embedforge.training.config import TrainConfig, load_stage_config
    from embedforge.training.labelled import labelled_pairs, mine_hard_negatives
    from embedforge.training.pairs import write_pair_rows
    from tests.benchmarks.report import markdown_table, write_section

    started = time.perf_counter()
    scifact = shared_data_dir() / "retrieval" / "scifact"
    corpus, queries, qrels = load_corpus(scifact / "corpus.jsonl"), load_queries(scifact / "queries.jsonl"), load_qrels(scifact / "qrels" / "train.tsv")
    train_ids, dev_ids = split_ids(qrels)
    judged = lambda ids: sorted({d for q in ids for d in qrels[q]})  # noqa: E731
    others = random.Random(13).sample(sorted(set(corpus) - set(judged(qrels))), OTHER_DOCS)
    eval_docs = judged(dev_ids) + others
    mine_docs = judged(train_ids) + others

    preset = load_stage_config(ROOT / "jobs/configs/embedder_minilm_cpu.yaml")
    base = resolve_model(preset.model.base)
    embedder = Embedder.load(base, device="cpu")
    embedder.settings = embedder.settings.model_copy(update={"max_length": EVAL_MAX_LENGTH})
    base_ndcg = ndcg_at_10(embedder, corpus, queries, qrels, dev_ids, eval_docs)
    mined = mine_hard_negatives(
        embedder.encode([queries[q] for q in train_ids], query=True, batch_size=64),
        encode_docs(embedder, corpus, mine_docs),
        train_ids,
        mine_docs,
        qrels,
        num_negatives=preset.data.num_negatives,
    )
    rows = labelled_pairs(corpus, queries, qrels, train_ids, negatives=mined)
    print(f"{len(train_ids)} train / {len(dev_ids)} dev queries, {len(rows)} training rows, {len(eval_docs)} eval docs")

    work = Path(tempfile.mkdtemp(prefix="bench-training-"))
    data_path = write_pair_rows(rows, work / "scifact_train_pairs.jsonl")
    raw = preset.model_dump()
    raw["data"]["datasets"][0]["path"] = data_path
    raw["run"]["storage_path"] = work / "runs"
    cfg = parse_config(raw, TrainConfig, "bench")

    start_ray()
    t0 = time.perf_counter()
    result = run_training(cfg)
    ours_seconds = time.perf_counter() - t0
    ray.shutdown()
    ours_sps = [m["samples_per_s"] for m in result.metrics[1:]]
    st_dir, st_sps = sentence_transformers_mnrl(base, [r for r in rows if r["negatives"]], cfg, work)
    steps = sorted(result.merge_candidates)
    merged = merge_checkpoints([result.merge_candidates[s] for s in steps], work / "merged", method="slerp")

    table = [["base all-MiniLM-L6-v2", "-", round(base_ndcg, 4)]]
    for label, folder in [
        (f"embedforge stage 2 (Ray Train DDP, 2 workers, ImprovedInfoNCE), step {cfg.optim.steps}", result.final_model),
        ("sentence-transformers MultipleNegativesRankingLoss, same rows/steps/batch", st_dir),
        (f"embedforge merged: slerp of steps {steps}", merged),
    ]:
        model = Embedder.load(folder, device="cpu")
        model.settings = model.settings.model_copy(update={"max_length": EVAL_MAX_LENGTH})
        score = ndcg_at_10(model, corpus, queries, qrels, dev_ids, eval_docs)
        table.append([label, round(score - base_ndcg, 4), round(score, 4)])
    body = f"""
SciFact train qrels split by `split_ids(seed=13, dev_fraction=0.2)`: {len(train_ids)} train and
{len(dev_ids)} dev queries. {len(rows)} training rows (one per judged pair) with
{cfg.data.num_negatives} hard negative mined by the base model (exact search over the
train positives plus {OTHER_DOCS} other abstracts; positives excluded; score <= 0.95 x the
positive's). Both fine-tunes: {cfg.optim.steps} steps, global batch
{cfg.optim.batch_size * cfg.scaling.num_workers}, lr {cfg.optim.lr} (linear, {cfg.optim.warmup_steps}
warmup), max length {cfg.model.max_length}, temperature {cfg.loss.temperature} (MNRL scale
{1 / cfg.loss.temperature:g}). nDCG@10 on the dev queries over a corpus subset of
{len(eval_docs)} abstracts (all dev positives plus {OTHER_DOCS} seeded-random others; the
full corpus is too slow to encode four times on this shared 2-core machine), max length
{EVAL_MAX_LENGTH}. Short run: {cfg.optim.steps} steps of a CPU budget, not a tuned recipe.

{markdown_table(["model", "delta vs base", "nDCG@10 (dev)"], table)}

Training wall time: embedforge {ours_seconds:.0f} s including Ray startup and tokenisation
(steady-state {sum(ours_sps) / max(len(ours_sps), 1):.1f} samples/s over 2 CPU workers);
sentence-transformers {st_sps:.1f} samples/s in one process. Total benchmark time
{time.perf_counter() - started:.0f} s.
"""
    write_section("training_quality", "Stage-2 training quality (MiniLM, SciFact dev split)", "python tests/benchmarks/bench_training_quality.py", body)
    print(markdown_table(["model", "delta vs base", "nDCG@10 (dev)"], table))


if __name__ == "__main__":
    main()
