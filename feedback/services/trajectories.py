"""Trajectories and segments in: storing arrays, slicing segments, attaching rendered clips."""

from __future__ import annotations

import logging
import math
import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction

from feedback.models import EnvironmentSpec, PolicyVersion, Segment, Trajectory
from feedback.rendering import ClipEncodingError, encode_mp4
from feedback.storage import TrajectoryArrays, load_npz, save_frames, save_trajectory_arrays

logger = logging.getLogger(__name__)


def environment_get_or_create(
    *,
    env_id: str,
    observation_space: dict[str, Any] | None = None,
    action_space: dict[str, Any] | None = None,
    render_fps: int = 30,
    render_width: int | None = None,
    render_height: int | None = None,
) -> EnvironmentSpec:
    defaults: dict[str, Any] = {
        "observation_space": observation_space or {},
        "action_space": action_space or {},
        "render_fps": render_fps,
    }
    if render_width and render_height:
        defaults.update(render_width=render_width, render_height=render_height)
    env, created = EnvironmentSpec.objects.get_or_create(env_id=env_id, defaults=defaults)
    if not created and observation_space and not env.observation_space:
        env.observation_space = observation_space
        env.action_space = action_space or {}
        env.save(update_fields=["observation_space", "action_space"])
    return env


def policy_get_or_create(
    *, env: EnvironmentSpec, name: str, kind: str, config: dict[str, Any] | None = None
) -> PolicyVersion:
    policy, _ = PolicyVersion.objects.get_or_create(
        env=env, name=name, defaults={"kind": kind, "config": config or {}}
    )
    return policy


def segment_bounds(*, length: int, segment_length: int) -> list[tuple[int, int]]:
    """Non-overlapping windows ``[i*L, (i+1)*L)``.

    A shorter last window is kept when it holds at least half a segment: episodes that end
    early (a pole that falls, a hopper that trips) are exactly what annotators need to see.
    """
    if segment_length < 1:
        raise ValueError("segment_length must be at least 1")
    bounds = [(start, start + segment_length) for start in range(0, length - segment_length + 1, segment_length)]
    covered = bounds[-1][1] if bounds else 0
    if length - covered >= math.ceil(segment_length / 2):
        bounds.append((covered, length))
    return bounds


def trajectory_create(
    *,
    env: EnvironmentSpec,
    policy: PolicyVersion,
    arrays: TrajectoryArrays,
    segment_length: int,
    source: str,
    seed: int | None = None,
    created_by: AbstractBaseUser | None = None,
    render_in_background: bool = True,
) -> Trajectory:
    """Store a trajectory's arrays and create its segments, all or nothing.

    With frames and ``render_in_background``, the frames are parked in storage and a
    render task is enqueued after commit; segments stay ``pending`` (invisible to
    annotators) until their clip is fully written. Without frames, segments are ``none``:
    usable for learning, never shown.
    """
    stem = uuid.uuid4().hex
    stored: list[str] = []
    try:
        arrays_name = save_trajectory_arrays(arrays, name=f"trajectories/{stem}.npz")
        stored.append(arrays_name)
        frames_name = ""
        if arrays.frames is not None and render_in_background:
            frames_name = save_frames(arrays.frames, name=f"frames/{stem}.npz")
            stored.append(frames_name)
        with transaction.atomic():
            trajectory = Trajectory.objects.create(
                env=env,
                policy=policy,
                seed=seed,
                length=arrays.length,
                arrays=arrays_name,
                pending_frames=frames_name,
                has_rewards=arrays.rewards is not None,
                true_return=arrays.true_return,
                source=source,
                created_by=created_by,
            )
            status = Segment.ClipStatus.PENDING if arrays.frames is not None else Segment.ClipStatus.NONE
            Segment.objects.bulk_create(
                Segment(
                    trajectory=trajectory,
                    start=start,
                    end=end,
                    clip_status=status,
                    fps=env.render_fps,
                    true_return=None if arrays.rewards is None else float(arrays.rewards[start:end].sum()),
                )
                for start, end in segment_bounds(length=arrays.length, segment_length=segment_length)
            )
            if frames_name:
                from feedback.tasks import render_trajectory_clips

                trajectory_pk = trajectory.pk
                transaction.on_commit(lambda: render_trajectory_clips.enqueue(trajectory_pk))
    except BaseException:
        for name in stored:
            default_storage.delete(name)
        raise
    return trajectory


def segment_clip_attach(*, segment: Segment, frames: Any, fps: int) -> Segment:
    """Encode ``frames`` (the segment's own (T, H, W, 3) slice) and mark the segment ready.

    The status flips to ready only after the file is completely in storage, so no
    annotator is ever handed a half-written clip.
    """
    path = encode_mp4(frames, fps=fps)
    try:
        with path.open("rb") as handle:
            name = default_storage.save(f"clips/{uuid.uuid4().hex}.mp4", File(handle))
    finally:
        path.unlink(missing_ok=True)
    updated = Segment.objects.filter(pk=segment.pk).update(
        clip=name, clip_status=Segment.ClipStatus.READY, clip_error="", fps=fps
    )
    if not updated:  # the segment was deleted while we encoded
        default_storage.delete(name)
    segment.clip.name, segment.clip_status, segment.fps = name, Segment.ClipStatus.READY, fps
    return segment


def trajectory_render_pending(*, trajectory_id: int) -> int:
    """Render every pending segment of a trajectory from its parked frames; return the count.

    Safe to run twice: segments already ready are skipped. A segment whose encoding fails is
    marked failed with the reason and the others still render.
    """
    trajectory = Trajectory.objects.select_related("env").get(pk=trajectory_id)
    if not trajectory.pending_frames:
        return 0
    frames = load_npz(trajectory.pending_frames.name)["frames"]
    rendered = 0
    for segment in trajectory.segments.filter(clip_status=Segment.ClipStatus.PENDING):
        try:
            segment_clip_attach(
                segment=segment, frames=frames[segment.start : segment.end], fps=trajectory.env.render_fps
            )
            rendered += 1
        except ClipEncodingError as exc:
            logger.warning("segment %s failed to render: %s", segment.pk, exc)
            Segment.objects.filter(pk=segment.pk).update(
                clip_status=Segment.ClipStatus.FAILED, clip_error=str(exc)[:2000]
            )
    name = trajectory.pending_frames.name
    Trajectory.objects.filter(pk=trajectory.pk).update(pending_frames="")
    default_storage.delete(name)
    return rendered


def default_segment_length() -> int:
    return int(settings.PREFLAB_DEFAULT_SEGMENT_LENGTH)
