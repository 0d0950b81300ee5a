"""Losses against slow references written straight from the recipe's formula."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from embedforge.losses import (
    ImprovedInfoNCE,
    ListwiseLoss,
    MatryoshkaLoss,
    PointwiseYesNoLoss,
    yes_no_logit,
)

FLAGS = ("use_hard_negatives", "use_query_query", "use_doc_doc", "use_query_doc")


def reference_infonce(
    query,
    positive,
    negatives=None,
    *,
    tau=0.05,
    margin=0.1,
    use_hard_negatives=True,
    use_query_query=True,
    use_doc_doc=True,
    use_query_doc=True,
    positive_ids=None,
    negative_ids=None,
    query_ids=None,
    exclude=frozenset(),
):
    """RECIPE.md's L and Z_i with explicit loops over i, j, k.

    ``exclude`` holds (term, i, j) triples to leave out on top of the mask, with term one
    of "hn", "qq", "dd", "qd", so a test can spell out by hand which entries should go.
    """
    q = [v / v.norm() for v in query]
    d = [v / v.norm() for v in positive]
    n = None if negatives is None else [[v / v.norm() for v in row] for row in negatives]
    total = 0.0
    for i in range(len(q)):
        s_pos = q[i] @ d[i]

        def keep(term, j, s, same_text=False):
            return (term, i, j) not in exclude and not same_text and s <= s_pos + margin

        z = torch.exp(s_pos / tau)
        if n is not None and use_hard_negatives:
            for k in range(len(n[i])):
                s = q[i] @ n[i][k]
                same = negative_ids is not None and negative_ids[i][k] == positive_ids[i]
                if keep("hn", k, s, same):
                    z = z + torch.exp(s / tau)
        for j in range(len(q)):
            if j == i or (query_ids is not None and query_ids[j] == query_ids[i]):
                continue
            same = positive_ids is not None and positive_ids[j] == positive_ids[i]
            if use_query_query and keep("qq", j, q[i] @ q[j]):
                z = z + torch.exp(q[i] @ q[j] / tau)
            if use_doc_doc and keep("dd", j, d[i] @ d[j], same):
                z = z + torch.exp(d[i] @ d[j] / tau)
            if use_query_doc and keep("qd", j, q[i] @ d[j], same):
                z = z + torch.exp(q[i] @ d[j] / tau)
        total = total - torch.log(torch.exp(s_pos / tau) / z)
    return total / len(q)


def make_batch(n=6, k=3, dim=16, seed=57, dtype=torch.float64):
    """Random unnormalised embeddings in two loose clusters, positives near their queries.

    With the default seed, every term of Z_i has entries over the margin (see
    ``test_random_batch_exercises_the_margin_mask``), so the reference tests cover the mask.
    """
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(2, dim, generator=gen, dtype=dtype)
    query = centres[torch.arange(n) % 2] + torch.randn(n, dim, generator=gen, dtype=dtype)
    positive = query + 2.0 * torch.randn(n, dim, generator=gen, dtype=dtype)
    negatives = query[:, None, :] + 1.5 * torch.randn(n, k, dim, generator=gen, dtype=dtype)
    return [t.requires_grad_() for t in (query, positive, negatives)]


def grads(loss, tensors):
    return torch.autograd.grad(loss, tensors, allow_unused=True)


FLAG_COMBOS = [
    (True, True, True, True),
    (True, False, False, True),
    (False, False, False, True),
    (True, True, False, False),
    (False, True, True, False),
    (True, False, True, True),
]


@pytest.mark.parametrize("flags", FLAG_COMBOS)
@pytest.mark.parametrize("with_negatives", [True, False])
@pytest.mark.parametrize("tau", [0.05, 0.5])
@pytest.mark.parametrize("seed", [57, 107])
def test_infonce_matches_loop_reference(flags, with_negatives, tau, seed):
    kwargs = dict(zip(FLAGS, flags))
    query, positive, negatives = make_batch(seed=seed)
    negatives = negatives if with_negatives else None
    loss = ImprovedInfoNCE(temperature=tau, **kwargs)(query, positive, negatives)
    expected = reference_infonce(query, positive, negatives, tau=tau, **kwargs)
    torch.testing.assert_close(loss, expected, rtol=1e-9, atol=1e-10)

    inputs = [t for t in (query, positive, negatives) if t is not None]
    for got, want in zip(grads(loss, inputs), grads(expected, inputs)):
        if want is None:
            assert got is None or torch.count_nonzero(got) == 0
        else:
            torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("term", FLAGS)
def test_random_batch_exercises_the_margin_mask(term):
    """Guards the reference test above: each term alone must lose entries to the mask."""
    query, positive, negatives = make_batch()
    only = {flag: flag == term for flag in FLAGS}
    masked = ImprovedInfoNCE(**only)(query, positive, negatives)
    unmasked = ImprovedInfoNCE(margin=math.inf, **only)(query, positive, negatives)
    assert masked.item() < unmasked.item() - 1e-3


def test_margin_mask_drops_exactly_the_constructed_entries():
    e1, e2, e3 = torch.eye(3, dtype=torch.float64)
    query = torch.stack([e1, e2, e3])
    # s(q_i, d_i+) = 0.707, 1.0, 0.447
    positive = torch.stack([e1 + e2, e2, e3 + 2 * e1])
    negatives = torch.stack([e1, e1, e3])[:, None, :]  # (3, 1, 3)
    # Over the margin: s(q_0, d_2+) = 0.894 > 0.807; s(d_2+, d_0+) = 0.632 > 0.547;
    # s(q_0, d_00-) = 1 > 0.807; s(q_2, d_20-) = 1 > 0.547. Nothing in row 1 can be.
    dropped = {("qd", 0, 2), ("dd", 2, 0), ("hn", 0, 0), ("hn", 2, 0)}

    loss = ImprovedInfoNCE(temperature=0.1)(query, positive, negatives)
    expected = reference_infonce(
        query, positive, negatives, tau=0.1, margin=math.inf, exclude=dropped
    )
    unmasked = reference_infonce(query, positive, negatives, tau=0.1, margin=math.inf)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    assert abs(loss.item() - unmasked.item()) > 0.1
    for entry in dropped:
        one_short = dropped - {entry}
        partial = reference_infonce(
            query, positive, negatives, tau=0.1, margin=math.inf, exclude=one_short
        )
        assert abs(loss.item() - partial.item()) > 1e-3, entry


def test_identical_text_ids_mask_documents():
    query, positive, negatives = make_batch(n=4, k=2, seed=3)
    positive_ids = torch.tensor([10, 11, 10, 12])
    negative_ids = torch.tensor([[20, 21], [11, 22], [23, 24], [25, 26]])
    # Rows 0 and 2 share a positive text; query 1's first hard negative is its positive.
    dropped = {("dd", 0, 2), ("qd", 0, 2), ("dd", 2, 0), ("qd", 2, 0), ("hn", 1, 0)}

    loss_fn = ImprovedInfoNCE(margin=math.inf)
    loss = loss_fn(query, positive, negatives, positive_ids, negative_ids)
    expected = reference_infonce(query, positive, negatives, margin=math.inf, exclude=dropped)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    without_ids = loss_fn(query, positive, negatives)
    assert abs(loss.item() - without_ids.item()) > 1e-3

    with_margin = ImprovedInfoNCE()(query, positive, negatives, positive_ids, negative_ids)
    expected = reference_infonce(
        query, positive, negatives, positive_ids=positive_ids.tolist(),
        negative_ids=negative_ids.tolist(),
    )
    torch.testing.assert_close(with_margin, expected, rtol=1e-12, atol=1e-12)


def test_rows_of_one_query_are_not_each_others_negatives():
    query, positive, negatives = make_batch(n=5, k=2, seed=11)
    query = torch.cat([query[:3], query[1:2], query[4:]]).detach().requires_grad_()  # rows 1 and 3: one claim, two judged abstracts
    query_ids = torch.tensor([7, 8, 9, 8, 10])
    dropped = {(term, i, j) for term in ("qq", "dd", "qd") for i, j in ((1, 3), (3, 1))}

    loss = ImprovedInfoNCE(margin=math.inf)(query, positive, negatives, query_ids=query_ids)
    expected = reference_infonce(query, positive, negatives, margin=math.inf, exclude=dropped)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    assert abs(loss.item() - ImprovedInfoNCE(margin=math.inf)(query, positive, negatives).item()) > 1e-3

    with_margin = ImprovedInfoNCE()(query, positive, negatives, query_ids=query_ids)
    torch.testing.assert_close(with_margin, reference_infonce(query, positive, negatives, query_ids=query_ids.tolist()), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="query_ids must be"):
        ImprovedInfoNCE()(query, positive, query_ids=query_ids[:3])


def test_shared_hard_negatives_make_the_loss_mnrl_when_the_other_terms_are_off():
    """With only query-document terms and no mask, each query meets all N positives and N * K negatives."""
    query, positive, negatives = make_batch(n=4, k=2, seed=5)
    tau = 0.05
    loss = ImprovedInfoNCE(
        temperature=tau, margin=math.inf, use_query_query=False, use_doc_doc=False, share_hard_negatives=True
    )(query, positive, negatives)
    q = F.normalize(query, dim=-1)
    candidates = F.normalize(torch.cat([positive, negatives.reshape(-1, positive.shape[1])]), dim=-1)
    expected = F.cross_entropy(q @ candidates.T / tau, torch.arange(4))
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    own_only = ImprovedInfoNCE(temperature=tau, margin=math.inf, use_query_query=False, use_doc_doc=False)
    assert loss.item() > own_only(query, positive, negatives).item() + 1e-3


def test_shared_hard_negatives_follow_the_masks():
    """A shared negative that is row i's positive text, or belongs to a row of the same query, is dropped."""
    query, positive, negatives = make_batch(n=3, k=2, seed=6)
    positive_ids = torch.tensor([10, 11, 12])
    negative_ids = torch.tensor([[20, 11], [21, 22], [23, 24]])  # row 0's second negative is row 1's positive
    query_ids = torch.tensor([1, 2, 1])  # rows 0 and 2: one query
    tau = 0.1
    loss = ImprovedInfoNCE(
        temperature=tau, margin=math.inf, use_query_query=False, use_doc_doc=False, share_hard_negatives=True
    )(query, positive, negatives, positive_ids, negative_ids, query_ids)
    q, d, n = (F.normalize(t, dim=-1) for t in (query, positive, negatives))
    expected = []
    for i in range(3):
        terms = [q[i] @ d[i]] + [q[i] @ n[i, k] for k in range(2) if negative_ids[i, k] != positive_ids[i]]
        for j in range(3):
            if j == i or query_ids[j] == query_ids[i]:
                continue
            terms.append(q[i] @ d[j])
            terms += [q[i] @ n[j, k] for k in range(2) if negative_ids[j, k] != positive_ids[i]]
        scaled = torch.stack(terms) / tau
        expected.append(torch.logsumexp(scaled, 0) - scaled[0])
    torch.testing.assert_close(loss, torch.stack(expected).mean(), rtol=1e-12, atol=1e-12)


def test_infonce_gradients_flow_and_input_scale_does_not_matter():
    query, positive, negatives = make_batch(dtype=torch.float32)
    loss = ImprovedInfoNCE()(query, positive, negatives)
    loss.backward()
    for t in (query, positive, negatives):
        assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    rescaled = ImprovedInfoNCE()(query * 7.0, positive * 0.1, negatives * 3.0)
    torch.testing.assert_close(rescaled, loss)


def test_infonce_bf16_inputs_give_a_float32_loss():
    query, positive, negatives = make_batch(dtype=torch.float32)
    loss = ImprovedInfoNCE()(query.bfloat16(), positive.bfloat16(), negatives.bfloat16())
    assert loss.dtype == torch.float32
    expected = ImprovedInfoNCE()(
        query.bfloat16().float(), positive.bfloat16().float(), negatives.bfloat16().float()
    )
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"temperature": 0.0},
        {"temperature": -0.05},
        {"temperature": math.nan},
        {"temperature": math.inf},
        {"margin": -0.1},
        {"margin": math.nan},
    ],
)
def test_infonce_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        ImprovedInfoNCE(**kwargs)


def test_infonce_rejects_bad_shapes():
    loss_fn = ImprovedInfoNCE()
    q, d = torch.randn(4, 8), torch.randn(4, 8)
    with pytest.raises(ValueError, match="query and positive"):
        loss_fn(q, torch.randn(3, 8))
    with pytest.raises(ValueError, match="negatives"):
        loss_fn(q, d, torch.randn(4, 8))
    with pytest.raises(ValueError, match="negatives"):
        loss_fn(q, d, torch.randn(4, 2, 7))
    with pytest.raises(ValueError, match="positive_ids"):
        loss_fn(q, d, positive_ids=torch.arange(3))
    with pytest.raises(ValueError, match="negative_ids"):
        loss_fn(q, d, negative_ids=torch.zeros(4, 2, dtype=torch.long))


def test_matryoshka_is_weighted_sum_of_truncated_base_losses():
    query, positive, negatives = make_batch(dim=32, seed=11)
    ids = torch.tensor([1, 2, 3, 1, 4, 5])
    base = ImprovedInfoNCE(temperature=0.1)
    loss_fn = MatryoshkaLoss(base, dimensions=[32, 16, 8], weights=[1.0, 0.5, 0.25])
    loss = loss_fn(query, positive, negatives, positive_ids=ids)
    expected = sum(
        w * base(query[:, :d], positive[:, :d], negatives[..., :d], positive_ids=ids)
        for d, w in [(32, 1.0), (16, 0.5), (8, 0.25)]
    )
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    untruncated = base(query, positive, negatives, positive_ids=ids)
    assert abs(loss.item() - 1.75 * untruncated.item()) > 1e-3

    (grad_q,) = torch.autograd.grad(loss, query)
    assert torch.count_nonzero(grad_q[:, 16:]) > 0 and torch.count_nonzero(grad_q[:, :8]) > 0

    no_negatives = MatryoshkaLoss(base, dimensions=[4])(query, positive)
    torch.testing.assert_close(no_negatives, base(query[:, :4], positive[:, :4]))


def test_matryoshka_defaults_to_unit_weights_and_checks_arguments():
    query, positive, _ = make_batch(dim=8, seed=2)
    base = ImprovedInfoNCE()
    loss = MatryoshkaLoss(base, dimensions=[8, 4])(query, positive)
    torch.testing.assert_close(loss, base(query, positive) + base(query[:, :4], positive[:, :4]))
    with pytest.raises(ValueError, match="exceed"):
        MatryoshkaLoss(base, dimensions=[16])(query, positive)
    for bad in [dict(dimensions=[]), dict(dimensions=[0]), dict(dimensions=[4, 4]),
                dict(dimensions=[8, 4], weights=[1.0]),
                dict(dimensions=[8, 4], weights=[1.0, -1.0]),
                dict(dimensions=[8], weights=[0.0])]:
        with pytest.raises(ValueError):
            MatryoshkaLoss(base, **bad)


@pytest.mark.parametrize("restrict", [False, True])
def test_pointwise_yes_no_loss_is_label_token_nll(restrict):
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(5, 50, generator=gen, dtype=torch.float64) * 3).requires_grad_()
    labels = torch.tensor([1, 0, 0, 1, 1])
    yes_id, no_id = 7, 31
    loss = PointwiseYesNoLoss(yes_id, no_id, restrict_to_yes_no=restrict)(logits, labels)

    targets = [yes_id if y else no_id for y in labels.tolist()]
    if restrict:
        manual = [-(logits[b, t] - torch.logsumexp(logits[b, [yes_id, no_id]], 0))
                  for b, t in enumerate(targets)]
        diff = yes_no_logit(logits, yes_id, no_id)
        bce = F.binary_cross_entropy_with_logits(diff, labels.double())
        torch.testing.assert_close(loss.double(), bce, rtol=1e-6, atol=1e-7)
    else:
        manual = [-(logits[b, t] - torch.logsumexp(logits[b], 0)) for b, t in enumerate(targets)]
    expected = torch.stack(manual).mean()
    torch.testing.assert_close(loss.double(), expected, rtol=1e-6, atol=1e-7)
    loss.backward()
    touched = logits.grad.abs().sum(0) > 0
    assert touched.sum().item() == (2 if restrict else 50)


def test_pointwise_checks_arguments():
    with pytest.raises(ValueError):
        PointwiseYesNoLoss(3, 3)
    with pytest.raises(ValueError):
        PointwiseYesNoLoss(-1, 3)
    loss_fn = PointwiseYesNoLoss(1, 2)
    with pytest.raises(ValueError, match="0 or 1"):
        loss_fn(torch.randn(2, 5), torch.tensor([1, 2]))
    with pytest.raises(ValueError):
        loss_fn(torch.randn(2, 5), torch.tensor([1, 0, 1]))


@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_listwise_loss_is_cross_entropy_on_column_zero(temperature):
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 5, 20, generator=gen)  # (B, 1 + n, V)
    scores = yes_no_logit(logits, 3, 4).requires_grad_()  # (B, 1 + n)
    loss = ListwiseLoss(temperature)(scores)
    scaled = scores / temperature
    expected = torch.stack(
        [torch.logsumexp(scaled[b], 0) - scaled[b, 0] for b in range(4)]
    ).mean()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(scores[:, 0], logits[:, 0, 3] - logits[:, 0, 4])
    loss.backward()
    assert (scores.grad[:, 0] < 0).all() and (scores.grad[:, 1:] > 0).all()


def test_listwise_checks_arguments():
    for bad in [0.0, -1.0, math.nan]:
        with pytest.raises(ValueError):
            ListwiseLoss(bad)
    with pytest.raises(ValueError):
        ListwiseLoss()(torch.randn(3, 1))
