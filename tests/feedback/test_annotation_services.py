"""Leasing, judging and queueing pairs, called directly (no HTTP)."""

from __future__ import annotations

import itertools
import random
from datetime import timedelta
from typing import Any, Callable

import pytest
from django.utils import timezone

from feedback import services
from feedback.models import Assignment, Campaign, Judgement, Pair, PolicyVersion, Segment, Trajectory
from feedback.services.annotation import JudgementInput, to_canonical, to_screen
from feedback.services.campaigns import eligible_segments
from feedback.storage import TrajectoryArrays
from tests.conftest import _make_user
from tests.feedback.conftest import trajectory_arrays

ANSWER = JudgementInput(preference="left", left_desirability="desirable", right_desirability="unsure")


def _lease(campaign: Campaign, user: Any, **kwargs: Any) -> Assignment | None:
    return services.assignment_lease_next(campaign=campaign, annotator=user, **kwargs)


# --- overlap and expiry ------------------------------------------------------------------------------


def test_overlap_two_lets_two_annotators_hold_a_pair_but_not_a_third(
    quick_campaign: Callable[..., Campaign], annotator: Any, other_annotator: Any,
) -> None:
    campaign = quick_campaign(pairs=1, overlap=2)
    third = _make_user("theo", "annotator")
    first, second = _lease(campaign, annotator), _lease(campaign, other_annotator)
    assert first is not None and second is not None and first.pair_id == second.pair_id
    assert _lease(campaign, third) is None
    # A judgement keeps its slot: answering does not free the pair for a third person.
    services.judgement_record(assignment_id=first.pk, annotator=annotator, answer=ANSWER)
    assert _lease(campaign, third) is None


def test_overlap_one_hands_each_annotator_a_different_pair(
    quick_campaign: Callable[..., Campaign], annotator: Any, other_annotator: Any,
) -> None:
    campaign = quick_campaign(pairs=2, overlap=1)
    first, second = _lease(campaign, annotator), _lease(campaign, other_annotator)
    assert first is not None and second is not None and first.pair_id != second.pair_id
    assert _lease(campaign, _make_user("theo", "annotator")) is None


def test_an_expired_lease_returns_the_pair_to_the_pool(
    quick_campaign: Callable[..., Campaign], annotator: Any, other_annotator: Any,
) -> None:
    campaign = quick_campaign(pairs=1, overlap=1, lease_seconds=30)
    start = timezone.now()
    mine = _lease(campaign, annotator, now=start)
    assert mine is not None and mine.expires_at == start + timedelta(seconds=30)
    assert _lease(campaign, other_annotator, now=start + timedelta(seconds=29)) is None
    theirs = _lease(campaign, other_annotator, now=start + timedelta(seconds=30))
    assert theirs is not None and theirs.pair_id == mine.pair_id
    # My lapsed lease is not renewed now that someone else holds the pair, and the pair is
    # not leased to me again.
    assert _lease(campaign, annotator, now=start + timedelta(seconds=31)) is None
    with pytest.raises(services.AssignmentGone, match="expired"):
        services.judgement_record(
            assignment_id=mine.pk, annotator=annotator, answer=ANSWER, now=start + timedelta(seconds=31)
        )


def test_lapsed_leases_are_looked_for_once_a_second_but_always_before_nothing_is_left(
    quick_campaign: Callable[..., Campaign], annotator: Any, other_annotator: Any,
) -> None:
    campaign = quick_campaign(pairs=3, overlap=1, lease_seconds=30)
    start = timezone.now()
    lapsing = _lease(campaign, annotator, now=start)
    # Just before it lapses, another lease looks for lapsed leases (finds none) ...
    assert _lease(campaign, other_annotator, now=start + timedelta(seconds=29.5)) is not None
    # ... so for a second nobody looks: the next lease takes the last free pair, not the
    # lapsed one ...
    third = _make_user("theo", "annotator")
    free = _lease(campaign, third, now=start + timedelta(seconds=30.1))
    assert free is not None and free.pair_id != lapsing.pair_id
    assert Assignment.objects.get(pk=lapsing.pk).holds_slot
    # ... but with nothing else open, a lease within that second still looks, and gets it.
    fourth = _make_user("uma", "annotator")
    reclaimed = _lease(campaign, fourth, now=start + timedelta(seconds=30.2))
    assert reclaimed is not None and reclaimed.pair_id == lapsing.pair_id
    assert not Assignment.objects.get(pk=lapsing.pk).holds_slot


def test_an_expired_lease_nobody_took_is_renewed_for_its_holder(
    quick_campaign: Callable[..., Campaign], annotator: Any,
) -> None:
    campaign = quick_campaign(pairs=2, overlap=1, lease_seconds=30)
    start = timezone.now()
    mine = _lease(campaign, annotator, now=start)
    later = start + timedelta(minutes=5)
    again = _lease(campaign, annotator, now=later)
    assert again is not None and again.pk == mine.pk
    again.refresh_from_db()
    assert again.expires_at == later + timedelta(seconds=30)
    assert again.left_is_a == mine.left_is_a  # the order shown does not change on renewal


def test_an_expired_lease_nobody_took_can_still_be_answered(
    quick_campaign: Callable[..., Campaign], annotator: Any,
) -> None:
    campaign = quick_campaign(pairs=1, overlap=1, lease_seconds=30)
    start = timezone.now()
    mine = _lease(campaign, annotator, now=start)
    judgement, created = services.judgement_record(
        assignment_id=mine.pk, annotator=annotator, answer=ANSWER, now=start + timedelta(hours=1)
    )
    assert created and judgement.assignment_id == mine.pk


def test_with_overlap_two_an_expired_lease_is_gone_only_when_two_others_hold_the_pair(
    quick_campaign: Callable[..., Campaign], annotator: Any, other_annotator: Any,
) -> None:
    campaign = quick_campaign(pairs=1, overlap=2, lease_seconds=30)
    start = timezone.now()
    mine = _lease(campaign, annotator, now=start)
    later = start + timedelta(seconds=60)
    assert _lease(campaign, other_annotator, now=later) is not None
    # One other holder: a slot is still free for me.
    services.judgement_record(assignment_id=mine.pk, annotator=annotator, answer=ANSWER, now=later)
    assert Judgement.objects.count() == 1


# --- the queue ----------------------------------------------------------------------------------


def test_higher_priority_pairs_are_leased_first_then_oldest(
    quick_campaign: Callable[..., Campaign], annotator: Any,
) -> None:
    campaign = quick_campaign(pairs=4, overlap=1)
    pairs = list(campaign.pairs.order_by("id"))
    Pair.objects.filter(pk=pairs[2].pk).update(priority=5)
    leased = []
    while (assignment := _lease(campaign, annotator)) is not None:
        leased.append(assignment.pair_id)
        services.judgement_record(assignment_id=assignment.pk, annotator=annotator, answer=ANSWER)
    assert leased == [pairs[2].pk, pairs[0].pk, pairs[1].pk, pairs[3].pk]


def test_left_right_order_comes_from_the_given_rng(
    quick_campaign: Callable[..., Campaign], annotator: Any,
) -> None:
    campaign = quick_campaign(n_trajectories=4, pairs=16, overlap=1)
    rng, expected = random.Random(11), random.Random(11)
    orders = []
    while (assignment := _lease(campaign, annotator, rng=rng)) is not None:
        assert assignment.left_is_a == (expected.random() < 0.5)
        orders.append(assignment.left_is_a)
        services.judgement_record(assignment_id=assignment.pk, annotator=annotator, answer=ANSWER)
    assert len(orders) == 16 and set(orders) == {True, False}


def test_exclude_ids_skip_open_leases_so_a_prefetch_gets_a_new_pair(
    quick_campaign: Callable[..., Campaign], annotator: Any,
) -> None:
    campaign = quick_campaign(pairs=3)
    shown = _lease(campaign, annotator)
    prefetched = _lease(campaign, annotator, exclude_ids=[shown.pk])
    third = _lease(campaign, annotator, exclude_ids=[shown.pk, prefetched.pk])
    assert len({shown.pair_id, prefetched.pair_id, third.pair_id}) == 3
    assert _lease(campaign, annotator, exclude_ids=[shown.pk, prefetched.pk, third.pk]) is None
    assert _lease(campaign, annotator).pk == shown.pk


@pytest.mark.parametrize("status", [Campaign.Status.PAUSED, Campaign.Status.ARCHIVED])
def test_a_campaign_that_is_not_active_hands_out_nothing(
    quick_campaign: Callable[..., Campaign], annotator: Any, status: str,
) -> None:
    campaign = quick_campaign(pairs=1)
    campaign.status = status
    campaign.save()
    with pytest.raises(services.CampaignClosed, match=f"is {status}"):
        _lease(campaign, annotator)


# --- judgements ---------------------------------------------------------------------------------


def test_judgement_record_checks_ownership_existence_and_conflicts(
    quick_campaign: Callable[..., Campaign], annotator: Any, other_annotator: Any,
) -> None:
    campaign = quick_campaign(pairs=1)
    assignment = _lease(campaign, annotator)
    with pytest.raises(Assignment.DoesNotExist):
        services.judgement_record(assignment_id=assignment.pk + 100, annotator=annotator, answer=ANSWER)
    with pytest.raises(services.NotYourAssignment):
        services.judgement_record(assignment_id=assignment.pk, annotator=other_annotator, answer=ANSWER)
    judgement, created = services.judgement_record(assignment_id=assignment.pk, annotator=annotator, answer=ANSWER)
    assert created
    # Identical answer (elapsed time is not part of the answer): the stored one, not a new one.
    again, created = services.judgement_record(
        assignment_id=assignment.pk, annotator=annotator,
        answer=JudgementInput(**{**ANSWER.__dict__, "elapsed_ms": 999}),
    )
    assert not created and again.pk == judgement.pk and again.elapsed_ms is None
    with pytest.raises(services.JudgementConflict) as info:
        services.judgement_record(
            assignment_id=assignment.pk, annotator=annotator,
            answer=JudgementInput(preference="equal", left_desirability="desirable", right_desirability="unsure"),
        )
    assert info.value.existing.pk == judgement.pk
    assert Judgement.objects.get().preference == judgement.preference


def test_judgement_input_refuses_values_outside_the_protocol() -> None:
    with pytest.raises(ValueError, match="preference must be one of"):
        JudgementInput(preference="a", left_desirability="unsure", right_desirability="unsure")
    with pytest.raises(ValueError, match="desirability must be one of"):
        JudgementInput(preference="left", left_desirability="good", right_desirability="unsure")
    with pytest.raises(ValueError, match=r"confidence must lie in \[0, 1\]"):
        JudgementInput(preference="left", left_desirability="unsure", right_desirability="unsure", confidence=2)


@pytest.mark.parametrize(
    ("preference", "left", "right", "left_is_a"),
    list(itertools.product(["left", "right", "equal", "cant_tell"], ["desirable", "unsure"],
                           ["undesirable", "unsure"], [True, False])),
)
def test_screen_and_canonical_terms_are_inverse(preference: str, left: str, right: str, left_is_a: bool) -> None:
    answer = JudgementInput(preference=preference, left_desirability=left, right_desirability=right)
    canonical = to_canonical(answer, left_is_a=left_is_a)
    judgement = Judgement(left_is_a=left_is_a, elapsed_ms=None, **canonical)
    assert to_screen(judgement) == {"preference": preference, "left_desirability": left,
                                    "right_desirability": right, "confidence": None, "elapsed_ms": None}
    if preference == "left":
        assert canonical["preference"] == ("a" if left_is_a else "b")
    assert judgement.preferred_a_probability == {"a": 1.0, "b": 0.0, "equal": 0.5}.get(canonical["preference"])


# --- segments and pairs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "segment_length", "bounds"),
    [
        (30, 10, [(0, 10), (10, 20), (20, 30)]),  # exact windows
        (25, 10, [(0, 10), (10, 20), (20, 25)]),  # a tail of exactly half a segment is kept
        (24, 10, [(0, 10), (10, 20)]),  # a shorter tail is dropped
        (5, 10, [(0, 5)]),  # an episode shorter than a segment but at least half of one
        (4, 10, []),
        (7, 3, [(0, 3), (3, 6)]),  # ceil(3 / 2) = 2: a 1-step tail is dropped
        (8, 3, [(0, 3), (3, 6), (6, 8)]),
        (3, 1, [(0, 1), (1, 2), (2, 3)]),
        (0, 10, []),
    ],
)
def test_segment_bounds_are_full_windows_plus_a_tail_of_at_least_half_a_segment(
    length: int, segment_length: int, bounds: list[tuple[int, int]]
) -> None:
    assert services.segment_bounds(length=length, segment_length=segment_length) == bounds


def test_segment_bounds_refuse_a_zero_segment_length() -> None:
    with pytest.raises(ValueError, match="segment_length must be at least 1"):
        services.segment_bounds(length=10, segment_length=0)


def test_only_ready_segments_of_the_right_env_and_length_are_paired(
    quick_campaign: Callable[..., Campaign], admin_user: Any,
) -> None:
    campaign = quick_campaign(n_trajectories=2, pairs=0)  # 4 ready segments of 10 steps
    env, policy = campaign.env, PolicyVersion.objects.get()

    def add(length: int, status: str, env_id: str | None = None) -> None:
        target_env = services.environment_get_or_create(env_id=env_id) if env_id else env
        target_policy = services.policy_get_or_create(env=target_env, name="p", kind="random") if env_id else policy
        trajectory = services.trajectory_create(
            env=target_env, policy=target_policy, arrays=TrajectoryArrays(**trajectory_arrays(length)),
            segment_length=10, source=Trajectory.Source.UPLOAD, render_in_background=False,
        )
        update: dict[str, Any] = {"clip_status": status}
        if status == Segment.ClipStatus.READY:
            update["clip"] = "clips/elsewhere.mp4"
        trajectory.segments.update(**update)

    add(10, Segment.ClipStatus.PENDING)
    add(10, Segment.ClipStatus.FAILED)
    add(10, Segment.ClipStatus.NONE)
    add(10, Segment.ClipStatus.READY, env_id="Other-v1")
    ready = set(Segment.objects.filter(trajectory__env=env, clip_status="ready").values_list("id", flat=True))
    assert set(eligible_segments(campaign).values_list("id", flat=True)) == ready and len(ready) == 4

    pairs = services.pairs_create_random(campaign=campaign, count=50, seed=1)
    assert len(pairs) == 6  # every pair of the 4 ready segments, and no more
    used = {segment for pair in pairs for segment in (pair.segment_a_id, pair.segment_b_id)}
    assert used == ready
    assert all(pair.segment_a_id < pair.segment_b_id for pair in pairs)


def test_segments_of_the_wrong_length_are_not_paired(quick_campaign: Callable[..., Campaign]) -> None:
    # Segments of 10 steps are outside [ceil(25 / 2), 25] = [13, 25].
    campaign = quick_campaign(pairs=0)
    long = services.campaign_create(name="long", env=campaign.env, segment_length=25)
    with pytest.raises(services.NotEnoughSegments) as info:
        services.pairs_create_random(campaign=long, count=1)
    assert str(info.value) == (
        "Campaign 'long' has 0 ready segment(s) of length 13–25 for Toy-v0; "
        "collect rollouts first (manage.py collect_rollouts)."
    )


def test_not_enough_segments_names_the_campaign_and_what_to_do(quick_campaign: Callable[..., Campaign]) -> None:
    campaign = quick_campaign(n_trajectories=1, length=10, pairs=0)  # one ready segment
    with pytest.raises(services.NotEnoughSegments, match="Campaign 'quick' has 1 ready segment.*collect_rollouts"):
        services.pairs_create_random(campaign=campaign, count=1)
    assert not Pair.objects.exists()


def test_random_pairs_are_seeded_never_repeat_and_prefer_two_trajectories(
    quick_campaign: Callable[..., Campaign],
) -> None:
    campaign = quick_campaign(n_trajectories=3, pairs=0)  # 6 segments, 2 per trajectory
    first = services.pairs_create_random(campaign=campaign, count=4, seed=5)
    keys = [(pair.segment_a_id, pair.segment_b_id) for pair in first]
    trajectory_of = dict(Segment.objects.values_list("id", "trajectory_id"))
    assert all(trajectory_of[a] != trajectory_of[b] for a, b in keys)
    more = services.pairs_create_random(campaign=campaign, count=100, seed=5)
    assert len(first) + len(more) == 15  # 6 choose 2: the rest, none repeated
    assert not set(keys) & {(pair.segment_a_id, pair.segment_b_id) for pair in more}
    with pytest.raises(ValueError, match="count must be at least 1"):
        services.pairs_create_random(campaign=campaign, count=0)

    other = services.campaign_create(name="again", env=campaign.env, segment_length=10)
    again = services.pairs_create_random(campaign=other, count=4, seed=5)
    assert [(pair.segment_a_id, pair.segment_b_id) for pair in again] == keys
