"""learning.core fine-tuning and behavioural cloning: real Gymnasium envs, real SB3, on CPU."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from learning.core.bc import BCConfig, bc_loss, behaviour_clone
from learning.core.callbacks import RecordingCallback
from learning.core.configs import ConfigError, RewardNetConfig, RewardTrainingConfig
from learning.core.finetune import (
    EnsembleReward,
    Episode,
    EpisodeRecorder,
    FinetuneConfig,
    LearnedRewardVecEnv,
    LinearDecay,
    build_model,
    encode_actions,
    evaluate_policy,
    finetune_policy,
    load_policy,
    make_vec_env,
    relabel_replay_buffer,
    save_policy,
)
from learning.core.loop import (
    PreferenceLoopConfig,
    Segments,
    cut_segments,
    preference_loop,
    select_pairs,
    teacher_labeler,
)
from learning.core.nets import RewardEnsemble
from learning.core.rollouts import CheckpointError, collect_episode, make_env, policy_for
from learning.core.selection import disagreement_scores, sample_candidate_pairs
from learning.core.teachers import teacher

torch.set_num_threads(1)

TINY = FinetuneConfig(
    total_steps=256, n_envs=2, n_steps=64, batch_size=64, n_epochs=2, learning_starts=64,
    buffer_size=1_000, eval_episodes=1, report_every_steps=64, device="cpu", net_arch=(16,),
)


def _ensemble(obs_dim: int, act_dim: int, *, members: int = 3, seed: int = 0) -> RewardEnsemble:
    config = RewardNetConfig(hidden_sizes=(16,), ensemble_size=members)
    ensemble = RewardEnsemble(config, (obs_dim,), act_dim, generator=torch.Generator().manual_seed(seed))
    return ensemble.eval()


# ----------------------------------------------------------------------------- the wrapper


def test_wrapper_rewards_in_one_batch_equal_per_step_calls() -> None:
    venv = make_vec_env("Pendulum-v1", 4, seed=0)
    reward = EnsembleReward(_ensemble(3, 1), std_penalty=0.5)
    recorder = EpisodeRecorder()
    wrapped = LearnedRewardVecEnv(venv, reward, recorder=recorder)
    obs = wrapped.reset()
    rng = np.random.default_rng(0)
    for _ in range(5):
        actions = rng.uniform(-2, 2, size=(4, 1)).astype(np.float32)
        next_obs, rewards, _, infos = wrapped.step(actions)
        one_by_one = [
            float(reward(torch.as_tensor(obs[i : i + 1]), torch.as_tensor(actions[i : i + 1]),
                         torch.as_tensor(next_obs[i : i + 1]))[0])
            for i in range(4)
        ]
        np.testing.assert_allclose(rewards, one_by_one, atol=1e-5)
        # mean − 0.5·std over members, by hand, for the first env
        members = reward.ensemble(torch.as_tensor(obs[:1]), torch.as_tensor(actions[:1]))[:, 0]
        expected = members.mean() - 0.5 * members.std(unbiased=False)
        assert rewards[0] == pytest.approx(float(expected.detach()), abs=1e-5)
        assert all("true_reward" in info for info in infos)
        assert not np.allclose(rewards, [info["true_reward"] for info in infos])
        obs = next_obs
    wrapped.close()


def test_wrapper_records_episodes_with_terminations_and_one_hot_actions() -> None:
    recorder = EpisodeRecorder()
    wrapped = LearnedRewardVecEnv(make_vec_env("CartPole-v1", 2, seed=1), None, recorder=recorder)
    wrapped.reset()
    for _ in range(200):
        wrapped.step(np.array([0, 0]))  # always push left: the pole falls within ~10 steps
    episodes = recorder.drain()
    assert len(episodes) >= 4 and all(e.terminated for e in episodes)
    first = episodes[0]
    assert first.observations.shape == (first.length, 4)
    np.testing.assert_array_equal(first.actions, np.tile([1.0, 0.0], (first.length, 1)))
    np.testing.assert_array_equal(first.rewards, np.ones(first.length))  # true reward kept
    assert recorder.drain() == []


def test_absorbing_baseline_is_subtracted() -> None:
    ensemble = _ensemble(5, 2)  # CartPole obs (4) + the absorbing flag
    plain = EnsembleReward(ensemble)
    absorbing = EnsembleReward(ensemble, absorbing=True)
    obs, act = torch.randn(7, 4), torch.as_tensor(encode_actions(np.arange(7) % 2, gym.spaces.Discrete(2)))
    flagged = torch.cat([obs, torch.zeros(7, 1)], 1)
    terminal = torch.zeros(1, 5)
    terminal[0, -1] = 1.0
    expected = plain(flagged, act, flagged) - plain(terminal, torch.zeros(1, 2), terminal)
    torch.testing.assert_close(absorbing(obs, act, obs), expected)


# ----------------------------------------------------------------------------- fine-tuning


@pytest.mark.parametrize(
    ("algo", "env_id"), [("ppo", "CartPole-v1"), ("sac", "Pendulum-v1"), ("dqn", "CartPole-v1")]
)
def test_tiny_finetune_runs_against_the_learned_reward(algo: str, env_id: str) -> None:
    env = gym.make(env_id)
    obs_dim, act_dim = env.observation_space.shape[0], encode_actions(
        np.asarray([env.action_space.sample()]), env.action_space
    ).shape[1]
    env.close()
    reward = EnsembleReward(_ensemble(obs_dim, act_dim), std_penalty=1.0)
    recording = RecordingCallback()
    result = finetune_policy(replace(TINY, algo=algo), env_id, reward, callback=recording)
    assert result.env_steps >= 256 and result.stop_reason == "total_steps"
    assert type(result.model).__name__.lower() == algo
    assert result.evaluation is not None and np.isfinite(result.evaluation.mean_return)
    assert [step for step, _ in recording.history][:2] == [64, 128]
    assert "true_return_mean" in recording.history[-1][1]


def test_linear_decay_follows_the_run_across_learn_calls() -> None:
    # A run of 1,000 steps that began at step 200, in two learn() calls of 500 steps. SB3 hands
    # the schedule the progress remaining of the current call: 1 − num_timesteps / call_end.
    first, second = LinearDecay(1.0, 200, 1_000, 700), LinearDecay(1.0, 200, 1_000, 1_200)
    assert first(1 - 200 / 700) == pytest.approx(1.0)
    assert first(1 - 450 / 700) == pytest.approx(0.75)
    assert first(0.0) == pytest.approx(0.5) == second(1 - 700 / 1_200)
    assert second(0.0) == pytest.approx(0.0)


@pytest.mark.parametrize(("algo", "anneal"), [("ppo", True), ("ppo", False), ("sac", True)])
def test_anneal_decays_on_policy_learning_rate_and_clip_range_to_zero(
    algo: str, anneal: bool, tmp_path: Path
) -> None:
    env_id = "CartPole-v1" if algo == "ppo" else "Pendulum-v1"
    config = replace(TINY, algo=algo, anneal=anneal, eval_episodes=0, learning_rate=3e-4)
    model = finetune_policy(config, env_id, None).model
    lr = model.policy.optimizer.param_groups[0]["lr"] if algo == "ppo" else model.actor.optimizer.param_groups[0]["lr"]
    if algo == "ppo" and anneal:
        # Two rollouts of 128 steps in a 256-step run: the updates ran at 1/2 and 0 of the rate.
        assert lr == pytest.approx(0.0)
        assert model.clip_range(1.0) == pytest.approx(config.clip_range)
        assert model.clip_range(0.0) == pytest.approx(0.0)
        model.save(tmp_path / "annealed.zip")  # the schedules pickle with the model
        loaded = type(model).load(tmp_path / "annealed.zip")
        assert loaded.predict(np.zeros(4, dtype=np.float32), deterministic=True)[0] in (0, 1)
    else:
        assert lr == pytest.approx(3e-4)  # constant, and SAC ignores anneal


def test_anneal_spans_every_round_of_a_preference_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    import learning.core.loop as loop_module

    models: list[object] = []
    learning_rates: list[float] = []

    def build(config, venv):  # type: ignore[no-untyped-def]
        models.append(build_model(config, venv))
        return models[-1]

    class AfterEachRound(RecordingCallback):
        def on_step(self, step: int, metrics: dict[str, float]) -> bool:
            if "round" in metrics:
                learning_rates.append(models[-1].policy.optimizer.param_groups[0]["lr"])
            return super().on_step(step, metrics)

    monkeypatch.setattr(loop_module, "build_model", build)
    preference_loop(
        "CartPole-v1",
        teacher_labeler(teacher("oracle"), seed=0),
        PreferenceLoopConfig(total_env_steps=1_068, total_labels=24, segment_length=10, rounds=3,
                             initial_steps=300, segments_per_round=40),
        RewardNetConfig(hidden_sizes=(16,), ensemble_size=2),
        RewardTrainingConfig(max_epochs=2, device="cpu"),
        replace(TINY, anneal=True, eval_episodes=0),
        callback=AfterEachRound(),
    )
    # 768 policy steps in 3 rounds of 256 (two 128-step rollouts each): the last update of
    # each round ran at 1 − 256/768, 1 − 512/768 and 0 of the rate, not at 0 every round.
    assert learning_rates == pytest.approx([TINY.learning_rate * 2 / 3, TINY.learning_rate / 3, 0.0])


def test_callback_false_stops_finetuning() -> None:
    result = finetune_policy(
        replace(TINY, algo="ppo", total_steps=2_000, eval_episodes=0),
        "CartPole-v1",
        None,
        callback=RecordingCallback(stop_after_steps=128),
    )
    assert result.stop_reason == "callback" and result.env_steps < 2_000 and result.evaluation is None


def test_replay_buffer_relabelled_with_the_new_reward() -> None:
    wrapped = LearnedRewardVecEnv(make_vec_env("Pendulum-v1", 2, seed=0), EnsembleReward(_ensemble(3, 1, seed=0)))
    model = build_model(replace(TINY, algo="sac"), wrapped)
    model.learn(200)
    wrapped.set_reward(EnsembleReward(_ensemble(3, 1, seed=1)))
    assert relabel_replay_buffer(model, wrapped) == 200
    buffer = model.replay_buffer
    obs, next_obs = buffer.observations[:100, 0], buffer.next_observations[:100, 0]
    actions = model.policy.unscale_action(buffer.actions[:100, 0])
    expected = wrapped.compute(obs, actions.astype(np.float32), next_obs)
    np.testing.assert_allclose(buffer.rewards[:100, 0], expected, atol=1e-5)


def test_algorithm_that_cannot_act_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="SAC needs continuous"):
        finetune_policy(replace(TINY, algo="sac"), "CartPole-v1", None)
    with pytest.raises(ConfigError, match="n_envs must be ≥ 1"):
        FinetuneConfig(n_envs=0)


def test_policy_checkpoint_round_trip_with_weights_only(tmp_path: Path) -> None:
    venv = make_vec_env("CartPole-v1", 1, seed=0)
    model = build_model(replace(TINY, algo="ppo"), venv)
    save_policy(tmp_path / "p.pt", model, replace(TINY, algo="ppo"), env_id="CartPole-v1")
    loaded, config, env_id = load_policy(tmp_path / "p.pt")
    assert env_id == "CartPole-v1" and config.algo == "ppo"
    obs = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_policy(tmp_path / "bad.pt")


# ----------------------------------------------------------------------------- BC


def _demonstrations(env_id: str, episodes: int, max_steps: int) -> tuple[np.ndarray, np.ndarray, float]:
    env = make_env(env_id, render=False)
    expert = policy_for("scripted", env)
    rollouts = [collect_episode(env, expert, seed=s, max_steps=max_steps, render=False) for s in range(episodes)]
    env.close()
    return (
        np.concatenate([r.observations for r in rollouts]),
        np.concatenate([r.actions for r in rollouts]),
        float(np.mean([r.true_return for r in rollouts])),
    )


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_bc_reaches_the_demonstrators_return_on_cartpole(algo: str) -> None:
    obs, actions, expert_return = _demonstrations("CartPole-v1", 4, 500)
    assert expert_return == 500.0
    model = build_model(replace(TINY, algo=algo, net_arch=(32, 32)), make_vec_env("CartPole-v1", 1, seed=0))
    before = evaluate_policy(model, "CartPole-v1", episodes=3).mean_return
    recording = RecordingCallback()
    result = behaviour_clone(model, obs, actions, BCConfig(epochs=20, seed=0), recording)
    after = evaluate_policy(model, "CartPole-v1", episodes=3).mean_return
    assert before < 200
    assert after >= 0.95 * expert_return, (after, result)
    assert result.held_out_accuracy > 0.9 and len(recording.history) == result.epochs


def test_bc_clones_a_continuous_controller_into_sac() -> None:
    obs, actions, _ = _demonstrations("Pendulum-v1", 6, 200)
    model = build_model(replace(TINY, algo="sac", net_arch=(64, 64)), make_vec_env("Pendulum-v1", 1, seed=0))
    with torch.no_grad():
        _, before = bc_loss(model, torch.as_tensor(obs), torch.as_tensor(actions))
    result = behaviour_clone(model, obs, actions, BCConfig(epochs=30, seed=0))
    # The squashed-Gaussian mode moves towards the controller's torques (error at least halved).
    assert result.held_out_mse < 0.6 * float(before["mse"]), (float(before["mse"]), result.held_out_mse)


# ----------------------------------------------------------------------------- the loop


def test_segments_past_a_termination_are_absorbing() -> None:
    episode = Episode(
        observations=np.arange(12, dtype=np.float32).reshape(3, 4) + 1,
        actions=np.eye(2, dtype=np.float32)[[0, 1, 0]],
        rewards=np.ones(3),
        terminated=True,
    )
    segments = cut_segments([episode], 5, 3, rng=np.random.default_rng(0))
    assert segments.observations.shape == (3, 5, 5)  # every start of the 3-step episode
    for obs, act, rew in zip(segments.observations, segments.actions, segments.rewards):
        real = int((obs[:, -1] == 0).sum())
        assert real in (1, 2, 3)  # at least the episode's first step is real
        np.testing.assert_array_equal(obs[real:, :4], 0)  # absorbing: zero observation …
        np.testing.assert_array_equal(obs[real:, 4], 1)  # … with the flag set
        np.testing.assert_array_equal(act[real:], 0)
        assert rew.sum() == real  # the teacher sees the fall as lost reward
    # A time-limited episode is only cut into whole windows.
    truncated = replace(episode, terminated=False)
    assert len(cut_segments([truncated], 5, 3, rng=np.random.default_rng(0))) == 0
    assert len(cut_segments([truncated], 2, 9, rng=np.random.default_rng(0))) == 2


def test_queries_go_to_the_pairs_the_ensemble_disputes() -> None:
    ensemble = _ensemble(3, 1, members=3)
    rng = np.random.default_rng(0)
    segments = Segments(
        rng.normal(size=(30, 4, 3)).astype(np.float32),
        rng.normal(size=(30, 4, 1)).astype(np.float32),
        np.zeros((30, 4)),
    )
    chosen = select_pairs(ensemble, segments, 5, candidate_factor=20, rng=np.random.default_rng(1))
    candidates = sample_candidate_pairs(30, 100, seed=int(np.random.default_rng(1).integers(2**31)))
    with torch.no_grad():
        returns = ensemble.segment_returns(torch.as_tensor(segments.observations), torch.as_tensor(segments.actions))
    scores = disagreement_scores(returns, candidates)
    chosen_scores = disagreement_scores(returns, chosen)
    assert chosen.shape == (5, 2)
    assert float(chosen_scores.min()) >= float(torch.sort(scores, descending=True).values[4].detach()) - 1e-7


@pytest.mark.slow
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_tiny_preference_loop_end_to_end(env_id: str) -> None:
    recording = RecordingCallback()
    result = preference_loop(
        env_id,
        teacher_labeler(teacher("mistake"), seed=0),
        PreferenceLoopConfig(total_env_steps=900, total_labels=24, segment_length=10, rounds=3,
                             initial_steps=300, segments_per_round=40),
        RewardNetConfig(hidden_sizes=(16,), ensemble_size=3),
        RewardTrainingConfig(max_epochs=5, device="cpu"),
        TINY,
        callback=recording,
    )
    assert result.labels_asked == 24 and result.env_steps == 900 and result.stop_reason == "budget"
    assert [record["round"] for record in result.history] == [0.0, 1.0, 2.0]
    assert result.history[-1]["labels"] == 24
    assert result.evaluation is not None and np.isfinite(result.evaluation.mean_return)
    assert type(result.model).__name__.lower() == ("ppo" if env_id == "CartPole-v1" else "sac")
    assert any("reward_held_out_accuracy" in m for _, m in recording.history)


@pytest.mark.parametrize("warm_start", [True, False])
def test_reward_refits_warm_start_from_the_last_ensemble_on_a_fixed_split(
    warm_start: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import learning.core.loop as loop_module

    calls: list[tuple[object, torch.Tensor | None, object]] = []
    real = loop_module.train_reward_model

    def recording(dataset, net_config, reward_config, **kwargs):  # type: ignore[no-untyped-def]
        ensemble, result = real(dataset, net_config, reward_config, **kwargs)
        calls.append((kwargs.get("init"), kwargs.get("held_out"), ensemble))
        return ensemble, result

    monkeypatch.setattr(loop_module, "train_reward_model", recording)
    preference_loop(
        "CartPole-v1",
        teacher_labeler(teacher("oracle"), seed=0),
        PreferenceLoopConfig(total_env_steps=700, total_labels=60, segment_length=10, rounds=3,
                             initial_steps=300, segments_per_round=40, warm_start=warm_start),
        RewardNetConfig(hidden_sizes=(16,), ensemble_size=2),
        RewardTrainingConfig(max_epochs=2, device="cpu"),
        replace(TINY, eval_episodes=0),
    )
    assert len(calls) == 3  # the first fit and one refit after each round but the last
    if not warm_start:
        assert all(init is None and held_out is None for init, held_out, _ in calls)
        return
    assert calls[0][0] is None
    for (_, earlier_mask, earlier_model), (init, mask, _) in itertools.pairwise(calls):
        assert init is earlier_model  # each refit starts from the ensemble of the round before
        assert earlier_mask is not None and mask is not None and len(mask) > len(earlier_mask)
        assert torch.equal(mask[: len(earlier_mask)], earlier_mask)  # a pair never changes side
    final_mask = calls[-1][1]
    assert final_mask is not None and 0 < int(final_mask.sum()) < len(final_mask)


def test_finetune_starts_from_an_imported_sb3_checkpoint(tmp_path: Path) -> None:
    model = build_model(replace(TINY, algo="ppo"), make_vec_env("CartPole-v1", 1, seed=0))
    obs, actions, _ = _demonstrations("CartPole-v1", 2, 200)
    behaviour_clone(model, obs, actions, BCConfig(epochs=10))
    cloned = model.predict(obs, deterministic=True)[0]
    model.save(tmp_path / "bc.zip")  # one env; fine-tuning runs two
    result = finetune_policy(
        replace(TINY, algo="ppo", total_steps=128, eval_episodes=0), "CartPole-v1", None,
        init=tmp_path / "bc.zip",
    )
    # One small PPO update from the cloned weights: it still acts as the clone almost everywhere,
    # where a fresh policy would agree about half the time.
    agreement = (result.model.predict(obs, deterministic=True)[0] == cloned).mean()
    assert result.env_steps == 128 and agreement > 0.9
    with pytest.raises(CheckpointError, match="does not exist"):
        finetune_policy(replace(TINY, algo="ppo"), "CartPole-v1", None, init=tmp_path / "missing.zip")
