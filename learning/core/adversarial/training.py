"""The two named steps (discriminator, generator) and the training recipe."""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from learning.core.adversarial.config import AdversarialConfig
from learning.core.adversarial.data import Transitions, episode_transitions, segment_transitions
from learning.core.adversarial.discriminator import (
    AdversarialReward,
    Discriminator,
    discriminator_loss,
    gradient_penalty,
    policy_log_prob,
)
from learning.core.callbacks import TrainingCallback
from learning.core.configs import ConfigError
from learning.core.finetune import (
    EpisodeRecorder,
    EvaluationResult,
    FinetuneConfig,
    LearnedRewardVecEnv,
    act_dim_of,
    algo_name,
    attach_env,
    build_model,
    evaluate_policy,
    make_vec_env,
    relabel_replay_buffer,
    train_policy,
)
from learning.core.loop import Segments

# --------------------------------------------------------------------------- the two steps


def _log_pi(model: Any, batch: Transitions, config: AdversarialConfig, space: gym.Space[Any], device: torch.device) -> torch.Tensor | None:
    if config.kind != "airl":
        return None
    obs = torch.as_tensor(batch.obs, device=device)
    env_obs = obs[:, :-1] if config.absorbing else obs
    log_pi = policy_log_prob(model, env_obs, torch.as_tensor(batch.act), space).to(device)
    if config.absorbing:  # the absorbing state has no policy: its transitions carry log π = 0
        log_pi = torch.where(obs[:, -1] > 0.5, torch.zeros_like(log_pi), log_pi)
    return log_pi


def discriminator_step(
    discriminator: Discriminator,
    optimiser: torch.optim.Optimizer,
    expert: Transitions,
    negatives: Transitions,
    *,
    config: AdversarialConfig,
    model: Any = None,
    action_space: gym.Space[Any] | None = None,
) -> dict[str, float]:
    """One Adam step of the discriminator on a minibatch: expert transitions (B) against
    negatives (M) — policy rollouts and undesirable clips — with the R1 penalty on the expert
    inputs. AIRL needs the generator ``model`` and its ``action_space`` for log π. No step when
    the accuracy on this minibatch is above ``config.accuracy_ceiling()`` (``skipped`` = 1).
    Returns float metrics (``disc_loss``, ``expert_accuracy``, ``policy_accuracy``, ``r1``,
    ``skipped``)."""
    device = discriminator.obs_mean.device
    weight = config.penalty_weight()
    obs_e = torch.as_tensor(expert.obs, device=device).requires_grad_(weight > 0)
    act_e = torch.as_tensor(expert.act, device=device).requires_grad_(weight > 0)
    next_e = torch.as_tensor(expert.next_obs, device=device).requires_grad_(weight > 0)
    log_pi_e = _log_pi(model, expert, config, action_space, device) if config.kind == "airl" else None
    log_pi_n = _log_pi(model, negatives, config, action_space, device) if config.kind == "airl" else None
    expert_logits = discriminator.logits(obs_e, act_e, next_e, log_pi_e)
    negative_logits = discriminator.logits(
        torch.as_tensor(negatives.obs, device=device),
        torch.as_tensor(negatives.act, device=device),
        torch.as_tensor(negatives.next_obs, device=device),
        log_pi_n,
    )
    loss, metrics = discriminator_loss(expert_logits, negative_logits)
    n_e, n_n = len(expert_logits), len(negative_logits)
    accuracy = float(metrics["expert_accuracy"] * n_e + metrics["policy_accuracy"] * n_n) / (n_e + n_n)
    if accuracy > config.accuracy_ceiling():  # it is already winning: leave it be
        out = {k: float(v) for k, v in metrics.items()}
        out.update(r1=0.0, skipped=1.0)
        return out
    r1 = torch.zeros((), device=device)
    if weight > 0:
        r1 = gradient_penalty(expert_logits, [obs_e, act_e, next_e])
        loss = loss + weight * r1
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    out = {k: float(v) for k, v in metrics.items()}
    out["r1"] = float(r1.detach())
    out["skipped"] = 0.0
    return out


def generator_step(
    model: Any,
    recorder: EpisodeRecorder,
    steps: int,
    *,
    absorbing: bool,
    callback: TrainingCallback | None = None,
    report_every_steps: int = 2_000,
    step_offset: int = 0,
) -> tuple[Transitions | None, bool, list[float]]:
    """Train the SB3 ``model`` (whose env is a :class:`LearnedRewardVecEnv` with the
    discriminator's reward and ``recorder``) for ``steps`` env steps. Returns (the transitions
    of the episodes it finished — the next negatives, or None if none finished; stopped by the
    callback; their true returns)."""
    stopped, true_returns = train_policy(
        model, steps, callback=callback, report_every_steps=report_every_steps, step_offset=step_offset
    )
    episodes = recorder.drain()
    transitions = episode_transitions(episodes, absorbing=absorbing) if episodes else None
    return transitions, stopped, true_returns


# --------------------------------------------------------------------------- the recipe


@dataclass
class AdversarialResult:
    model: Any
    """The generator: an SB3 model."""
    discriminator: Discriminator
    reward: AdversarialReward
    """The learned reward, usable by :func:`learning.core.finetune.finetune_policy`."""
    evaluation: EvaluationResult | None
    env_steps: int
    stop_reason: str  # "budget" | "callback"
    wall_time_s: float
    history: list[dict[str, float]] = field(default_factory=list)


def _sample(data: Transitions, n: int, rng: np.random.Generator) -> Transitions:
    index = rng.integers(len(data), size=n)
    return Transitions(data.obs[index], data.act[index], data.next_obs[index])


def train_adversarial(
    env_id: str,
    expert: Segments,
    undesirable: Segments | None,
    config: AdversarialConfig,
    finetune_config: FinetuneConfig,
    *,
    init: Any = None,
    callback: TrainingCallback | None = None,
) -> AdversarialResult:
    """GAIL or AIRL on ``env_id`` from desirable clips ``expert`` (S, T, obs_dim' …) and,
    optionally, undesirable clips as extra negatives; see the module docstring.

    Clips must carry the absorbing flag exactly when ``config.absorbing`` (as
    :func:`~learning.core.loop.cut_segments` makes them). ``init``: None or an SB3 model (e.g.
    BC-initialised). ``finetune_config.total_steps`` is ignored (``config.total_env_steps``
    rules). The callback gets ``on_step(env_steps, metrics)`` during policy training and after
    each round (discriminator metrics, ``train_true_return``); False stops.
    """
    started = time.perf_counter()
    from learning.core.reward_learning import resolve_device

    device = resolve_device(config.device)
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    expert_t = segment_transitions(expert)
    undesirable_t = segment_transitions(undesirable) if undesirable is not None and len(undesirable) else None

    recorder = EpisodeRecorder()
    venv = LearnedRewardVecEnv(
        make_vec_env(env_id, finetune_config.n_envs, seed=finetune_config.seed), None, recorder=recorder
    )
    space = venv.action_space
    obs_dim = int(np.prod(venv.observation_space.shape)) + int(config.absorbing)
    if expert_t.obs.shape[1] != obs_dim:
        raise ValueError(
            f"Expert clips have {expert_t.obs.shape[1]} observation features; {env_id} with "
            f"absorbing={config.absorbing} needs {obs_dim}."
        )
    discriminator = Discriminator(config, obs_dim, act_dim_of(space)).to(device)
    optimiser = torch.optim.Adam(discriminator.parameters(), lr=config.lr)
    reward = AdversarialReward(discriminator, absorbing=config.absorbing, device=device)
    venv.set_reward(reward)
    if init is None:
        model = build_model(finetune_config, venv)
    else:
        model = attach_env(init, venv, seed=finetune_config.seed)
    if config.kind == "airl" and algo_name(model) == "dqn":
        raise ConfigError("AIRL needs a stochastic policy (ppo, a2c or sac), not dqn; use gail.")

    negatives: deque[Transitions] = deque()
    held = 0
    history: list[dict[str, float]] = []
    env_steps, stopped, fitted = 0, False, False
    while env_steps < config.total_env_steps and not stopped:
        steps = min(config.steps_per_round, config.total_env_steps - env_steps)
        fresh, stopped, true_returns = generator_step(
            model, recorder, steps, absorbing=config.absorbing, callback=callback,
            report_every_steps=finetune_config.report_every_steps, step_offset=env_steps,
        )
        env_steps += steps
        if fresh is not None:
            negatives.append(fresh)
            held += len(fresh)
            while held - len(negatives[0]) >= config.policy_buffer:  # a FIFO of recent rollouts
                held -= len(negatives.popleft())
        if not negatives:
            continue
        pool = Transitions.concatenate(list(negatives))
        if config.absorbing and not bool(discriminator.absorbing_seen):
            discriminator.absorbing_seen.fill_(bool((pool.obs[:, -1] > 0.5).any()))
        if not fitted:  # standardise on the first expert + policy data; fixed afterwards
            both = Transitions.concatenate([expert_t, pool])
            discriminator.fit_normalisation(torch.as_tensor(both.obs, device=device), torch.as_tensor(both.act, device=device))
            fitted = True
        metrics: dict[str, float] = {}
        n_bad = round(config.batch_size * config.undesirable_fraction) if undesirable_t is not None else 0
        for _ in range(config.discriminator_updates):
            batch_neg = _sample(pool, config.batch_size - n_bad, rng)
            if n_bad:
                batch_neg = Transitions.concatenate([batch_neg, _sample(undesirable_t, n_bad, rng)])  # type: ignore[arg-type]
            metrics = discriminator_step(
                discriminator, optimiser, _sample(expert_t, config.batch_size, rng), batch_neg,
                config=config, model=model, action_space=space,
            )
        reward.refresh()
        relabel_replay_buffer(model, venv)
        record = {
            "env_steps": float(env_steps),
            "train_true_return": float(np.mean(true_returns)) if true_returns else math.nan,
            **metrics,
        }
        history.append(record)
        if callback is not None and not callback.on_step(env_steps, record):
            stopped = True
    venv.close()
    evaluation = (
        evaluate_policy(model, env_id, episodes=finetune_config.eval_episodes, seed=10_000 + finetune_config.seed)
        if finetune_config.eval_episodes
        else None
    )
    return AdversarialResult(
        model=model,
        discriminator=discriminator.eval(),
        reward=reward,
        evaluation=evaluation,
        env_steps=env_steps,
        stop_reason="callback" if stopped else "budget",
        wall_time_s=time.perf_counter() - started,
        history=history,
    )
