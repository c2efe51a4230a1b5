"""Simulated teachers that answer preference queries from the true reward (B-Pref).

Lee, Smith, Dragan & Abbeel (2021), "B-Pref: Benchmarking Preference-Based Reinforcement
Learning", model irrational annotators with five knobs, applied in this order:

1. **skip** — both segments look bad: no answer (``None``), like a person who cannot tell.
2. **equal** — the returns are too close: "equally good" (0.5).
3. **myopic** — the comparison weights step t of T by γ^(T−1−t): recent steps count more.
4. **stoc** — P(A ≻ B) = σ(β·(R_A − R_B)) (Boltzmann-rational with rationality β; β = ∞
   answers deterministically, which is the **oracle**).
5. **mistake** — a strict answer is flipped with probability ε.

Skip and equal use the *undiscounted* returns, as in B-Pref. Answers use the library's
encoding: 1.0 A better, 0.0 B better, 0.5 equal, ``None`` skipped.

Thresholds are fractions of the return scale. B-Pref scales them by the mean return (which
only works for positive rewards); here the scale is the spread of segment returns, given as
``return_range=(low, high)`` or, by default, the lowest and highest return among the
segments in the query batch: skip when both returns are below ``low + skip·(high − low)``;
equal when ``|R_A − R_B| < equal·(high − low)``. That behaves the same for Pendulum's
negative rewards as for positive ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

__all__ = ["TEACHER_NAMES", "TeacherConfig", "teacher"]


@dataclass(frozen=True)
class TeacherConfig:
    """One simulated annotator. Defaults are the perfectly rational oracle."""

    beta: float = math.inf
    """Rationality β of the Boltzmann choice σ(β·ΔR); ∞ = always the larger (discounted) return."""

    gamma: float = 1.0
    """Myopia γ ∈ (0, 1]: step t of T weighs γ^(T−1−t) in the comparison; 1 = not myopic."""

    mistake: float = 0.0
    """ε: probability of flipping a strict answer."""

    skip_threshold: float = 0.0
    """Skip when both returns lie in the lowest this-fraction of the return range; 0 never skips."""

    equal_threshold: float = 0.0
    """Answer "equal" when the returns differ by less than this fraction of the return range."""

    def __post_init__(self) -> None:
        if not self.beta > 0:
            raise ValueError(
                f"beta must be > 0 (math.inf for a rational teacher), got {self.beta}."
            )
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}.")
        for name in ("mistake", "skip_threshold", "equal_threshold"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}.")

    def answer_batch(
        self,
        rewards_a: np.ndarray,
        rewards_b: np.ndarray,
        *,
        rng: np.random.Generator,
        return_range: tuple[float, float] | None = None,
    ) -> list[float | None]:
        """Answers for M pairs of segments given their true per-step rewards, each (M, T).

        Returns M answers: 1.0, 0.0, 0.5 or None (skipped). ``rng`` drives the stochastic
        choice and the mistakes; ``return_range`` fixes the scale of the thresholds (default:
        min and max return in this batch).
        """
        rewards_a = np.asarray(rewards_a, dtype=np.float64)
        rewards_b = np.asarray(rewards_b, dtype=np.float64)
        if rewards_a.ndim != 2 or rewards_a.shape != rewards_b.shape:
            raise ValueError(
                f"rewards_a and rewards_b must both be (M, T), got {rewards_a.shape} and {rewards_b.shape}."
            )
        pairs, length = rewards_a.shape
        returns_a, returns_b = rewards_a.sum(1), rewards_b.sum(1)  # (M,)
        if return_range is None:
            both = np.concatenate([returns_a, returns_b])
            low, high = (float(both.min()), float(both.max())) if both.size else (0.0, 0.0)
        else:
            low, high = return_range
        spread = max(high - low, 0.0)

        # 1–2: skip and equal, on undiscounted returns.
        skipped = np.zeros(pairs, dtype=bool)
        if self.skip_threshold > 0:
            skipped = np.maximum(returns_a, returns_b) < low + self.skip_threshold * spread
        equal = np.abs(returns_a - returns_b) < self.equal_threshold * spread

        # 3: myopic weights, γ^(T−1−t) for t = 0 … T−1 (the last step weighs 1).
        weights = self.gamma ** np.arange(length - 1, -1, -1, dtype=np.float64)
        delta = (rewards_a - rewards_b) @ weights  # (M,)

        # 4: rational or Boltzmann choice. Exact ties are "equal" for the rational teacher.
        if math.isinf(self.beta):
            answers = np.where(delta > 0, 1.0, np.where(delta < 0, 0.0, 0.5))
        else:
            p_a = 0.5 * (1.0 + np.tanh(0.5 * self.beta * delta))  # σ(β·Δ), overflow-free
            answers = (rng.random(pairs) < p_a).astype(np.float64)

        # 5: mistakes flip strict answers.
        if self.mistake > 0:
            flip = (rng.random(pairs) < self.mistake) & (answers != 0.5)
            answers = np.where(flip, 1.0 - answers, answers)

        answers = np.where(equal, 0.5, answers)
        return [None if skip else float(answer) for skip, answer in zip(skipped, answers)]

    def answer(
        self,
        rewards_a: np.ndarray,
        rewards_b: np.ndarray,
        *,
        rng: np.random.Generator,
        return_range: tuple[float, float] | None = None,
    ) -> float | None:
        """One pair, per-step rewards (T,) each. Pass ``return_range`` whenever the skip or
        equal thresholds matter: one pair alone says nothing about the return scale."""
        return self.answer_batch(
            np.asarray(rewards_a)[None],
            np.asarray(rewards_b)[None],
            rng=rng,
            return_range=return_range,
        )[0]


# B-Pref's five irrational teachers, each varying one knob from the oracle with the paper's value.
_PRESETS: dict[str, TeacherConfig] = {
    "oracle": TeacherConfig(),
    "stoc": TeacherConfig(beta=1.0),
    "mistake": TeacherConfig(mistake=0.1),
    "skip": TeacherConfig(skip_threshold=0.1),
    "equal": TeacherConfig(equal_threshold=0.1),
    "myopic": TeacherConfig(gamma=0.9),
}
TEACHER_NAMES = tuple(_PRESETS)


def teacher(name: str, **overrides: float) -> TeacherConfig:
    """B-Pref preset ``name`` (oracle, stoc, mistake, skip, equal, myopic), with any field
    overridden, e.g. ``teacher("stoc", beta=10.0)``."""
    if name not in _PRESETS:
        raise ValueError(f"Unknown teacher {name!r}; choose one of {', '.join(TEACHER_NAMES)}.")
    return replace(_PRESETS[name], **overrides)
