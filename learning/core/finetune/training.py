"""Building, training, relabelling and evaluating SB3 models; the fine-tuning recipe."""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from learning.core.callbacks import TrainingCallback
from learning.core.finetune.config import FinetuneConfig, _device, resolve_algo
from learning.core.finetune.rewards import LearnedReward, encode_actions
from learning.core.finetune.vec_env import LearnedRewardVecEnv, make_vec_env

__all__ = [
    "EvaluationResult",
    "FinetuneResult",
    "LinearDecay",
    "algo_name",
    "attach_env",
    "build_model",
    "evaluate_policy",
    "finetune_policy",
    "relabel_replay_buffer",
    "set_schedules",
    "train_policy",
]


@dataclass(frozen=True)
class LinearDecay:
    """An SB3 schedule that decays ``initial`` linearly to 0 over a training run of ``total``
    env steps that began when the model had taken ``begin`` steps, correct across several
    ``learn()`` calls (a preference loop's rounds).

    SB3 hands a schedule the progress remaining *of the current* ``learn()`` call,
    ``1 − num_timesteps / call_end``; ``call_end`` (the model's step count at the end of that
    call) turns it back into the model's step count, and so into the run's progress. A plain
    class, so a saved model pickles it.
    """

    initial: float
    begin: int
    total: int
    call_end: int

    def __call__(self, progress_remaining: float) -> float:
        done = (1.0 - progress_remaining) * self.call_end - self.begin
        return self.initial * min(1.0, max(0.0, 1.0 - done / self.total))


def set_schedules(model: Any, config: FinetuneConfig, *, begin: int, total: int, steps: int) -> None:
    """Before ``model.learn(steps)``: when ``config.anneal`` and the model is on-policy (PPO,
    A2C), point its learning-rate (and PPO's clip-range) schedules at the run's progress —
    ``begin`` is the model's step count when the run began, ``total`` the run's env steps."""
    algo = algo_name(model)
    if not config.anneal or algo not in ("ppo", "a2c"):
        return
    call_end = int(model.num_timesteps) + steps
    model.lr_schedule = LinearDecay(config.learning_rate, begin, total, call_end)
    if algo == "ppo":
        model.clip_range = LinearDecay(config.clip_range, begin, total, call_end)


def build_model(config: FinetuneConfig, venv: Any) -> Any:
    """A fresh SB3 model (PPO/SAC/DQN/A2C per ``config.algo``) on ``venv``, seeded."""
    algo = resolve_algo(config.algo, venv.action_space)
    import stable_baselines3 as sb3

    device = _device(config.device)
    common: dict[str, Any] = {
        "learning_rate": config.learning_rate,
        "gamma": config.gamma,
        "seed": config.seed,
        "device": device,
        "verbose": 0,
    }
    arch = list(config.net_arch)
    if algo == "ppo":
        return sb3.PPO(
            "MlpPolicy",
            venv,
            n_steps=config.n_steps,
            batch_size=min(config.batch_size, config.n_steps * venv.num_envs),
            n_epochs=config.n_epochs,
            gae_lambda=config.gae_lambda,
            clip_range=config.clip_range,
            ent_coef=config.ent_coef,
            use_sde=config.use_sde and isinstance(venv.action_space, gym.spaces.Box),
            policy_kwargs={"net_arch": arch},
            **common,
        )
    if algo == "a2c":
        return sb3.A2C(
            "MlpPolicy",
            venv,
            n_steps=config.n_steps,
            gae_lambda=config.gae_lambda,
            ent_coef=config.ent_coef,
            policy_kwargs={"net_arch": arch},
            **common,
        )
    if algo == "sac":
        return sb3.SAC(
            "MlpPolicy",
            venv,
            buffer_size=config.buffer_size,
            learning_starts=config.learning_starts,
            batch_size=config.batch_size,
            tau=config.tau,
            train_freq=config.train_freq,
            gradient_steps=config.gradient_steps,
            use_sde=config.use_sde,
            policy_kwargs={"net_arch": arch},
            **common,
        )
    return sb3.DQN(
        "MlpPolicy",
        venv,
        buffer_size=config.buffer_size,
        learning_starts=config.learning_starts,
        batch_size=config.batch_size,
        train_freq=config.train_freq,
        gradient_steps=config.gradient_steps,
        target_update_interval=config.target_update_interval,
        exploration_fraction=config.exploration_fraction,
        exploration_final_eps=config.exploration_final_eps,
        policy_kwargs={"net_arch": arch},
        **common,
    )


def algo_name(model: Any) -> str:
    """``ppo`` / ``sac`` / ``dqn`` / ``a2c`` for an SB3 model."""
    return type(model).__name__.lower()


def _sb3_callback(callback: TrainingCallback | None, every: int, offset: int) -> Any:
    """SB3 ``BaseCallback`` that calls ``callback.on_step(step, metrics)`` every ``every`` env
    steps with ``step = offset + steps this call``; False from it stops ``learn``."""
    from stable_baselines3.common.callbacks import BaseCallback

    class _Bridge(BaseCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.next_report = every
            self.true_returns: list[float] = []
            self.stopped = False

        def _on_step(self) -> bool:
            for info in self.locals.get("infos", []):
                if "episode" in info:  # Monitor's summary: the env's own return
                    self.true_returns.append(float(info["episode"]["r"]))
            done = self.model.num_timesteps - self._start
            if callback is None or done < self.next_report:
                return True
            self.next_report += every
            recent = self.true_returns[-20:]
            metrics = {
                "env_steps": float(offset + done),
                "true_return_mean": float(np.mean(recent)) if recent else math.nan,
                "episodes": float(len(self.true_returns)),
            }
            keep_going = bool(callback.on_step(offset + done, metrics))
            self.stopped = not keep_going
            return keep_going

        def _on_training_start(self) -> None:
            self._start = self.model.num_timesteps

    return _Bridge()


def attach_env(model: Any, venv: Any, *, seed: int) -> Any:
    """``model`` (an SB3 model: BC-initialised, loaded, or from an earlier run) on ``venv``,
    seeded. SB3's ``set_env`` refuses a different number of envs (on-policy buffers are sized
    by it), so then the model is round-tripped through an in-memory save and loaded onto
    ``venv``, which keeps its weights and hyperparameters. Returns the model to train (possibly
    a new object)."""
    if model.n_envs == venv.num_envs:
        model.set_env(venv)
    else:
        buffer = io.BytesIO()
        model.save(buffer)
        buffer.seek(0)
        model = type(model).load(buffer, env=venv, device=model.device)
    model.set_random_seed(seed)
    return model


def train_policy(
    model: Any,
    steps: int,
    *,
    callback: TrainingCallback | None = None,
    report_every_steps: int = 2_000,
    step_offset: int = 0,
) -> tuple[bool, list[float]]:
    """Continue training ``model`` for ``steps`` env steps (on whatever env it holds, typically
    a :class:`LearnedRewardVecEnv`). Reports ``on_step(step_offset + steps so far, metrics)``
    every ``report_every_steps`` steps. Returns (stopped by the callback, true returns of the
    episodes finished meanwhile)."""
    bridge = _sb3_callback(callback, report_every_steps, step_offset)
    model.learn(total_timesteps=steps, callback=bridge, reset_num_timesteps=False, progress_bar=False)
    return bridge.stopped, bridge.true_returns


@torch.no_grad()
def relabel_replay_buffer(model: Any, wrapper: LearnedRewardVecEnv, *, chunk: int = 65_536) -> int:
    """Rewrite the rewards in an off-policy model's replay buffer with ``wrapper``'s current
    reward (PEBBLE, Lee et al. 2021): after the reward model is retrained, old transitions
    would otherwise teach the critic the old reward. Returns the number of transitions
    relabelled (0 for on-policy models, which keep no buffer)."""
    buffer = getattr(model, "replay_buffer", None)
    if buffer is None or wrapper.reward is None:
        return 0
    size = buffer.buffer_size if buffer.full else buffer.pos
    if size == 0:
        return 0
    obs = buffer.observations[:size]  # (size, E, *obs_shape)
    next_obs = buffer.next_observations[:size]
    actions = buffer.actions[:size]  # (size, E, *act_shape), scaled to [-1, 1] for Box
    flat = size * buffer.n_envs
    obs = obs.reshape(flat, *obs.shape[2:])
    next_obs = next_obs.reshape(flat, *next_obs.shape[2:])
    actions = actions.reshape(flat, *actions.shape[2:])
    space = wrapper.action_space
    if isinstance(space, gym.spaces.Box):
        actions = model.policy.unscale_action(actions)  # the buffer keeps the squashed action
    encoded = encode_actions(actions, space)
    rewards = np.concatenate(
        [
            wrapper.compute(obs[i : i + chunk], encoded[i : i + chunk], next_obs[i : i + chunk])
            for i in range(0, flat, chunk)
        ]
    )
    buffer.rewards[:size] = rewards.reshape(size, buffer.n_envs)
    return flat


@dataclass
class EvaluationResult:
    """True return of the deterministic policy over ``episodes`` episodes (research only)."""

    mean_return: float
    std_return: float
    mean_length: float
    returns: list[float]


def evaluate_policy(model: Any, env_id: str, *, episodes: int = 10, seed: int = 10_000) -> EvaluationResult:
    """Run the model's deterministic policy for ``episodes`` episodes of a fresh ``env_id``
    (seeds ``seed``, ``seed + 1``, …) and report the env's true return."""
    env = gym.make(env_id)
    returns, lengths = [], []
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + episode)
            total, length, done = 0.0, 0, False
            while not done:
                action, _ = model.predict(obs, deterministic=True)
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                length += 1
                done = terminated or truncated
            returns.append(total)
            lengths.append(length)
    finally:
        env.close()
    return EvaluationResult(
        mean_return=float(np.mean(returns)) if returns else math.nan,
        std_return=float(np.std(returns)) if returns else math.nan,
        mean_length=float(np.mean(lengths)) if lengths else math.nan,
        returns=returns,
    )


@dataclass
class FinetuneResult:
    """A fine-tuned model and what it achieved. ``evaluation`` is None with ``eval_episodes=0``."""

    model: Any
    env_steps: int
    stop_reason: str  # "total_steps" | "callback"
    evaluation: EvaluationResult | None
    train_true_returns: list[float]
    wall_time_s: float

    def summary(self) -> dict[str, Any]:
        return {
            "algo": algo_name(self.model),
            "env_steps": self.env_steps,
            "stop_reason": self.stop_reason,
            "true_return_mean": self.evaluation.mean_return if self.evaluation else math.nan,
            "true_return_std": self.evaluation.std_return if self.evaluation else math.nan,
            "wall_time_s": self.wall_time_s,
        }


def finetune_policy(
    config: FinetuneConfig,
    env_id: str,
    reward: LearnedReward | None,
    *,
    init: Any = None,
    callback: TrainingCallback | None = None,
) -> FinetuneResult:
    """Train a policy on ``env_id`` for ``config.total_steps`` env steps against ``reward``
    (None = the env's own reward, e.g. for the true-reward baseline).

    ``init``: None (scratch), an SB3 model (e.g. after :func:`learning.core.bc.behaviour_clone`,
    or from :func:`load_policy`), or a path to an SB3 ``.zip`` of ``config.algo`` (loaded through
    :func:`learning.core.rollouts.load_sb3_policy`, which checks the spaces). The model is
    moved onto a fresh wrapped env; its weights are where training starts. The callback gets
    ``on_step(env_steps, metrics)`` every ``config.report_every_steps`` steps; False stops.
    Returns the trained model and the true-return evaluation of its deterministic policy.
    """
    started = time.perf_counter()
    venv = LearnedRewardVecEnv(make_vec_env(env_id, config.n_envs, seed=config.seed), reward)
    if init is None:
        model = build_model(config, venv)
    else:
        if isinstance(init, (str, Path)):
            from learning.core.rollouts import load_sb3_policy

            probe = gym.make(env_id)
            try:
                algo = resolve_algo(config.algo, probe.action_space)
                init = load_sb3_policy(init, algo=algo, env=probe).model
            finally:
                probe.close()
        model = attach_env(init, venv, seed=config.seed)
    set_schedules(
        model, config, begin=int(model.num_timesteps), total=config.total_steps, steps=config.total_steps
    )
    stopped, true_returns = train_policy(
        model, config.total_steps, callback=callback, report_every_steps=config.report_every_steps
    )
    evaluation = (
        evaluate_policy(model, env_id, episodes=config.eval_episodes, seed=10_000 + config.seed)
        if config.eval_episodes
        else None
    )
    venv.close()
    return FinetuneResult(
        model=model,
        env_steps=int(model.num_timesteps),
        stop_reason="callback" if stopped else "total_steps",
        evaluation=evaluation,
        train_true_returns=true_returns,
        wall_time_s=time.perf_counter() - started,
    )
