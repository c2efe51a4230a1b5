"""One iteration of the RLHF loop as one job (Christiano et al. 2017, Fig. 1, made a product).

Recipe, read top to bottom (``loop_iteration_run``):

1. **Reward model**: train an ensemble on the campaign's judgements (the ids frozen when the run
   was queued) through ``runner.train_run``, register it, and promote it.
2. **Policy**: fine-tune with Stable-Baselines3 against the new reward
   (``learning.core.finetune``) — or, with ``loop.reward`` ``gail``/``airl``, against an
   adversarial reward learned from the clips labelled desirable (``learning.core.adversarial``)
   — starting from the campaign's current loop policy (its *parent*), a behavioural clone of
   the desirable clips (``learning.core.bc``) or scratch; register the checkpoint as a policy
   ``ModelVersion`` with its lineage (parent policy, reward model, judgements) and as the
   ``PolicyVersion`` its rollouts are stored under.
3. **Rollouts**: run the new policy for a few episodes in the real Gymnasium env, store them
   as trajectories and render their segments' clips.
4. **Pairs**: the active selector (ensemble disagreement of the promoted reward model) queues
   the most informative new pairs, stamped with the selector and the model version.

Every stage reports progress and a heartbeat to the run row and stops at a cancel. A retried
run (its worker died) picks up after the last stage that finished: a reward model or policy
this run already registered is reused, and rollout seeds already stored are skipped.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from django.core.files import File
from django.utils import timezone

from feedback.models import Judgement, PolicyVersion, Segment
from feedback.services import policy_get_or_create
from learning import broadcast, rollout_import, services
from learning.core.adversarial import AdversarialConfig, train_adversarial
from learning.core.bc import BCConfig, behaviour_clone
from learning.core.checkpoints import load_reward_model
from learning.core.configs import ConfigError, _ConfigBase
from learning.core.finetune import (
    EnsembleReward,
    FinetuneConfig,
    algo_name,
    build_model,
    finetune_policy,
    load_policy,
    make_vec_env,
    resolve_algo,
    save_policy,
)
from learning.core.loop import Segments
from learning.core.rollouts import SB3Policy
from learning.models import ModelKind, ModelVersion, TrainingRun
from learning.pair_selection import pairs_select
from learning.runner import (
    NotEnoughData,
    RunConfig,
    _json_float,
    _segment_values,
    config_section,
    encode_actions,
    train_run,
)

logger = logging.getLogger(__name__)

POLICY_INITS = ("parent", "scratch", "bc")
SELECTORS = ("disagreement", "random")
REWARDS = ("preference", "gail", "airl")


@dataclass(frozen=True)
class LoopSettings(_ConfigBase):
    """What a loop iteration does besides training (the ``loop`` section of its config)."""

    episodes: int = 4
    """Episodes of the new policy rolled out, rendered and stored as trajectories."""

    max_steps: int = 0
    """Cap on each rollout's length in env steps (0: the env's own time limit)."""

    pairs: int = 20
    """Pairs queued for annotators at the end."""

    selector: str = "disagreement"
    """``disagreement`` (active: the reward ensemble's disagreement, needs ensemble_size ≥ 2)
    or ``random``."""

    init: str = "parent"
    """Where the policy starts: ``parent`` (the campaign's current loop policy — the promoted
    one, else the latest; scratch the first time), ``bc`` (behavioural cloning of the clips
    labelled desirable) or ``scratch``."""

    reward: str = "preference"
    """What the policy trains against: ``preference`` (the new reward ensemble, mean − λ·std)
    or an adversarial reward learned from the clips labelled desirable as the expert set, with
    the policy's rollouts and the clips labelled undesirable as negatives (``gail``, ``airl``;
    the ``adversarial`` section configures it). The preference ensemble is trained either
    way: it scores the next pairs."""

    promote: bool = True
    """Promote the new reward model and policy, so the selector and the next iteration use them."""

    render_size: int = 128
    """Width and height of the rendered clips of the new rollouts, in pixels."""

    def __post_init__(self) -> None:
        checks = [
            (self.episodes >= 1, f"episodes must be ≥ 1, got {self.episodes}"),
            (self.max_steps >= 0, f"max_steps must be ≥ 0, got {self.max_steps}"),
            (self.pairs >= 0, f"pairs must be ≥ 0, got {self.pairs}"),
            (
                self.selector in SELECTORS,
                f"selector must be one of {SELECTORS}, got {self.selector!r}",
            ),
            (self.init in POLICY_INITS, f"init must be one of {POLICY_INITS}, got {self.init!r}"),
            (self.reward in REWARDS, f"reward must be one of {REWARDS}, got {self.reward!r}"),
            (
                16 <= self.render_size <= 1024,
                f"render_size must be in [16, 1024], got {self.render_size}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message + ".")


@dataclass(frozen=True)
class LoopRunConfig:
    """A loop run's whole config: the reward sections (``net``, ``train``), ``finetune``
    (:class:`~learning.core.finetune.FinetuneConfig`), ``loop`` (:class:`LoopSettings`) and
    ``adversarial`` (:class:`~learning.core.adversarial.AdversarialConfig`, used when
    ``loop.reward`` is ``gail`` or ``airl``; its ``kind`` follows ``loop.reward`` and its
    ``total_env_steps`` is ``finetune.total_steps``)."""

    reward: RunConfig
    finetune: FinetuneConfig
    loop: LoopSettings
    adversarial: AdversarialConfig

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.reward.to_dict(),
            "finetune": self.finetune.to_dict(),
            "loop": self.loop.to_dict(),
            "adversarial": self.adversarial.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoopRunConfig:
        """Raises ``ConfigError`` naming the bad section or field."""
        unknown = sorted(set(data) - {"net", "train", "finetune", "loop", "adversarial"})
        if unknown:
            raise ConfigError(
                f"config has no section(s) {', '.join(unknown)}; use 'net', 'train', "
                "'finetune', 'loop' and 'adversarial'."
            )
        reward = RunConfig.from_dict({k: data[k] for k in ("net", "train") if k in data})
        built: dict[str, Any] = {
            "finetune": config_section(data, "finetune", FinetuneConfig),
            "loop": config_section(data, "loop", LoopSettings),
            "adversarial": config_section(data, "adversarial", AdversarialConfig),
        }
        if built["loop"].selector == "disagreement" and reward.net.ensemble_size < 2:
            raise ConfigError(
                "config.loop.selector 'disagreement' needs config.net.ensemble_size ≥ 2 "
                "(one net has no disagreement); raise it or use selector 'random'."
            )
        loop, finetune = built["loop"], built["finetune"]
        if loop.reward != "preference":  # one source of truth for the kind and the budget
            built["adversarial"] = replace(
                built["adversarial"], kind=loop.reward, total_env_steps=finetune.total_steps
            )
        return cls(reward=reward, **built)


class StageReporter:
    """Callback of the fine-tuning stage: progress within ``span`` of the run's bar, a
    heartbeat, a live update, and False (stop) once someone asked to cancel."""

    def __init__(self, run: TrainingRun, *, total: int, span: tuple[float, float]) -> None:
        self.run, self.total, self.span = run, max(total, 1), span
        self.last: dict[str, float] = {}

    def on_step(self, step: int, metrics: Mapping[str, float]) -> bool:
        self.last = dict(metrics)
        low, high = self.span
        _progress(self.run, low + (high - low) * min(1.0, step / self.total))
        return not TrainingRun.objects.filter(pk=self.run.pk, cancel_requested=True).exists()


def _progress(run: TrainingRun, value: float) -> None:
    run.progress = min(1.0, max(run.progress, value))
    run.heartbeat_at = timezone.now()
    run.save(update_fields=["progress", "heartbeat_at"])
    try:
        broadcast.run_event_send(
            run_id=run.pk,
            payload={
                "id": run.pk,
                "status": "running",
                "progress": run.progress,
                "metrics": run.metrics,
                "heartbeat_at": run.heartbeat_at.isoformat(),
            },
        )
    except Exception:  # a live update must never fail the run
        logger.warning("live update for loop run %s failed", run.pk, exc_info=True)


def _note(run: TrainingRun, line: str) -> None:
    run.log = (run.log + "\n" + line).strip()
    run.save(update_fields=["log"])


def parent_policy(run: TrainingRun) -> ModelVersion | None:
    """The campaign's current loop policy, other than this run's: the promoted one, else the
    latest."""
    versions = ModelVersion.objects.filter(
        campaign_id=run.campaign_id, kind=ModelKind.POLICY
    ).exclude(run=run)
    return versions.filter(promoted=True).first() or versions.order_by("-created_at", "-id").first()


def labelled_clips(run: TrainingRun, label: str) -> list[dict[str, np.ndarray]]:
    """The arrays (observations, actions, rewards) of the full-length segments this run's
    judgements label ``desirable`` or ``undesirable`` — by every judgement that gave the
    segment a desirability; a segment with conflicting labels is left out."""
    answers: dict[int, set[str]] = {}
    segments: dict[int, Segment] = {}
    judgements = Judgement.objects.filter(
        pk__in=run.dataset.get("judgement_ids", [])
    ).select_related("pair__segment_a__trajectory", "pair__segment_b__trajectory")
    for judgement in judgements:
        for segment, answer in (
            (judgement.pair.segment_a, judgement.desirability_a),
            (judgement.pair.segment_b, judgement.desirability_b),
        ):
            if answer in ("desirable", "undesirable"):
                answers.setdefault(segment.pk, set()).add(answer)
                segments[segment.pk] = segment
    length = run.campaign.segment_length
    chosen = sorted(
        (s for pk, s in segments.items() if answers[pk] == {label} and s.end - s.start == length),
        key=lambda s: (s.trajectory_id, s.start),
    )
    cache: dict[int, dict[str, np.ndarray]] = {}
    return [_segment_values(s, cache) for s in chosen]


def _as_segments(
    clips: list[dict[str, np.ndarray]], action_space: Any, *, absorbing: bool
) -> Segments:
    """Clips → core ``Segments``: flattened observations (plus a zero absorbing flag: stored
    clips are real steps), encoded actions, true rewards (zeros when unknown)."""
    length = clips[0]["observations"].shape[0]
    obs = np.stack([c["observations"].astype(np.float32).reshape(length, -1) for c in clips])
    if absorbing:
        obs = np.concatenate([obs, np.zeros((*obs.shape[:2], 1), np.float32)], axis=-1)
    act = np.stack([encode_actions(c["actions"], action_space, length) for c in clips])
    rewards = np.stack(
        [c["rewards"].astype(np.float64) if "rewards" in c else np.zeros(length) for c in clips]
    )
    return Segments(obs, act, rewards)


def _behaviour_clone(run: TrainingRun, config: LoopRunConfig) -> Any:
    """A fresh SB3 model cloned from the clips labelled desirable (``loop.init = bc``)."""
    clips = labelled_clips(run, "desirable")
    if not clips:
        raise NotEnoughData(
            "loop.init is 'bc' but no clip is labelled desirable yet; label some clips "
            "desirable, or start from 'parent' or 'scratch'."
        )
    env_id = run.campaign.env.env_id
    model = build_model(
        config.finetune, make_vec_env(env_id, config.finetune.n_envs, seed=config.finetune.seed)
    )
    observations = np.concatenate(
        [c["observations"].astype(np.float32).reshape(len(c["observations"]), -1) for c in clips]
    )
    actions = np.concatenate([np.asarray(c["actions"]) for c in clips])
    result = behaviour_clone(model, observations, actions, BCConfig(seed=config.finetune.seed))
    _note(
        run,
        f"Behaviour-cloned {len(clips)} desirable clips ({len(observations)} steps, "
        f"{result.epochs} epochs, held-out loss {result.held_out_loss:.3f}).",
    )
    return model


def _train_adversarial(
    run: TrainingRun, config: LoopRunConfig, init: Any, reporter: StageReporter
) -> tuple[Any, dict[str, Any]]:
    """GAIL/AIRL from the run's desirable clips (expert) and undesirable clips (extra
    negatives); returns (the generator policy, summary), or (None, {}) when cancelled."""
    action_space = run.campaign.env.action_space
    absorbing = config.adversarial.absorbing
    expert = labelled_clips(run, "desirable")
    if not expert:
        raise NotEnoughData(
            f"loop.reward is '{config.loop.reward}' but no clip is labelled desirable yet: the "
            "adversarial learner needs desirable clips as its expert set."
        )
    bad = labelled_clips(run, "undesirable")
    _note(
        run,
        f"{config.loop.reward.upper()} from {len(expert)} desirable clips"
        f" and {len(bad)} undesirable clips.",
    )
    result = train_adversarial(
        run.campaign.env.env_id,
        _as_segments(expert, action_space, absorbing=absorbing),
        _as_segments(bad, action_space, absorbing=absorbing) if bad else None,
        config.adversarial,
        config.finetune,
        init=init,
        callback=reporter,
    )
    if result.stop_reason == "callback":
        return None, {}
    evaluation = result.evaluation
    return result.model, {
        "algo": algo_name(result.model),
        "reward": config.loop.reward,
        "env_steps": result.env_steps,
        "stop_reason": result.stop_reason,
        "true_return_mean": evaluation.mean_return if evaluation else math.nan,
        "true_return_std": evaluation.std_return if evaluation else math.nan,
        "wall_time_s": result.wall_time_s,
    }


def _train_policy(
    run: TrainingRun, config: LoopRunConfig, reward_version: ModelVersion
) -> ModelVersion | None:
    """Stage 2: fine-tune against ``reward_version``; register the policy with its lineage.
    None when cancelled."""
    campaign = run.campaign
    env_id = campaign.env.env_id
    device = "cuda" if config.finetune.device != "cpu" and torch.cuda.is_available() else "cpu"
    with reward_version.artifact.open("rb") as handle:
        checkpoint = load_reward_model(handle, device=device)
    reward = EnsembleReward(
        checkpoint.ensemble,
        std_penalty=config.finetune.std_penalty,
        absorbing=False,  # the campaign's segments carry no absorbing-state padding
        device=device,
    )
    parent = parent_policy(run) if config.loop.init == "parent" else None
    init = _behaviour_clone(run, config) if config.loop.init == "bc" else None
    if parent is not None:
        with parent.artifact.open("rb") as handle:
            loaded, _, _ = load_policy(handle, device=config.finetune.device)
        if algo_name(loaded) != resolve_algo(config.finetune.algo, loaded.action_space):
            raise ConfigError(
                f"The parent policy (version {parent.pk}) is {algo_name(loaded).upper()}; "
                f"fine-tune it with the same algorithm, or set config.loop.init to 'scratch'."
            )
        # SB3 binds a model to its number of envs: rebuild for this run's envs, same weights.
        init = build_model(
            replace(config.finetune, algo=algo_name(loaded)),
            make_vec_env(env_id, config.finetune.n_envs, seed=config.finetune.seed),
        )
        init.policy.load_state_dict(loaded.policy.state_dict())
        _note(
            run, f"Fine-tuning policy version {parent.pk} against reward model {reward_version.pk}."
        )
    elif init is None:
        _note(run, f"Training a policy from scratch against reward model {reward_version.pk}.")
    reporter = StageReporter(run, total=config.finetune.total_steps, span=(0.3, 0.8))
    if config.loop.reward == "preference":
        result = finetune_policy(config.finetune, env_id, reward, init=init, callback=reporter)
        if result.stop_reason == "callback":
            return None
        model, raw_summary = result.model, result.summary()
    else:
        model, raw_summary = _train_adversarial(run, config, init, reporter)
        if model is None:
            return None
    summary = {k: _json_float(v) if isinstance(v, float) else v for k, v in raw_summary.items()}
    lineage = {
        "run": run.pk,
        "reward": config.loop.reward,
        "init": config.loop.init,
        "reward_model_version": reward_version.pk,
        "parent_policy_version": parent.pk if parent else None,
        "judgement_ids_count": run.dataset.get("num_judgements"),
    }
    policy = policy_get_or_create(
        env=campaign.env,
        name=f"loop-run-{run.pk}",
        kind=PolicyVersion.Kind.FINETUNED,
        config={"finetune": config.finetune.to_dict(), "lineage": lineage},
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"policy-run-{run.pk}.pt"
        save_policy(path, model, config.finetune, env_id=env_id, extra={"lineage": lineage})
        with path.open("rb") as handle:
            policy.checkpoint.save(path.name, File(handle), save=False)
        policy.parent = parent.policy if parent is not None else None
        policy.save(update_fields=["checkpoint", "parent"])
        version = ModelVersion(
            run=run,
            campaign=campaign,
            kind=ModelKind.POLICY,
            metrics={**summary, **lineage},
            parent=parent,
            reward_model=reward_version,
            policy=policy,
        )
        with path.open("rb") as handle:
            version.artifact.save(path.name, File(handle), save=False)
        version.save()
    return version


def loop_iteration_run(run: TrainingRun) -> ModelVersion | None:
    """Carry out one loop iteration for a claimed run; returns the new policy's version, or
    None when the run was cancelled. Writes a per-stage summary to ``run.result``."""
    started = time.perf_counter()
    config = LoopRunConfig.from_dict(run.config)
    torch.set_num_threads(1)  # small nets and SB3 MLPs run faster on one thread (STACK.md)
    campaign = run.campaign
    stages: dict[str, float] = {}

    # 1. Reward model (a retried run reuses the one it registered).
    t0 = time.perf_counter()
    reward_version = ModelVersion.objects.filter(run=run, kind=ModelKind.REWARD_MODEL).first()
    if reward_version is None:
        reward_version = train_run(run, config=config.reward, progress_span=(0.0, 0.3))
        if reward_version is None:
            return None
    if config.loop.promote:
        reward_version = services.model_version_promote(version=reward_version)
    stages["reward_s"] = time.perf_counter() - t0

    # 2. Policy.
    t0 = time.perf_counter()
    policy_version = ModelVersion.objects.filter(run=run, kind=ModelKind.POLICY).first()
    if policy_version is None:
        policy_version = _train_policy(run, config, reward_version)
        if policy_version is None:
            return None
    if config.loop.promote:
        policy_version = services.model_version_promote(version=policy_version)
    stages["policy_s"] = time.perf_counter() - t0
    _progress(run, 0.8)

    # 3. Rollouts of the new policy, rendered for annotators.
    t0 = time.perf_counter()
    assert policy_version.policy is not None
    with policy_version.artifact.open("rb") as handle:
        model, finetune_config, _ = load_policy(handle, device="cpu")
    actor = SB3Policy(model=model, name=policy_version.policy.name, algo=algo_name(model))
    rollouts = rollout_import.policy_rollouts_store(
        env_spec=campaign.env,
        policy_version=policy_version.policy,
        actor=actor,
        episodes=config.loop.episodes,
        seed=finetune_config.seed * 1000 + run.pk * 100,
        segment_length=campaign.segment_length,
        max_steps=config.loop.max_steps or None,
        width=config.loop.render_size,
        height=config.loop.render_size,
    )
    stages["rollouts_s"] = time.perf_counter() - t0
    _progress(run, 0.95)
    if TrainingRun.objects.filter(pk=run.pk, cancel_requested=True).exists():
        return None

    # 4. The next pairs for annotators.
    t0 = time.perf_counter()
    pairs = (
        pairs_select(
            selector=config.loop.selector,
            campaign=campaign,
            count=config.loop.pairs,
            seed=run.pk,
            device="cpu",
        )
        if config.loop.pairs
        else []
    )
    stages["pairs_s"] = time.perf_counter() - t0

    reward_metrics = reward_version.metrics
    run.result = {
        "iteration": TrainingRun.objects.filter(
            campaign=campaign, kind=run.kind, created_at__lte=run.created_at
        ).count(),
        "labels_used": reward_metrics.get("num_train_pairs", 0)
        + reward_metrics.get("num_held_out_pairs", 0),
        "reward_model_version": reward_version.pk,
        "reward_held_out_accuracy": reward_metrics.get("held_out_accuracy"),
        "policy_version": policy_version.pk,
        "parent_policy_version": policy_version.parent_id,
        "policy_true_return": policy_version.metrics.get("true_return_mean"),
        "policy_env_steps": policy_version.metrics.get("env_steps"),
        "rollout_returns": [_json_float(r) for r in rollouts.returns],
        "trajectories_created": rollouts.trajectories_created,
        "segments_ready": rollouts.segments_ready,
        "pairs_queued": len(pairs),
        "selector": config.loop.selector,
        "wall_time_s": time.perf_counter() - started,
        **{k: round(v, 3) for k, v in stages.items()},
    }
    run.result = {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v)
        for k, v in run.result.items()
    }
    run.save(update_fields=["result"])
    return policy_version
