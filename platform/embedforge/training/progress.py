"""Training progress, shown by rank 0 only: a live bar in a terminal, one line per logging window in a log.

Ray renders a worker's ``tqdm_ray`` bar in the driver, redrawing it around every other log
line. In a terminal that is one bar that updates in place; in a log file (``ray job
submit``, ``embedforge run > run.log``) every redraw is a new line, hundreds per stage. So
the driver says whether its output is a terminal, and without one rank 0 prints a plain line
each time it logs metrics instead.
"""

from __future__ import annotations

import sys
import time
from typing import Any


def duration(seconds: float) -> str:
    """``1h02m``, ``4m05s`` or ``12s``."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def progress_line(name: str, step: int, steps: int, metrics: dict[str, Any], elapsed: float, steps_done: int) -> str:
    """One progress line: step, share done, loss, throughput, time so far and time left."""
    per_step = elapsed / max(steps_done, 1)
    return (
        f"[train {name}] step {step}/{steps} ({100 * step // steps}%) loss {metrics['loss']:.4f}, "
        f"{metrics['samples_per_s']:.1f} samples/s, {duration(elapsed)} elapsed, {duration(per_step * (steps - step))} left"
    )


class Progress:
    """Rank 0's progress over ``steps`` optimizer steps, resuming at ``start_step``."""

    def __init__(self, name: str, steps: int, start_step: int, bar: bool):
        self.name, self.steps, self.start_step = name, steps, start_step
        self.started = time.perf_counter()
        self.bar = None
        if bar:
            from ray.experimental.tqdm_ray import tqdm

            self.bar = tqdm(total=steps, desc=f"train {name}")
            self.bar.update(start_step)

    def step(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def logged(self, step: int, metrics: dict[str, Any]) -> None:
        """Print a line for the metrics just logged (without a bar)."""
        if self.bar is None:
            line = progress_line(self.name, step, self.steps, metrics, time.perf_counter() - self.started, step - self.start_step)
            sys.stdout.write(line + "\n")  # not print(): Ray Train's patched print would also log it, a second copy
            sys.stdout.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
