"""Losses of reward learning: named pure functions returning ``(loss, metrics)``.

``metrics`` values are detached 0-d tensors, not floats, so a training step never waits for the
device; callers convert them when they report.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["bradley_terry_loss", "desirability_loss", "preference_probability"]


def _log_preference_probability(delta: torch.Tensor, random_response: float) -> torch.Tensor:
    """log P(A ≻ B) for return difference ``delta``, with P = (1−ε)·σ(Δ) + ε/2, computed in
    log space (logaddexp of the two mixture terms) so large |Δ| neither overflows nor gives
    log 0."""
    if random_response == 0.0:
        return F.logsigmoid(delta)
    return torch.logaddexp(
        F.logsigmoid(delta) + math.log1p(-random_response),
        torch.full_like(delta, math.log(random_response / 2)),
    )


def preference_probability(
    returns_a: torch.Tensor, returns_b: torch.Tensor, *, random_response: float = 0.0
) -> torch.Tensor:
    """P(A ≻ B) = (1−ε)·σ(R_A − R_B) + ε/2, elementwise (Christiano et al. 2017, §2.2.3)."""
    return torch.exp(_log_preference_probability(returns_a - returns_b, random_response))


def bradley_terry_loss(
    returns_a: torch.Tensor,
    returns_b: torch.Tensor,
    prefs: torch.Tensor,
    *,
    random_response: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Cross-entropy between the human's P(A ≻ B) and the Bradley–Terry model's.

    returns_a, returns_b: (K, B) per-member segment returns (or (B,) for one net)
    prefs:                (B,) or (K, B) soft targets — 1.0 A better, 0.0 B better, 0.5 equal
    random_response:      ε, the chance the annotator answered at random

    loss = −mean[p·log P + (1−p)·log(1−P)] over members and pairs, P as in
    :func:`preference_probability`; 1 − P(A≻B) = P(B≻A), so both logs come from the same
    stable expression. Metrics: ``loss``; ``accuracy`` — the fraction of non-tie pairs whose
    preferred segment has the larger return, averaged over members (NaN when all are ties).
    """
    delta = returns_a - returns_b  # (K, B)
    log_p_a = _log_preference_probability(delta, random_response)
    log_p_b = _log_preference_probability(-delta, random_response)
    loss = -(prefs * log_p_a + (1.0 - prefs) * log_p_b).mean()
    with torch.no_grad():
        decided = (prefs != 0.5).expand_as(delta)
        correct = (delta > 0) == (prefs > 0.5)
        accuracy = (correct & decided).sum() / decided.sum()
        metrics = {"loss": loss.detach(), "accuracy": accuracy}
    return loss, metrics


def desirability_loss(
    returns: torch.Tensor, labels: torch.Tensor, *, threshold: float | torch.Tensor = 0.0
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logistic loss tying per-clip returns to desirable/undesirable labels.

    returns:   (K, N) per-member clip returns (or (N,))
    labels:    (N,) or (K, N) — 1.0 desirable, 0.0 undesirable, NaN unsure (ignored)
    threshold: the return at which a clip is as likely desirable as not (scalar or (K, 1))

    P(desirable) = σ(R − threshold); loss = binary cross-entropy averaged over members and
    labelled clips (0 when no clip is labelled, still connected to the graph). Metrics:
    ``desirability_loss``, ``desirability_accuracy`` (NaN when no clip is labelled).
    """
    known = ~torch.isnan(labels)
    if not bool(known.any()):
        zero = returns.sum() * 0.0
        return zero, {
            "desirability_loss": zero.detach(),
            "desirability_accuracy": zero.detach() * math.nan,
        }
    logits = (returns - threshold)[known.expand_as(returns)]
    targets = labels.expand_as(returns)[known.expand_as(returns)]
    loss = F.binary_cross_entropy_with_logits(logits, targets)
    with torch.no_grad():
        accuracy = ((logits > 0) == (targets > 0.5)).float().mean()
    return loss, {"desirability_loss": loss.detach(), "desirability_accuracy": accuracy}
