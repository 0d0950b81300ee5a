"""ImprovedInfoNCE gathered across two gloo ranks equals one process on the whole batch."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from embedforge.losses import ImprovedInfoNCE

WORLD_SIZE = 2
N_PER_RANK, K, DIM = 3, 2, 8
LOSS_KWARGS = dict(temperature=0.1, margin=0.1)
SHARED_KWARGS = dict(LOSS_KWARGS, share_hard_negatives=True)


def full_batch() -> dict[str, torch.Tensor]:
    """The global batch every rank rebuilds from the same seed, in float64."""
    gen = torch.Generator().manual_seed(1234)
    n = WORLD_SIZE * N_PER_RANK
    query = torch.randn(n, DIM, generator=gen, dtype=torch.float64)
    noise = torch.randn(n, 1 + K, DIM, generator=gen, dtype=torch.float64)
    return {
        "query": query,
        "positive": query + 1.5 * noise[:, 0],
        "negatives": query[:, None] + 1.5 * noise[:, 1:],
        # Rows 1 (rank 0) and 4 (rank 1) share a positive text: the mask must see across ranks.
        "positive_ids": torch.tensor([0, 1, 2, 3, 1, 5]),
        "negative_ids": torch.tensor([[10, 11], [12, 13], [2, 14], [15, 16], [17, 18], [19, 20]]),
        # Rows 0 (rank 0) and 5 (rank 1) are two judged positives of one query.
        "query_ids": torch.tensor([30, 31, 32, 33, 34, 30]),
    }


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE,
        timeout=timedelta(seconds=60),
    )
    try:
        rows = slice(rank * N_PER_RANK, (rank + 1) * N_PER_RANK)
        result = {}
        for name, kwargs in (("own", LOSS_KWARGS), ("shared", SHARED_KWARGS)):
            local = {key: value[rows].clone() for key, value in full_batch().items()}
            leaves = [local[key].requires_grad_() for key in ("query", "positive", "negatives")]
            loss = ImprovedInfoNCE(gather_across_ranks=True, **kwargs)(**local)
            loss.backward()
            result[name] = {"loss": loss.detach(), "grads": [t.grad for t in leaves]}

        uneven = N_PER_RANK - rank  # rank 0 holds 3 rows, rank 1 holds 2
        try:
            ImprovedInfoNCE(gather_across_ranks=True)(
                torch.randn(uneven, DIM), torch.randn(uneven, DIM)
            )
            result["uneven_error"] = ""
        except ValueError as error:
            result["uneven_error"] = str(error)
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_gathered_loss_and_gradients_match_single_process(tmp_path):
    """Both with hard negatives kept to their own row and shared across the (gathered) batch."""
    mp.spawn(
        _worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD_SIZE, join=True
    )
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD_SIZE)]

    losses = {}
    for name, kwargs in (("own", LOSS_KWARGS), ("shared", SHARED_KWARGS)):
        batch = full_batch()
        leaves = [batch[key].requires_grad_() for key in ("query", "positive", "negatives")]
        expected = ImprovedInfoNCE(**kwargs)(**batch)
        expected.backward()
        losses[name] = expected.item()

        # Each rank returns the mean over its own rows; the mean of those is the global mean.
        mean_loss = torch.stack([r[name]["loss"] for r in results]).mean()
        torch.testing.assert_close(mean_loss, expected.detach(), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(results[0][name]["loss"], results[1][name]["loss"])
        # all_gather's backward sums every rank's gradient for a row into its owner, so the
        # local gradient is world_size times d(global mean)/d(row); DDP divides by world_size.
        for index, leaf in enumerate(leaves):
            gathered = torch.cat([r[name]["grads"][index] for r in results]) / WORLD_SIZE
            torch.testing.assert_close(gathered, leaf.grad, rtol=1e-5, atol=1e-5)
    assert losses["shared"] > losses["own"] + 1e-3

    for r in results:
        assert "same shape on every rank" in r["uneven_error"]


def test_gather_flag_is_a_no_op_without_a_process_group():
    batch = full_batch()
    plain = ImprovedInfoNCE(**LOSS_KWARGS)(**batch)
    gathered = ImprovedInfoNCE(gather_across_ranks=True, **LOSS_KWARGS)(**batch)
    torch.testing.assert_close(gathered, plain, rtol=0, atol=0)
