"""Training throughput: embedforge's Ray Train step vs sentence-transformers' trainer.

Same model (all-MiniLM-L6-v2), same rows (SciFact train-split pairs, the negative being the next
row's positive), same batch, max length and steps, one CPU worker each, measured in
the same run. embedforge's samples/s is the steady state logged by the loop (the first
logging window, which includes start-up, is excluded); sentence-transformers' is timed by a
trainer callback over the same steps.

Run: PYTHONPATH=$PWD/platform:$PWD python tests/benchmarks/bench_training_throughput.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

STEPS, BATCH, MAX_LENGTH, LOG_EVERY = 16, 16, 64, 4


def in_process_samples_per_s(cfg, rows: list[dict], base_dir: Path) -> float:
    """embedforge's own step (model, loss, fused AdamW, clipping, schedule) in this process, without Ray.

    The same rows, tokenised ahead as the Ray Data stage does; samples/s after the first
    ``LOG_EVERY`` steps, as on the other two rows. The gap between this row and the Ray Train
    row is what Ray costs; the gap to sentence-transformers is the step itself.
    """
    import time

    import torch

    from embedforge.training.batches import TokenizeEmbedderPairs
    from embedforge.training.modules import build_trainable
    from embedforge.training.steps import build_loss, embedder_loss
    from embedforge.training.strategy import lr_lambda, make_optimizer

    torch.manual_seed(cfg.optim.seed)
    module = build_trainable(cfg, base_dir)
    loss_fn = build_loss(cfg)
    optimizer = make_optimizer(module, cfg.optim)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.optim))
    tokenize = TokenizeEmbedderPairs(str(base_dir), query_max_length=MAX_LENGTH, max_length=MAX_LENGTH)
    columns = ("query", "positive", "negatives", "instruction")
    batches = [tokenize({key: [row[key] for row in rows[i : i + BATCH]] for key in columns}) for i in range(0, STEPS * BATCH, BATCH)]
    ends = []
    for batch in batches:
        loss = embedder_loss(module, loss_fn, {key: torch.as_tensor(value) for key, value in batch.items()})
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.optim.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        float(loss.detach())
        ends.append(time.perf_counter())
    return (len(ends) - 1 - LOG_EVERY) * BATCH / (ends[-1] - ends[LOG_EVERY])


def main() -> None:
    import ray

    from embedforge.config import parse_config
    from embedforge.data.beir import load_corpus, load_qrels, load_queries
    from embedforge.data.splits import split_ids
    from embedforge.models.registry import resolve_model
    from embedforge.paths import shared_data_dir
    from embedforge.session import RayConfig, ensure_ray
    from embedforge.training import run_training
    from embedforge.training.config import TrainConfig
    from embedforge.training.pairs import write_pair_rows
    from tests.benchmarks.bench_training_quality import sentence_transformers_mnrl
    from tests.benchmarks.report import markdown_table, write_section

    scifact = shared_data_dir() / "retrieval" / "scifact"
    corpus, queries, qrels = load_corpus(scifact / "corpus.jsonl"), load_queries(scifact / "queries.jsonl"), load_qrels(scifact / "qrels" / "train.tsv")
    train_ids, _ = split_ids(qrels)
    pairs = [(query_id, doc_id) for query_id in train_ids for doc_id in sorted(qrels[query_id]) if doc_id in corpus][: STEPS * BATCH]
    rows = [
        {"query": queries[query_id], "positive": corpus[doc_id].full_text, "negatives": [corpus[pairs[(i + 1) % len(pairs)][1]].full_text], "instruction": None}
        for i, (query_id, doc_id) in enumerate(pairs)
    ]
    work = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    data = write_pair_rows(rows, work / "pairs.jsonl")
    cfg = parse_config(
        {
            "stage": 2,
            "model": {"kind": "embedder", "base": "all-MiniLM-L6-v2", "max_length": MAX_LENGTH, "query_max_length": MAX_LENGTH},
            "data": {"datasets": [{"name": "scifact", "path": data}], "num_negatives": 1},
            "loss": {"use_query_query": False, "use_doc_doc": False},
            "optim": {"steps": STEPS, "batch_size": BATCH, "lr": 2e-5},
            # Ray sets OMP_NUM_THREADS to the worker's CPUs: give it both cores, as the in-process trainer has.
            "scaling": {"num_workers": 1, "cpus_per_worker": 2},
            "run": {"name": "throughput", "storage_path": work / "runs", "checkpoint_every": STEPS, "log_every": LOG_EVERY},
        },
        TrainConfig,
        "bench",
    )
    ensure_ray(RayConfig(num_cpus=4))
    result = run_training(cfg)
    ray.shutdown()
    steady = result.metrics[1:]
    ours = sum(m["samples_per_s"] for m in steady) / len(steady)
    _, theirs = sentence_transformers_mnrl(resolve_model("all-MiniLM-L6-v2"), rows, cfg, work)
    own_step = in_process_samples_per_s(cfg, rows, resolve_model("all-MiniLM-L6-v2"))
    table = [
        ["sentence-transformers SentenceTransformerTrainer + MNRL", round(theirs, 2), 1.0],
        ["embedforge Ray Train loop (DDP strategy, 1 worker)", round(ours, 2), round(ours / theirs, 2)],
        ["embedforge's step in this process, no Ray (the Ray cost is the gap to the row above)", round(own_step, 2), round(own_step / theirs, 2)],
    ]
    body = f"""
all-MiniLM-L6-v2, {STEPS} steps of batch {BATCH} (query, positive, one negative), max length
{MAX_LENGTH}, one CPU worker each, in-batch negatives only (query-query and doc-doc terms off, so
both losses score the same similarity matrix). Samples/s is the steady state after the first
{LOG_EVERY} steps on both sides. Shared 2-core machine: absolute numbers move with the load; the
ratio is what this section tracks.

{markdown_table(["trainer", "samples/s", "ratio"], table)}
"""
    write_section("training_throughput", "Training throughput vs sentence-transformers", "python tests/benchmarks/bench_training_throughput.py", body)
    print(markdown_table(["trainer", "samples/s", "ratio"], table))


if __name__ == "__main__":
    main()
