"""Choosing which pairs of segments to ask about next (pure torch/numpy, no Django).

Two selectors over a pool of candidate pairs:

- **disagreement** (Christiano et al. 2017, "Deep RL from human preferences", §2.2.4): each
  ensemble member k predicts P_k(A≻B) = σ(R_k(A) − R_k(B)) from its segment returns; a pair's
  score is the variance of P_k across members, and the highest-scoring pairs are queried. Pairs
  the members already agree on (all say 0.9, or all say 0.5) teach little; pairs where some
  members say 0.9 and others 0.1 are where a label moves the model most.
- **random**: a uniform, seeded draw from the same pool, the baseline for the above.

Segments and pairs are indices into the caller's own list of candidate segments: returns have
shape (K, S) for K members and S segments, pairs (P, 2) of ints in [0, S).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "disagreement_scores",
    "preference_probabilities",
    "sample_candidate_pairs",
    "select_by_disagreement",
    "select_random",
    "top_n",
]


def _as_pairs(pairs: torch.Tensor | np.ndarray, device: torch.device) -> torch.Tensor:
    pairs = torch.as_tensor(pairs, dtype=torch.long, device=device)
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise ValueError(f"pairs must have shape (P, 2), got {tuple(pairs.shape)}.")
    return pairs


def preference_probabilities(
    returns: torch.Tensor, pairs: torch.Tensor | np.ndarray
) -> torch.Tensor:
    """Each member's P(A≻B) = σ(R_A − R_B).

    returns: (K, S) member returns of S segments; pairs: (P, 2) segment indices (A, B).
    Returns (K, P), in float32 (or float64 when ``returns`` is float64).
    """
    if returns.ndim != 2:
        raise ValueError(f"returns must have shape (K, S), got {tuple(returns.shape)}.")
    pairs = _as_pairs(pairs, returns.device)
    if pairs.numel() and (int(pairs.min()) < 0 or int(pairs.max()) >= returns.shape[1]):
        raise ValueError(f"pairs index segments outside [0, {returns.shape[1]}).")
    values = returns if returns.dtype == torch.float64 else returns.float()
    return torch.sigmoid(values[:, pairs[:, 0]] - values[:, pairs[:, 1]])


def disagreement_scores(returns: torch.Tensor, pairs: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Ensemble disagreement of each pair: the variance over members of σ(R_A − R_B).

    returns: (K, S); pairs: (P, 2) → (P,) in [0, 0.25]. Population variance (divides by K), so
    a single-member "ensemble" (K = 1) scores every pair 0: it has no disagreement to offer.
    """
    return preference_probabilities(returns, pairs).var(dim=0, unbiased=False)


def top_n(scores: torch.Tensor | np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` highest scores (P,) → (min(n, P),), highest first; ties go to the
    lower index, so the choice is deterministic."""
    if n < 0:
        raise ValueError(f"n must be ≥ 0, got {n}.")
    values = torch.as_tensor(scores).detach().cpu().double().reshape(-1)
    if torch.isnan(values).any():
        raise ValueError("scores contain NaN.")
    order = torch.argsort(-values, stable=True)
    return order[:n].numpy().astype(np.int64)


def select_by_disagreement(
    returns: torch.Tensor, pairs: torch.Tensor | np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` most disputed pairs: returns (K, S), pairs (P, 2) → (indices into ``pairs``
    (min(n, P),), highest score first; their scores (min(n, P),))."""
    scores = disagreement_scores(returns, pairs)
    chosen = top_n(scores, n)
    return chosen, scores.detach().cpu().double().numpy()[chosen]


def select_random(num_candidates: int, n: int, *, seed: int | None = None) -> np.ndarray:
    """``min(n, num_candidates)`` distinct indices drawn uniformly from [0, num_candidates);
    the same seed gives the same indices."""
    if n < 0 or num_candidates < 0:
        raise ValueError("n and num_candidates must be ≥ 0.")
    rng = np.random.default_rng(seed)
    return rng.permutation(num_candidates)[: min(n, num_candidates)].astype(np.int64)


# Enumerate every pair (rather than sample) when there are at most this many.
_ENUMERATE_LIMIT = 2_000_000


def sample_candidate_pairs(
    num_segments: int,
    count: int,
    *,
    exclude: np.ndarray | None = None,
    seed: int | None = None,
) -> np.ndarray:
    """Up to ``count`` distinct unordered pairs (i, j), i < j < num_segments, drawn uniformly,
    none of them in ``exclude`` ((E, 2), either order). Returns (P, 2) int64 with P ≤ count;
    P < count only when fewer such pairs exist (or, on a huge pool, when random draws keep
    hitting ``exclude``)."""
    if count < 0 or num_segments < 0:
        raise ValueError("count and num_segments must be ≥ 0.")
    total = num_segments * (num_segments - 1) // 2
    if count == 0 or total == 0:
        return np.zeros((0, 2), dtype=np.int64)
    rng = np.random.default_rng(seed)
    excluded = np.zeros(0, dtype=np.int64)
    if exclude is not None and len(exclude):
        ex = np.asarray(exclude, dtype=np.int64).reshape(-1, 2)
        lo, hi = ex.min(1), ex.max(1)
        excluded = np.unique(lo * num_segments + hi)

    if total <= _ENUMERATE_LIMIT:
        i, j = np.triu_indices(num_segments, k=1)
        keys = i.astype(np.int64) * num_segments + j
        keys = keys[~np.isin(keys, excluded)]
        keys = rng.permutation(keys)[:count]
    else:
        found = np.zeros(0, dtype=np.int64)
        for _ in range(20):
            draw = rng.integers(0, num_segments, size=(2 * (count - len(found)) + 16, 2))
            draw = draw[draw[:, 0] != draw[:, 1]]
            keys = draw.min(1) * num_segments + draw.max(1)
            keys = keys[~np.isin(keys, excluded) & ~np.isin(keys, found)]
            _, first = np.unique(keys, return_index=True)
            found = np.concatenate([found, keys[np.sort(first)]])[:count]
            if len(found) >= count:
                break
        keys = found
    return np.stack([keys // num_segments, keys % num_segments], axis=1).astype(np.int64)
