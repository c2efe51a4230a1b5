"""learning.core.teachers: B-Pref simulated teachers on hand-made segments."""

from __future__ import annotations

import numpy as np
import pytest

from learning.core.teachers import TEACHER_NAMES, TeacherConfig, teacher

# Three-step segments. Returns: GOOD 6, OKAY 3, BAD −3, LATE_BLOOM 3 (all at the end),
# EARLY_BLOOM 3.3 (all at the start).
GOOD = [2.0, 2.0, 2.0]
OKAY = [1.0, 1.0, 1.0]
BAD = [-1.0, -1.0, -1.0]
EARLY_BLOOM = [3.3, 0.0, 0.0]
LATE_BLOOM = [0.0, 0.0, 3.0]


def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_oracle_prefers_the_larger_return_and_calls_exact_ties_equal() -> None:
    answers = teacher("oracle").answer_batch(
        np.array([GOOD, BAD, OKAY]), np.array([OKAY, GOOD, OKAY]), rng=rng()
    )
    assert answers == [1.0, 0.0, 0.5]


def test_stoc_teacher_is_boltzmann_rational() -> None:
    # ΔR = 1 with β = 1: P(A) = σ(1) = 0.731; over 4,000 answers the frequency is within ±0.03.
    a, b = np.array([[1.0, 0.0]] * 4000), np.zeros((4000, 2))
    answers = np.array(teacher("stoc").answer_batch(a, b, rng=rng()))
    assert set(answers) == {0.0, 1.0}
    assert answers.mean() == pytest.approx(0.731, abs=0.03)
    # Large β approaches the oracle; small β approaches a coin.
    sharp = np.array(teacher("stoc", beta=20.0).answer_batch(a, b, rng=rng()))
    assert sharp.mean() > 0.999
    flat = np.array(teacher("stoc", beta=0.01).answer_batch(a, b, rng=rng()))
    assert flat.mean() == pytest.approx(0.5, abs=0.03)


def test_mistake_teacher_flips_about_epsilon_of_answers() -> None:
    a, b = np.array([GOOD] * 4000), np.array([BAD] * 4000)
    answers = np.array(teacher("mistake").answer_batch(a, b, rng=rng()))
    assert (answers == 0.0).mean() == pytest.approx(0.1, abs=0.015)
    assert set(answers) == {0.0, 1.0}


def test_skip_teacher_skips_when_both_segments_are_in_the_bottom_of_the_range() -> None:
    # Range of returns in the batch: −3 … 6 (spread 9); skip below −3 + 0.1·9 = −2.1.
    bad_too = [-0.9, -0.9, -0.9]  # return −2.7
    answers = teacher("skip").answer_batch(
        np.array([BAD, BAD, GOOD]), np.array([bad_too, GOOD, OKAY]), rng=rng()
    )
    assert answers == [None, 0.0, 1.0]
    # An explicit range changes the scale: with −30 … 60 the skip line is at −21: nothing skips.
    assert teacher("skip").answer(BAD, bad_too, rng=rng(), return_range=(-30.0, 60.0)) == 0.0


def test_equal_teacher_calls_close_returns_equal() -> None:
    # Spread 9 (−3 … 6): equal below 0.9. OKAY (3) vs EARLY_BLOOM (3.3) differ by 0.3.
    answers = teacher("equal").answer_batch(
        np.array([OKAY, GOOD]), np.array([EARLY_BLOOM, BAD]), rng=rng()
    )
    assert answers == [0.5, 1.0]
    assert teacher("oracle").answer(OKAY, EARLY_BLOOM, rng=rng()) == 0.0  # the oracle sees 0.3


def test_myopic_teacher_weights_recent_steps_more() -> None:
    # Undiscounted, EARLY_BLOOM (3.3) beats LATE_BLOOM (3.0). With γ = 0.9 the weights are
    # [0.81, 0.9, 1]: 3.3·0.81 = 2.673 < 3.0·1 — the myopic teacher prefers the late bloom.
    assert teacher("oracle").answer(EARLY_BLOOM, LATE_BLOOM, rng=rng()) == 1.0
    assert teacher("myopic").answer(EARLY_BLOOM, LATE_BLOOM, rng=rng()) == 0.0


def test_presets_and_validation() -> None:
    assert TEACHER_NAMES == ("oracle", "stoc", "mistake", "skip", "equal", "myopic")
    assert teacher("myopic").gamma == 0.9 and teacher("oracle") == TeacherConfig()
    with pytest.raises(ValueError, match="Unknown teacher"):
        teacher("sloppy")
    with pytest.raises(ValueError, match="gamma"):
        TeacherConfig(gamma=0.0)
    with pytest.raises(ValueError, match=r"\(M, T\)"):
        teacher("oracle").answer_batch(np.zeros((2, 3)), np.zeros((2, 4)), rng=rng())
