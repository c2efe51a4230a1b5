"""``manage.py simulate_annotators``: B-Pref teachers labelling a campaign over real HTTP."""

from __future__ import annotations

import io
from typing import Any, Callable

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.management.base import CommandError

from feedback.models import Campaign, Judgement, Pair
from learning.simulation import desirability, screen_preference
from tests.feedback.conftest import quick_campaign  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def simulate(live_server: Any, campaign: Campaign, teacher: str, *extra: str) -> str:
    out = io.StringIO()
    call_command(
        "simulate_annotators", "--campaign", str(campaign.pk), "--teacher", teacher,
        "--base-url", live_server.url, *extra, stdout=out,
    )
    return out.getvalue()


def _winner_is_higher(judgement: Judgement) -> bool:
    pair = judgement.pair
    ra, rb = pair.segment_a.true_return, pair.segment_b.true_return
    return (ra > rb) if judgement.preference == "a" else (rb > ra)


def test_oracle_labels_every_pair_over_http_agreeing_with_the_true_returns(
    live_server: Any, quick_campaign: Callable[..., Campaign],  # noqa: F811
) -> None:
    campaign = quick_campaign(n_trajectories=4, pairs=12)
    output = simulate(live_server, campaign, "oracle", "--workers", "2", "--seed", "0")

    pairs = list(Pair.objects.filter(campaign=campaign))
    judgements = list(
        Judgement.objects.filter(pair__campaign=campaign).select_related("pair__segment_a", "pair__segment_b")
    )
    assert len(pairs) == 12
    assert sorted(j.pair_id for j in judgements) == sorted(p.pk for p in pairs)
    assert all(j.is_simulated for j in judgements)
    assert {j.annotator.username for j in judgements} <= {"sim-oracle-1", "sim-oracle-2"}
    # Random returns never tie: the oracle always picks the segment with the higher return.
    assert all(j.preference in ("a", "b") and _winner_is_higher(j) for j in judgements)
    # Both screen orders were exercised and mapped back to canonical A/B correctly.
    assert {j.left_is_a for j in judgements} == {True, False}
    # Desirability comes from the return relative to the campaign's range.
    from learning.simulation import campaign_return_range

    low, high = campaign_return_range(campaign)
    for j in judgements:
        assert j.desirability_a == desirability(j.pair.segment_a.true_return, low, high)
        assert j.desirability_b == desirability(j.pair.segment_b.true_return, low, high)
    assert "12 labels" in output and "nothing left to label" in output
    user = User.objects.get(username="sim-oracle-1")
    assert set(user.groups.values_list("name", flat=True)) == {"annotator", "simulated"}

    # Idempotent: a second run reuses the users and finds nothing left.
    again = simulate(live_server, campaign, "oracle", "--workers", "2")
    assert "0 labels" in again
    assert User.objects.filter(username__startswith="sim-oracle-").count() == 2


def test_mistake_teacher_with_epsilon_one_always_disagrees_and_labels_stop_at_the_budget(
    live_server: Any, quick_campaign: Callable[..., Campaign],  # noqa: F811
) -> None:
    campaign = quick_campaign(n_trajectories=4, pairs=10)
    output = simulate(
        live_server, campaign, "mistake", "--workers", "3", "--epsilon", "1.0", "--labels", "7"
    )
    judgements = list(Judgement.objects.filter(pair__campaign=campaign).select_related(
        "pair__segment_a", "pair__segment_b"))
    assert len(judgements) == 7
    assert all(j.is_simulated for j in judgements)
    assert all(j.preference in ("a", "b") and not _winner_is_higher(j) for j in judgements)
    assert "7 labels" in output and "budget of 7" in output


def test_skip_teacher_answers_cant_tell_when_both_segments_are_bad(
    live_server: Any, quick_campaign: Callable[..., Campaign],  # noqa: F811
) -> None:
    campaign = quick_campaign(n_trajectories=4, pairs=10)
    simulate(live_server, campaign, "skip", "--skip-threshold", "0.5", "--workers", "2")
    from learning.simulation import campaign_return_range

    low, high = campaign_return_range(campaign)
    judgements = list(Judgement.objects.filter(pair__campaign=campaign).select_related(
        "pair__segment_a", "pair__segment_b"))
    assert len(judgements) == 10
    # Threshold 0.5: a pair whose segments both lie in the lower half of the campaign's
    # return range is skipped; the rest are answered like the oracle would.
    for j in judgements:
        if max(j.pair.segment_a.true_return, j.pair.segment_b.true_return) < (low + high) / 2:
            assert j.preference == "cant_tell"
        else:
            assert j.preference in ("a", "b") and _winner_is_higher(j)
    assert any(j.preference == "cant_tell" for j in judgements)


def test_human_judgements_stay_unsimulated(
    quick_campaign: Callable[..., Campaign], annotator: Any,  # noqa: F811
    api_client_for: Callable[..., Any],
) -> None:
    campaign = quick_campaign()
    client = api_client_for(annotator)
    lease = client.post(f"/api/v1/campaigns/{campaign.pk}/next/", {}, format="json").json()
    answer = {"preference": "left", "left_desirability": "unsure", "right_desirability": "unsure"}
    assert client.post(f"/api/v1/assignments/{lease['assignment_id']}/judgement/", answer,
                       format="json").status_code == 201
    assert not Judgement.objects.get().is_simulated
    # Session-authenticated members of the group are marked too.
    annotator.groups.add(Group.objects.get_or_create(name="simulated")[0])
    client.force_authenticate(annotator)
    lease = client.post(f"/api/v1/campaigns/{campaign.pk}/next/", {}, format="json").json()
    assert client.post(f"/api/v1/assignments/{lease['assignment_id']}/judgement/", answer,
                       format="json").status_code == 201
    assert Judgement.objects.filter(is_simulated=True).count() == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--campaign", "999999", "--teacher", "oracle"], "No campaign with id 999999"),
        (["--teacher", "sage"], "Unknown teacher 'sage'"),
        (["--teacher", "oracle", "--workers", "0"], "--workers must be at least 1"),
        (["--teacher", "oracle", "--labels", "0"], "--labels must be at least 1"),
        (["--teacher", "mistake", "--epsilon", "1.5"], "--epsilon (mistake) must be in [0, 1]"),
        (["--teacher", "myopic", "--gamma", "0"], "gamma must be in (0, 1]"),
        (["--teacher", "stoc", "--beta", "-1"], "beta must be > 0"),
        (["--teacher", "oracle", "--base-url", "ftp://x"], "--base-url must be an http(s) URL"),
        (["--teacher", "oracle", "--base-url", "http://127.0.0.1:9"], "Cannot reach the PrefLab server"),
    ],
)
def test_bad_input_is_a_command_error_naming_the_problem(
    quick_campaign: Callable[..., Campaign], args: list[str], message: str,  # noqa: F811
) -> None:
    campaign = quick_campaign(pairs=1)
    if "--campaign" not in args:
        args = ["--campaign", str(campaign.pk), *args]
    with pytest.raises(CommandError) as info:
        call_command("simulate_annotators", *args, stdout=io.StringIO())
    assert message in str(info.value)
    assert not Judgement.objects.exists()


def test_campaign_without_true_rewards_or_not_active_is_refused(
    quick_campaign: Callable[..., Campaign],  # noqa: F811
) -> None:
    from feedback.models import Segment

    campaign = quick_campaign(pairs=1)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.PAUSED)
    with pytest.raises(CommandError, match="is paused"):
        call_command("simulate_annotators", "--campaign", str(campaign.pk), "--teacher", "oracle")
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.ACTIVE)
    Segment.objects.update(true_return=None)
    with pytest.raises(CommandError, match="no segments with true rewards"):
        call_command("simulate_annotators", "--campaign", str(campaign.pk), "--teacher", "oracle")


def test_answer_mapping_and_desirability_thirds() -> None:
    assert screen_preference(1.0, left_is_a=True) == "left"
    assert screen_preference(1.0, left_is_a=False) == "right"
    assert screen_preference(0.0, left_is_a=True) == "right"
    assert screen_preference(0.0, left_is_a=False) == "left"
    assert screen_preference(0.5, left_is_a=True) == "equal"
    assert screen_preference(None, left_is_a=False) == "cant_tell"
    assert [desirability(v, -3.0, 3.0) for v in (-3, -1.5, 0, 1.5, 3)] == [
        "undesirable", "undesirable", "unsure", "desirable", "desirable"]
    assert desirability(1.0, 1.0, 1.0) == "unsure"


@pytest.mark.parametrize("teacher", ["stoc", "equal", "myopic"])
def test_every_other_teacher_labels_the_whole_campaign(
    live_server: Any, quick_campaign: Callable[..., Campaign], teacher: str,  # noqa: F811
) -> None:
    campaign = quick_campaign(n_trajectories=3, pairs=5)
    output = simulate(live_server, campaign, teacher, "--workers", "2", "--seed", "1")
    judgements = Judgement.objects.filter(pair__campaign=campaign)
    assert judgements.count() == 5 and all(j.is_simulated for j in judgements)
    assert f"Simulated {teacher} annotators (2 workers): 5 labels" in output
