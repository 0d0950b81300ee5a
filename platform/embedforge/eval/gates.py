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
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Mapping

from embedforge.eval.report import Runs

RERANKED_SUFFIX = "+reranker"


@dataclass(frozen=True)
class Gate:
    """One comparison on one task: ``model`` against the ``reference`` it started from."""

    model: str
    reference: str
    task: str
    score: float
    reference_score: float
    max_drop: float

    @property
    def delta(self) -> float:
        return self.score - self.reference_score

    @property
    def passed(self) -> bool:
        return self.delta >= -self.max_drop

    @property
    def verdict(self) -> str:
        if self.delta > self.max_drop:
            return "better"
        return "level" if self.passed else "worse"

    def line(self) -> str:
        return f"{self.model} vs {self.reference} on {self.task}: {self.score:.4f} vs {self.reference_score:.4f} ({self.delta:+.4f}, {self.verdict})"

    def to_dict(self) -> dict:
        return {**asdict(self), "delta": self.delta, "passed": self.passed, "verdict": self.verdict}


def compare(runs: Runs, model: str, reference: str, max_drop: float) -> list[Gate]:
    """A gate per task on which both runs have a main score."""
    gates = []
    for task, metrics in runs.get(model, {}).items():
        score, reference_score = metrics.get("main_score"), runs.get(reference, {}).get(task, {}).get("main_score")
        if score is not None and reference_score is not None:
            gates.append(Gate(model, reference, task, score, reference_score, max_drop))
    return gates


def run_gates(runs: Runs, *, final: str, base: str = "base", max_drop: float = 0.005) -> list[Gate]:
    """The gates of one evaluated run: ``final`` against ``base``, and every reranked run against its dense run."""
    gates = compare(runs, final, base, max_drop)
    for label in runs:
        if label.endswith(RERANKED_SUFFIX):
            gates += compare(runs, label, label.removesuffix(RERANKED_SUFFIX), max_drop)
    return gates


def failed(gates: list[Gate], model: str | None = None) -> list[Gate]:
    """The gates that failed, of ``model`` only when given."""
    return [gate for gate in gates if not gate.passed and (model is None or gate.model == model)]


def gate_table(gates: list[Gate]) -> str:
    """Markdown table of the gates, one row per (model, task)."""
    lines = ["| model | started from | task | score | reference | delta | verdict |", "|---|---|---|---|---|---|---|"]
    for gate in gates:
        lines.append(
            f"| {gate.model} | {gate.reference} | {gate.task} | {gate.score:.4f} | {gate.reference_score:.4f} | {gate.delta:+.4f} | {gate.verdict} |"
        )
    return "\n".join(lines)


def gates_from_dicts(records: list[Mapping]) -> list[Gate]:
    """Gates back from their :meth:`Gate.to_dict` form (a stage summary)."""
    names = [field.name for field in fields(Gate)]
    return [Gate(**{name: record[name] for name in names}) for record in records]
