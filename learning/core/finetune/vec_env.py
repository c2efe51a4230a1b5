"""The SB3 vectorised-env wrapper that replaces the env reward by the learned one."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from learning.core.configs import ConfigError
from learning.core.finetune.episodes import EpisodeRecorder
from learning.core.finetune.rewards import LearnedReward, encode_actions

__all__ = ["LearnedRewardVecEnv", "make_vec_env"]


def make_vec_env(env_id: str, n_envs: int, *, seed: int) -> Any:
    """``n_envs`` copies of ``env_id`` in one process (``DummyVecEnv``; classic-control steps
    are microseconds, so subprocesses would only add IPC), each with a ``Monitor`` so episode
    returns are the env's true ones."""
    from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env

    try:
        return sb3_make_vec_env(env_id, n_envs=n_envs, seed=seed)
    except gym.error.Error as exc:
        raise ConfigError(f"Cannot build environment {env_id!r}: {exc}") from None


def _vec_env_wrapper_base() -> type:
    from stable_baselines3.common.vec_env import VecEnvWrapper

    return VecEnvWrapper


class LearnedRewardVecEnv(_vec_env_wrapper_base()):  # type: ignore[misc]
    """SB3 ``VecEnvWrapper`` whose rewards are ``reward(obs_t, a_t, obs_{t+1})`` for all sub-envs
    in one batched call on ``reward.device``; ``reward=None`` passes the env's reward through.

    The env's own reward is kept in ``info["true_reward"]``; ``recorder`` (when given) receives
    every step, encoded actions and true rewards, so episodes can be cut into new segments.
    ``set_reward`` swaps the reward model between training rounds.
    """

    def __init__(
        self,
        venv: Any,
        reward: LearnedReward | None,
        *,
        recorder: EpisodeRecorder | None = None,
    ) -> None:
        super().__init__(venv)
        self.reward = reward
        self.recorder = recorder
        self._last_obs: np.ndarray | None = None
        self._actions: np.ndarray | None = None

    def set_reward(self, reward: LearnedReward | None) -> None:
        self.reward = reward

    def reset(self) -> np.ndarray:
        self._last_obs = self.venv.reset()
        return self._last_obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)
        self.venv.step_async(actions)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        obs, true_rewards, dones, infos = self.venv.step_wait()
        assert self._last_obs is not None and self._actions is not None, "step before reset"
        # After an auto-reset, obs[i] is the next episode's first state; the state this step
        # really led to is the terminal observation SB3 keeps in the info.
        next_obs = obs.copy()
        for i, done in enumerate(dones):
            if done and "terminal_observation" in infos[i]:
                next_obs[i] = infos[i]["terminal_observation"]
        encoded = encode_actions(self._actions, self.action_space)
        rewards = true_rewards
        if self.reward is not None:
            rewards = self.compute(self._last_obs, encoded, next_obs)
        terminated = np.array(
            [bool(d) and not info.get("TimeLimit.truncated", False) for d, info in zip(dones, infos)]
        )
        for info, true in zip(infos, true_rewards):
            info["true_reward"] = float(true)
        if self.recorder is not None:
            self.recorder.add(self._last_obs, encoded, true_rewards, dones, terminated)
        self._last_obs = obs
        return obs, rewards.astype(np.float32), dones, infos

    def compute(self, obs: np.ndarray, act: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """The learned reward of a batch: obs (N, *obs_shape), encoded act (N, act_dim),
        next_obs (N, *obs_shape) → (N,) float32 numpy, one forward pass."""
        assert self.reward is not None
        device = self.reward.device
        with torch.no_grad():
            out = self.reward(
                torch.as_tensor(obs, dtype=torch.float32, device=device),
                torch.as_tensor(act, dtype=torch.float32, device=device),
                torch.as_tensor(next_obs, dtype=torch.float32, device=device),
            )
        return out.float().cpu().numpy()
