"""QC statistics against hand-computed values."""

from __future__ import annotations

import pytest

from feedback.quality import (
    intransitive_triads,
    krippendorff_alpha_nominal,
    pairwise_agreement,
    position_bias,
)


def test_alpha_matches_krippendorffs_textbook_example() -> None:
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C:
    # 4 observers, 12 units, nominal values, missing as None. Published nominal α = 0.743.
    observers = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    units = {u: [obs[u] for obs in observers] for u in range(12)}
    assert krippendorff_alpha_nominal(units) == pytest.approx(0.743, abs=5e-4)


def test_alpha_perfect_agreement_is_one_and_undefined_cases_are_none() -> None:
    assert krippendorff_alpha_nominal({1: ["a", "a"], 2: ["b", "b"]}) == pytest.approx(1.0)
    assert krippendorff_alpha_nominal({1: ["a", "a"], 2: ["a", "a"]}) is None  # no variation
    assert krippendorff_alpha_nominal({1: ["a"], 2: ["b", None]}) is None  # nothing pairable


def test_alpha_systematic_disagreement_is_negative() -> None:
    # Two coders who always disagree on a binary choice: observed beats expected disagreement.
    units = {1: ["a", "b"], 2: ["b", "a"], 3: ["a", "b"], 4: ["b", "a"]}
    # n = 8, n_a = n_b = 4; D_o: all 8 coincidences off-diagonal → α = 1 − 7·8/(64 − 32) = −0.75
    assert krippendorff_alpha_nominal(units) == pytest.approx(-0.75)


def test_pairwise_agreement_counts_shared_pairs_and_ignores_cant_tell() -> None:
    votes = [
        (1, "ann", "a"), (1, "bob", "a"),
        (2, "ann", "b"), (2, "bob", "a"),
        (3, "ann", "equal"), (3, "bob", "equal"),
        (4, "ann", "cant_tell"), (4, "bob", "a"),
        (5, "cid", "a"),
    ]
    result = {(r.annotator_1, r.annotator_2): r for r in pairwise_agreement(votes)}
    assert result[("ann", "bob")].shared == 3
    assert result[("ann", "bob")].agreement == pytest.approx(2 / 3)
    assert result[("ann", "cid")].shared == 0 and result[("ann", "cid")].agreement is None


def test_intransitive_triads_found_once() -> None:
    prefs = [("x", "y", "a"), ("y", "z", "a"), ("x", "z", "b"), ("x", "w", "a"), ("w", "z", "equal")]
    assert intransitive_triads(prefs) == [("x", "y", "z")]
    assert intransitive_triads([("x", "y", "a"), ("y", "z", "a"), ("x", "z", "a")]) == []


def test_position_bias_counts_left_wins() -> None:
    answers = [("a", True), ("a", True), ("b", False), ("b", True), ("equal", True), ("cant_tell", False)]
    bias = position_bias(answers)
    # decisive: 4; left chosen when (a, left_is_a) or (b, not left_is_a): 3 of 4.
    assert (bias.decisive, bias.chose_left) == (4, 3)
    assert bias.left_rate == pytest.approx(0.75)
    assert bias.z == pytest.approx((3 - 2) / 1.0)
    assert position_bias([]).left_rate is None
