"""The filter rules: the teacher-score band, length bounds and duplicates, counted by reason."""

import numpy as np
import pytest

from embedforge.synthesis.filtering import FilterRules, duplicate_reasons, filter_reasons, length_reason, normalise_query, score_reason


@pytest.mark.parametrize(
    "score,reason",
    [(0.71, None), (0.7, "teacher_score_low"), (0.69, "teacher_score_low"), (-0.2, "teacher_score_low"), (1.0, None), (None, "no_teacher_score"), (float("nan"), "no_teacher_score")],
)
def test_default_band_keeps_scores_above_0_7(score, reason):
    assert score_reason(score, FilterRules()) == reason


def test_custom_band_and_length_bounds():
    rules = FilterRules(min_teacher_score=0.5, max_teacher_score=0.9, min_query_words=3, max_query_words=5)
    assert score_reason(0.95, rules) == "teacher_score_high"
    assert score_reason(0.6, rules) is None
    assert length_reason("two words", rules) == "too_short"
    assert length_reason("one two three", rules) is None
    assert length_reason("one two three four five six", rules) == "too_long"


def unit(vectors):
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_exact_and_near_duplicates_keep_the_first():
    queries = ["What is aspirin?", "what is  ASPIRIN", "How do statins work?", "How do statins function?", "Something else"]
    vectors = unit([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0.999, 0.04], [0, 0, 1]])
    reasons = duplicate_reasons(queries, vectors, [True] * 5, threshold=0.95)
    assert reasons == [None, "exact_duplicate", None, "near_duplicate", None]
    assert duplicate_reasons(queries, vectors, [True] * 5, threshold=None) == [None, "exact_duplicate", None, None, None]
    # a row removed for another reason never shadows a later duplicate
    assert duplicate_reasons(queries, vectors, [False, True, True, True, True], threshold=0.95)[1] is None
    assert normalise_query("What is aspirin?") == normalise_query("what is  ASPIRIN")


def test_filter_reasons_apply_in_order():
    rows = [
        {"query": "what is aspirin used for", "teacher_score": 0.9},
        {"query": "aspirin", "teacher_score": 0.9},
        {"query": "what is aspirin used for", "teacher_score": 0.9},
        {"query": "how do statins lower cholesterol", "teacher_score": 0.5},
        {"query": "how do statins reduce cholesterol", "teacher_score": 0.8},
    ]
    vectors = unit([[1, 0], [1, 0], [1, 0], [0, 1], [0, 1]])
    reasons = filter_reasons(rows, vectors, FilterRules())
    assert reasons == [None, "too_short", "exact_duplicate", "teacher_score_low", None]
