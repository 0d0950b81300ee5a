"""Recipe ablations for the CPU preset, in one process: which weak stage, loss terms and merge help MiniLM on SciFact.

Each variant trains all-MiniLM-L6-v2 with embedforge's own parts (``Embedder``,
``tokenize_pairs``, ``ImprovedInfoNCE``, ``merge_state_dicts``) in a plain loop, without
Ray, so one variant costs minutes, and evaluates nDCG@10 on the SciFact dev split over the
benchmark's 1,565-document subset (``bench_training_quality.py``'s: every judged document
plus 1,000 seeded others) at max length 128, and STSb-dev Spearman on 500 pairs.

Data: the labelled train split (``split_ids``) with one hard negative per pair mined by the
base model over the whole corpus (top 50, judged documents excluded, score < 0.95 x the
positive's: the ``mine_scifact_train.yaml`` rule); weak pairs from the SciFact corpus
itself (``embedforge.synthesis.weak``-style title and inverse-cloze pairs, no labels).

Run: PYTHONPATH=$PWD/platform:$PWD python tests/benchmarks/ablation_minilm.py VARIANT [VARIANT ...]
(``merge:``, ``rerank:``, ``prior:`` and ``st:`` variants are described in their functions.)
Results accumulate in ``bench-out/ablation/results.json``; ``--list`` shows the variants.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]
OUT = ROOT / "bench-out" / "ablation"
EVAL_MAX_LENGTH = 128


@dataclass(frozen=True)
class Phase:
    """One training phase: which rows, how long, how fast, which loss terms."""

    data: str  # "labelled" | "weak-ict" | "weak-title" | "weak-mix"
    epochs: float
    lr: float
    batch_size: int = 16
    negatives: int = 1
    temperature: float = 0.05
    margin: float = 0.1
    qq: bool = True
    dd: bool = True
    mask_same_query: bool = True
    shared_negatives: bool = False
    max_length: int = 96
    seed: int = 0
    weak_pairs: int = 2000


@dataclass(frozen=True)
class Variant:
    phases: tuple[Phase, ...]
    merge: tuple = ()
    """``(("with", other_variant, weight), ...)``: slerp this variant's final model with others'."""
    keep_epochs: tuple[int, ...] = ()
    note: str = ""


SFT = Phase("labelled", epochs=1.5, lr=3e-5)
ICT = Phase("weak-ict", epochs=1.0, lr=1e-5, negatives=0)
VARIANTS: dict[str, Variant] = {
    "sft": Variant((SFT,), note="stage 2 only, improved InfoNCE, 1.5 epochs, lr 3e-5"),
    "sft-3ep": Variant((replace(SFT, epochs=3.0),), note="stage 2 only, 3 epochs"),
    "sft-3ep-lr5": Variant((replace(SFT, epochs=3.0, lr=5e-5),), note="stage 2 only, 3 epochs, lr 5e-5"),
    "sft-plain": Variant((replace(SFT, qq=False, dd=False),), note="stage 2 only, query-query and doc-doc terms off"),
    "sft-nomask": Variant((replace(SFT, mask_same_query=False),), note="stage 2 only, same-query rows not masked"),
    "sft-neg3": Variant((replace(SFT, negatives=3),), note="stage 2 only, 3 hard negatives per query"),
    "sft-3ep-neg3": Variant((replace(SFT, epochs=3.0, negatives=3),), note="stage 2 only, 3 epochs, 3 hard negatives"),
    "ict+sft-3ep": Variant((Phase("weak-ict", epochs=1.0, lr=1e-5, negatives=0), replace(SFT, epochs=3.0)), note="weak ICT stage 1, then 3-epoch stage 2"),
    "ict+sft-3ep-neg3": Variant((ICT, replace(SFT, epochs=3.0, negatives=3)), note="weak ICT stage 1, then stage 2 for 3 epochs with 3 hard negatives (the preset's stage 2)"),
    "ict+sft-3ep-neg3-lr5": Variant((ICT, replace(SFT, epochs=3.0, negatives=3, lr=5e-5)), note="as ict+sft-3ep-neg3, stage 2 at lr 5e-5"),
    "ict+sft-3ep-neg3-shared": Variant((ICT, replace(SFT, epochs=3.0, negatives=3, shared_negatives=True)), note="as ict+sft-3ep-neg3, every row's hard negatives shared across the batch (as MNRL)"),
    "ict+sft-3ep-neg3-plain": Variant((ICT, replace(SFT, epochs=3.0, negatives=3, qq=False, dd=False)), note="as ict+sft-3ep-neg3, query-query and doc-doc terms off"),
    "ict+sft-3ep-neg3-plain-shared": Variant((ICT, replace(SFT, epochs=3.0, negatives=3, qq=False, dd=False, shared_negatives=True)), note="as ict+sft-3ep-neg3-shared, query-query and doc-doc terms off (the preset's loss)"),
    # The loss sentence-transformers' MNRL computes, in this loop: query-document terms over every row's positive and
    # hard negatives, no margin or same-query mask. Against `st:` variants of the same name it separates the loop from the loss.
    "sft-3ep-neg3-mnrl": Variant((replace(SFT, epochs=3.0, negatives=3, qq=False, dd=False, shared_negatives=True, margin=math.inf, mask_same_query=False),), note="stage 2 only, 3 epochs, 3 hard negatives, MNRL's loss (query-document terms, shared negatives, no margin or same-query mask)"),
    "sft-3ep-neg3-mnrl-seed1": Variant((replace(SFT, epochs=3.0, negatives=3, qq=False, dd=False, shared_negatives=True, margin=math.inf, mask_same_query=False, seed=1),), note="as sft-3ep-neg3-mnrl, another data order and initial dropout seed"),
    "ict+sft-3ep-neg3-seed1": Variant((ICT, replace(SFT, epochs=3.0, negatives=3, seed=1)), note="as ict+sft-3ep-neg3, stage 2 in another data order"),
    "sft-seed1": Variant((replace(SFT, seed=1),), note="stage 2 only, another data order"),
    "ict+sft": Variant((Phase("weak-ict", epochs=1.0, lr=1e-5, negatives=0), SFT), note="weak ICT stage 1 (2000 pairs, lr 1e-5), then stage 2"),
    "title+sft": Variant((Phase("weak-title", epochs=1.0, lr=1e-5, negatives=0), SFT), note="weak title stage 1, then stage 2"),
    "mix+sft": Variant((Phase("weak-mix", epochs=1.0, lr=1e-5, negatives=0), SFT), note="weak title+ICT stage 1, then stage 2"),
}


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9])", text) if s.strip()]


def weak_rows(corpus, kind: str, count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    doc_ids = sorted(corpus)
    rng.shuffle(doc_ids)
    rows = []
    for doc_id in doc_ids:
        doc = corpus[doc_id]
        kinds = {"weak-ict": ["ict"], "weak-title": ["title"], "weak-mix": [rng.choice(["ict", "title"])]}[kind]
        for k in kinds:
            if k == "title" and doc.title:
                rows.append({"query": doc.title, "positive": doc.text, "negatives": [], "qid": doc_id})
            elif k == "ict":
                sentences = split_sentences(doc.text)
                if len(sentences) < 3:
                    continue
                i = rng.randrange(len(sentences))
                rest = sentences if rng.random() < 0.1 else sentences[:i] + sentences[i + 1 :]
                rows.append({"query": sentences[i], "positive": " ".join(rest), "negatives": [], "qid": doc_id})
        if len(rows) >= count:
            break
    return rows


def labelled_rows(corpus, queries, qrels, train_ids, cache: Path) -> list[dict]:
    """Train-split pairs with one base-model hard negative each (cached)."""
    if cache.exists():
        return [json.loads(line) for line in cache.read_text().splitlines()]
    from embedforge.models.embedder import Embedder
    from embedforge.models.registry import resolve_model

    base = Embedder.load(resolve_model("all-MiniLM-L6-v2"), device="cpu")
    base.settings = base.settings.model_copy(update={"max_length": EVAL_MAX_LENGTH})
    doc_ids = sorted(corpus)
    doc_vectors = base.encode([corpus[d].full_text for d in doc_ids], batch_size=64, show_progress=True)
    rows = []
    for qid in train_ids:
        q = base.encode([queries[qid]])[0]
        scores = doc_vectors @ q
        order = np.argsort(-scores)[:50]
        judged = set(qrels[qid])
        for pos_id in sorted(judged):
            if pos_id not in corpus:
                continue
            pos_score = float(scores[doc_ids.index(pos_id)])
            negs = [doc_ids[j] for j in order if doc_ids[j] not in judged and scores[j] < 0.95 * pos_score]
            if not negs:
                continue
            rows.append({"query": queries[qid], "positive": corpus[pos_id].full_text, "negatives": [corpus[n].full_text for n in negs[:3]], "qid": qid})
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


WEIGHT_DECAY = 0.01
MAX_GRAD_NORM = 1.0


def phase_steps(rows: list[dict], phase: Phase) -> tuple[int, int]:
    """(steps, warmup steps) of a phase: ``epochs`` passes over the rows, 10 % warmup."""
    steps = max(1, int(phase.epochs * len(rows) / phase.batch_size))
    return steps, max(1, steps // 10)


def train_phase(model, rows: list[dict], phase: Phase) -> list[dict]:
    from embedforge.losses import ImprovedInfoNCE
    from embedforge.training.batches import text_id, tokenize_pairs, trim_padding

    torch.manual_seed(phase.seed)
    rows = [row for row in rows if len(row["negatives"]) >= phase.negatives]
    loss_fn = ImprovedInfoNCE(
        temperature=phase.temperature, margin=phase.margin, use_query_query=phase.qq, use_doc_doc=phase.dd, share_hard_negatives=phase.shared_negatives
    )
    steps, warmup = phase_steps(rows, phase)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=phase.lr, weight_decay=WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup))))
    rng = random.Random(phase.seed)
    order: list[int] = []
    model.train()
    log = []
    started = time.perf_counter()
    for step in range(steps):
        if len(order) < phase.batch_size:
            epoch = list(range(len(rows)))
            rng.shuffle(epoch)
            order += epoch
        batch = [rows[i] for i in order[: phase.batch_size]]
        del order[: phase.batch_size]
        cols = tokenize_pairs(
            model.tokenizer, [r["query"] for r in batch], [None] * len(batch), [r["positive"] for r in batch],
            [r["negatives"][: phase.negatives] for r in batch], query_template=model.settings.query_template,
            default_instruction=None, query_max_length=64, max_length=phase.max_length,
        )
        t = {k: torch.as_tensor(v) for k, v in cols.items()}
        emb = lambda ids, mask: model(*trim_padding(ids, mask))
        q = emb(t["query_input_ids"], t["query_attention_mask"])
        d = emb(t["positive_input_ids"], t["positive_attention_mask"])
        negatives, negative_ids = None, None
        if phase.negatives:
            b, k, length = t["negative_input_ids"].shape
            negatives = emb(t["negative_input_ids"].view(b * k, length), t["negative_attention_mask"].view(b * k, length)).view(b, k, -1)
            negative_ids = t["negative_ids"]
        kwargs = {}
        if phase.mask_same_query:
            kwargs["query_ids"] = torch.tensor([text_id(r["qid"]) for r in batch])
        loss = loss_fn(q, d, negatives, positive_ids=t["positive_ids"], negative_ids=negative_ids, **kwargs)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        if step % 20 == 0 or step == steps - 1:
            log.append({"step": step + 1, "loss": float(loss.detach()), "seconds": round(time.perf_counter() - started, 1)})
            print(f"  {phase.data} step {step + 1}/{steps} loss {float(loss.detach()):.3f} ({time.perf_counter() - started:.0f} s)", flush=True)
    model.eval()
    return log


def evaluate(model, subset, queries, dev_qrels, sts_pairs) -> dict:
    from scipy.stats import spearmanr

    from embedforge.eval.retrieval import evaluate_retrieval

    saved = model.settings
    model.settings = saved.model_copy(update={"max_length": EVAL_MAX_LENGTH})
    ndcg = evaluate_retrieval(model, subset, queries, dev_qrels, batch_size=64)["ndcg_at_10"]
    a = model.encode([p[0] for p in sts_pairs], batch_size=64)
    b = model.encode([p[1] for p in sts_pairs], batch_size=64)
    sts = float(spearmanr((a * b).sum(-1), [p[2] for p in sts_pairs]).statistic)
    model.settings = saved
    return {"ndcg_at_10": round(float(ndcg), 4), "stsb_spearman": round(sts, 4)}


def load_sts(n: int = 500) -> list[tuple[str, str, float]]:
    from embedforge.paths import shared_data_dir

    pairs = []
    for line in (shared_data_dir() / "sts" / "stsbenchmark" / "sts-dev.csv").read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 7:
            pairs.append((parts[5], parts[6], float(parts[4])))
    return random.Random(13).sample(pairs, n)


def reranker_variant(name: str, labelled: list[dict], base_dir: Path, subset, queries, dev_qrels) -> dict:
    """``rerank:EMBEDDER:MAXLEN:EPOCHS:HEAD_LR[:residual[:LEXICAL]]``: a MiniLM cross-encoder (new head, listwise, 3 negatives) reranking the saved embedder's top 20.

    ``residual``: the head starts at zero and trains on top of a prior, the embedder's
    cosine / 0.05 plus ``LEXICAL`` (default 0) times BM25 with the training documents' IDF,
    so the reranker starts as the prior's ranking and learns only a correction.
    """
    from embedforge.eval.metrics import retrieval_scores
    from embedforge.eval.retrieval import search
    from embedforge.losses import ListwiseLoss
    from embedforge.models.embedder import Embedder
    from embedforge.models.reranker import load_reranker
    from embedforge.training.batches import tokenize_pair_groups
    from embedforge.training.steps import group_inputs

    labelled = [row for row in labelled if len(row["negatives"]) >= 3]
    embedder_name, max_length, epochs, head_lr, *mode = name.removeprefix("rerank:").split(":")
    max_length, epochs, residual = int(max_length), float(epochs), mode[:1] == ["residual"]
    lexical_weight = float(mode[1]) if len(mode) > 1 else 0.0
    from embedforge.models.lexical import LexicalScorer

    lexical = LexicalScorer.fit([d for r in labelled for d in (r["positive"], *r["negatives"][:3])])
    model = Embedder.load(base_dir, device="cpu")
    if embedder_name != "base":
        model.load_state_dict(torch.load(OUT / f"{embedder_name}.pt"))
    model.settings = model.settings.model_copy(update={"max_length": EVAL_MAX_LENGTH})
    prior = {}
    if residual:
        queries_emb = model.encode([r["query"] for r in labelled], batch_size=64)
        docs = [[r["positive"], *r["negatives"][:3]] for r in labelled]
        docs_emb = model.encode([d for group in docs for d in group], batch_size=64).reshape(len(labelled), 4, -1)
        prior = {
            i: torch.as_tensor((docs_emb[i] @ queries_emb[i]) / 0.05 + lexical_weight * lexical.score(labelled[i]["query"], docs[i]), dtype=torch.float32)
            for i in range(len(labelled))
        }
    judge = load_reranker(base_dir, device="cpu", new_head=True)
    if residual:
        torch.nn.init.zeros_(judge.model.classifier.weight)
        torch.nn.init.zeros_(judge.model.classifier.bias)
    judge.settings = judge.settings.model_copy(update={"max_length": max_length})
    loss_fn, batch_size = ListwiseLoss(1.0), 8
    steps = int(epochs * len(labelled) / batch_size)
    from embedforge.training.config import OptimSection
    from embedforge.training.strategy import make_optimizer

    optimizer = make_optimizer(judge, OptimSection(steps=steps, lr=5e-5, head_lr=float(head_lr)))
    warmup = max(1, steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup))))
    rng, order, started = random.Random(0), [], time.perf_counter()
    judge.train()
    for step in range(steps):
        if len(order) < batch_size:
            epoch = list(range(len(labelled)))
            rng.shuffle(epoch)
            order += epoch
        indices = order[:batch_size]
        batch = [labelled[i] for i in indices]
        del order[:batch_size]
        cols = tokenize_pair_groups(judge.tokenizer, [r["query"] for r in batch], [r["positive"] for r in batch], [r["negatives"][:3] for r in batch], max_length=max_length)
        t = {k: torch.as_tensor(v) for k, v in cols.items()}
        scores = judge(**group_inputs(t)).view(len(batch), -1)
        if residual:
            scores = scores + torch.stack([prior[i] for i in indices])
        loss = loss_fn(scores)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(judge.parameters(), 1.0)
        optimizer.step(); scheduler.step(); optimizer.zero_grad()
        if step % 20 == 0:
            print(f"  rerank step {step + 1}/{steps} loss {float(loss):.3f} ({time.perf_counter() - started:.0f} s)", flush=True)
    judge.eval()
    run = search(model, subset, queries, k=20, batch_size=64)
    dense = retrieval_scores(run, dev_qrels)["ndcg_at_10"]
    reranked, fused, prior_only = {}, {}, {}
    with torch.inference_mode():
        for qid, hits in run.items():
            top = sorted(hits, key=hits.get, reverse=True)[:20]
            values = judge.score(queries[qid], [subset[d].full_text for d in top], batch_size=20, logits=True)
            reranked[qid] = {d: float(v) for d, v in zip(top, values)}
            lex = lexical.score(queries[qid], [subset[d].full_text for d in top]) * lexical_weight
            prior_only[qid] = {d: hits[d] / 0.05 + float(x) for d, x in zip(top, lex)}
            fused[qid] = {d: prior_only[qid][d] + float(v) for d, v in zip(top, values)}  # both models' logits: cosine / training temperature, plus the listwise head's
    judge.save(OUT / name.replace(":", "_"))
    return {"scores": {"dense_ndcg_at_10": round(dense, 4), "reranked_ndcg_at_10": round(retrieval_scores(reranked, dev_qrels)["ndcg_at_10"], 4),
                       "prior_ndcg_at_10": round(retrieval_scores(prior_only, dev_qrels)["ndcg_at_10"], 4),
                       "fused_ndcg_at_10": round(retrieval_scores(fused, dev_qrels)["ndcg_at_10"], 4)},
            "note": f"MiniLM cross-encoder, listwise, 3 negatives, max length {max_length}, {steps} steps of 8 groups, lr 5e-5 (head {head_lr}), over {embedder_name}'s top 20"
            + (f"; a correction (head from zero) to the prior cosine / 0.05 + {lexical_weight:g} x BM25 (training documents' statistics)" if residual else ""),
            "seconds": round(time.perf_counter() - started)}


LEXICAL_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)


def prior_variant(name: str, labelled: list[dict], base_dir: Path, subset, queries, qrels, train_ids, dev_ids) -> dict:
    """``prior:EMBEDDER``: the reranker prior alone, cosine / 0.05 + w x BM25 over the saved embedder's top 20, for each w.

    BM25 counts the training documents, as the pipeline's prior does. The weight is chosen on
    the train-split queries (which the embedder was trained on) and reported on the dev split.
    """
    from embedforge.eval.metrics import retrieval_scores
    from embedforge.eval.retrieval import search
    from embedforge.models.embedder import Embedder
    from embedforge.models.lexical import LexicalScorer

    embedder_name = name.removeprefix("prior:")
    model = Embedder.load(base_dir, device="cpu")
    if embedder_name != "base":
        model.load_state_dict(torch.load(OUT / f"{embedder_name}.pt"))
    model.settings = model.settings.model_copy(update={"max_length": EVAL_MAX_LENGTH})
    lexical = LexicalScorer.fit([d for r in labelled for d in (r["positive"], *r["negatives"][:3])])
    by_split = {}
    for split, ids in (("train", train_ids), ("dev", dev_ids)):
        run = search(model, subset, {q: queries[q] for q in ids}, k=20, batch_size=64)
        bm25 = {q: dict(zip(hits, lexical.score(queries[q], [subset[d].full_text for d in hits]))) for q, hits in run.items()}
        split_qrels = {q: qrels[q] for q in ids}
        by_split[split] = {
            w: round(retrieval_scores({q: {d: hits[d] / 0.05 + w * float(bm25[q][d]) for d in hits} for q, hits in run.items()}, split_qrels)["ndcg_at_10"], 4)
            for w in LEXICAL_WEIGHTS
        }
    chosen = max(LEXICAL_WEIGHTS, key=lambda w: by_split["train"][w])
    curve = ", ".join(f"{w:g}: {by_split['train'][w]:.4f} / {by_split['dev'][w]:.4f}" for w in LEXICAL_WEIGHTS)
    return {
        "scores": {"reranked_ndcg_at_10": by_split["dev"][chosen], "dense_ndcg_at_10": by_split["dev"][0.0]},
        "note": f"the prior alone over {embedder_name}'s top 20, cosine / 0.05 + w x BM25 (training documents' statistics); nDCG@10 train / dev by w: {curve}; w = {chosen:g} is best on the train queries",
    }


def merge_variant(name: str, base_dir: Path, subset, queries, dev_qrels, sts_pairs) -> dict:
    """``merge:a,b[,c]@w1,w2[,w3]``: slerp of saved variants (``base`` is the start model), equal weights by default."""
    from embedforge.merge import merge_state_dicts
    from embedforge.models.embedder import Embedder

    spec, _, weights = name.removeprefix("merge:").partition("@")
    model = Embedder.load(base_dir, device="cpu")
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    states = [base_state if part == "base" else torch.load(OUT / f"{part}.pt") for part in spec.split(",")]
    merged = merge_state_dicts(states, [float(w) for w in weights.split(",")] if weights else None, method="slerp")
    model.load_state_dict(merged)
    return {"scores": evaluate(model, subset, queries, dev_qrels, sts_pairs), "note": f"slerp of {spec} weights {weights or 'equal'}"}


def st_variant(name: str, labelled: list[dict], base_dir: Path, subset, queries, dev_qrels, sts_pairs) -> dict:
    """``st:VARIANT``: sentence-transformers' trainer and ``MultipleNegativesRankingLoss`` on VARIANT's one labelled phase.

    The same rows (those with enough hard negatives), steps, global batch, learning rate,
    warmup, linear schedule, weight decay, gradient clipping, max length, temperature and seed
    as this script's loop; only the trainer and its data order differ.
    """
    from types import SimpleNamespace

    from embedforge.models.embedder import Embedder
    from tests.benchmarks.bench_training_quality import sentence_transformers_mnrl

    [phase] = VARIANTS[name.removeprefix("st:")].phases
    rows = [row for row in labelled if len(row["negatives"]) >= phase.negatives]
    steps, warmup = phase_steps(rows, phase)
    cfg = SimpleNamespace(
        model=SimpleNamespace(max_length=phase.max_length),
        optim=SimpleNamespace(steps=steps, batch_size=phase.batch_size, lr=phase.lr, warmup_steps=warmup, schedule="linear", weight_decay=WEIGHT_DECAY, max_grad_norm=MAX_GRAD_NORM, seed=phase.seed),
        scaling=SimpleNamespace(num_workers=1),
        loss=SimpleNamespace(temperature=phase.temperature),
        run=SimpleNamespace(log_every=10),
    )
    started = time.perf_counter()
    folder, _ = sentence_transformers_mnrl(base_dir, rows, cfg, OUT / name.replace(":", "-"), negatives=phase.negatives)
    scores = evaluate(Embedder.load(folder, device="cpu"), subset, queries, dev_qrels, sts_pairs)
    note = f"sentence-transformers trainer + MNRL on {name.removeprefix('st:')}'s rows, steps, batch, lr and seed ({steps} steps)"
    return {"scores": scores, "note": note, "seconds": round(time.perf_counter() - started)}


def write_report(results: dict) -> None:
    """The ``recipe_ablation`` section of docs/benchmarks.md: one row per variant run so far."""
    from tests.benchmarks.report import markdown_table, write_section

    base = results["base"]["scores"]
    rows = []
    for name, result in results.items():
        scores = result["scores"]
        if "ndcg_at_10" in scores:
            rows.append([f"`{name}`", result["note"], f"{scores['ndcg_at_10']:.4f}", f"{scores['ndcg_at_10'] - base['ndcg_at_10']:+.4f}", f"{scores['stsb_spearman']:.4f}"])
        elif "prior_ndcg_at_10" in scores:
            measured = f"{scores['fused_ndcg_at_10']:.4f} prior + correction; {scores['prior_ndcg_at_10']:.4f} prior alone; {scores['reranked_ndcg_at_10']:.4f} correction alone ({scores['dense_ndcg_at_10']:.4f} dense)"
            rows.append([f"`{name}`", result["note"], measured, f"{scores['fused_ndcg_at_10'] - scores['dense_ndcg_at_10']:+.4f} vs dense", "-"])
        else:
            rows.append([f"`{name}`", result["note"], f"{scores['reranked_ndcg_at_10']:.4f} reranked ({scores['dense_ndcg_at_10']:.4f} dense)", f"{scores['reranked_ndcg_at_10'] - scores['dense_ndcg_at_10']:+.4f} vs dense", "-"])
    body = f"""
Variants of the CPU recipe, each trained in one process with embedforge's own parts (no Ray,
so one costs minutes) from all-MiniLM-L6-v2: global batch 16, temperature 0.05, margin 0.1,
max length 96, linear schedule with 10% warmup. Stage 2 data: {sum(1 for _ in (OUT / "labelled.jsonl").open())}
SciFact train-split pairs with base-model hard negatives over the whole corpus. Weak stage 1:
2,000 inverse-cloze pairs from the SciFact corpus (no labels), lr 1e-5, in-batch negatives.
Scored on the SciFact dev split (155 queries) over the benchmark's 1,565-document subset at
max length 128, and on 500 STSb-dev pairs (Spearman). Merges are slerp of the named variants'
final weights. The preset `jobs/configs/minilm-scifact.yaml` follows what this table supports.

{markdown_table(["variant", "what", "nDCG@10 (dev)", "vs base", "STSb (500 pairs)"], rows)}
"""
    write_section("recipe_ablation", "Recipe ablation on CPU (MiniLM, SciFact dev split)", "python tests/benchmarks/ablation_minilm.py VARIANT ...; --report", body)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("variants", nargs="*")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--report", action="store_true", help="write the results so far into docs/benchmarks.md")
    args = parser.parse_args()
    if args.report:
        write_report(json.loads((OUT / "results.json").read_text()))
        return
    if args.list:
        for name, variant in VARIANTS.items():
            print(f"{name}: {variant.note}")
        return
    torch.set_num_threads(int(os.environ.get("ABLATION_THREADS", "2")))
    from embedforge.models.embedder import Embedder
    from embedforge.models.registry import resolve_model
    from tests.benchmarks.bench_training_quality import scifact_benchmark_split

    corpus, queries, qrels, train_ids, dev_ids, subset = scifact_benchmark_split()
    dev_qrels = {q: qrels[q] for q in dev_ids}
    sts_pairs = load_sts()
    labelled = labelled_rows(corpus, queries, qrels, train_ids, OUT / "labelled.jsonl")
    results_file = OUT / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}

    def record(name: str, result: dict) -> None:
        """Add one result, re-reading the file so concurrent runs do not drop each other's."""
        current = json.loads(results_file.read_text()) if results_file.exists() else {}
        current[name] = results[name] = result
        results_file.write_text(json.dumps(current, indent=1))

    base_dir = resolve_model("all-MiniLM-L6-v2")
    if "base" not in results:
        record("base", {"scores": evaluate(Embedder.load(base_dir, device="cpu"), subset, queries, dev_qrels, sts_pairs), "note": "all-MiniLM-L6-v2"})
    print("base", results["base"]["scores"], f"{len(labelled)} labelled rows", flush=True)
    for name in args.variants:
        if name.startswith(("merge:", "rerank:", "prior:", "st:")):
            if name.startswith("merge:"):
                record(name, merge_variant(name, base_dir, subset, queries, dev_qrels, sts_pairs))
            elif name.startswith("st:"):
                record(name, st_variant(name, labelled, base_dir, subset, queries, dev_qrels, sts_pairs))
            elif name.startswith("prior:"):
                record(name, prior_variant(name, labelled, base_dir, subset, queries, qrels, train_ids, dev_ids))
            else:
                record(name, reranker_variant(name, labelled, base_dir, subset, queries, dev_qrels))
            print(name, results[name]["scores"], flush=True)
            continue
        variant = VARIANTS[name]
        started = time.perf_counter()
        model = Embedder.load(base_dir, device="cpu")
        logs = []
        for phase in variant.phases:
            rows = labelled if phase.data == "labelled" else weak_rows(corpus, phase.data, phase.weak_pairs, phase.seed)
            logs.append(train_phase(model, rows, phase))
        torch.save(model.state_dict(), OUT / f"{name}.pt")
        scores = evaluate(model, subset, queries, dev_qrels, sts_pairs)
        record(name, {"scores": scores, "note": variant.note, "seconds": round(time.perf_counter() - started), "log": [log[-1] for log in logs]})
        print(name, scores, flush=True)


if __name__ == "__main__":
    main()
