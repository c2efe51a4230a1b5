"""The preference loop of Christiano et al. (2017), closed in one process: the recipe the
label-efficiency benchmark runs and the pieces one Django loop iteration is made of.

Recipe (:func:`preference_loop`):

0. Run a uniformly random policy for ``initial_steps`` env steps; cut its episodes into
   segments; ask the teacher about ``initial_label_fraction`` of the label budget (random
   pairs: there is no model yet to choose with); fit the reward ensemble.
1. For each of ``rounds`` rounds: train the policy (SAC or PPO, :class:`FinetuneConfig`) for
   its share of the env-step budget against the ensemble's reward through
   :class:`~learning.core.finetune.LearnedRewardVecEnv`, which also records the episodes
   the policy played; cut them into candidate segments; pick the pairs the ensemble
   disagrees on most among ``candidate_factor`` × as many random candidate pairs; ask the
   teacher; refit the ensemble on every label so far (from scratch, or warm-started from the
   last one with ``warm_start``); hand the new reward to the wrapper and rewrite the rewards
   in the replay buffer (off-policy learners).
2. Evaluate the final policy's true return (research metric).

Every env step counts against ``total_env_steps``, the random-policy steps of step 0 included.
The teacher is anything with the :class:`Labeler` signature: a simulated B-Pref teacher
(:func:`teacher_labeler`) in benchmarks, people in the product (the Django side runs the same
pieces across several jobs: :func:`cut_segments`, :func:`select_pairs`,
``train_reward_model``, :func:`~learning.core.finetune.train_policy`).

Episode ends follow the absorbing-state convention described in
:mod:`learning.core.finetune`: a segment that runs past its episode's termination is padded
with absorbing steps (zero observation with the flag feature set, zero action, true reward
0), so segments always have ``segment_length`` steps and "the pole fell" is something the
teacher and the reward model both see.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from learning.core.callbacks import TrainingCallback
from learning.core.configs import ConfigError, RewardNetConfig, RewardTrainingConfig, _ConfigBase
from learning.core.data import PreferenceDataset
from learning.core.finetune import (
    EnsembleReward,
    Episode,
    EpisodeRecorder,
    EvaluationResult,
    FinetuneConfig,
    LearnedRewardVecEnv,
    build_model,
    evaluate_policy,
    make_vec_env,
    relabel_replay_buffer,
    set_schedules,
    train_policy,
)
from learning.core.nets import RewardEnsemble
from learning.core.reward_learning import TrainingResult, train_reward_model
from learning.core.selection import sample_candidate_pairs, select_by_disagreement
from learning.core.teachers import TeacherConfig

__all__ = [
    "Labeler",
    "LoopResult",
    "PreferenceLoopConfig",
    "Segments",
    "collect_random_episodes",
    "cut_segments",
    "preference_loop",
    "select_pairs",
    "teacher_labeler",
]


@dataclass(frozen=True)
class PreferenceLoopConfig(_ConfigBase):
    """The schedule of one preference-learning run: how env steps and labels are spent."""

    total_env_steps: int = 100_000
    """Env steps in all, random-policy steps included."""

    total_labels: int = 500
    """Preference labels asked for in all (skipped answers count: the question was asked)."""

    segment_length: int = 50
    """Steps per segment shown to the teacher."""

    rounds: int = 10
    """Policy-training rounds; labels are asked before each (the first on random data)."""

    initial_steps: int = 2_000
    """Env steps of the uniformly random policy before any training (step 0)."""

    initial_label_fraction: float = 0.3
    """Share of the label budget asked on the random policy's segments; the rest is split
    evenly over the later rounds. Early labels shape the reward the policy first chases."""

    candidate_factor: int = 10
    """Candidate pairs per label, among which the ensemble's disagreement picks (1 = random
    selection; Christiano et al. sample many more pairs than they query)."""

    segments_per_round: int = 400
    """Candidate segments cut per round from the episodes the policy played that round."""

    selection: str = "disagreement"
    """``disagreement`` (variance of the members' P(A≻B)) or ``random``."""

    warm_start: bool = False
    """Each round's reward refit starts from the previous round's ensemble (PEBBLE keeps
    training one reward model; input statistics refitted, function kept) instead of from
    scratch, and every pair stays on the side of the held-out split it was first put on, so
    the warm model's held-out pairs are ones it never trained on. Cuts a Pendulum run's refit
    epochs by about a third. Off by default: on CartPole-v1 (2-core VM) it left one or two
    seeds of six at 0.37–0.58 normalised (two variants, docs/benchmarks.md) — though fresh
    refits also left one seed at 0.49 on that machine, so the evidence against it is weak."""

    absorbing: bool = True
    """Pad segments past a termination with absorbing steps and give reward nets the flag
    feature (see :mod:`learning.core.finetune`). Envs that never terminate are unaffected."""

    seed: int = 0
    """Seeds the random policy, the segment cuts, the pair draws and the teacher."""

    def __post_init__(self) -> None:
        checks = [
            (self.total_env_steps >= 1, "total_env_steps must be ≥ 1"),
            (self.total_labels >= 2, f"total_labels must be ≥ 2, got {self.total_labels}"),
            (self.segment_length >= 1, f"segment_length must be ≥ 1, got {self.segment_length}"),
            (self.rounds >= 1, f"rounds must be ≥ 1, got {self.rounds}"),
            (
                1 <= self.initial_steps < self.total_env_steps,
                "initial_steps must be in [1, total_env_steps)",
            ),
            (0 < self.initial_label_fraction <= 1, "initial_label_fraction must be in (0, 1]"),
            (self.candidate_factor >= 1, "candidate_factor must be ≥ 1"),
            (self.segments_per_round >= 2, "segments_per_round must be ≥ 2"),
            (self.selection in ("disagreement", "random"), "selection must be 'disagreement' or 'random'"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message + ".")


# --------------------------------------------------------------------------- segments


@dataclass
class Segments:
    """S segments of T steps, the unit that is labelled and learned from.

    observations: (S, T, obs_dim [+1]) float32 — with the absorbing flag as the last feature
                  when cut with ``absorbing=True``
    actions:      (S, T, act_dim) float32, encoded (one-hot for Discrete; zeros when absorbing)
    rewards:      (S, T) float64 — true per-step rewards (0 on absorbing steps)
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray

    def __post_init__(self) -> None:
        s, t = self.rewards.shape
        if self.observations.shape[:2] != (s, t) or self.actions.shape[:2] != (s, t):
            raise ValueError(
                f"segments disagree on (S, T): observations {self.observations.shape}, "
                f"actions {self.actions.shape}, rewards {self.rewards.shape}."
            )

    def __len__(self) -> int:
        return int(self.rewards.shape[0])

    def take(self, index: np.ndarray) -> Segments:
        return Segments(self.observations[index], self.actions[index], self.rewards[index])

    @staticmethod
    def concatenate(parts: Sequence[Segments]) -> Segments:
        return Segments(
            np.concatenate([p.observations for p in parts]),
            np.concatenate([p.actions for p in parts]),
            np.concatenate([p.rewards for p in parts]),
        )


def cut_segments(
    episodes: Sequence[Episode],
    length: int,
    count: int,
    *,
    rng: np.random.Generator,
    absorbing: bool = True,
) -> Segments:
    """Up to ``count`` segments of ``length`` steps, from episodes drawn in proportion to
    their number of possible start points, starts uniform.

    An episode that ended by termination may be cut from any step: steps past its end are
    absorbing (when ``absorbing``; otherwise only whole windows are cut, as for time-limited
    episodes). Returns fewer segments (possibly none) when the episodes are too short.
    """
    starts_per_episode = np.array(
        [
            e.length if (absorbing and e.terminated) else max(e.length - length + 1, 0)
            for e in episodes
        ],
        dtype=np.int64,
    )
    total = int(starts_per_episode.sum())
    if total == 0 or count == 0 or not episodes:
        obs_dim = episodes[0].observations.shape[1] + int(absorbing) if episodes else 1
        act_dim = episodes[0].actions.shape[1] if episodes else 1
        return Segments(
            np.zeros((0, length, obs_dim), np.float32),
            np.zeros((0, length, act_dim), np.float32),
            np.zeros((0, length), np.float64),
        )
    flat = rng.choice(total, size=min(count, total), replace=False)
    bounds = np.cumsum(starts_per_episode)
    which = np.searchsorted(bounds, flat, side="right")
    offsets = flat - (bounds[which] - starts_per_episode[which])
    obs_dim = episodes[0].observations.shape[1]
    act_dim = episodes[0].actions.shape[1]
    n = len(flat)
    observations = np.zeros((n, length, obs_dim + int(absorbing)), np.float32)
    actions = np.zeros((n, length, act_dim), np.float32)
    rewards = np.zeros((n, length), np.float64)
    for i, (e, start) in enumerate(zip(which, offsets)):
        episode = episodes[int(e)]
        real = min(length, episode.length - int(start))
        window = slice(int(start), int(start) + real)
        observations[i, :real, :obs_dim] = episode.observations[window]
        actions[i, :real] = episode.actions[window]
        rewards[i, :real] = episode.rewards[window]
        if absorbing:
            observations[i, real:, obs_dim] = 1.0  # the absorbing flag; obs and action stay 0
    return Segments(observations, actions, rewards)


def collect_random_episodes(env_id: str, steps: int, *, n_envs: int, seed: int) -> list[Episode]:
    """Episodes of a uniformly random policy, about ``steps`` env steps in all; episodes
    still running at the end are included, cut short (``terminated=False``)."""
    recorder = EpisodeRecorder()
    venv = LearnedRewardVecEnv(make_vec_env(env_id, n_envs, seed=seed), None, recorder=recorder)
    venv.action_space.seed(seed)
    venv.reset()
    for _ in range(math.ceil(steps / n_envs)):
        venv.step(np.stack([venv.action_space.sample() for _ in range(n_envs)]))
    venv.close()
    recorder.flush()
    return recorder.drain()


# --------------------------------------------------------------------------- queries

Labeler = Callable[[Segments, np.ndarray], list[float | None]]
"""``labeler(segments, pairs (P, 2)) -> P answers``: 1.0 A better, 0.0 B better, 0.5 equal,
None skipped (dropped before training)."""


def teacher_labeler(config: TeacherConfig, *, seed: int) -> Labeler:
    """A B-Pref simulated teacher answering from the segments' true rewards."""
    rng = np.random.default_rng(seed)

    def label(segments: Segments, pairs: np.ndarray) -> list[float | None]:
        return config.answer_batch(
            segments.rewards[pairs[:, 0]], segments.rewards[pairs[:, 1]], rng=rng
        )

    return label


@torch.no_grad()
def select_pairs(
    ensemble: RewardEnsemble | None,
    segments: Segments,
    n: int,
    *,
    candidate_factor: int,
    rng: np.random.Generator,
    selection: str = "disagreement",
) -> np.ndarray:
    """``n`` pairs (n, 2) of indices into ``segments`` to ask about: the most disputed among
    ``candidate_factor · n`` random candidate pairs (Christiano et al. §2.2.4), or random ones
    when there is no ensemble yet, ``selection='random'`` or a single member."""
    candidates = sample_candidate_pairs(
        len(segments), n * candidate_factor, seed=int(rng.integers(2**31))
    )
    if (
        ensemble is None
        or selection == "random"
        or ensemble.members < 2
        or candidate_factor == 1
        or len(candidates) <= n
    ):
        return candidates[:n]
    device = ensemble.obs_mean.device
    obs = torch.as_tensor(segments.observations, device=device)
    act = torch.as_tensor(segments.actions, device=device) if ensemble.act_dim else None
    returns = ensemble.segment_returns(obs, act)  # (K, S)
    chosen, _ = select_by_disagreement(returns, candidates, n)
    return candidates[chosen]


# --------------------------------------------------------------------------- the loop


@dataclass
class LoopResult:
    """What one preference-learning run produced and how it went."""

    model: Any
    """The SB3 model of the final policy."""
    ensemble: RewardEnsemble
    """The last reward ensemble (the one the final policy round trained against)."""
    evaluation: EvaluationResult | None
    labels_asked: int
    labels_used: int
    env_steps: int
    stop_reason: str  # "budget" | "callback"
    wall_time_s: float
    reward_result: TrainingResult | None
    history: list[dict[str, float]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "true_return_mean": self.evaluation.mean_return if self.evaluation else math.nan,
            "true_return_std": self.evaluation.std_return if self.evaluation else math.nan,
            "labels_asked": self.labels_asked,
            "labels_used": self.labels_used,
            "env_steps": self.env_steps,
            "stop_reason": self.stop_reason,
            "wall_time_s": self.wall_time_s,
            "reward_held_out_accuracy": (
                self.reward_result.held_out_accuracy if self.reward_result else math.nan
            ),
        }


def _label_schedule(config: PreferenceLoopConfig) -> list[int]:
    """Labels asked before each round: (rounds,) summing to ``total_labels``."""
    first = max(1, round(config.initial_label_fraction * config.total_labels))
    rest = config.total_labels - first
    if config.rounds == 1:
        return [config.total_labels]
    later = [rest // (config.rounds - 1)] * (config.rounds - 1)
    for i in range(rest - sum(later)):
        later[i] += 1
    return [first, *later]


def preference_loop(
    env_id: str,
    labeler: Labeler,
    config: PreferenceLoopConfig,
    net_config: RewardNetConfig,
    reward_config: RewardTrainingConfig,
    finetune_config: FinetuneConfig,
    *,
    callback: TrainingCallback | None = None,
) -> LoopResult:
    """Run the whole loop (module docstring) on ``env_id`` with ``labeler`` answering.

    ``finetune_config.total_steps`` is ignored: the loop spends
    ``config.total_env_steps − config.initial_steps`` policy steps over ``config.rounds``.
    The callback gets ``on_step(env_steps, metrics)`` from inside policy training (every
    ``finetune_config.report_every_steps``) and after each round (``round``, ``labels``,
    ``reward_held_out_accuracy``, ``train_true_return``); False stops after the current
    piece of work. The reward ensemble of each round is trained on all labels so far, from
    the previous round's ensemble (``config.warm_start``) or from scratch.
    """
    started = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    schedule = _label_schedule(config)

    labelled: list[Segments] = []  # two segments per asked pair, in pair order
    answers: list[float | None] = []
    # Held-out membership per asked pair, drawn once (own stream: the queries stay as they were).
    held_draws: list[float] = []
    held_rng = np.random.default_rng([config.seed, 1])
    history: list[dict[str, float]] = []
    ensemble: RewardEnsemble | None = None
    reward_result: TrainingResult | None = None
    env_steps = 0
    stopped = False

    def ask(pool: Segments, n: int) -> None:
        if len(pool) < 2 or n == 0:
            return
        pairs = select_pairs(
            ensemble, pool, n, candidate_factor=config.candidate_factor, rng=rng,
            selection=config.selection,
        )
        labelled.append(pool.take(pairs.reshape(-1)))
        answers.extend(labeler(pool, pairs))
        held_draws.extend(held_rng.random(len(pairs)).tolist())

    def fit() -> tuple[RewardEnsemble, TrainingResult]:
        segments = Segments.concatenate(labelled)
        keep = np.array([a is not None for a in answers])
        index = np.arange(len(answers))[keep]
        dataset = PreferenceDataset(
            observations=torch.as_tensor(segments.observations),
            actions=torch.as_tensor(segments.actions),
            pairs=torch.as_tensor(np.stack([2 * index, 2 * index + 1], 1)),
            preferences=torch.as_tensor([answers[i] for i in index], dtype=torch.float32),
            true_returns=torch.as_tensor(segments.rewards.sum(1), dtype=torch.float32),
        )
        if not config.warm_start:
            return train_reward_model(dataset, net_config, reward_config)
        held_out = torch.as_tensor(np.array(held_draws)[index] < reward_config.held_out_fraction)
        if len(index) >= 2 and reward_config.held_out_fraction > 0:
            # As the random split does: at least one pair on each side (only ever changes
            # membership while there are a handful of labels).
            if not held_out.any():
                held_out[0] = True
            if held_out.all():
                held_out[-1] = False
        return train_reward_model(
            dataset, net_config, reward_config, init=ensemble, held_out=held_out
        )

    # 0. Random policy, first labels, first reward model.
    episodes = collect_random_episodes(
        env_id, config.initial_steps, n_envs=finetune_config.n_envs, seed=config.seed
    )
    env_steps += config.initial_steps
    pool = cut_segments(
        episodes, config.segment_length, config.segments_per_round, rng=rng,
        absorbing=config.absorbing,
    )
    ask(pool, schedule[0])
    if not labelled:
        raise ValueError(
            f"The random policy's {config.initial_steps} steps gave no {config.segment_length}-step "
            "segment to label; raise initial_steps, shorten segment_length, or set absorbing=True "
            "for an env whose episodes end early."
        )
    ensemble, reward_result = fit()

    recorder = EpisodeRecorder()
    venv = LearnedRewardVecEnv(
        make_vec_env(env_id, finetune_config.n_envs, seed=config.seed), None, recorder=recorder
    )

    def reward_of(model: RewardEnsemble) -> EnsembleReward:
        return EnsembleReward(
            model, std_penalty=finetune_config.std_penalty,
            absorbing=config.absorbing and finetune_config.absorbing,
            device=torch.device("cpu") if finetune_config.device == "cpu" else None,
        )

    venv.set_reward(reward_of(ensemble))
    model = build_model(finetune_config, venv)
    policy_steps = config.total_env_steps - config.initial_steps
    per_round = [policy_steps // config.rounds] * config.rounds
    per_round[-1] += policy_steps - sum(per_round)
    begin = int(model.num_timesteps)

    for round_index in range(config.rounds):
        set_schedules(model, finetune_config, begin=begin, total=policy_steps, steps=per_round[round_index])
        stop, _ = train_policy(
            model, per_round[round_index], callback=callback,
            report_every_steps=finetune_config.report_every_steps, step_offset=env_steps,
        )
        recorder.flush()  # episodes still running count too (long episodes, short rounds)
        episodes = recorder.drain()
        if stop:
            env_steps += per_round[round_index]
            stopped = True
            break
        env_steps += per_round[round_index]
        train_returns = [float(e.rewards.sum()) for e in episodes if e.length]
        record: dict[str, float] = {
            "round": float(round_index),
            "env_steps": float(env_steps),
            "labels": float(len(answers)),
            "train_true_return": float(np.mean(train_returns)) if train_returns else math.nan,
        }
        if round_index + 1 < config.rounds:
            pool = cut_segments(
                episodes, config.segment_length, config.segments_per_round, rng=rng,
                absorbing=config.absorbing,
            )
            ask(pool, schedule[round_index + 1])
            ensemble, reward_result = fit()
            venv.set_reward(reward_of(ensemble))
            relabel_replay_buffer(model, venv)
            record["labels"] = float(len(answers))
            record["reward_held_out_accuracy"] = reward_result.held_out_accuracy
        history.append(record)
        if callback is not None and not callback.on_step(env_steps, record):
            stopped = True
            break

    venv.close()
    evaluation = (
        evaluate_policy(model, env_id, episodes=finetune_config.eval_episodes, seed=10_000 + config.seed)
        if finetune_config.eval_episodes
        else None
    )
    return LoopResult(
        model=model,
        ensemble=ensemble,
        evaluation=evaluation,
        labels_asked=len(answers),
        labels_used=sum(a is not None for a in answers),
        env_steps=env_steps,
        stop_reason="callback" if stopped else "budget",
        wall_time_s=time.perf_counter() - started,
        reward_result=reward_result,
        history=history,
    )
