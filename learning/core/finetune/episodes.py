"""What the policy did, recorded from a vectorised env into episodes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Episode", "EpisodeRecorder"]


@dataclass
class Episode:
    """One finished (or cut) episode of T steps as the policy saw it.

    observations: (T, *obs_shape) float32 — the state action t was taken in
    actions:      (T, act_dim) float32, encoded (one-hot for Discrete)
    rewards:      (T,) float64 — the env's true reward (research metrics and simulated teachers)
    terminated:   True when the last step ended the episode by termination (not a time limit)
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: bool

    @property
    def length(self) -> int:
        return int(self.observations.shape[0])


@dataclass
class EpisodeRecorder:
    """Collects what a vectorised env did into :class:`Episode` objects (per sub-env buffers,
    closed on done). ``episodes`` holds the finished ones; :meth:`drain` hands them over."""

    episodes: list[Episode] = field(default_factory=list)
    _open: dict[int, list[tuple[np.ndarray, np.ndarray, float]]] = field(default_factory=dict)

    def add(
        self,
        obs: np.ndarray,
        act: np.ndarray,
        rewards: np.ndarray,
        dones: np.ndarray,
        terminated: np.ndarray,
    ) -> None:
        """One vector step: obs (E, *obs_shape), act (E, act_dim), rewards/dones/terminated (E,)."""
        for i in range(obs.shape[0]):
            self._open.setdefault(i, []).append((obs[i], act[i], float(rewards[i])))
            if dones[i]:
                steps = self._open.pop(i)
                self.episodes.append(
                    Episode(
                        observations=np.stack([s[0] for s in steps]).astype(np.float32),
                        actions=np.stack([s[1] for s in steps]).astype(np.float32),
                        rewards=np.asarray([s[2] for s in steps], dtype=np.float64),
                        terminated=bool(terminated[i]),
                    )
                )

    def flush(self) -> None:
        """Close every open episode as cut short (not terminated): its steps so far become an
        :class:`Episode`, so a collection that stops mid-episode loses nothing."""
        for i in sorted(self._open):
            steps = self._open.pop(i)
            self.episodes.append(
                Episode(
                    observations=np.stack([s[0] for s in steps]).astype(np.float32),
                    actions=np.stack([s[1] for s in steps]).astype(np.float32),
                    rewards=np.asarray([s[2] for s in steps], dtype=np.float64),
                    terminated=False,
                )
            )

    def drain(self) -> list[Episode]:
        done, self.episodes = self.episodes, []
        return done
