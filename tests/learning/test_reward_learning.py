"""learning.core reward learning: nets, trainer, checkpoints — on CPU, about a second each."""

from __future__ import annotations

import torch
import pytest

from learning.core.configs import RewardNetConfig
from learning.core.nets import RewardEnsemble

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- nets


def test_batched_forward_equals_members_one_by_one() -> None:
    config = RewardNetConfig(hidden_sizes=(32, 16), activation="tanh", ensemble_size=4)
    ensemble = RewardEnsemble(config, (5,), 2, generator=torch.Generator().manual_seed(1))
    obs, act = torch.randn(200, 5) * 3 + 1, torch.randn(200, 2)
    ensemble.fit_input_normalisation(obs, act)
    ensemble.fit_output_normalisation(ensemble(obs, act, normalise_output=False))

    batched = ensemble(obs, act)  # (K, N)
    one_by_one = torch.stack([ensemble.member_module(k)(obs, act) for k in range(4)])

    assert batched.shape == (4, 200)
    torch.testing.assert_close(batched, one_by_one, atol=1e-6, rtol=0)
    # The members differ (they were initialised apart): the check above compares something.
    assert (batched[0] - batched[1]).abs().max() > 0.1


def test_per_member_batches_match_shared_forward() -> None:
    ensemble = RewardEnsemble(RewardNetConfig(hidden_sizes=(16,), ensemble_size=3), (4,), 1)
    obs, act = torch.randn(3, 7, 4), torch.randn(3, 7, 1)  # a different batch for each member
    per_member = ensemble.member_rewards(obs, act)
    for k in range(3):
        torch.testing.assert_close(per_member[k], ensemble(obs[k], act[k])[k], atol=1e-6, rtol=0)


def test_cnn_ensemble_batched_forward_equals_members_one_by_one() -> None:
    config = RewardNetConfig(hidden_sizes=(16,), ensemble_size=3, cnn=True, cnn_channels=(4, 8, 8))
    ensemble = RewardEnsemble(config, (3, 40, 40), 2, generator=torch.Generator().manual_seed(0))
    pixels = torch.randint(0, 256, (6, 3, 40, 40), dtype=torch.uint8)
    act = torch.randn(6, 2)
    ensemble.fit_input_normalisation(pixels, act)

    batched = ensemble(pixels, act)
    one_by_one = torch.stack([ensemble.member_module(k)(pixels, act) for k in range(3)])

    assert batched.shape == (3, 6)
    torch.testing.assert_close(batched, one_by_one, atol=1e-6, rtol=0)
    assert (batched[0] - batched[1]).abs().max() > 1e-3


def test_segment_returns_sum_rewards_over_time() -> None:
    ensemble = RewardEnsemble(RewardNetConfig(hidden_sizes=(8,), ensemble_size=2), (3,), 0)
    obs = torch.randn(5, 10, 3)
    returns = ensemble.segment_returns(obs, None)
    assert returns.shape == (2, 5)
    torch.testing.assert_close(returns, ensemble(obs).sum(-1))


def test_mlp_rejects_image_observations() -> None:
    with pytest.raises(ValueError, match="cnn=True"):
        RewardEnsemble(RewardNetConfig(), (3, 64, 64), 1)
