"""create_campaign and queue_pairs: the shell path an admin uses to open a campaign."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import CommandError, call_command

from feedback.models import Campaign, Pair


def test_create_campaign_then_queue_pairs(make_campaign: Any) -> None:
    existing = make_campaign(name="seed", pairs=0)
    call_command("create_campaign", name="second", env=existing.env.env_id, segment_length=10, overlap=2)
    campaign = Campaign.objects.get(name="second")
    assert (campaign.overlap, campaign.segment_length) == (2, 10)

    call_command("queue_pairs", campaign="second", count=4, seed=1)
    pairs = Pair.objects.filter(campaign=campaign)
    assert pairs.count() == 4
    assert all(p.segment_a_id < p.segment_b_id for p in pairs)


def test_create_campaign_refuses_unknown_env_and_duplicates(make_campaign: Any) -> None:
    existing = make_campaign(name="seed", pairs=0)
    with pytest.raises(CommandError, match="No trajectories of 'Nope-v0'"):
        call_command("create_campaign", name="x", env="Nope-v0", segment_length=10)
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_campaign", name="seed", env=existing.env.env_id, segment_length=10)
    with pytest.raises(CommandError, match="--overlap must be at least 1"):
        call_command("create_campaign", name="y", env=existing.env.env_id, segment_length=10, overlap=0)
    assert Campaign.objects.count() == 1


def test_queue_pairs_errors_name_the_problem(make_campaign: Any) -> None:
    make_campaign(name="tiny", n_trajectories=1, length=10, segment_length=10, pairs=0)
    with pytest.raises(CommandError, match="No campaign 'missing'"):
        call_command("queue_pairs", campaign="missing", count=3)
    with pytest.raises(CommandError, match="ready segment"):
        call_command("queue_pairs", campaign="tiny", count=3)
    assert Pair.objects.count() == 0
