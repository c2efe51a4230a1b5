"""Evaluation metrics of preference models, as pure functions of tensors → floats."""

from __future__ import annotations

import math

import torch

__all__ = ["expected_calibration_error", "pearson", "preference_accuracy", "spearman"]


def preference_accuracy(p_a: torch.Tensor, prefs: torch.Tensor) -> float:
    """Fraction of decided pairs (prefs ≠ 0.5) where the predicted P(A≻B) (M,) is on the side
    of the annotator's answer; NaN when every pair is a tie. Ties are excluded because no
    strict prediction can be right about them."""
    decided = prefs != 0.5
    if not bool(decided.any()):
        return math.nan
    return float(((p_a[decided] > 0.5) == (prefs[decided] > 0.5)).float().mean())


def expected_calibration_error(p_a: torch.Tensor, prefs: torch.Tensor, *, bins: int = 10) -> float:
    """ECE over ``bins`` equal-width bins of the predicted P(A≻B) (M,): the count-weighted mean
    of |mean prediction − mean target| per bin, targets being the soft labels (ties count as
    0.5, as in the loss). 0 is perfectly calibrated. NaN for no pairs."""
    if p_a.numel() == 0:
        return math.nan
    p = p_a.detach().double().cpu()
    y = prefs.detach().double().cpu()
    index = torch.clamp((p * bins).long(), max=bins - 1)  # p = 1.0 goes in the last bin
    count = torch.bincount(index, minlength=bins).double()
    sum_p = torch.bincount(index, weights=p, minlength=bins)
    sum_y = torch.bincount(index, weights=y, minlength=bins)
    used = count > 0
    gap = (sum_p[used] - sum_y[used]).abs()  # = count · |mean p − mean y|
    return float(gap.sum() / count.sum())


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    """Pearson correlation of two (N,) tensors; NaN when either is constant or N < 2."""
    x, y = x.detach().double().cpu().flatten(), y.detach().double().cpu().flatten()
    if x.numel() < 2:
        return math.nan
    xc, yc = x - x.mean(), y - y.mean()
    denominator = xc.norm() * yc.norm()
    return float((xc * yc).sum() / denominator) if denominator > 0 else math.nan


def _average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 0..N−1, tied values sharing their mean rank (as scipy.stats.rankdata, minus 1)."""
    values, inverse, counts = torch.unique(x, return_inverse=True, return_counts=True)
    del values
    first = torch.cumsum(counts, 0) - counts  # rank of each unique value's first occurrence
    mean_rank = first.double() + (counts.double() - 1) / 2
    return mean_rank[inverse]


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman rank correlation of two (N,) tensors (Pearson of average ranks)."""
    x, y = x.detach().double().cpu().flatten(), y.detach().double().cpu().flatten()
    return pearson(_average_ranks(x), _average_ranks(y))
