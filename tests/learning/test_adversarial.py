"""learning.core adversarial value learners (GAIL, AIRL): discriminators, the two named steps,
the exported reward, and a tiny end-to-end run — real SB3 policies, on CPU."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from learning.core.adversarial import (
    AdversarialConfig,
    AdversarialReward,
    Discriminator,
    DiscriminatorCheckpointError,
    Transitions,
    demonstrations_from_expert,
    discriminator_step,
    episode_transitions,
    gradient_penalty,
    load_discriminator,
    save_discriminator,
    segment_transitions,
    train_adversarial,
)
from learning.core.callbacks import RecordingCallback
from learning.core.configs import ConfigError
from learning.core.finetune import (
    Episode,
    FinetuneConfig,
    LearnedRewardVecEnv,
    build_model,
    make_vec_env,
)

torch.set_num_threads(1)

TINY = FinetuneConfig(
    n_envs=2, n_steps=64, batch_size=64, n_epochs=2, learning_starts=64, buffer_size=2_000,
    eval_episodes=1, report_every_steps=128, device="cpu", net_arch=(16,),
)


def _toy(n: int, centre: float, rng: np.random.Generator) -> Transitions:
    """Pendulum-shaped transitions (3 obs features + absorbing flag 0, one torque) around
    ``centre``: the expert lives at +1, the policy at −1."""
    obs = np.concatenate([rng.normal(centre, 0.5, (n, 3)), np.zeros((n, 1))], 1).astype(np.float32)
    act = rng.normal(centre, 0.5, (n, 1)).astype(np.float32)
    return Transitions(obs, act, obs + rng.normal(0, 0.05, obs.shape).astype(np.float32))


@pytest.mark.parametrize("kind", ["gail", "airl"])
def test_discriminator_separates_expert_from_policy_samples(kind: str) -> None:
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    config = AdversarialConfig(kind=kind, hidden_sizes=(32, 32), max_accuracy=1.0, device="cpu")
    model = build_model(replace(TINY, algo="ppo"), make_vec_env("Pendulum-v1", 1, seed=0))
    discriminator = Discriminator(config, 4, 1)
    expert, policy = _toy(2_000, 1.0, rng), _toy(2_000, -1.0, rng)
    both = Transitions.concatenate([expert, policy])
    discriminator.fit_normalisation(torch.as_tensor(both.obs), torch.as_tensor(both.act))
    optimiser = torch.optim.Adam(discriminator.parameters(), lr=3e-3)
    for _ in range(80):
        e, p = rng.integers(2_000, size=128), rng.integers(2_000, size=128)
        metrics = discriminator_step(
            discriminator, optimiser,
            Transitions(expert.obs[e], expert.act[e], expert.next_obs[e]),
            Transitions(policy.obs[p], policy.act[p], policy.next_obs[p]),
            config=config, model=model, action_space=model.action_space,
        )
    assert metrics["expert_accuracy"] > 0.95 and metrics["policy_accuracy"] > 0.95, metrics
    # The exported reward ranks expert-like transitions above policy-like ones.
    reward = AdversarialReward(discriminator, absorbing=True, device=torch.device("cpu"))
    r_expert = reward(torch.as_tensor(expert.obs[:200, :3]), torch.as_tensor(expert.act[:200]), torch.as_tensor(expert.next_obs[:200, :3]))
    r_policy = reward(torch.as_tensor(policy.obs[:200, :3]), torch.as_tensor(policy.act[:200]), torch.as_tensor(policy.next_obs[:200, :3]))
    assert float(r_expert.mean()) > float(r_policy.mean()) + 1.0


def test_airl_is_reward_plus_potential_shaping() -> None:
    config = AdversarialConfig(kind="airl", gamma=0.9, hidden_sizes=(8,))
    discriminator = Discriminator(config, 3, 2)
    obs, act, nxt = torch.randn(5, 3), torch.randn(5, 2), torch.randn(5, 3)
    g = discriminator.g(torch.cat([obs, act], -1)).squeeze(-1)
    h = lambda x: discriminator.h(x).squeeze(-1)
    torch.testing.assert_close(discriminator.f(obs, act, nxt), g + 0.9 * h(nxt) - h(obs))
    log_pi = torch.randn(5)
    torch.testing.assert_close(discriminator.logits(obs, act, nxt, log_pi), g + 0.9 * h(nxt) - h(obs) - log_pi)
    with pytest.raises(ValueError, match="log π"):
        discriminator.logits(obs, act, nxt, None)


def test_gradient_penalty_is_the_squared_input_gradient() -> None:
    x = torch.randn(4, 3, requires_grad=True)
    y = (x * torch.tensor([1.0, 2.0, 3.0])).sum(-1)  # gradient (1, 2, 3) everywhere
    assert float(gradient_penalty(y, [x])) == pytest.approx(14.0)


def test_terminated_episodes_lead_into_the_absorbing_state() -> None:
    episode = Episode(np.ones((3, 2), np.float32), np.eye(2, dtype=np.float32)[[0, 1, 0]], np.ones(3), terminated=True)
    truncated = replace(episode, terminated=False)
    t = episode_transitions([episode], absorbing=True)
    assert len(t) == 4  # three steps plus the absorbing self-loop
    np.testing.assert_array_equal(t.next_obs[2], [0, 0, 1])
    np.testing.assert_array_equal(t.obs[3], [0, 0, 1])
    assert len(episode_transitions([truncated], absorbing=True)) == 2  # the last step has no successor


def test_expert_clips_become_transitions() -> None:
    demos = demonstrations_from_expert("CartPole-v1", episodes=1, segment_length=50)
    assert demos.observations.shape == (10, 50, 5) and demos.rewards.sum() == 500
    assert len(segment_transitions(demos)) == 10 * 49


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "algo", "env_id"),
    [("gail", "ppo", "CartPole-v1"), ("airl", "sac", "Pendulum-v1"), ("airl", "ppo", "CartPole-v1")],
)
def test_tiny_adversarial_run_end_to_end(kind: str, algo: str, env_id: str) -> None:
    demos = demonstrations_from_expert(env_id, episodes=1, segment_length=50)
    undesirable = demonstrations_from_expert(env_id, episodes=1, segment_length=50, seed=1)  # stand-in clips
    recording = RecordingCallback()
    result = train_adversarial(
        env_id, demos, undesirable,
        AdversarialConfig(kind=kind, total_env_steps=600, steps_per_round=300, discriminator_updates=2,
                          batch_size=32, policy_buffer=64, device="cpu"),
        replace(TINY, algo=algo), callback=recording,
    )
    assert result.env_steps == 600 and result.stop_reason == "budget"
    assert result.evaluation is not None and np.isfinite(result.evaluation.mean_return)
    assert any("disc_loss" in m for _, m in recording.history)
    # The learned reward drives fine-tuning through the same wrapper as the preference model.
    wrapped = LearnedRewardVecEnv(make_vec_env(env_id, 2, seed=0), result.reward)
    wrapped.reset()
    _, rewards, _, _ = wrapped.step(np.stack([wrapped.action_space.sample() for _ in range(2)]))
    assert rewards.shape == (2,) and np.isfinite(rewards).all()


def test_airl_with_dqn_is_a_config_error() -> None:
    demos = demonstrations_from_expert("CartPole-v1", episodes=1, segment_length=50)
    with pytest.raises(ConfigError, match="AIRL needs a stochastic policy"):
        train_adversarial("CartPole-v1", demos, None, AdversarialConfig(kind="airl", total_env_steps=10), replace(TINY, algo="dqn"))
    with pytest.raises(ConfigError, match="kind must be one of"):
        AdversarialConfig(kind="wail")


def test_discriminator_checkpoint_round_trip_with_weights_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    discriminator = Discriminator(AdversarialConfig(kind="airl", hidden_sizes=(8,)), 5, 2)
    discriminator.fit_normalisation(torch.randn(50, 5) * 3, torch.randn(50, 2))
    save_discriminator(tmp_path / "d.pt", discriminator, extra={"env_id": "CartPole-v1"})
    loaded, extra = load_discriminator(tmp_path / "d.pt")
    obs, act, nxt = torch.randn(6, 5), torch.randn(6, 2), torch.randn(6, 5)
    torch.testing.assert_close(loaded.f(obs, act, nxt), discriminator.f(obs, act, nxt))
    assert extra == {"env_id": "CartPole-v1"} and loaded.kind == "airl"
    (tmp_path / "x.pt").write_bytes(b"junk")
    with pytest.raises(DiscriminatorCheckpointError, match="x.pt"):
        load_discriminator(tmp_path / "x.pt")


def test_gradient_penalty_defaults_per_kind() -> None:
    assert AdversarialConfig(kind="gail").penalty_weight() == 10.0
    assert AdversarialConfig(kind="airl").penalty_weight() == 1.0
    assert AdversarialConfig(kind="gail", gradient_penalty=0.0).penalty_weight() == 0.0
    with pytest.raises(ConfigError, match="gradient_penalty must be"):
        AdversarialConfig(gradient_penalty=-1.0)


def test_gail_skips_updates_once_the_discriminator_wins() -> None:
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    config = AdversarialConfig(kind="gail", hidden_sizes=(32, 32), device="cpu")
    assert config.accuracy_ceiling() < 1.0 and AdversarialConfig(kind="airl").accuracy_ceiling() == 1.0
    discriminator = Discriminator(config, 4, 1)
    expert, policy = _toy(2_000, 1.0, rng), _toy(2_000, -1.0, rng)
    both = Transitions.concatenate([expert, policy])
    discriminator.fit_normalisation(torch.as_tensor(both.obs), torch.as_tensor(both.act))
    optimiser = torch.optim.Adam(discriminator.parameters(), lr=3e-3)
    skipped = []
    for _ in range(80):
        e, p = rng.integers(2_000, size=128), rng.integers(2_000, size=128)
        before = [w.detach().clone() for w in discriminator.parameters()]
        metrics = discriminator_step(
            discriminator, optimiser,
            Transitions(expert.obs[e], expert.act[e], expert.next_obs[e]),
            Transitions(policy.obs[p], policy.act[p], policy.next_obs[p]),
            config=config,
        )
        skipped.append(metrics["skipped"])
        moved = any(not torch.equal(a, b) for a, b in zip(before, discriminator.parameters()))
        accuracy = (metrics["expert_accuracy"] + metrics["policy_accuracy"]) / 2
        assert moved == (metrics["skipped"] == 0.0) and (metrics["skipped"] == 1.0) == (accuracy > config.accuracy_ceiling())
    assert 0 < sum(skipped) < len(skipped)
    with pytest.raises(ConfigError, match="max_accuracy must be"):
        AdversarialConfig(max_accuracy=0.5)
