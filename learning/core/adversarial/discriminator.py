"""The GAIL/AIRL discriminator, its loss and gradient penalty, the policy's log π, and the
exported reward."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import torch
import torch.nn.functional as F
from torch import nn

from learning.core.adversarial.config import AdversarialConfig
from learning.core.configs import ConfigError
from learning.core.finetune import (
    add_absorbing_feature,
    algo_name,
)

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
