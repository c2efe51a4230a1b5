"""Adversarial value learners from desirable clips: GAIL (Ho & Ermon 2016) and AIRL (Fu et al.
2018), with the clips labelled desirable as the expert set and the policy's own rollouts plus
the clips labelled undesirable as negatives.

The discriminator (:class:`Discriminator`):

- GAIL: D(s, a) = σ(g(s, a)).
- AIRL: D(s, a, s') = exp f / (exp f + π(a|s)) with f(s, a, s') = g(s, a) + γ·h(s') − h(s):
  a reward term g plus potential shaping by h; the logit is f − log π(a|s), with π the
  generator's current policy.

Both export the reward their logit defines, through :class:`AdversarialReward` (a
:class:`~learning.core.finetune.LearnedReward`): GAIL log D − log(1 − D) = g(s, a); AIRL
f(s, a, s') (the entropy term log π is the RL algorithm's own business: SAC adds it, and
PPO's entropy bonus stands in for it). Episode ends use absorbing states (Kostrikov et al.
2019, as in :mod:`learning.core.finetune`): a policy episode that terminates continues into an
absorbing state the expert never visits, and the reward is measured from that state's value,
so the learner neither survives nor dies for the sign of a logit's shift.

Stability: an R1 gradient penalty (Mescheder et al. 2018) on the expert inputs,
``gradient_penalty · E_expert ||∇ logit||²``, plus input standardisation.

The training recipe (:func:`train_adversarial`) alternates two named steps:
:func:`generator_step` (the SB3 policy trains against the current discriminator's reward for
``steps_per_round`` env steps and the episodes it played become negatives) and
:func:`discriminator_step` (one minibatch update of the discriminator; ``discriminator_updates``
of them per round), then rewrites the reward in the replay buffer of an off-policy learner.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from learning.core.callbacks import TrainingCallback
from learning.core.configs import ACTIVATIONS, DEVICES, ConfigError, _ConfigBase
from learning.core.finetune import (
    Episode,
    EpisodeRecorder,
    EvaluationResult,
    FinetuneConfig,
    LearnedRewardVecEnv,
    act_dim_of,
    add_absorbing_feature,
    algo_name,
    build_model,
    evaluate_policy,
    make_vec_env,
    relabel_replay_buffer,
    train_policy,
)
from learning.core.loop import Segments

__all__ = [
    "ADVERSARIAL_KINDS",
    "AdversarialConfig",
    "AdversarialResult",
    "AdversarialReward",
    "Discriminator",
    "Transitions",
    "demonstrations_from_expert",
    "discriminator_loss",
    "discriminator_step",
    "episode_transitions",
    "generator_step",
    "gradient_penalty",
    "policy_log_prob",
    "segment_transitions",
    "train_adversarial",
]

ADVERSARIAL_KINDS = ("gail", "airl")


@dataclass(frozen=True)
class AdversarialConfig(_ConfigBase):
    """Hyperparameters of GAIL/AIRL training (the generator's are a :class:`FinetuneConfig`)."""

    kind: str = "airl"
    """``airl`` (reward term plus potential shaping; logit f − log π) or ``gail``."""

    hidden_sizes: tuple[int, ...] = (64, 64)
    """Widths of the hidden layers of g (and of h for AIRL)."""

    activation: str = "relu"
    """Nonlinearity: one of ``ACTIVATIONS``."""

    lr: float = 1e-3
    """Adam learning rate of the discriminator."""

    batch_size: int = 256
    """Expert transitions per discriminator minibatch (and as many negatives)."""

    total_env_steps: int = 100_000
    """Generator env steps in all."""

    steps_per_round: int = 4_096
    """Generator env steps between discriminator phases."""

    discriminator_updates: int = 32
    """Discriminator minibatch updates per round."""

    gradient_penalty: float = 1.0
    """Weight of the R1 penalty E_expert ||∇ logit||² on the expert inputs (0 disables)."""

    policy_buffer: int = 20_000
    """Most recent policy transitions kept as negatives."""

    undesirable_fraction: float = 0.25
    """Share of each negative minibatch drawn from the undesirable clips, when there are any."""

    gamma: float = 0.98
    """AIRL's shaping discount γ in g + γ·h(s') − h(s); set it to the RL discount."""

    absorbing: bool = True
    """Absorbing states at terminations, and rewards measured from the absorbing state's
    value (module docstring)."""

    seed: int = 0
    """Seeds the discriminator's weights and the minibatch draws."""

    device: str = "auto"
    """Where the discriminator trains: ``auto``, ``cpu`` or ``cuda``."""

    def __post_init__(self) -> None:
        checks = [
            (self.kind in ADVERSARIAL_KINDS, f"kind must be one of {ADVERSARIAL_KINDS}, got {self.kind!r}"),
            (all(h >= 1 for h in self.hidden_sizes), f"hidden_sizes must be positive, got {self.hidden_sizes}"),
            (self.activation in ACTIVATIONS, f"activation must be one of {ACTIVATIONS}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.batch_size >= 1, f"batch_size must be ≥ 1, got {self.batch_size}"),
            (self.total_env_steps >= 1, "total_env_steps must be ≥ 1"),
            (self.steps_per_round >= 1, "steps_per_round must be ≥ 1"),
            (self.discriminator_updates >= 0, "discriminator_updates must be ≥ 0"),
            (self.gradient_penalty >= 0, f"gradient_penalty must be ≥ 0, got {self.gradient_penalty}"),
            (self.policy_buffer >= self.batch_size, "policy_buffer must be ≥ batch_size"),
            (0 <= self.undesirable_fraction < 1, "undesirable_fraction must be in [0, 1)"),
            (0 < self.gamma <= 1, f"gamma must be in (0, 1], got {self.gamma}"),
            (self.device in DEVICES, f"device must be one of {DEVICES}, got {self.device!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message + ".")


# --------------------------------------------------------------------------- data


@dataclass
class Transitions:
    """N transitions (s, a, s'), observations with the absorbing flag as last feature when
    absorbing states are used.

    obs:      (N, obs_dim') float32
    act:      (N, act_dim) float32, encoded (one-hot for Discrete; zeros from an absorbing state)
    next_obs: (N, obs_dim') float32
    """

    obs: np.ndarray
    act: np.ndarray
    next_obs: np.ndarray

    def __post_init__(self) -> None:
        n = self.obs.shape[0]
        if self.act.shape[0] != n or self.next_obs.shape != self.obs.shape:
            raise ValueError(
                f"transitions disagree: obs {self.obs.shape}, act {self.act.shape}, "
                f"next_obs {self.next_obs.shape}."
            )

    def __len__(self) -> int:
        return int(self.obs.shape[0])

    @staticmethod
    def concatenate(parts: Sequence[Transitions]) -> Transitions:
        return Transitions(
            np.concatenate([p.obs for p in parts]),
            np.concatenate([p.act for p in parts]),
            np.concatenate([p.next_obs for p in parts]),
        )


def segment_transitions(segments: Segments) -> Transitions:
    """The T − 1 transitions inside each of S segments (the last step has no successor in the
    clip): (S·(T−1)) transitions, absorbing steps included as they are."""
    obs = segments.observations[:, :-1]  # (S, T−1, D)
    return Transitions(
        obs.reshape(-1, obs.shape[-1]),
        segments.actions[:, :-1].reshape(-1, segments.actions.shape[-1]),
        segments.observations[:, 1:].reshape(-1, obs.shape[-1]),
    )


def episode_transitions(episodes: Sequence[Episode], *, absorbing: bool) -> Transitions:
    """Transitions of whole episodes. A terminated episode's last step leads into the
    absorbing state, followed by one absorbing→absorbing transition (with ``absorbing``); a
    truncated episode's last step has no recorded successor and is dropped."""
    parts = []
    for episode in episodes:
        obs = episode.observations
        flag = np.zeros((obs.shape[0], int(absorbing)), np.float32)
        obs = np.concatenate([obs, flag], 1)
        act = episode.actions
        nxt = obs[1:]
        if episode.terminated and absorbing:
            sink = np.zeros((1, obs.shape[1]), np.float32)
            sink[0, -1] = 1.0
            parts.append(Transitions(obs, act, np.concatenate([nxt, sink])))
            parts.append(Transitions(sink, np.zeros((1, act.shape[1]), np.float32), sink))
        elif len(nxt):
            parts.append(Transitions(obs[:-1], act[:-1], nxt))
    if not parts:
        raise ValueError("No transitions: every episode was a single truncated step.")
    return Transitions.concatenate(parts)


def demonstrations_from_expert(
    env_id: str, *, episodes: int, segment_length: int, seed: int = 0, absorbing: bool = True
) -> Segments:
    """Desirable clips for benchmarks and tests: the scripted expert's episodes
    (:mod:`learning.core.scripted`) cut into consecutive ``segment_length``-step segments."""
    from learning.core.finetune import encode_actions
    from learning.core.rollouts import collect_episode, make_env, policy_for

    env = make_env(env_id, render=False)
    expert = policy_for("scripted", env)
    recorded = []
    try:
        for episode in range(episodes):
            rollout = collect_episode(env, expert, seed=seed * 1000 + episode, render=False)
            recorded.append(
                Episode(
                    observations=rollout.observations.astype(np.float32).reshape(rollout.length, -1),
                    actions=encode_actions(rollout.actions, env.action_space),
                    rewards=rollout.rewards,
                    terminated=bool(rollout.terminations[-1]),
                )
            )
    finally:
        env.close()
    observations, actions, rewards = [], [], []
    for episode in recorded:
        # Consecutive, non-overlapping windows: an expert clip shows the expert acting.
        for start in range(0, episode.length - segment_length + 1, segment_length):
            window = slice(start, start + segment_length)
            obs = episode.observations[window]
            if absorbing:
                obs = np.concatenate([obs, np.zeros((segment_length, 1), np.float32)], 1)
            observations.append(obs)
            actions.append(episode.actions[window])
            rewards.append(episode.rewards[window])
    if not observations:
        raise ValueError(f"The expert's episodes are shorter than {segment_length} steps.")
    return Segments(np.stack(observations), np.stack(actions), np.stack(rewards))


# --------------------------------------------------------------------------- the discriminator


def _mlp(widths: Sequence[int], activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    act = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU}[activation]
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


class Discriminator(nn.Module):
    """GAIL's D(s, a) or AIRL's D(s, a, s'), as logits.

    ``f(obs, act, next_obs)`` → (N,): GAIL g(s, a); AIRL g(s, a) + γ·h(s') − h(s).
    ``logits(obs, act, next_obs, log_pi)`` → (N,): GAIL f; AIRL f − log π(a|s).
    Inputs: obs/next_obs (N, obs_dim'), act (N, act_dim), standardised with statistics set by
    :meth:`fit_normalisation`.
    """

    def __init__(self, config: AdversarialConfig, obs_dim: int, act_dim: int) -> None:
        super().__init__()
        self.config = config
        self.kind = config.kind
        self.gamma = config.gamma
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.g = _mlp([obs_dim + act_dim, *config.hidden_sizes, 1], config.activation)
        self.h = _mlp([obs_dim, *config.hidden_sizes, 1], config.activation) if self.kind == "airl" else None
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))
        self.register_buffer("act_mean", torch.zeros(act_dim))
        self.register_buffer("act_std", torch.ones(act_dim))
        self.register_buffer("absorbing_seen", torch.zeros((), dtype=torch.bool))
        """Whether absorbing transitions were among the negatives it trained on: only then
        does the absorbing state's value mean anything."""

    @torch.no_grad()
    def fit_normalisation(self, obs: torch.Tensor, act: torch.Tensor) -> None:
        """Standardise inputs with the mean/std of obs (N, obs_dim') and act (N, act_dim)."""
        self.obs_mean.copy_(obs.mean(0))
        self.obs_std.copy_(obs.std(0, unbiased=False).clamp_min(1e-3))
        if self.config.absorbing:  # the 0/1 flag stays as it is: it may first vary later
            self.obs_mean[-1], self.obs_std[-1] = 0.0, 1.0
        self.act_mean.copy_(act.mean(0))
        self.act_std.copy_(act.std(0, unbiased=False).clamp_min(1e-3))

    def f(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        s = (obs - self.obs_mean) / self.obs_std
        a = (act - self.act_mean) / self.act_std
        value = self.g(torch.cat([s, a], -1)).squeeze(-1)
        if self.h is not None:
            s_next = (next_obs - self.obs_mean) / self.obs_std
            value = value + self.gamma * self.h(s_next).squeeze(-1) - self.h(s).squeeze(-1)
        return value

    def logits(
        self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor, log_pi: torch.Tensor | None
    ) -> torch.Tensor:
        f = self.f(obs, act, next_obs)
        if self.kind == "airl":
            if log_pi is None:
                raise ValueError("AIRL's logit needs log π(a|s) of the generator.")
            return f - log_pi
        return f


def discriminator_loss(
    expert_logits: torch.Tensor, negative_logits: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Binary cross-entropy, expert = 1, negatives = 0: expert_logits (B,), negative_logits (M,).

    Metrics: ``disc_loss``, ``expert_accuracy`` (logit > 0), ``policy_accuracy`` (logit < 0).
    """
    loss = F.binary_cross_entropy_with_logits(
        expert_logits, torch.ones_like(expert_logits)
    ) + F.binary_cross_entropy_with_logits(negative_logits, torch.zeros_like(negative_logits))
    with torch.no_grad():
        metrics = {
            "disc_loss": loss.detach(),
            "expert_accuracy": (expert_logits > 0).float().mean(),
            "policy_accuracy": (negative_logits < 0).float().mean(),
        }
    return loss, metrics


def gradient_penalty(outputs: torch.Tensor, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """R1 penalty E ||∇_x outputs||² over the given input tensors (which must require grad):
    outputs (B,), inputs each (B, ·) → scalar, differentiable (create_graph)."""
    # allow_unused: GAIL's logit does not look at s', which is fine (its gradient is zero).
    grads = torch.autograd.grad(outputs.sum(), list(inputs), create_graph=True, allow_unused=True)
    squared = [(g.reshape(g.shape[0], -1) ** 2).sum(-1) for g in grads if g is not None]
    return torch.stack(squared).sum(0).mean()


# --------------------------------------------------------------------------- the policy's log π


def policy_log_prob(model: Any, obs: torch.Tensor, act: torch.Tensor, action_space: gym.Space[Any]) -> torch.Tensor:
    """log π(a|s) of an SB3 PPO/A2C/SAC policy: obs (N, obs_dim) env observations (no
    absorbing flag), act (N, act_dim) encoded actions → (N,), no gradient. SAC's squashed
    Gaussian is evaluated at the action rescaled to [-1, 1] and kept inside it."""
    name = algo_name(model)
    policy = model.policy
    with torch.no_grad():
        obs = obs.to(policy.device)
        act = act.to(policy.device)
        if isinstance(action_space, gym.spaces.Discrete):
            actions = act.argmax(-1)
        else:
            actions = act.reshape(-1, *action_space.shape)
        if name == "sac":
            low = torch.as_tensor(action_space.low, device=obs.device)
            high = torch.as_tensor(action_space.high, device=obs.device)
            scaled = (2.0 * (actions - low) / (high - low) - 1.0).clamp(-1 + 1e-3, 1 - 1e-3)
            mean, log_std, _ = policy.actor.get_action_dist_params(obs)
            distribution = policy.actor.action_dist.proba_distribution(mean, log_std)
            return distribution.log_prob(scaled).reshape(-1)
        if name in ("ppo", "a2c"):
            _, log_prob, _ = policy.evaluate_actions(obs, actions)
            return log_prob.reshape(-1)
    raise ConfigError(f"AIRL needs a stochastic policy (ppo, a2c or sac), not {name}; use gail.")


# --------------------------------------------------------------------------- the reward


class AdversarialReward:
    """A discriminator as a :class:`~learning.core.finetune.LearnedReward`: GAIL g(s, a), AIRL
    f(s, a, s'), minus the same at the absorbing state (s = s' = absorbing, a = 0) when
    ``absorbing``. Call :meth:`refresh` after the discriminator changed."""

    def __init__(self, discriminator: Discriminator, *, absorbing: bool, device: torch.device) -> None:
        self.discriminator = discriminator
        self.absorbing = absorbing
        self.device = device
        self.baseline = 0.0
        self.refresh()

    @torch.no_grad()
    def refresh(self) -> None:
        if not self.absorbing or not bool(self.discriminator.absorbing_seen):
            self.baseline = 0.0
            return
        sink = torch.zeros(1, self.discriminator.obs_dim, device=self.device)
        sink[0, -1] = 1.0
        act = torch.zeros(1, self.discriminator.act_dim, device=self.device)
        self.baseline = float(self.discriminator.f(sink, act, sink)[0])

    @torch.no_grad()
    def __call__(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        if self.absorbing:
            obs, next_obs = add_absorbing_feature(obs, 0.0), add_absorbing_feature(next_obs, 0.0)
        return self.discriminator.f(obs, act, next_obs) - self.baseline


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
    inputs. AIRL needs the generator ``model`` and its ``action_space`` for log π.
    Returns float metrics (``disc_loss``, ``expert_accuracy``, ``policy_accuracy``, ``r1``)."""
    device = discriminator.obs_mean.device
    obs_e = torch.as_tensor(expert.obs, device=device).requires_grad_(config.gradient_penalty > 0)
    act_e = torch.as_tensor(expert.act, device=device).requires_grad_(config.gradient_penalty > 0)
    next_e = torch.as_tensor(expert.next_obs, device=device).requires_grad_(config.gradient_penalty > 0)
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
    r1 = torch.zeros((), device=device)
    if config.gradient_penalty > 0:
        r1 = gradient_penalty(expert_logits, [obs_e, act_e, next_e])
        loss = loss + config.gradient_penalty * r1
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    out = {k: float(v) for k, v in metrics.items()}
    out["r1"] = float(r1.detach())
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
        model = init
        model.set_env(venv)
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
        n_bad = int(round(config.batch_size * config.undesirable_fraction)) if undesirable_t is not None else 0
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
