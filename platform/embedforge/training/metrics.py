"""Training metrics: throughput over a logging window, the metrics log, and the loss curve."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from embedforge.json_files import read_jsonl

METRICS_FILE = "metrics.jsonl"
LOSS_CURVE_FILE = "loss_curve.png"


class ThroughputWindow:
    """Loss, samples and tokens since the last log, summed over ranks when logged."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.start = time.perf_counter()
        self.loss_sum = 0.0
        self.steps = 0
        self.samples = 0
        self.tokens = 0

    def add(self, loss: float, samples: int, tokens: int) -> None:
        self.loss_sum += loss
        self.steps += 1
        self.samples += samples
        self.tokens += tokens

    def summary(self) -> dict[str, float]:
        """Mean loss over steps and ranks, and global samples/s and tokens/s; a collective."""
        import torch.distributed as dist

        totals = torch.tensor([self.loss_sum, float(self.samples), float(self.tokens)], dtype=torch.float64)
        world = 1
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(totals)
            world = dist.get_world_size()
        seconds = max(time.perf_counter() - self.start, 1e-9)
        loss_sum, samples, tokens = totals.tolist()
        return {
            "loss": loss_sum / max(self.steps * world, 1),
            "samples_per_s": samples / seconds,
            "tokens_per_s": tokens / seconds,
        }


def append_metrics(run_dir: Path, record: dict) -> None:
    with (run_dir / METRICS_FILE).open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def read_metrics(run_dir: Path) -> list[dict]:
    """Logged records by step; after a restart the latest record of a repeated step wins."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return []
    by_step = {int(record["step"]): record for _, record in read_jsonl(path)}
    return [by_step[step] for step in sorted(by_step)]


def plot_loss_curve(records: list[dict], path: Path, title: str) -> Path | None:
    """Loss against step as a PNG; ``None`` when nothing was logged."""
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot([r["step"] for r in records], [r["loss"] for r in records], marker="o", markersize=3)
    axis.set_xlabel("step")
    axis.set_ylabel("training loss")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
