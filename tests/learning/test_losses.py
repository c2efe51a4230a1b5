"""learning.core.losses and metrics: checked against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from learning.core.losses import bradley_terry_loss, desirability_loss, preference_probability
from learning.core.metrics import expected_calibration_error, pearson, preference_accuracy, spearman

NAN = float("nan")


def test_bradley_terry_loss_with_random_response_matches_hand_computation() -> None:
    # Returns A = [1, 0, 2], B = [0, 1, 2]; answers: A, A, equal; ε = 0.1.
    # Δ = [1, −1, 0]; P(A≻B) = 0.9·σ(Δ) + 0.05 = [0.707953, 0.292047, 0.5].
    # Terms: −log 0.707953 = 0.345378; −log 0.292047 = 1.230840;
    #        tie: −(0.5·log 0.5 + 0.5·log 0.5) = log 2 = 0.693147.   Mean = 0.756455.
    loss, metrics = bradley_terry_loss(
        torch.tensor([1.0, 0.0, 2.0]),
        torch.tensor([0.0, 1.0, 2.0]),
        torch.tensor([1.0, 1.0, 0.5]),
        random_response=0.1,
    )
    assert float(loss) == pytest.approx(0.756455, abs=1e-6)
    assert float(metrics["loss"]) == pytest.approx(0.756455, abs=1e-6)
    assert float(metrics["accuracy"]) == pytest.approx(
        0.5
    )  # one of two decided pairs; tie left out


def test_bradley_terry_loss_without_random_response_is_plain_logistic() -> None:
    # ε = 0: −log σ(1) = 0.313262, −log σ(−1) = 1.313262, tie log 2; mean = 0.773224.
    loss, _ = bradley_terry_loss(
        torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.5])
    )
    assert float(loss) == pytest.approx(0.773224, abs=1e-6)


def test_bradley_terry_loss_averages_over_members_and_stays_finite_for_huge_margins() -> None:
    returns_a = torch.tensor([[1.0, 0.0], [1e4, -1e4]])  # (K=2, B=2)
    returns_b = torch.zeros(2, 2)
    prefs = torch.tensor([1.0, 1.0])
    loss, metrics = bradley_terry_loss(returns_a, returns_b, prefs, random_response=0.1)
    # member 0: (0.345378 + (−log 0.5)) / 2; member 1: (−log 0.95 + −log 0.05) / 2
    member0 = (0.3453780 + math.log(2)) / 2
    member1 = (-math.log(0.95) - math.log(0.05)) / 2
    assert float(loss) == pytest.approx((member0 + member1) / 2, abs=1e-5)
    assert float(metrics["accuracy"]) == pytest.approx(0.5)  # 0 > 0 is false for member 0's pair 2


def test_bradley_terry_gradient_flows_and_random_response_caps_confidence() -> None:
    returns_a = torch.tensor([30.0], requires_grad=True)
    loss, _ = bradley_terry_loss(
        returns_a, torch.tensor([0.0]), torch.tensor([0.0]), random_response=0.1
    )
    loss.backward()
    value = float(loss.detach())
    assert math.isfinite(value) and value == pytest.approx(-math.log(0.05), abs=1e-5)
    assert returns_a.grad is not None and math.isfinite(float(returns_a.grad))
    p = preference_probability(torch.tensor([50.0, -50.0]), torch.zeros(2), random_response=0.1)
    torch.testing.assert_close(p, torch.tensor([0.95, 0.05]))


def test_desirability_loss_matches_hand_computation_and_ignores_unsure() -> None:
    # Returns [1, −1, 2] labelled desirable, unsure, undesirable:
    # −log σ(1) = 0.313262, −log(1 − σ(2)) = 2.126928; mean over the two labelled = 1.220095.
    loss, metrics = desirability_loss(
        torch.tensor([[1.0, -1.0, 2.0]]), torch.tensor([1.0, NAN, 0.0])
    )
    assert float(loss) == pytest.approx(1.220095, abs=1e-6)
    assert float(metrics["desirability_accuracy"]) == pytest.approx(0.5)


def test_desirability_loss_with_no_labels_is_zero_and_connected() -> None:
    returns = torch.tensor([[1.0, 2.0]], requires_grad=True)
    loss, _ = desirability_loss(returns, torch.tensor([NAN, NAN]))
    loss.backward()
    assert float(loss.detach()) == 0.0 and returns.grad is not None


def test_metrics_match_hand_computation() -> None:
    p = torch.tensor([0.95, 0.85, 0.15, 0.55, 0.45])
    y = torch.tensor([1.0, 0.0, 0.0, 0.5, 1.0])
    # Decided pairs 0, 1, 2, 4: right, wrong, right, wrong.
    assert preference_accuracy(p, y) == pytest.approx(0.5)
    # Bins: [0.9,1): |0.95−1| = 0.05; [0.8,0.9): |0.85−0| = 0.85; [0.1,0.2): |0.15−0| = 0.15;
    # [0.5,0.6): |0.55−0.5| = 0.05; [0.4,0.5): |0.45−1| = 0.55 — one pair each: mean 0.33.
    assert expected_calibration_error(p, y) == pytest.approx(0.33)
    assert math.isnan(preference_accuracy(torch.tensor([0.7]), torch.tensor([0.5])))
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert pearson(x, torch.tensor([1.0, 0.0, 1.0, 0.0])) == pytest.approx(-0.4472136, abs=1e-6)
    # Monotone but not linear: Spearman 1, Pearson < 1; ties get their mean rank.
    assert spearman(x, x**3) == pytest.approx(1.0) and pearson(x, x**3) < 0.99
    assert spearman(
        torch.tensor([1.0, 2.0, 2.0, 5.0]), torch.tensor([1.0, 3.0, 3.0, 9.0])
    ) == pytest.approx(1.0)
