"""Transitions (s, a, s') from clips and from the policy's episodes; expert clips for benchmarks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from learning.core.finetune import (
    Episode,
)
from learning.core.loop import Segments

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
