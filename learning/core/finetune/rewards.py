"""Learned rewards as batched callables: the protocol, the ensemble reward, action encoding and
the absorbing-state feature."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
import torch

from learning.core.nets import RewardEnsemble

__all__ = ["EnsembleReward", "LearnedReward", "act_dim_of", "add_absorbing_feature", "encode_actions"]


def act_dim_of(action_space: gym.Space[Any]) -> int:
    """Width of the encoded action: n for Discrete (one-hot), prod(shape) for Box."""
    if isinstance(action_space, gym.spaces.Discrete):
        return int(action_space.n)
    return int(np.prod(action_space.shape))


def encode_actions(actions: np.ndarray, action_space: gym.Space[Any]) -> np.ndarray:
    """Env actions (N,) ints or (N, *shape) floats → (N, act_dim) float32, one-hot for
    Discrete — the encoding :class:`~learning.core.data.PreferenceDataset` expects."""
    actions = np.asarray(actions)
    if isinstance(action_space, gym.spaces.Discrete):
        index = actions.reshape(-1).astype(np.int64) - int(action_space.start)
        out = np.zeros((index.shape[0], int(action_space.n)), dtype=np.float32)
        out[np.arange(index.shape[0]), index] = 1.0
        return out
    return actions.reshape(actions.shape[0], -1).astype(np.float32)


def add_absorbing_feature(obs: torch.Tensor | np.ndarray, flag: float = 0.0) -> torch.Tensor:
    """obs (..., obs_dim) → (..., obs_dim + 1) with a last feature of ``flag`` (1 marks the
    absorbing state, 0 a real one). Reward nets trained with absorbing padding take this input."""
    obs_t = torch.as_tensor(obs, dtype=torch.float32)
    return torch.cat([obs_t, torch.full((*obs_t.shape[:-1], 1), flag, device=obs_t.device)], -1)


@runtime_checkable
class LearnedReward(Protocol):
    """A learned per-step reward, evaluated for a batch of transitions in one call.

    ``__call__(obs, act, next_obs)``: obs (N, *obs_shape) float32, act (N, act_dim) float32
    (one-hot for discrete actions), next_obs (N, *obs_shape) float32 (the state the step led
    to; the terminal observation at an episode end), all on ``device`` → rewards (N,) float32,
    with the absorbing-state value already subtracted where the model has one. No gradients.
    """

    device: torch.device

    def __call__(
        self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor
    ) -> torch.Tensor: ...


class EnsembleReward:
    """A preference ensemble as a reward: r = mean_k r_k − λ·std_k r_k, minus the same quantity
    at the absorbing state when ``absorbing`` (the ensemble then takes obs_dim + 1 inputs, the
    last the absorbing flag).

    The members' outputs are already standardised (``fit_output_normalisation``), so the
    reward has roughly unit scale over the states it was trained on.
    """

    def __init__(
        self,
        ensemble: RewardEnsemble,
        *,
        std_penalty: float = 0.0,
        absorbing: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        self.device = torch.device(device) if device is not None else ensemble.obs_mean.device
        self.ensemble = ensemble.to(self.device).eval()
        self.std_penalty = float(std_penalty)
        self.absorbing = absorbing
        self.baseline = 0.0
        # Only a model that saw absorbing steps (the flag varied in its training data) knows
        # their value; otherwise the flag's input statistics are degenerate and it has none.
        if absorbing and float(ensemble.obs_std.reshape(-1)[-1]) > 1e-3:
            obs = torch.zeros(1, *ensemble.obs_shape, device=self.device)
            obs[..., -1] = 1.0
            act = torch.zeros(1, max(ensemble.act_dim, 1), device=self.device)
            self.baseline = float(self._combine(obs, act)[0])

    @torch.no_grad()
    def _combine(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        rewards = self.ensemble(obs, act if self.ensemble.act_dim else None)  # (K, N)
        value = rewards.mean(0)
        if self.std_penalty and rewards.shape[0] > 1:
            value = value - self.std_penalty * rewards.std(0, unbiased=False)
        return value

    @torch.no_grad()
    def __call__(
        self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor
    ) -> torch.Tensor:
        del next_obs  # r(s, a) does not look ahead
        if self.absorbing:
            obs = add_absorbing_feature(obs, 0.0)
        return self._combine(obs, act) - self.baseline
