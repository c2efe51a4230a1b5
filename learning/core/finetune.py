"""Policy fine-tuning against a learned reward, with Stable-Baselines3 (PPO, SAC, DQN, A2C).

The pieces, each usable alone:

- :class:`LearnedReward` — the protocol every learned reward follows: a batch of transitions
  (obs (N, *obs_shape), encoded actions (N, act_dim), next obs (N, *obs_shape)) in, per-step
  rewards (N,) out, in one forward pass on its device. :class:`EnsembleReward` wraps a
  preference :class:`~learning.core.nets.RewardEnsemble` (mean − λ·std over members);
  :class:`learning.core.adversarial.AdversarialReward` wraps an AIRL/GAIL discriminator.
- :class:`LearnedRewardVecEnv` — an SB3 ``VecEnvWrapper`` that replaces the env's rewards by
  the learned reward, computed for all sub-envs in one batched call, keeps the true reward in
  ``info["true_reward"]`` and can record finished episodes (:class:`EpisodeRecorder`) so the
  loop can cut new segments from what the policy did.
- :func:`build_model` / :func:`train_policy` / :func:`relabel_replay_buffer` /
  :func:`evaluate_policy` — make an SB3 model from a :class:`FinetuneConfig`, run it for a
  number of env steps reporting through ``on_step(step, metrics) -> bool``, rewrite the
  rewards an off-policy replay buffer holds after the reward model changed (PEBBLE, Lee et al.
  2021), and measure the env's true return (research only: annotators never see it).
- :func:`finetune_policy` — the recipe: build (or take ``init``: a BC-initialised model, an
  imported SB3 checkpoint, or nothing = scratch), wrap, train, evaluate.
- :func:`save_policy` / :func:`load_policy` — checkpoints of ``policy.state_dict()`` plus the
  config, loaded with ``torch.load(weights_only=True)``.

Episode ends. A learned reward is defined on states the agent visits; when an episode
*terminates* (CartPole's pole falls) the agent visits nothing more, which is worth exactly 0
to the RL algorithm. Whether ending is good or bad then depends on the sign of the learned
reward, which Bradley–Terry does not identify (it is only defined up to a shift). We follow
the absorbing-state convention (Kostrikov et al. 2019, "Discriminator-Actor-Critic"): segments
that end by termination are padded with an *absorbing state* (observation zeros plus a flag
feature of 1, action zeros, true reward 0 — the fixed-horizon reading of the episode) and the
reward nets see that flag as an extra observation feature; the wrapper then subtracts the
learned reward of the absorbing state from every reward, so terminating is worth what the
labels say the absorbing state is worth, not an accident of the shift. This is a modelling
choice; with ``absorbing=False`` the raw learned reward is used.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
import torch

from learning.core.callbacks import TrainingCallback
from learning.core.configs import DEVICES, ConfigError, _ConfigBase
from learning.core.nets import RewardEnsemble
from learning.core.rollouts import CheckpointError

__all__ = [
    "FINETUNE_ALGORITHMS",
    "POLICY_CHECKPOINT_FORMAT",
    "EnsembleReward",
    "Episode",
    "EpisodeRecorder",
    "EvaluationResult",
    "FinetuneConfig",
    "FinetuneResult",
    "LearnedReward",
    "LearnedRewardVecEnv",
    "add_absorbing_feature",
    "build_model",
    "encode_actions",
    "evaluate_policy",
    "finetune_policy",
    "load_policy",
    "make_vec_env",
    "relabel_replay_buffer",
    "resolve_algo",
    "save_policy",
    "train_policy",
]

FINETUNE_ALGORITHMS = ("auto", "ppo", "sac", "dqn", "a2c")
POLICY_CHECKPOINT_FORMAT = "preflab.sb3_policy.v1"


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class FinetuneConfig(_ConfigBase):
    """How a policy is trained with Stable-Baselines3 against a (learned) reward.

    One config serves every algorithm: fields that an algorithm does not use are ignored by it
    (``n_steps`` only matters to PPO/A2C, ``buffer_size`` only to SAC/DQN). The defaults are
    rl-zoo3's tuned values for the classic-control tasks, merged where they agree.
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

    ent_coef: float = 0.0
    """PPO/A2C: entropy bonus (SAC tunes its own temperature automatically)."""

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


# --------------------------------------------------------------------------- rewards


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


# --------------------------------------------------------------------------- episodes


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


# --------------------------------------------------------------------------- the wrapper


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


# --------------------------------------------------------------------------- models


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


# --------------------------------------------------------------------------- evaluation


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


# --------------------------------------------------------------------------- the recipe


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
        model = init
        model.set_env(venv)
        model.set_random_seed(config.seed)
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


# --------------------------------------------------------------------------- checkpoints

Source = str | Path | IO[bytes]


def save_policy(
    path: str | Path,
    model: Any,
    config: FinetuneConfig,
    *,
    env_id: str,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write ``model.policy.state_dict()``, the config and the env id to ``path`` (atomically).
    Plain containers only, so :func:`load_policy` reads it with ``weights_only=True``."""
    payload = {
        "format": POLICY_CHECKPOINT_FORMAT,
        "algo": algo_name(model),
        "env_id": env_id,
        "config": replace(config, algo=algo_name(model)).to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.policy.state_dict().items()},
        "extra": dict(extra or {}),
    }
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_policy(source: Source, *, device: str = "cpu") -> tuple[Any, FinetuneConfig, str]:
    """Rebuild the SB3 model saved by :func:`save_policy`: (model, config, env_id). The model
    sits on a one-env ``DummyVecEnv`` of its env id (``set_env`` moves it). Raises
    :class:`~learning.core.rollouts.CheckpointError` for foreign or damaged files."""
    name = str(source) if isinstance(source, (str, Path)) else getattr(source, "name", "file")
    try:
        payload = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises assorted types for foreign files
        raise CheckpointError(f"Could not read {name} as a policy checkpoint ({exc}).") from None
    if not isinstance(payload, dict) or payload.get("format") != POLICY_CHECKPOINT_FORMAT:
        raise CheckpointError(f"{name} is not a PrefLab policy checkpoint ({POLICY_CHECKPOINT_FORMAT}).")
    config = replace(FinetuneConfig.from_dict(payload["config"]), device=device)
    venv = make_vec_env(payload["env_id"], 1, seed=config.seed)
    model = build_model(replace(config, n_envs=1), venv)
    try:
        model.policy.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{name} does not fit a {payload['algo'].upper()} policy: {exc}") from None
    return model, config, str(payload["env_id"])

