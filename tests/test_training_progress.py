"""Training progress: one plain line per logging window when the output is not a terminal."""

from __future__ import annotations

from embedforge.training.progress import Progress, duration, progress_line


def test_duration_reads_like_a_clock():
    assert [duration(s) for s in (12.4, 65, 3725)] == ["12s", "1m05s", "1h02m"]


def test_a_progress_line_names_the_stage_step_loss_rate_and_time_left():
    line = progress_line("stage2", 20, 130, {"loss": 1.08692, "samples_per_s": 4.43}, elapsed=100.0, steps_done=20)
    assert line == "[train stage2] step 20/130 (15%) loss 1.0869, 4.4 samples/s, 1m40s elapsed, 9m10s left"


def test_without_a_terminal_rank_zero_prints_one_line_per_log_and_nothing_per_step(capsys):
    progress = Progress("stage1", steps=6, start_step=2, bar=False)
    for step in range(3, 7):
        progress.step()
        if step % 2 == 0:
            progress.logged(step, {"loss": 0.5, "samples_per_s": 2.0})
    progress.close()
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" (")[0] for line in lines] == ["[train stage1] step 4/6", "[train stage1] step 6/6"]
