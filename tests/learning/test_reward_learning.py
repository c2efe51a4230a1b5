"""learning.core reward learning: nets, trainer, checkpoints — on CPU, about a second each."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from learning.core.callbacks import RecordingCallback
from learning.core.checkpoints import (
    RewardCheckpointError,
    load_reward_model,
    load_training_state,
    save_reward_model,
    save_training_state,
)
from learning.core.configs import ConfigError, RewardNetConfig, RewardTrainingConfig
from learning.core.data import PreferenceDataError, PreferenceDataset
from learning.core.nets import RewardEnsemble
from learning.core.reward_learning import ResumeMismatch, TrainingState, train_reward_model

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


# ----------------------------------------------------------------------------- trainer


TRUE_WEIGHTS = torch.tensor([1.0, -2.0, 0.5, 1.5])
SMALL_NET = RewardNetConfig(hidden_sizes=(32, 32), ensemble_size=3)
FAST = RewardTrainingConfig(
    lr=3e-3, batch_size=64, max_epochs=40, patience=8, random_response=0.0, seed=0
)


def linear_reward_dataset(
    *,
    segments: int = 200,
    pairs: int = 400,
    length: int = 10,
    seed: int = 0,
    desirability: bool = False,
) -> PreferenceDataset:
    """Segments of random states with true reward r = w·s; the oracle prefers the larger
    return and calls exact ties equal. Actions are noise the reward ignores."""
    generator = torch.Generator().manual_seed(seed)
    obs = torch.randn(segments, length, 4, generator=generator)  # (N, T, obs_dim)
    act = torch.randn(segments, length, 1, generator=generator)  # (N, T, act_dim)
    returns = (obs @ TRUE_WEIGHTS).sum(1)  # (N,)
    pair_index = torch.randint(segments, (pairs, 2), generator=generator)  # (M, 2)
    delta = returns[pair_index[:, 0]] - returns[pair_index[:, 1]]
    prefs = torch.where(delta > 0, 1.0, torch.where(delta < 0, 0.0, 0.5))
    labels = torch.where(returns > 0, 1.0, 0.0) if desirability else None
    return PreferenceDataset(obs, act, pair_index, prefs, desirability=labels, true_returns=returns)


def test_learns_a_known_linear_reward_from_preferences() -> None:
    ensemble, result = train_reward_model(linear_reward_dataset(), SMALL_NET, FAST)

    assert result.num_train_pairs == 320 and result.num_held_out_pairs == 80
    assert result.held_out_accuracy >= 0.95
    assert result.pearson >= 0.95 and result.spearman >= 0.95
    assert 0 <= result.held_out_ece < 0.1
    assert result.history[-1]["held_out_loss"] < result.history[0]["held_out_loss"]
    # Output normalised: each member's per-step reward has mean 0, std 1 over the data's states.
    fresh = linear_reward_dataset(seed=1)
    rewards = ensemble(fresh.observations, fresh.actions)  # (K, N, T)
    assert rewards.mean().abs() < 0.2 and (rewards.std((1, 2)) - 1).abs().max() < 0.2
    # It generalises to new segments: per-step rewards track w·s.
    true_rewards = fresh.observations @ TRUE_WEIGHTS
    corr = torch.corrcoef(torch.stack([rewards.mean(0).flatten(), true_rewards.flatten()]))[0, 1]
    assert corr > 0.95


def test_configs_are_frozen_and_round_trip_through_json() -> None:
    from dataclasses import FrozenInstanceError

    with pytest.raises(FrozenInstanceError):
        FAST.lr = 1.0  # type: ignore[misc]
    assert RewardTrainingConfig.from_dict(FAST.to_dict()) == FAST
    assert RewardNetConfig.from_dict(SMALL_NET.to_dict()) == SMALL_NET
    assert SMALL_NET.to_dict()["hidden_sizes"] == [32, 32]  # JSON has no tuples
    with pytest.raises(ConfigError, match="has no field"):
        RewardTrainingConfig.from_dict({"learning_rate": 0.1})


def test_device_auto_picks_what_there_is_and_cuda_without_a_gpu_is_a_clear_error() -> None:
    from learning.core.reward_learning import DeviceUnavailable, resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="device must be one of"):
        RewardTrainingConfig(device="tpu")  # type: ignore[arg-type]
    data = linear_reward_dataset(segments=20, pairs=20)
    _, result = train_reward_model(data, SMALL_NET, replace(FAST, max_epochs=1, device="auto"))
    assert result.device == resolve_device("auto").type
    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailable, match="no CUDA device; use 'auto' or 'cpu'"):
            train_reward_model(data, SMALL_NET, replace(FAST, device="cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_mixed_precision_on_cuda_learns_the_linear_reward_like_float32() -> None:
    data = linear_reward_dataset()
    cuda = replace(FAST, device="cuda")
    _, mixed = train_reward_model(data, SMALL_NET, replace(cuda, mixed_precision=True))
    _, full = train_reward_model(data, SMALL_NET, replace(cuda, mixed_precision=False))
    assert mixed.device.startswith("cuda") and mixed.held_out_accuracy >= 0.95
    assert abs(mixed.held_out_accuracy - full.held_out_accuracy) <= 0.03


def test_training_is_deterministic_for_a_seed() -> None:
    dataset = linear_reward_dataset(segments=50, pairs=100)
    config = RewardTrainingConfig(max_epochs=3, seed=7)
    first, result_1 = train_reward_model(dataset, SMALL_NET, config)
    second, result_2 = train_reward_model(dataset, SMALL_NET, config)
    other, _ = train_reward_model(dataset, SMALL_NET, RewardTrainingConfig(max_epochs=3, seed=8))

    for name, tensor in first.state_dict().items():
        torch.testing.assert_close(tensor, second.state_dict()[name], atol=0, rtol=0)
    assert result_1.history == result_2.history
    assert not torch.equal(first.layers[0].weight, other.layers[0].weight)


def test_callback_sees_progress_and_can_stop_training() -> None:
    dataset = linear_reward_dataset(segments=50, pairs=100)
    callback = RecordingCallback(stop_after_steps=4)
    config = RewardTrainingConfig(batch_size=16, max_epochs=50, report_every_steps=2)

    _, result = train_reward_model(dataset, SMALL_NET, config, callback=callback)

    assert result.stop_reason == "callback" and result.steps == 4 and result.epochs == 1
    assert [step for step, _ in callback.history] == [2, 4]
    assert set(callback.history[0][1]) == {"epoch", "train_loss", "train_accuracy"}


def test_early_stopping_keeps_the_best_epoch() -> None:
    config = RewardTrainingConfig(lr=3e-2, max_epochs=200, patience=2, random_response=0.0)
    _, result = train_reward_model(linear_reward_dataset(segments=50, pairs=100), SMALL_NET, config)
    assert result.stop_reason == "early_stopping" and result.epochs < 200
    losses = [row["held_out_loss"] for row in result.history]
    assert result.best_epoch == losses.index(min(losses)) + 1
    assert result.held_out_loss == pytest.approx(min(losses), rel=1e-4)


def test_a_held_out_split_too_small_to_trust_is_reported_but_does_not_steer() -> None:
    # 40 pairs: 8 held out, fewer than min_held_out_pairs = 20. With patience 1 and a high lr
    # the held-out loss would stop training within a few epochs if it were allowed to.
    dataset = linear_reward_dataset(segments=30, pairs=40)
    config = RewardTrainingConfig(lr=3e-2, max_epochs=12, patience=1, random_response=0.0)
    assert config.min_held_out_pairs == 20

    steered_model, steered = train_reward_model(
        dataset, SMALL_NET, replace(config, min_held_out_pairs=0)
    )
    model, result = train_reward_model(dataset, SMALL_NET, config)

    assert steered.stop_reason == "early_stopping" and steered.epochs < 12
    assert result.stop_reason == "max_epochs" and result.epochs == result.best_epoch == 12
    # Still held out and reported, every epoch and at the end.
    assert result.num_train_pairs == 32 and result.num_held_out_pairs == 8
    assert all("held_out_loss" in row for row in result.history)
    assert 0.0 <= result.held_out_accuracy <= 1.0
    # The result is the last epoch's weights, not the lowest held-out loss's.
    losses = [row["held_out_loss"] for row in result.history]
    assert losses.index(min(losses)) + 1 < 12
    assert result.held_out_loss == pytest.approx(losses[-1], rel=1e-4)
    assert not torch.equal(model.layers[0].weight, steered_model.layers[0].weight)


def test_min_held_out_pairs_must_not_be_negative() -> None:
    with pytest.raises(ConfigError, match="min_held_out_pairs must be ≥ 0"):
        RewardTrainingConfig(min_held_out_pairs=-1)


def test_desirability_labels_put_desirable_clips_above_zero() -> None:
    # With desirability labels "return > 0", the raw reward's zero point is learned too:
    # BT alone leaves it free.
    dataset = linear_reward_dataset(segments=100, pairs=100, desirability=True)
    config = RewardTrainingConfig(
        lr=3e-3, max_epochs=30, random_response=0.0, held_out_fraction=0.0
    )
    ensemble, result = train_reward_model(dataset, SMALL_NET, config)
    raw = ensemble.segment_returns(
        dataset.observations, dataset.actions, normalise_output=False
    ).mean(0)
    assert dataset.desirability is not None
    agreement = ((raw > 0).float() == dataset.desirability).float().mean()
    assert agreement > 0.9
    assert result.num_held_out_pairs == 0 and result.stop_reason == "max_epochs"
    assert result.held_out_accuracy != result.held_out_accuracy  # NaN: nothing held out


def test_dataset_rejects_inconsistent_shapes_and_cant_tell_answers() -> None:
    obs = torch.zeros(3, 5, 2)
    with pytest.raises(PreferenceDataError, match="actions"):
        PreferenceDataset(obs, torch.zeros(3, 4, 1), [[0, 1]], [1.0])
    with pytest.raises(PreferenceDataError, match="outside"):
        PreferenceDataset(obs, None, [[0, 3]], [1.0])
    with pytest.raises(PreferenceDataError, match="can't tell"):
        PreferenceDataset(obs, None, [[0, 1]], [float("nan")])
    with pytest.raises(PreferenceDataError, match=r"\(M,\)"):
        PreferenceDataset(obs, None, [[0, 1]], [1.0, 0.0])


# ----------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_restores_weights_normalisation_and_configs(tmp_path) -> None:
    dataset = linear_reward_dataset(segments=50, pairs=100)
    config = RewardTrainingConfig(max_epochs=2, seed=3)
    ensemble, result = train_reward_model(dataset, SMALL_NET, config)
    path = tmp_path / "reward.pt"

    save_reward_model(path, ensemble, train_config=config, extra={"metrics": result.summary()})
    loaded = load_reward_model(path)

    assert loaded.net_config == SMALL_NET and loaded.train_config == config
    assert loaded.extra["metrics"]["steps"] == result.steps
    torch.testing.assert_close(
        loaded.ensemble(dataset.observations, dataset.actions),
        ensemble(dataset.observations, dataset.actions),
        atol=0,
        rtol=0,
    )
    assert float(loaded.ensemble.out_scale[0]) != 1.0  # the output normalisation came back too


def test_checkpoint_loader_refuses_foreign_files(tmp_path) -> None:
    pickled = tmp_path / "evil.pt"
    torch.save({"format": "x", "obj": RecordingCallback()}, pickled)  # not weights-only loadable
    with pytest.raises(RewardCheckpointError, match="Could not read"):
        load_reward_model(pickled)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(RewardCheckpointError, match="not a PrefLab"):
        load_reward_model(other)


# ----------------------------------------------------------------------------- resuming


class SavingCallback:
    """Saves every training state it is handed to ``path`` (the last one wins)."""

    def __init__(self, path) -> None:
        self.path = path
        self.epochs: list[int] = []

    def on_step(self, step: int, metrics) -> bool:
        return True

    def on_checkpoint(self, state: TrainingState) -> None:
        save_training_state(self.path, state)
        self.epochs.append(state.epoch)


def test_n_epochs_then_save_load_and_n_more_equal_2n_epochs_in_one_go(tmp_path) -> None:
    dataset = linear_reward_dataset(segments=60, pairs=120)
    # patience > epochs: the early-stopping bookkeeping is carried, not triggered.
    config = RewardTrainingConfig(lr=3e-3, batch_size=16, max_epochs=6, patience=20, seed=5)
    straight, straight_result = train_reward_model(dataset, SMALL_NET, config)

    saver = SavingCallback(tmp_path / "state.pt")
    train_reward_model(dataset, SMALL_NET, replace(config, max_epochs=3), callback=saver)
    assert saver.epochs == [1, 2, 3]
    state = load_training_state(tmp_path / "state.pt")
    assert state.epoch == 3 and len(state.history) == 3 and state.best_model is not None
    resumed, resumed_result = train_reward_model(dataset, SMALL_NET, config, start=state)

    # Bit for bit on the CPU: same weights, Adam moments, draws and best-epoch choice.
    for name, tensor in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], tensor, atol=0, rtol=0)
    assert resumed_result.history == straight_result.history
    assert (resumed_result.epochs, resumed_result.steps, resumed_result.best_epoch) == (
        straight_result.epochs,
        straight_result.steps,
        straight_result.best_epoch,
    )
    assert resumed_result.held_out_accuracy == straight_result.held_out_accuracy


def test_a_training_state_loads_weights_only_and_refuses_a_different_net(tmp_path) -> None:
    dataset = linear_reward_dataset(segments=30, pairs=40)
    saver = SavingCallback(tmp_path / "state.pt")
    config = RewardTrainingConfig(max_epochs=1, seed=1)
    train_reward_model(dataset, SMALL_NET, config, callback=saver)
    payload = torch.load(tmp_path / "state.pt", weights_only=True)  # no pickled objects inside
    assert payload["training"]["epoch"] == 1
    assert load_reward_model(tmp_path / "state.pt").ensemble.members == 3  # weights load too

    state = load_training_state(tmp_path / "state.pt")
    with pytest.raises(ResumeMismatch, match="saved for net"):
        train_reward_model(dataset, replace(SMALL_NET, ensemble_size=2), config, start=state)
    ensemble, _ = train_reward_model(dataset, SMALL_NET, config)
    save_reward_model(tmp_path / "model.pt", ensemble)
    with pytest.raises(RewardCheckpointError, match="not a training state"):
        load_training_state(tmp_path / "model.pt")


# ----------------------------------------------------------------------------- warm start, fixed split


def test_a_warm_start_begins_from_the_given_ensemble_and_converges_in_fewer_epochs() -> None:
    dataset = linear_reward_dataset()
    config = replace(FAST, max_epochs=200, patience=5)
    first, fresh = train_reward_model(dataset, SMALL_NET, config)

    # Weights and input statistics come from `init`: a zero learning rate changes nothing.
    still, _ = train_reward_model(dataset, SMALL_NET, replace(config, lr=1e-12, max_epochs=1), init=first)
    raw = {"normalise_output": False}
    torch.testing.assert_close(
        still(dataset.observations, dataset.actions, **raw), first(dataset.observations, dataset.actions, **raw)
    )
    torch.testing.assert_close(still.obs_mean, first.obs_mean)

    # Starting from a fitted model, early stopping ends the refit sooner, as good as before.
    _, warm = train_reward_model(dataset, SMALL_NET, config, init=first)
    assert warm.epochs < fresh.epochs
    assert warm.held_out_accuracy >= fresh.held_out_accuracy - 0.02


def test_restandardising_inputs_follows_new_data_and_keeps_the_function() -> None:
    generator = torch.Generator().manual_seed(0)
    ensemble = RewardEnsemble(SMALL_NET, (4,), 1, generator=generator)
    ensemble.fit_input_normalisation(torch.randn(50, 10, 4, generator=generator), torch.randn(50, 10, 1))
    moved_obs = 5 + 3 * torch.randn(50, 10, 4, generator=generator)  # a policy that went elsewhere
    moved_act = torch.randn(50, 10, 1, generator=generator) - 2
    before = ensemble(moved_obs, moved_act, normalise_output=False)

    ensemble.restandardise_inputs(moved_obs, moved_act)

    torch.testing.assert_close(ensemble.obs_mean, moved_obs.reshape(-1, 4).mean(0))
    torch.testing.assert_close(ensemble(moved_obs, moved_act, normalise_output=False), before, rtol=1e-4, atol=1e-4)


def test_a_warm_start_refuses_an_ensemble_of_another_shape() -> None:
    dataset = linear_reward_dataset(segments=30, pairs=40)
    other, _ = train_reward_model(dataset, replace(SMALL_NET, ensemble_size=2), RewardTrainingConfig(max_epochs=1))
    with pytest.raises(ResumeMismatch, match="init was built for another net"):
        train_reward_model(dataset, SMALL_NET, RewardTrainingConfig(max_epochs=1), init=other)


def test_a_held_out_mask_replaces_the_random_split() -> None:
    dataset = linear_reward_dataset(segments=30, pairs=40)
    mask = torch.zeros(40, dtype=torch.bool)
    mask[[3, 7, 11]] = True
    _, result = train_reward_model(dataset, SMALL_NET, RewardTrainingConfig(max_epochs=1), held_out=mask)
    assert (result.num_train_pairs, result.num_held_out_pairs) == (37, 3)
    with pytest.raises(ValueError, match="bool mask over the pairs"):
        train_reward_model(dataset, SMALL_NET, RewardTrainingConfig(max_epochs=1), held_out=mask[:10])
