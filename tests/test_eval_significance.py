"""Per-query nDCG and the paired bootstrap that the benchmarks use to say whether two models differ."""

from __future__ import annotations

import numpy as np
import pytest

from embedforge.eval.metrics import query_ndcg, retrieval_scores
from embedforge.eval.significance import paired_bootstrap, paired_bootstrap_spearman

QRELS = {"q1": {"d1": 1}, "q2": {"d2": 1, "d3": 2}, "q3": {"d9": 0}}
RUN = {"q1": {"d1": 0.2, "d5": 0.9}, "q2": {"d3": 0.8, "d2": 0.1, "d4": 0.5}}


def test_query_ndcg_averages_to_retrieval_scores_and_skips_unjudged_queries():
    per_query = query_ndcg(RUN, QRELS, k=10)
    assert set(per_query) == {"q1", "q2"}  # q3 has no positive judgement
    assert per_query["q1"] == pytest.approx(1 / np.log2(3))
    ideal = 2 + 1 / np.log2(3)
    assert per_query["q2"] == pytest.approx((2 + 1 / np.log2(4)) / ideal)
    assert np.mean(list(per_query.values())) == pytest.approx(retrieval_scores(RUN, QRELS)["ndcg_at_10"])


def test_identical_and_shifted_scores():
    a = {f"q{i}": i / 10 for i in range(10)}
    assert paired_bootstrap(a, a) == (0.0, 0.0, 0.0, 0, 0, 10)
    shifted = paired_bootstrap({q: v + 0.25 for q, v in a.items()}, a)
    assert shifted.mean == pytest.approx(0.25) and shifted.low == pytest.approx(0.25) and shifted.high == pytest.approx(0.25)
    assert (shifted.better, shifted.worse) == (10, 0)


def test_the_interval_holds_zero_for_noise_and_excludes_it_for_a_real_gain():
    rng = np.random.default_rng(1)
    base = {f"q{i}": float(v) for i, v in enumerate(rng.uniform(0, 1, 400))}
    noise = rng.normal(0, 0.2, 400)
    tie = paired_bootstrap({q: v + noise[i] - noise.mean() for i, (q, v) in enumerate(base.items())}, base)
    assert tie.low < 0 < tie.high and abs(tie.mean) < 1e-12
    gain = paired_bootstrap({q: v + 0.05 + noise[i] for i, (q, v) in enumerate(base.items())}, base)
    assert 0 < gain.low < gain.mean < gain.high
    # the interval narrows as the square root of the query count
    quarter = paired_bootstrap({q: base[q] + 0.05 + noise[i] for i, q in enumerate(list(base)[:100])}, {q: base[q] for q in list(base)[:100]})
    assert 1.5 < (quarter.high - quarter.low) / (gain.high - gain.low) < 2.6


def test_queries_scored_by_one_model_only_are_an_error():
    with pytest.raises(ValueError, match="scored by one model only"):
        paired_bootstrap({"q1": 1.0, "q2": 0.5}, {"q1": 1.0})
    with pytest.raises(ValueError, match="no queries"):
        paired_bootstrap({}, {})


def test_spearman_bootstrap_matches_scipy_and_resolves_a_real_gain_only():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(2)
    gold = {f"dev/{lang}": rng.uniform(0, 5, 300) for lang in ("de", "fr")}
    noisy = {key: values + rng.normal(0, 1.5, 300) for key, values in gold.items()}
    also_noisy = {key: values + rng.normal(0, 1.5, 300) for key, values in gold.items()}
    sharp = {key: values + rng.normal(0, 0.5, 300) for key, values in gold.items()}
    mean_rho = lambda predicted: np.mean([spearmanr(predicted[key], gold[key])[0] for key in gold])  # mteb's main score

    same = paired_bootstrap_spearman(gold, noisy, noisy)
    assert same == (0.0, 0.0, 0.0)
    tie = paired_bootstrap_spearman(gold, also_noisy, noisy)
    assert tie.difference == pytest.approx(mean_rho(also_noisy) - mean_rho(noisy))
    assert tie.low < 0 < tie.high
    gain = paired_bootstrap_spearman(gold, sharp, noisy)
    assert gain.difference == pytest.approx(mean_rho(sharp) - mean_rho(noisy))
    assert 0 < gain.low < gain.difference < gain.high


def test_spearman_bootstrap_needs_the_same_subsets_and_pairs():
    with pytest.raises(ValueError, match="subsets differ"):
        paired_bootstrap_spearman({"dev/de": [1, 2, 3]}, {"dev/fr": [1, 2, 3]}, {"dev/de": [1, 2, 3]})
    with pytest.raises(ValueError, match="same two or more pairs"):
        paired_bootstrap_spearman({"dev/de": [1, 2, 3]}, {"dev/de": [1, 2]}, {"dev/de": [1, 2, 3]})
