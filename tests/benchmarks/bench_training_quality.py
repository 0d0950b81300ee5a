"""Stage-2 quality on CPU: base MiniLM vs our Ray Train fine-tune vs sentence-transformers MNRL vs merged.

Data: the SciFact train qrels (809 queries) split by ``embedforge.data.splits.split_ids``
(seed 13, dev fraction 0.2). Training rows come from the mining stage run on the
``jobs/configs/mine_scifact_train.yaml`` preset: one row per judged train-split pair with hard
negatives from the base model (judged positives excluded, score < 0.95 x the positive's).
Both fine-tunes read the same rows with the same steps, global batch, learning rate and max
length; ours trains with ``jobs/configs/embedder_minilm_cpu.yaml``.

Evaluation: nDCG@10 of the dev-split queries. MiniLM encodes about 30 abstracts/s at 128
tokens on this 2-core machine, so mining and evaluation search a seeded corpus subset (every
judged document plus ``OTHER_DOCS`` others) rather than all 5,183 abstracts four times over.

Run: PYTHONPATH=$PWD/platform:$PWD python tests/benchmarks/bench_training_quality.py
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions"))

OTHER_DOCS = 1000
EVAL_MAX_LENGTH = 128
TRAIN_PRESET = ROOT / "jobs/configs/embedder_minilm_cpu.yaml"
MINING_PRESET = ROOT / "jobs/configs/mine_scifact_train.yaml"


def scifact_benchmark_split():
    """SciFact with the project's fixed split, and the benchmark's corpus subset.

    Returns ``(corpus, queries, qrels, train_ids, dev_ids, subset)``: ``subset`` is every
    judged document plus ``OTHER_DOCS`` seeded-random others (1,565 abstracts), the corpus
    every CPU quality benchmark scores the dev queries against.
    """
    from embedforge.data.beir import load_corpus, load_qrels, load_queries
    from embedforge.data.splits import split_ids
    from embedforge.paths import shared_data_dir

    scifact = shared_data_dir() / "retrieval" / "scifact"
    corpus, queries, qrels = load_corpus(scifact / "corpus.jsonl"), load_queries(scifact / "queries.jsonl"), load_qrels(scifact / "qrels" / "train.tsv")
    train_ids, dev_ids = split_ids(qrels)
    judged = sorted({doc_id for judgements in qrels.values() for doc_id in judgements if doc_id in corpus})
    others = random.Random(13).sample(sorted(set(corpus) - set(judged)), OTHER_DOCS)
    return corpus, queries, qrels, train_ids, dev_ids, {doc_id: corpus[doc_id] for doc_id in judged + others}


def write_corpus_subset(corpus: dict, doc_ids: list[str], path: Path) -> Path:
    """A BEIR corpus file holding only ``doc_ids``."""
    with path.open("w") as handle:
        for doc_id in doc_ids:
            handle.write(json.dumps({"_id": doc_id, "title": corpus[doc_id].title, "text": corpus[doc_id].text}) + "\n")
    return path


def mine_train_split(corpus_file: Path, output_dir: Path) -> Path:
    """The mining stage on its SciFact preset, over ``corpus_file``; returns the pairs folder."""
    from embedforge.config import parse_config, read_yaml_mapping
    from embedforge.synthesis.mine import MineConfig, run_mine

    raw = read_yaml_mapping(MINING_PRESET)
    raw.update(output_dir=str(output_dir), corpus=dict(raw["corpus"], paths=[str(corpus_file)]))
    stats = run_mine(parse_config(raw, MineConfig, str(MINING_PRESET)))
    print(f"mined {stats['pairs']} pairs over {stats['passages']} passages in {stats['seconds']:.0f} s")
    return output_dir


def sentence_transformers_mnrl(base: Path, rows: list[dict], cfg, output: Path, negatives: int = 1) -> tuple[Path, float]:
    """The standard ``MultipleNegativesRankingLoss`` fine-tune on the same rows; returns (folder, samples/s).

    Each row is (query, positive, its first ``negatives`` hard negatives); the global batch, steps, learning
    rate, schedule, max length and temperature (MNRL's ``scale`` = 1 / temperature) are
    ``cfg``'s. Samples/s is the steady state after the first ``cfg.run.log_every`` steps,
    the window embedforge's loop also leaves out.
    """
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from transformers import TrainerCallback

    step_ends: list[float] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            step_ends.append(time.perf_counter())

    model = SentenceTransformer(str(base), device="cpu")
    model.max_seq_length = cfg.model.max_length
    columns = {"anchor": [r["query"] for r in rows], "positive": [r["positive"] for r in rows]}
    columns.update({f"negative_{k + 1}": [r["negatives"][k] for r in rows] for k in range(negatives)})
    data = Dataset.from_dict(columns)
    global_batch = cfg.optim.batch_size * cfg.scaling.num_workers
    args = SentenceTransformerTrainingArguments(
        output_dir=str(output / "st-trainer"),
        max_steps=cfg.optim.steps,
        per_device_train_batch_size=global_batch,
        learning_rate=cfg.optim.lr,
        warmup_steps=cfg.optim.warmup_steps,
        lr_scheduler_type={"constant": "constant_with_warmup"}.get(cfg.optim.schedule, cfg.optim.schedule),
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
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=loss, callbacks=[StepClock()])
    trainer.train()
    model.save(str(output / "st-mnrl"))
    skip = min(cfg.run.log_every, len(step_ends) - 1)
    return output / "st-mnrl", (len(step_ends) - 1 - skip) * global_batch / (step_ends[-1] - step_ends[skip])


def dev_ndcg_at_10(folder: Path, corpus: dict, queries: dict, dev_qrels: dict) -> float:
    from embedforge.eval.retrieval import evaluate_retrieval
    from embedforge.models.embedder import Embedder

    model = Embedder.load(folder, device="cpu")
    model.settings = model.settings.model_copy(update={"max_length": EVAL_MAX_LENGTH})
    return evaluate_retrieval(model, corpus, queries, dev_qrels, batch_size=64)["ndcg_at_10"]


def main() -> None:
    import ray

    from embedforge.config import parse_config, read_yaml_mapping
    from embedforge.merge import merge_checkpoints
    from embedforge.models.registry import resolve_model
    from embedforge.session import RayConfig, ensure_ray
    from embedforge.training import run_training
    from embedforge.training.config import TrainConfig
    from embedforge.training.pairs import read_pair_rows
    from tests.benchmarks.report import markdown_table, write_section

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench-training-"))
    corpus, queries, qrels, train_ids, dev_ids, subset = scifact_benchmark_split()
    dev_qrels = {query_id: qrels[query_id] for query_id in dev_ids}

    ensure_ray(RayConfig(num_cpus=4))
    pairs_dir = mine_train_split(write_corpus_subset(corpus, list(subset), work / "corpus.jsonl"), work / "mined")
    raw = read_yaml_mapping(TRAIN_PRESET)
    raw["data"]["datasets"][0]["path"] = str(pairs_dir)
    raw["run"]["storage_path"] = str(work / "runs")
    cfg = parse_config(raw, TrainConfig, str(TRAIN_PRESET))
    usable = read_pair_rows(pairs_dir, num_negatives=cfg.data.num_negatives)
    rows, short_of_negatives = usable.rows, usable.skipped.get("too_few_negatives", 0)
    print(f"{len(train_ids)} train / {len(dev_ids)} dev queries, {len(rows)} training rows, {len(subset)} docs")

    t0 = time.perf_counter()
    result = run_training(cfg)
    ours_seconds = time.perf_counter() - t0
    ray.shutdown()
    ours_sps = [m["samples_per_s"] for m in result.metrics[1:]]
    base = resolve_model(cfg.model.base)
    st_dir, st_sps = sentence_transformers_mnrl(base, rows, cfg, work)
    steps = sorted(result.merge_candidates)
    merged = merge_checkpoints([result.merge_candidates[s] for s in steps], work / "merged", method="slerp")

    base_ndcg = dev_ndcg_at_10(base, subset, queries, dev_qrels)
    table = [["base all-MiniLM-L6-v2", "-", f"{base_ndcg:.4f}"]]
    for label, folder in [
        (f"embedforge stage 2 (Ray Train DDP, 2 workers, improved InfoNCE), step {cfg.optim.steps}", result.final_model),
        ("sentence-transformers MultipleNegativesRankingLoss, same rows/steps/batch", st_dir),
        (f"embedforge stage 3: slerp of the stage-2 checkpoints at steps {steps}", merged),
    ]:
        score = dev_ndcg_at_10(folder, subset, queries, dev_qrels)
        table.append([label, f"{score - base_ndcg:+.4f}", f"{score:.4f}"])
    headers = ["model", "delta vs base", "nDCG@10 (dev)"]
    global_batch = cfg.optim.batch_size * cfg.scaling.num_workers
    body = f"""
SciFact train qrels split by `split_ids(seed=13, dev_fraction=0.2)`: {len(train_ids)} train and
{len(dev_ids)} dev queries. Training rows: {len(rows)} judged train-split pairs with
{cfg.data.num_negatives} hard negative each, from the mining stage
(`jobs/configs/mine_scifact_train.yaml`: base-model top-50 over the subset below, judged
positives excluded, score < 0.95 x the positive's); {short_of_negatives} more pairs had no
candidate under that guard and are skipped by both trainers. Both fine-tunes: {cfg.optim.steps} steps
(about {cfg.optim.steps * global_batch / len(rows):.1f} epochs), global batch {global_batch},
lr {cfg.optim.lr} ({cfg.optim.schedule}, {cfg.optim.warmup_steps} warmup), max length
{cfg.model.max_length}, temperature {cfg.loss.temperature} (MNRL scale {1 / cfg.loss.temperature:g}),
bare queries (no instruction). nDCG@10 of the dev queries over a corpus subset of
{len(subset)} abstracts (every judged document plus {OTHER_DOCS} seeded-random others),
max length {EVAL_MAX_LENGTH}.

{markdown_table(headers, table)}

Training wall time: embedforge {ours_seconds:.0f} s including Ray Train start-up and
tokenisation in Ray Data (steady state {sum(ours_sps) / max(len(ours_sps), 1):.1f} samples/s
over 2 CPU workers); sentence-transformers {st_sps:.1f} samples/s in one process. Total
benchmark time {time.perf_counter() - started:.0f} s.
"""
    write_section("training_quality", "Stage-2 training quality (MiniLM, SciFact dev split)", "python tests/benchmarks/bench_training_quality.py", body)
    print(markdown_table(headers, table))


if __name__ == "__main__":
    main()
