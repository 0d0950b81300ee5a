"""Held-out gates: does each model the platform produced beat the one it started from?

The platform's rule is that a model it produces must beat its starting point on held-out
data. A run's evaluation already scores every model on the same held-out tasks; a gate
compares two of those runs task by task:

- the final embedder against the base model it was trained from;
- the reranked run (``<label>+reranker``) against the dense run whose top hits it reorders.

A gate passes when the produced model is at most ``max_drop`` below its reference on every
task they share (``max_drop`` absorbs evaluation noise such as STS Spearman moving in the
fourth decimal). The pipeline reports every gate and does not serve a reranker whose gate
failed.

A gain is called "better" only when the held-out data can tell it from noise. Where both
runs kept per-item scores on the same items, the gate carries a 95 % paired bootstrap interval
of the difference (``embedforge.eval.significance``) and says "better" only when the interval
lies above 0; a rise whose interval holds 0 is "level":

- retrieval tasks: each query's nDCG@10 (``query_scores.json``), the interval of the mean;
- STS tasks: each pair's gold and predicted similarity (``pair_scores.json``), the interval of
  the Spearman difference.

Classification tasks keep the mean rule: "better" when the rise exceeds ``max_drop``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Mapping

from embedforge.eval.report import Runs
from embedforge.eval.significance import paired_bootstrap, paired_bootstrap_spearman

RERANKED_SUFFIX = "+reranker"

QueryScores = Mapping[str, Mapping[str, Mapping[str, float]]]
"""``{run: {task: {query: score}}}``: each run's ``query_scores.json``, by run label."""

PairScores = Mapping[str, Mapping[str, Mapping[str, Mapping[str, list[float]]]]]
"""``{run: {task: {"split/subset": {"gold": [...], "predicted": [...]}}}}``: each run's ``pair_scores.json``."""


@dataclass(frozen=True)
class Gate:
    """One comparison on one task: ``model`` against the ``reference`` it started from."""

    model: str
    reference: str
    task: str
    score: float
    reference_score: float
    max_drop: float
    low: float | None = None
    """The 95 % paired bootstrap interval of the difference, where both runs kept per-item scores on the same items."""
    high: float | None = None

    @property
    def delta(self) -> float:
        return self.score - self.reference_score

    @property
    def passed(self) -> bool:
        return self.delta >= -self.max_drop

    @property
    def verdict(self) -> str:
        if self.delta > self.max_drop and (self.low is None or self.low > 0):
            return "better"
        return "level" if self.passed else "worse"

    @property
    def interval(self) -> str:
        return "-" if self.low is None else f"[{self.low:+.4f}, {self.high:+.4f}]"

    def line(self) -> str:
        spread = "" if self.low is None else f", 95 % interval {self.interval}"
        return f"{self.model} vs {self.reference} on {self.task}: {self.score:.4f} vs {self.reference_score:.4f} ({self.delta:+.4f}{spread}, {self.verdict})"

    def to_dict(self) -> dict:
        return {**asdict(self), "delta": self.delta, "passed": self.passed, "verdict": self.verdict}


def compare(runs: Runs, model: str, reference: str, max_drop: float, query_scores: QueryScores, pair_scores: PairScores) -> list[Gate]:
    """A gate per task on which both runs have a main score; with an interval where both kept the same items' scores."""
    gates = []
    for task, metrics in runs.get(model, {}).items():
        score, reference_score = metrics.get("main_score"), runs.get(reference, {}).get(task, {}).get("main_score")
        if score is None or reference_score is None:
            continue
        low, high = interval(task, model, reference, query_scores, pair_scores)
        gates.append(Gate(model, reference, task, score, reference_score, max_drop, low, high))
    return gates


def interval(task: str, model: str, reference: str, query_scores: QueryScores, pair_scores: PairScores) -> tuple[float | None, float | None]:
    """The bootstrap interval of ``model`` minus ``reference`` on ``task``, or ``(None, None)`` without the same items on both sides."""
    ours, theirs = query_scores.get(model, {}).get(task), query_scores.get(reference, {}).get(task)
    if ours and theirs and set(ours) == set(theirs):
        difference = paired_bootstrap(ours, theirs)
        return difference.low, difference.high
    ours, theirs = pair_scores.get(model, {}).get(task), pair_scores.get(reference, {}).get(task)
    same_pairs = ours and theirs and set(ours) == set(theirs) and all(ours[key]["gold"] == theirs[key]["gold"] for key in ours)
    if same_pairs:
        gold = {key: pairs["gold"] for key, pairs in ours.items()}
        predicted = [{key: pairs["predicted"] for key, pairs in side.items()} for side in (ours, theirs)]
        difference = paired_bootstrap_spearman(gold, *predicted)
        return difference.low, difference.high
    return None, None


def run_gates(
    runs: Runs, *, final: str, base: str = "base", max_drop: float = 0.005, query_scores: QueryScores | None = None, pair_scores: PairScores | None = None
) -> list[Gate]:
    """The gates of one evaluated run: ``final`` against ``base``, and every reranked run against its dense run."""
    query_scores, pair_scores = query_scores or {}, pair_scores or {}
    gates = compare(runs, final, base, max_drop, query_scores, pair_scores)
    for label in runs:
        if label.endswith(RERANKED_SUFFIX):
            gates += compare(runs, label, label.removesuffix(RERANKED_SUFFIX), max_drop, query_scores, pair_scores)
    return gates


def failed(gates: list[Gate], model: str | None = None) -> list[Gate]:
    """The gates that failed, of ``model`` only when given."""
    return [gate for gate in gates if not gate.passed and (model is None or gate.model == model)]


def gate_table(gates: list[Gate]) -> str:
    """Markdown table of the gates, one row per (model, task)."""
    lines = ["| model | started from | task | score | reference | delta | 95 % interval | verdict |", "|---|---|---|---|---|---|---|---|"]
    for gate in gates:
        lines.append(
            f"| {gate.model} | {gate.reference} | {gate.task} | {gate.score:.4f} | {gate.reference_score:.4f} | {gate.delta:+.4f} | {gate.interval} | {gate.verdict} |"
        )
    return "\n".join(lines)


def gates_from_dicts(records: list[Mapping]) -> list[Gate]:
    """Gates back from their :meth:`Gate.to_dict` form (a stage summary; one written before intervals existed has none)."""
    names = [field.name for field in fields(Gate)]
    return [Gate(**{name: record[name] for name in names if name in record}) for record in records]
