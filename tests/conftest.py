"""Shared fixtures: the cast of users, tiny environments, segments with real clips."""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np
import pytest
from django.contrib.auth.models import Group, User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(params=["memory", "redis"])
def layer(request: Any, settings: Any) -> Any:
    """Run a WebSocket test once on the in-memory and once on the Redis channel layer."""
    from channels.layers import channel_layers

    from tests.websockets import MEMORY_LAYER, REDIS_LAYER

    settings.CHANNEL_LAYERS = {"default": MEMORY_LAYER if request.param == "memory" else REDIS_LAYER}
    channel_layers.backends = {}  # forget layers built from the previous settings
    yield request.param
    channel_layers.backends = {}


@pytest.fixture(autouse=True)
def _media_root(settings: Any, tmp_path: Any) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _lapsed_leases_looked_for_afresh() -> None:
    """Each test starts with no memory of when lapsed leases were last looked for (campaign
    ids are reused across tests, and the look is skipped within a second of the last)."""
    from feedback.services.annotation import forget_reclaim_times

    forget_reclaim_times()


def _make_user(username: str, *groups: str, superuser: bool = False) -> User:
    user = User.objects.create_user(username=username, password=f"{username}-pass-123")
    if superuser:
        user.is_staff = user.is_superuser = True
        user.save(update_fields=["is_staff", "is_superuser"])
    for name in groups:
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    return user


@pytest.fixture
def annotator(db: Any) -> User:
    return _make_user("annie", "annotator")


@pytest.fixture
def other_annotator(db: Any) -> User:
    return _make_user("otto", "annotator")


@pytest.fixture
def researcher(db: Any) -> User:
    return _make_user("rita", "researcher")


@pytest.fixture
def admin_user(db: Any) -> User:
    return _make_user("ada", "admin", superuser=False)


@pytest.fixture
def outsider(db: Any) -> User:
    """Logged in, but in no PrefLab group."""
    return _make_user("olga")


@pytest.fixture
def api_client_for() -> Callable[[User | None], APIClient]:
    """An API client authenticated with the user's token (or anonymous for None)."""

    def make(user: User | None) -> APIClient:
        client = APIClient()
        if user is not None:
            token, _ = Token.objects.get_or_create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


def random_frames(length: int, *, height: int = 32, width: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, size=(length, height, width, 3), dtype=np.uint8)


@pytest.fixture
def make_campaign(db: Any) -> Callable[..., Any]:
    """A campaign over ``n_trajectories`` synthetic trajectories whose clips are really encoded.

    Returns the campaign with ``pairs`` random pairs queued.
    """
    from feedback import services
    from feedback.models import PolicyVersion, Segment, Trajectory
    from feedback.storage import TrajectoryArrays

    def make(
        *,
        name: str = "toy",
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
            rng = np.random.default_rng(index)
            arrays = TrajectoryArrays(
                observations=rng.normal(size=(length, 3)).astype(np.float32),
                actions=rng.normal(size=(length, 1)).astype(np.float32),
                rewards=rng.normal(size=length).astype(np.float32),
            )
            trajectory = services.trajectory_create(
                env=env, policy=policy, arrays=arrays, segment_length=segment_length,
                source=Trajectory.Source.ROLLOUT, seed=index, render_in_background=False,
            )
            frames = random_frames(length, seed=index)
            for segment in trajectory.segments.all():
                services.segment_clip_attach(segment=segment, frames=frames[segment.start:segment.end], fps=10)
        campaign = services.campaign_create(
            name=name, env=env, segment_length=segment_length, overlap=overlap, lease_seconds=lease_seconds
        )
        if pairs:
            services.pairs_create_random(campaign=campaign, count=pairs, seed=0)
        assert Segment.objects.filter(clip_status="ready").exists()
        return campaign

    return make
