"""Collect rollouts with ``learning.core.rollouts`` and store them as trajectories with clips.

The one place both ``collect_rollouts`` and ``seed_demo`` go through. Everything the user can
get wrong (numbers, env id, policy, checkpoint) is checked before the first row or file is
written; after that, each episode is stored all-or-nothing: its arrays and segments, then one
H.264 clip per segment, and on any failure the episode's rows and files are removed again so
no segment is left pending without frames to render it from.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.files.storage import default_storage
from tqdm import tqdm

from feedback import services
from feedback.models import EnvironmentSpec, PolicyVersion, Trajectory
from feedback.storage import TrajectoryArrays
from learning.core import rollouts as core

BUILTIN_POLICIES = ("random", "scripted")
MAX_FPS = 240
MIN_RENDER_SIZE, MAX_RENDER_SIZE = 16, 1024  # what feedback.storage accepts for clip frames

# PyOpenGL (loaded for MuJoCo rendering) announces at INFO that its optional C accelerator is
# missing; with the root logger at INFO that line would open every command's output.
logging.getLogger("OpenGL.acceleratesupport").setLevel(logging.WARNING)


class RolloutImportError(ValueError):
    """The request cannot be carried out; the message says what to change. Nothing was written."""


@dataclass(frozen=True)
class ImportSummary:
    """What one ``rollouts_import`` call did."""

    env_id: str
    policy_name: str
    trajectories_created: int
    episodes_skipped: int
    segments_ready: int
    steps: int
    returns: tuple[float, ...] = field(default=())
    seconds: float = 0.0

    @property
    def mean_return(self) -> float | None:
        return sum(self.returns) / len(self.returns) if self.returns else None


@dataclass(frozen=True)
class _PolicyIdentity:
    name: str
    kind: str
    config: dict[str, Any]


def _check_positive(**values: int | None) -> None:
    for flag, value in values.items():
        if value is not None and value < 1:
            raise RolloutImportError(
                f"--{flag.replace('_', '-')} must be a positive integer, got {value}."
            )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _policy_identity(spec: str, policy: core.Policy, *, algo: str) -> _PolicyIdentity:
    if spec == "random":
        return _PolicyIdentity("random", PolicyVersion.Kind.RANDOM, {})
    if spec == "scripted":
        return _PolicyIdentity("scripted", PolicyVersion.Kind.SCRIPTED, {"controller": policy.name})
    path = Path(spec)
    return _PolicyIdentity(
        path.stem,
        PolicyVersion.Kind.CHECKPOINT,
        {
            "algo": algo,
            "deterministic": True,
            "checkpoint_path": str(path.resolve()),
            "checkpoint_sha256": _sha256(path),
        },
    )


def _check_policy_name_free(env_id: str, identity: _PolicyIdentity) -> None:
    """Refuse to file new episodes under an existing policy row that means something else."""
    existing = PolicyVersion.objects.filter(env__env_id=env_id, name=identity.name).first()
    if existing is None:
        return
    if existing.kind != identity.kind:
        raise RolloutImportError(
            f"{env_id} already has a policy named {identity.name!r} of kind {existing.kind!r}; "
            f"rename the checkpoint file so its name differs."
        )
    sha = identity.config.get("checkpoint_sha256")
    if sha is not None and existing.config.get("checkpoint_sha256") not in (None, sha):
        raise RolloutImportError(
            f"{env_id} already has a policy {identity.name!r} from a different checkpoint file; "
            "rename the new file (e.g. add a version suffix) so both stay distinguishable."
        )


def _discard_episode(trajectory: Trajectory, clip_names: list[str]) -> None:
    """Remove a half-stored episode: its rows (segments cascade) and every file written for it."""
    arrays_name = trajectory.arrays.name
    Trajectory.objects.filter(pk=trajectory.pk).delete()
    for name in [arrays_name, *clip_names]:
        if name:
            default_storage.delete(name)


def _store_episode(
    *,
    rollout: core.Rollout,
    env_spec: EnvironmentSpec,
    policy_version: PolicyVersion,
    segment_length: int,
    fps: int,
) -> int:
    """Store one rollout and encode its segments' clips; return how many segments are ready."""
    assert rollout.frames is not None
    arrays = TrajectoryArrays(
        observations=rollout.observations,
        actions=rollout.actions,
        rewards=rollout.rewards,
        terminations=rollout.terminations,
        frames=rollout.frames,
    )
    # Clips are encoded synchronously (no parked frames, no worker): the command's caller
    # wants the segments labelable when it returns, and a long-held write transaction
    # around ffmpeg would block annotators' writes on SQLite.
    trajectory = services.trajectory_create(
        env=env_spec,
        policy=policy_version,
        arrays=arrays,
        segment_length=segment_length,
        source=Trajectory.Source.ROLLOUT,
        seed=rollout.seed,
        render_in_background=False,
    )
    clip_names: list[str] = []
    try:
        for segment in trajectory.segments.order_by("start"):
            services.segment_clip_attach(
                segment=segment, frames=rollout.frames[segment.start : segment.end], fps=fps
            )
            clip_names.append(segment.clip.name)
    except BaseException:
        _discard_episode(trajectory, clip_names)
        raise
    return len(clip_names)


def rollouts_import(
    *,
    env_id: str,
    policy: str,
    episodes: int,
    segment_length: int,
    seed: int,
    algo: str = "ppo",
    max_steps: int | None = None,
    fps: int | None = None,
    width: int = 256,
    height: int = 256,
    skip_existing: bool = False,
    progress: bool = False,
) -> ImportSummary:
    """Run ``episodes`` episodes of ``policy`` in ``env_id`` and store them with rendered clips.

    ``policy`` is ``"random"``, ``"scripted"`` or a path to a Stable-Baselines3 ``.zip``
    (``algo`` names its class). Episode i is reset with seed ``seed + i``. With
    ``skip_existing``, seeds this policy already has a trajectory for are not collected
    again, which makes re-running idempotent. ``fps`` defaults to the env's ``render_fps``.
    Raises :class:`RolloutImportError` for bad input, before anything is written.
    """
    started = time.perf_counter()
    _check_positive(episodes=episodes, segment_length=segment_length, max_steps=max_steps, fps=fps)
    if seed < 0:
        raise RolloutImportError(f"--seed must be zero or positive, got {seed}.")
    if fps is not None and fps > MAX_FPS:
        raise RolloutImportError(f"--fps must be at most {MAX_FPS}, got {fps}.")
    for flag, size in (("width", width), ("height", height)):
        if not MIN_RENDER_SIZE <= size <= MAX_RENDER_SIZE:
            raise RolloutImportError(
                f"--{flag} must be between {MIN_RENDER_SIZE} and {MAX_RENDER_SIZE} pixels, got {size}."
            )
    if algo.lower() not in core.SB3_ALGORITHMS:
        raise RolloutImportError(
            f"--algo must be one of {', '.join(core.SB3_ALGORITHMS)}, got {algo!r}."
        )
    if policy not in BUILTIN_POLICIES and not Path(policy).is_file():
        raise RolloutImportError(
            f"--policy must be 'random', 'scripted' or the path of a Stable-Baselines3 .zip; "
            f"{policy!r} is neither (no such file)."
        )

    try:
        env = core.make_env(env_id, render=True, width=width, height=height)
    except (core.EnvironmentUnavailable, core.RenderingUnavailable) as exc:
        raise RolloutImportError(str(exc)) from None
    try:
        try:
            actor = core.policy_for(policy, env, algo=algo)
        except (core.NoScriptedPolicy, core.CheckpointError) as exc:
            raise RolloutImportError(str(exc)) from None
        identity = _policy_identity(policy, actor, algo=algo)
        _check_policy_name_free(env_id, identity)
        render_fps = int(fps or env.metadata.get("render_fps") or 30)
        time_limit = env.spec.max_episode_steps if env.spec is not None else None
        steps_per_episode = min(filter(None, (max_steps, time_limit)), default=None)

        # Input is valid: from here on, rows and files are written.
        env_spec = services.environment_get_or_create(
            env_id=env_id,
            observation_space=core.describe_space(env.observation_space),
            action_space=core.describe_space(env.action_space),
            render_fps=render_fps,
        )
        policy_version = services.policy_get_or_create(
            env=env_spec, name=identity.name, kind=identity.kind, config=identity.config
        )
        seeds = [seed + index for index in range(episodes)]
        done: set[int | None] = set()
        if skip_existing:
            done = set(
                Trajectory.objects.filter(policy=policy_version, seed__in=seeds).values_list(
                    "seed", flat=True
                )
            )
        todo = [s for s in seeds if s not in done]

        created = ready = steps = 0
        returns: list[float] = []
        bar = tqdm(
            total=len(todo) * steps_per_episode if steps_per_episode else None,
            desc=f"{env_id} {identity.name}",
            unit="step",
            disable=not progress or not todo,
            file=sys.stderr,
            leave=True,
        )
        with bar:
            for episode_seed in todo:
                rollout = core.collect_episode(
                    env, actor, seed=episode_seed, max_steps=max_steps, render=True
                )
                bar.update(rollout.length)
                if steps_per_episode and rollout.length < steps_per_episode:
                    bar.total -= steps_per_episode - rollout.length  # episode ended early
                    bar.refresh()
                ready += _store_episode(
                    rollout=rollout,
                    env_spec=env_spec,
                    policy_version=policy_version,
                    segment_length=segment_length,
                    fps=render_fps,
                )
                created += 1
                steps += rollout.length
                returns.append(rollout.true_return)
                bar.set_postfix(segments=ready)
    finally:
        env.close()
    return ImportSummary(
        env_id=env_id,
        policy_name=identity.name,
        trajectories_created=created,
        episodes_skipped=len(done),
        segments_ready=ready,
        steps=steps,
        returns=tuple(returns),
        seconds=time.perf_counter() - started,
    )


def policy_rollouts_store(
    *,
    env_spec: EnvironmentSpec,
    policy_version: PolicyVersion,
    actor: core.Policy,
    episodes: int,
    seed: int,
    segment_length: int,
    max_steps: int | None = None,
    width: int = 128,
    height: int = 128,
) -> ImportSummary:
    """Roll out an in-memory policy (a loop iteration's fine-tuned model) and store its
    episodes under ``policy_version`` with rendered clips, episode by episode all-or-nothing,
    exactly like :func:`rollouts_import`. Seeds already stored for this policy are skipped,
    so a retried iteration does not store the same episode twice."""
    _check_positive(episodes=episodes, segment_length=segment_length, max_steps=max_steps)
    started = time.perf_counter()
    try:
        env = core.make_env(env_spec.env_id, render=True, width=width, height=height)
    except (core.EnvironmentUnavailable, core.RenderingUnavailable) as exc:
        raise RolloutImportError(str(exc)) from None
    seeds = [seed + index for index in range(episodes)]
    done = set(
        Trajectory.objects.filter(policy=policy_version, seed__in=seeds).values_list(
            "seed", flat=True
        )
    )
    fps = int(env_spec.render_fps or env.metadata.get("render_fps") or 30)
    created = ready = steps = 0
    returns: list[float] = []
    try:
        for episode_seed in (s for s in seeds if s not in done):
            rollout = core.collect_episode(
                env, actor, seed=episode_seed, max_steps=max_steps, render=True
            )
            ready += _store_episode(
                rollout=rollout,
                env_spec=env_spec,
                policy_version=policy_version,
                segment_length=segment_length,
                fps=fps,
            )
            created += 1
            steps += rollout.length
            returns.append(rollout.true_return)
    finally:
        env.close()
    return ImportSummary(
        env_id=env_spec.env_id,
        policy_name=policy_version.name,
        trajectories_created=created,
        episodes_skipped=len(done),
        segments_ready=ready,
        steps=steps,
        returns=tuple(returns),
        seconds=time.perf_counter() - started,
    )
