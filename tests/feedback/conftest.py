"""Helpers for the feedback tests: uploads, counting what was written, answering leases."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.conftest import random_frames

VALID_ANSWER = {
    "preference": "left",
    "left_desirability": "desirable",
    "right_desirability": "undesirable",
}


def npz_file(name: str = "trajectory.npz", *, compressed: bool = True, **arrays: Any) -> SimpleUploadedFile:
    """An uploadable ``.npz`` holding ``arrays``."""
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return SimpleUploadedFile(name, buffer.getvalue(), content_type="application/octet-stream")


def trajectory_arrays(length: int = 20, *, frames: bool = False, seed: int = 0) -> dict[str, np.ndarray]:
    """Valid arrays of one trajectory of ``length`` steps (3-d observations, 1-d actions)."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {
        "observations": rng.normal(size=(length, 3)).astype(np.float32),
        "actions": rng.normal(size=(length, 1)).astype(np.float32),
        "rewards": rng.normal(size=length).astype(np.float32),
        "terminations": np.zeros(length, dtype=bool),
    }
    if frames:
        arrays["frames"] = random_frames(length, seed=seed)
    return arrays


def media_files() -> list[Path]:
    """Every file under MEDIA_ROOT (empty when nothing was ever stored)."""
    root = Path(settings.MEDIA_ROOT)
    return sorted(path for path in root.rglob("*") if path.is_file()) if root.exists() else []


def row_counts() -> dict[str, int]:
    """Row counts of every table an upload or a judgement could write to."""
    from django_tasks_db.models import DBTaskResult

    from feedback.models import (
        Assignment,
        EnvironmentSpec,
        Judgement,
        Pair,
        PolicyVersion,
        Segment,
        Trajectory,
    )

    models = (EnvironmentSpec, PolicyVersion, Trajectory, Segment, Pair, Assignment, Judgement, DBTaskResult)
    return {model.__name__: model.objects.count() for model in models}


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    """The cast's passwords are hashed with PBKDF2 (~0.3 s each) unless told otherwise."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def nothing_written() -> Callable[[], Any]:
    """Snapshot rows and media files now; calling the returned function asserts no change."""
    before = (row_counts(), media_files())

    def check() -> None:
        assert (row_counts(), media_files()) == before

    return check


@pytest.fixture
def campaign(make_campaign: Callable[..., Any]) -> Any:
    """3 trajectories x 2 ready segments of 10 steps (6 real clips), 5 pairs, overlap 1."""
    return make_campaign()


@pytest.fixture
def lease_for(api_client_for: Callable[..., Any]) -> Callable[..., dict[str, Any]]:
    """Lease the next pair of ``campaign`` to ``user`` through the API; return the body."""

    def lease(user: Any, campaign: Any, **body: Any) -> dict[str, Any]:
        response = api_client_for(user).post(f"/api/v1/campaigns/{campaign.pk}/next/", body, format="json")
        assert response.status_code == 200, response.content
        return response.json()

    return lease


FAKE_MP4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(range(256)) * 16


@pytest.fixture
def quick_campaign(db: Any) -> Callable[..., Any]:
    """Like ``make_campaign`` but with stand-in clip files instead of ffmpeg output.

    For tests about leasing and roles, where the clip's bytes are never decoded; segments
    are still created by the services and flipped to ready with a clip in storage.
    """
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from feedback import services
    from feedback.models import PolicyVersion, Segment, Trajectory
    from feedback.storage import TrajectoryArrays

    def make(
        *,
        name: str = "quick",
        n_trajectories: int = 3,
        length: int = 20,
        segment_length: int = 10,
        pairs: int = 5,
        overlap: int = 1,
        lease_seconds: int = 600,
        env_id: str = "Toy-v0",
    ) -> Any:
        env = services.environment_get_or_create(env_id=env_id, render_fps=10)
        policy = services.policy_get_or_create(env=env, name="random", kind=PolicyVersion.Kind.RANDOM)
        for index in range(n_trajectories):
            arrays = TrajectoryArrays(**{
                key: value for key, value in trajectory_arrays(length, seed=index).items()
            })
            trajectory = services.trajectory_create(
                env=env, policy=policy, arrays=arrays, segment_length=segment_length,
                source=Trajectory.Source.ROLLOUT, seed=index, render_in_background=False,
            )
            for segment in trajectory.segments.all():
                clip = default_storage.save(f"clips/fake-{segment.pk}.mp4", ContentFile(FAKE_MP4))
                Segment.objects.filter(pk=segment.pk).update(
                    clip=clip, clip_status=Segment.ClipStatus.READY, fps=10
                )
        campaign = services.campaign_create(
            name=name, env=env, segment_length=segment_length, overlap=overlap, lease_seconds=lease_seconds
        )
        if pairs:
            services.pairs_create_random(campaign=campaign, count=pairs, seed=0)
        return campaign

    return make
