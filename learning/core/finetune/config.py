"""The fine-tuning config and the choice of algorithm."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import torch

from learning.core.configs import DEVICES, ConfigError, _ConfigBase

__all__ = ["FINETUNE_ALGORITHMS", "FinetuneConfig", "resolve_algo"]

FINETUNE_ALGORITHMS = ("auto", "ppo", "sac", "dqn", "a2c")


@dataclass(frozen=True)
class FinetuneConfig(_ConfigBase):
    """How a policy is trained with Stable-Baselines3 against a (learned) reward.

    One config serves every algorithm: fields that an algorithm does not use are ignored by it
    (``n_steps`` only matters to PPO/A2C, ``buffer_size`` only to SAC/DQN). The defaults are
    rl-zoo3's tuned values for the classic-control tasks, merged where they agree, except that PPO and
    A2C keep a small entropy bonus against a learned reward (``ent_coef``).
    """

    algo: str = "auto"
    """``ppo``, ``sac``, ``dqn``, ``a2c``, or ``auto``: SAC for continuous (Box) actions, PPO
    for discrete ones."""

    total_steps: int = 100_000
    """Environment steps (summed over the ``n_envs`` copies) that :func:`finetune_policy` trains for."""

    n_envs: int = 4
    """Copies of the env stepped together; the learned reward is computed for all in one batch."""

    learning_rate: float = 1e-3
    """Adam learning rate of the policy (and value/Q) nets (rl-zoo3: 1e-3 for SAC Pendulum,
    PPO CartPole, PPO Pendulum)."""

    gamma: float = 0.98
    """Discount factor."""

    net_arch: tuple[int, ...] = (64, 64)
    """Hidden layer widths of the policy and value/Q nets."""

    # PPO / A2C
    n_steps: int = 256
    """PPO/A2C: steps per env per rollout (the update batch is ``n_steps · n_envs``)."""

    batch_size: int = 256
    """Minibatch size (PPO's SGD minibatch; SAC/DQN's replay sample)."""

    n_epochs: int = 10
    """PPO: passes over each rollout."""

    gae_lambda: float = 0.9
    """PPO/A2C: GAE λ."""

    clip_range: float = 0.2
    """PPO: policy-ratio clip."""

    ent_coef: float = 0.01
    """PPO/A2C: entropy bonus (SAC tunes its own temperature automatically). Not rl-zoo3's 0, which
    is tuned for the true reward: against a learned reward, a policy with no entropy bonus can
    settle early into a mode the reward never lifts it out of (about one CartPole seed in six in
    the label-efficiency benchmark; none of 24 with 0.01, docs/benchmarks.md)."""

    anneal: bool = True
    """PPO/A2C: decay the learning rate (and PPO's clip range) linearly to 0 over the whole
    training run — all of ``total_steps``, or all of a preference loop's policy steps across its
    rounds — as rl-zoo3 does for PPO on CartPole. Without it the last updates are as large as the
    first and the final policy can drift off a good one. SAC and DQN ignore it (their replay data
    outlives any one stretch of the schedule)."""

    use_sde: bool = False
    """PPO/SAC with Box actions: generalised state-dependent exploration."""

    # SAC / DQN
    buffer_size: int = 100_000
    """SAC/DQN: replay buffer transitions."""

    learning_starts: int = 1_000
    """SAC/DQN: env steps of uniform random actions before learning starts."""

    train_freq: int = 1
    """SAC/DQN: env steps (per env) between updates."""

    gradient_steps: int = 1
    """SAC/DQN: gradient steps per update (−1: as many as env steps collected)."""

    tau: float = 0.005
    """SAC: Polyak coefficient of the target critics."""

    target_update_interval: int = 10
    """DQN: env steps between target-network copies."""

    exploration_fraction: float = 0.16
    """DQN: fraction of ``total_steps`` over which ε decays to ``exploration_final_eps``."""

    exploration_final_eps: float = 0.04
    """DQN: final ε of ε-greedy exploration."""

    # learned reward
    std_penalty: float = 0.0
    """λ in r = mean − λ·std over the ensemble's members (pessimism where members disagree);
    0 uses the mean alone. Ignored by single-net rewards."""

    absorbing: bool = True
    """Subtract the learned reward of the absorbing state from every reward, so an episode's
    termination is valued as the labels value it (see the module docstring). No effect when
    the reward model was never shown an absorbing state."""

    eval_episodes: int = 10
    """Episodes of the deterministic policy for the true-return evaluation at the end (0: none)."""

    report_every_steps: int = 2_000
    """Env steps between ``on_step`` reports (a cancel is seen within this many steps)."""

    seed: int = 0
    """Seeds the envs, the SB3 model and the evaluation."""

    device: str = "auto"
    """Where the policy trains and the learned reward runs: ``auto`` (CUDA when available),
    ``cpu`` or ``cuda``. Small MLP policies train fastest on CPU even on a GPU host."""

    def __post_init__(self) -> None:
        checks: list[tuple[bool, str]] = [
            (self.algo in FINETUNE_ALGORITHMS, f"algo must be one of {FINETUNE_ALGORITHMS}, got {self.algo!r}"),
            (self.total_steps >= 1, f"total_steps must be ≥ 1, got {self.total_steps}"),
            (self.n_envs >= 1, f"n_envs must be ≥ 1, got {self.n_envs}"),
            (self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}"),
            (0 < self.gamma <= 1, f"gamma must be in (0, 1], got {self.gamma}"),
            (all(w >= 1 for w in self.net_arch), f"net_arch widths must be ≥ 1, got {self.net_arch}"),
            (self.n_steps >= 1, f"n_steps must be ≥ 1, got {self.n_steps}"),
            (self.batch_size >= 1, f"batch_size must be ≥ 1, got {self.batch_size}"),
            (self.n_epochs >= 1, f"n_epochs must be ≥ 1, got {self.n_epochs}"),
            (0 <= self.gae_lambda <= 1, f"gae_lambda must be in [0, 1], got {self.gae_lambda}"),
            (self.clip_range > 0, f"clip_range must be > 0, got {self.clip_range}"),
            (self.ent_coef >= 0, f"ent_coef must be ≥ 0, got {self.ent_coef}"),
            (self.buffer_size >= 1, f"buffer_size must be ≥ 1, got {self.buffer_size}"),
            (self.learning_starts >= 0, f"learning_starts must be ≥ 0, got {self.learning_starts}"),
            (self.train_freq >= 1, f"train_freq must be ≥ 1, got {self.train_freq}"),
            (self.gradient_steps >= 1 or self.gradient_steps == -1, "gradient_steps must be ≥ 1 or −1"),
            (0 < self.tau <= 1, f"tau must be in (0, 1], got {self.tau}"),
            (self.target_update_interval >= 1, "target_update_interval must be ≥ 1"),
            (0 < self.exploration_fraction <= 1, "exploration_fraction must be in (0, 1]"),
            (0 <= self.exploration_final_eps <= 1, "exploration_final_eps must be in [0, 1]"),
            (self.std_penalty >= 0, f"std_penalty must be ≥ 0, got {self.std_penalty}"),
            (self.eval_episodes >= 0, f"eval_episodes must be ≥ 0, got {self.eval_episodes}"),
            (self.report_every_steps >= 1, "report_every_steps must be ≥ 1"),
            (self.device in DEVICES, f"device must be one of {DEVICES}, got {self.device!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message + ".")
        if self.algo in ("ppo", "a2c") and self.n_steps * self.n_envs < 2:
            raise ConfigError("PPO/A2C need n_steps · n_envs ≥ 2 (one rollout must hold two steps).")


def resolve_algo(algo: str, action_space: gym.Space[Any]) -> str:
    """``auto`` → ``sac`` for Box actions, ``ppo`` otherwise; an algorithm that cannot act in
    ``action_space`` (SAC with discrete actions, DQN with continuous) is a ConfigError."""
    continuous = isinstance(action_space, gym.spaces.Box)
    if algo == "auto":
        return "sac" if continuous else "ppo"
    if algo == "sac" and not continuous:
        raise ConfigError("SAC needs continuous (Box) actions; use ppo or dqn for discrete ones.")
    if algo == "dqn" and not isinstance(action_space, gym.spaces.Discrete):
        raise ConfigError("DQN needs Discrete actions; use sac or ppo for continuous ones.")
    return algo


def _device(name: str) -> torch.device:
    from learning.core.reward_learning import resolve_device

    return resolve_device(name)
