"""manage.py seed_demo --quick: users, real clips, campaigns with pairs, gold and practice
pairs; idempotent."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.core.management import call_command

from feedback.models import Campaign, EnvironmentSpec, Pair, PolicyVersion, Segment, Trajectory
from learning import rollout_import
from learning.management.commands.seed_demo import demo_envs

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def seed() -> str:
    out = io.StringIO()
    call_command("seed_demo", "--quick", stdout=out, stderr=io.StringIO(), verbosity=0)
    return out.getvalue()


def snapshot() -> dict[str, Any]:
    media = Path(settings.MEDIA_ROOT)
    return {
        "users": User.objects.count(),
        "envs": EnvironmentSpec.objects.count(),
        "policies": PolicyVersion.objects.count(),
        "trajectories": Trajectory.objects.count(),
        "segments": Segment.objects.count(),
        "campaigns": Campaign.objects.count(),
        "pairs": Pair.objects.count(),
        "files": sorted(str(p) for p in media.rglob("*") if p.is_file()),
    }


def test_quick_demo_creates_logins_clips_and_pairs_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """One test, two runs: seeding is slow enough (real rendering) that each run counts."""
    User.objects.create_user(username="annotator", password="my-own-secret-1")

    output = seed()

    # Logins: new users get the printed demo password; an existing one keeps its own.
    for username in ("researcher", "admin"):
        assert f"{username:<11} preflab-{username}" in output
        assert authenticate(username=username, password=f"preflab-{username}") is not None
    assert "annotator   (existing user, password unchanged)" in output
    assert authenticate(username="annotator", password="my-own-secret-1") is not None
    for username in ("annotator", "researcher", "admin"):
        assert User.objects.get(username=username).groups.filter(name=username).exists()
    admin = User.objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff
    assert not User.objects.get(username="researcher").is_staff

    # Real clips of a random and a scripted policy for each env, all rendered.
    for env_id in ("CartPole-v1", "HalfCheetah-v5"):
        kinds = set(PolicyVersion.objects.filter(env__env_id=env_id).values_list("kind", flat=True))
        assert kinds == {"random", "scripted"}
        for kind in kinds:
            ready = Segment.objects.filter(
                trajectory__env__env_id=env_id, trajectory__policy__kind=kind, clip_status="ready"
            )
            assert ready.count() >= 2, (env_id, kind)
    assert not Segment.objects.exclude(clip_status="ready").exists()
    scripted, random = (
        Trajectory.objects.filter(env__env_id="HalfCheetah-v5", policy__kind=kind).get().true_return
        for kind in ("scripted", "random")
    )
    assert scripted is not None and random is not None
    assert scripted > random + 50  # the gait visibly outruns the twitching

    # One campaign per env, with instructions and pairs of its own ready clips.
    cartpole = Campaign.objects.get(env__env_id="CartPole-v1")
    cheetah = Campaign.objects.get(env__env_id="HalfCheetah-v5")
    assert (cartpole.segment_length, cheetah.segment_length) == (30, 50)
    assert "pole" in cartpole.instructions and "forward" in cheetah.instructions
    assert cartpole.created_by == admin
    ordinary = Pair.objects.filter(is_gold=False, repeat_of__isnull=True)
    counts = [ordinary.filter(campaign=campaign).count() for campaign in (cartpole, cheetah)]
    assert counts == [6, 3]
    assert (cartpole.pair_count, cheetah.pair_count) == (6, 3)  # gold never counts as progress

    # Quality control: practice and gold pairs answered by the true return, and the rates set.
    for demo in demo_envs(quick=True):
        campaign = Campaign.objects.get(name=demo.campaign)
        assert (campaign.gold_rate, campaign.repeat_rate) == (0.1, 0.05)
        practice = campaign.pairs.filter(is_practice=True)
        gold = campaign.pairs.filter(is_gold=True, is_practice=False)
        assert (practice.count(), gold.count()) == (demo.practice_pairs, demo.gold_pairs)
        assert all(pair.is_gold and not pair.is_open for pair in practice), "never leased"
        assert all(pair.is_open for pair in gold)
        for pair in campaign.pairs.filter(is_gold=True).select_related("segment_a", "segment_b"):
            a, b = pair.segment_a.true_return, pair.segment_b.true_return
            assert a is not None and b is not None and a != b
            assert pair.gold_preference == ("a" if a > b else "b")
    assert "too few clips" not in output, "the quick pools have enough gold pairs"
    for demo in demo_envs(quick=False):  # the full demo: a full practice round, ten gold pairs
        assert (demo.practice_pairs, demo.gold_pairs) == (5, 10)
    for pair in Pair.objects.select_related(
        "segment_a__trajectory", "segment_b__trajectory", "campaign"
    ):
        for segment in (pair.segment_a, pair.segment_b):
            assert (
                segment.clip_status == "ready" and segment.trajectory.env_id == pair.campaign.env_id
            )
            assert (
                pair.campaign.segment_length / 2 <= segment.length <= pair.campaign.segment_length
            )

    # Second run: reads only. No env is built, no row or file is added.
    before = snapshot()

    def no_env(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("seed_demo rebuilt an env although every clip already exists")

    monkeypatch.setattr(rollout_import.core, "make_env", no_env)
    output = seed()

    assert snapshot() == before
    assert output.count("(existing user, password unchanged)") == 3


def test_rates_changed_by_a_researcher_survive_a_rerun() -> None:
    seed()
    Campaign.objects.update(gold_rate=0.3, repeat_rate=0.0)
    seed()
    assert set(Campaign.objects.values_list("gold_rate", "repeat_rate")) == {(0.3, 0.0)}
