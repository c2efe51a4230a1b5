"""Quality control built into the queue and the statistics researchers read.

Statistics are checked against values computed by hand on small fixtures; queue rules
(adaptive overlap, gold mixing, who may label, exclusions) through the services and the API.
"""

from __future__ import annotations

import random
from typing import Any, Callable

import pytest
from django.contrib.auth.models import Group, User

from feedback import services
from feedback.models import AnnotatorExclusion, Campaign, Judgement, Pair
from feedback.statistics import campaign_statistics


def _third(name: str = "tess") -> User:
    user = User.objects.create_user(username=name, password="x")
    user.groups.add(Group.objects.get(name="annotator"))
    return user


def vote(campaign: Campaign, user: User, canonical: str, *, elapsed_ms: int = 3000,
         left_is_a: bool | None = None, pair: Pair | None = None) -> Judgement:
    """Lease the next pair to ``user`` and answer ``canonical`` ('a', 'b', 'equal', 'cant_tell'),
    translated into whatever left/right order the lease drew."""
    rng = random.Random(0 if left_is_a is None else (1 if left_is_a else 2))
    assignment = services.assignment_lease_next(campaign=campaign, annotator=user, rng=rng)
    assert assignment is not None
    if pair is not None:
        assert assignment.pair_id == pair.pk
    if canonical in ("a", "b"):
        screen = "left" if (canonical == "a") == assignment.left_is_a else "right"
    else:
        screen = canonical
    answer = services.JudgementInput(
        preference=screen, left_desirability="desirable", right_desirability="undesirable",
        elapsed_ms=elapsed_ms,
    )
    judgement, created = services.judgement_record(assignment_id=assignment.pk, annotator=user, answer=answer)
    assert created and judgement.preference == canonical
    return judgement


# --- statistics against hand computation ---------------------------------------------------------


def test_campaign_statistics_match_a_hand_computation(
    quick_campaign: Callable[..., Campaign], annotator: User, other_annotator: User,
) -> None:
    campaign = quick_campaign(pairs=3, overlap=2)
    # P1: a, a   P2: b, a   P3: equal, equal  (pairs are leased in id order)
    for pref_annie, pref_otto in [("a", "a"), ("b", "a"), ("equal", "equal")]:
        vote(campaign, annotator, pref_annie, elapsed_ms=500)
        vote(campaign, other_annotator, pref_otto, elapsed_ms=3000)
    campaign.refresh_from_db()
    stats = campaign_statistics(campaign)

    # n = 6 values (a:3, b:1, equal:2); off-diagonal coincidences: 2 (from P2).
    # α = 1 − (n−1)·2 / (n² − Σn_c²) = 1 − 5·2 / (36 − 14) = 1 − 10/22
    assert stats["agreement"]["alpha"] == pytest.approx(1 - 10 / 22)
    assert stats["agreement"]["pairs_with_multiple_votes"] == 3
    assert stats["pairwise"] == [
        {"annotator_1": "annie", "annotator_2": "otto", "shared": 3, "agreement": pytest.approx(2 / 3)}]
    assert stats["label_distribution"] == {"a": 3, "b": 1, "equal": 2, "cant_tell": 0}
    assert stats["desirability"] == {"desirable": 6, "undesirable": 6, "unsure": 0}
    assert sum(bucket["count"] for bucket in stats["labels_over_time"]) == 6
    assert stats["campaign"]["label_count"] == 6 and stats["campaign"]["labels_wanted"] == 6

    annie, otto = stats["annotators"]
    assert (annie["username"], annie["labels"], annie["median_ms"]) == ("annie", 3, 500)
    # Every one of annie's answers is under the campaign's 1500 ms plausible viewing time.
    assert annie["too_fast"] == 3 and annie["too_fast_rate"] == 1.0 and "too_fast" in annie["flags"]
    assert otto["too_fast"] == 0 and otto["flags"] == []
    # Leave-one-out majority: on P1 and P2 the "others" are one vote; P3 likewise.
    assert annie["agreement_with_majority"] == pytest.approx(2 / 3)
    assert annie["noise_estimate"] == pytest.approx(1 / 3)
    assert annie["gold_answered"] == 0 and annie["gold_accuracy"] is None


def test_position_bias_counts_the_side_shown_not_the_segment(
    quick_campaign: Callable[..., Campaign], annotator: User,
) -> None:
    campaign = quick_campaign(n_trajectories=4, pairs=4)
    # Always answer whatever was on the left: a pure position bias.
    for _ in range(4):
        assignment = services.assignment_lease_next(campaign=campaign, annotator=annotator)
        services.judgement_record(
            assignment_id=assignment.pk, annotator=annotator,
            answer=services.JudgementInput(preference="left", left_desirability="unsure",
                                           right_desirability="unsure"))
    bias = campaign_statistics(campaign)["position_bias"]
    assert (bias["decisive"], bias["chose_left"], bias["left_rate"]) == (4, 4, 1.0)
    assert bias["z"] == pytest.approx(2.0)  # (4 − 2) / sqrt(4 · 0.25)


def test_majority_labels_that_form_a_cycle_are_reported(
    quick_campaign: Callable[..., Campaign], annotator: User,
) -> None:
    campaign = quick_campaign(n_trajectories=3, pairs=0)
    s1, s2, s3 = list(services.campaigns.eligible_segments(campaign).order_by("id"))[:3]
    services.pairs_add(campaign=campaign, segment_pairs=[(s1.pk, s2.pk), (s2.pk, s3.pk), (s1.pk, s3.pk)])
    for preference in ("a", "a", "b"):  # s1 > s2, s2 > s3, s3 > s1
        vote(campaign, annotator, preference)
    cycles = campaign_statistics(campaign)["cycles"]
    assert cycles == {"count": 1, "examples": [[s1.pk, s2.pk, s3.pk]]}


def test_swapped_left_right_orders_map_back_to_the_same_preference(
    quick_campaign: Callable[..., Campaign], annotator: User, other_annotator: User,
) -> None:
    campaign = quick_campaign(pairs=1, overlap=2)
    pair = campaign.pairs.get()
    first = services.assignment_lease_next(campaign=campaign, annotator=annotator, rng=random.Random(1))
    second = services.assignment_lease_next(campaign=campaign, annotator=other_annotator, rng=random.Random(0))
    assert first.left_is_a != second.left_is_a  # the same pair, shown mirrored
    for assignment, user in ((first, annotator), (second, other_annotator)):
        # Both prefer segment A, whichever side it was shown on.
        screen = "left" if assignment.left_is_a else "right"
        services.judgement_record(
            assignment_id=assignment.pk, annotator=user,
            answer=services.JudgementInput(preference=screen, left_desirability="unsure",
                                           right_desirability="unsure"))
    assert list(pair.judgements.values_list("preference", flat=True)) == ["a", "a"]
    assert campaign_statistics(campaign)["agreement"]["alpha"] is None  # no variation at all


# --- adaptive overlap -----------------------------------------------------------------------------


def test_adaptive_overlap_asks_one_more_annotator_only_when_labels_disagree(
    quick_campaign: Callable[..., Campaign], annotator: User, other_annotator: User,
) -> None:
    campaign = quick_campaign(pairs=2, overlap=2)
    Campaign.objects.filter(pk=campaign.pk).update(adaptive_overlap=True, max_overlap=3)
    campaign.refresh_from_db()
    agree, disagree = campaign.pairs.order_by("id")
    tess = _third()

    vote(campaign, annotator, "a", pair=agree)
    vote(campaign, other_annotator, "a", pair=agree)
    agree.refresh_from_db()
    assert (agree.slot_limit, agree.is_open) == (2, False)

    vote(campaign, annotator, "a", pair=disagree)
    vote(campaign, other_annotator, "b", pair=disagree)
    disagree.refresh_from_db()
    assert (disagree.slot_limit, disagree.is_open) == (3, True)
    campaign.refresh_from_db()
    assert campaign.extra_slots == 1

    vote(campaign, tess, "b", pair=disagree)  # the tie-breaker gets the reopened pair
    disagree.refresh_from_db()
    # Still no unanimity, but max_overlap is reached: the pair closes.
    assert (disagree.slot_limit, disagree.is_open) == (3, False)
    assert services.assignment_lease_next(campaign=campaign, annotator=_third("ulla")) is None


def test_without_adaptive_overlap_disagreement_changes_nothing(
    quick_campaign: Callable[..., Campaign], annotator: User, other_annotator: User,
) -> None:
    campaign = quick_campaign(pairs=1, overlap=2)
    vote(campaign, annotator, "a")
    vote(campaign, other_annotator, "b")
    pair = campaign.pairs.get()
    assert (pair.slot_limit, pair.is_open) == (2, False)


# --- gold pairs -------------------------------------------------------------------------------------


def test_gold_pairs_are_answered_by_the_true_return_and_mixed_in_at_the_gold_rate(
    quick_campaign: Callable[..., Campaign], annotator: User, other_annotator: User,
) -> None:
    campaign = quick_campaign(n_trajectories=4, pairs=3)
    gold = services.pairs_create_gold(campaign=campaign, count=3, seed=0)
    assert len(gold) == 3
    for pair in gold:
        ra, rb = pair.segment_a.true_return, pair.segment_b.true_return
        assert pair.gold_preference == ("a" if ra > rb else "b")

    Campaign.objects.filter(pk=campaign.pk).update(gold_rate=1.0)
    campaign.refresh_from_db()
    # Rate 1: every lease serves gold while some is left for this annotator.
    served = [vote(campaign, annotator, "a").pair for _ in range(3)]
    assert all(p.is_gold for p in served)
    # Then normal pairs; gold pairs never decide "nothing left".
    assert not vote(campaign, annotator, "a").pair.is_gold

    Campaign.objects.filter(pk=campaign.pk).update(gold_rate=0.0)
    campaign.refresh_from_db()
    assert not vote(campaign, other_annotator, "a").pair.is_gold

    campaign.refresh_from_db()
    assert campaign.label_count == 2  # gold answers are quality control, not progress
    row = next(r for r in campaign_statistics(campaign)["annotators"] if r["username"] == "annie")
    expected = sum(p.gold_preference == "a" for p in gold) / 3
    assert row["gold_answered"] == 3 and row["gold_accuracy"] == pytest.approx(expected)


def test_gold_pairs_need_true_rewards(quick_campaign: Callable[..., Campaign]) -> None:
    campaign = quick_campaign(pairs=0)
    from feedback.models import Segment

    Segment.objects.update(true_return=None)
    with pytest.raises(services.NotEnoughSegments, match="true rewards"):
        services.pairs_create_gold(campaign=campaign, count=2)


# --- who may label --------------------------------------------------------------------------------


def test_only_invited_annotators_and_chosen_groups_may_label(
    quick_campaign: Callable[..., Campaign], annotator: User, other_annotator: User, admin_user: User,
    api_client_for: Callable[..., Any],
) -> None:
    campaign = quick_campaign(pairs=3)
    experts = Group.objects.create(name="experts")
    campaign.allowed_groups.add(experts)
    tess = _third()
    campaign.invited.add(tess)

    def listed(user: User) -> list[int]:
        return [c["id"] for c in api_client_for(user).get("/api/v1/campaigns/").json()]

    def lease(user: User) -> int:
        return api_client_for(user).post(f"/api/v1/campaigns/{campaign.pk}/next/", {}, format="json").status_code

    assert listed(annotator) == [] and lease(annotator) == 403
    response = api_client_for(annotator).post(f"/api/v1/campaigns/{campaign.pk}/next/", {}, format="json")
    assert "invit" in response.json()["detail"]
    other_annotator.groups.add(experts)
    assert listed(other_annotator) == [campaign.pk] and lease(other_annotator) == 200
    assert listed(tess) == [campaign.pk] and lease(tess) == 200
    assert lease(admin_user) == 200


# --- research API ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "status"),
    [(None, 401), ("annotator", 403), ("outsider", 403), ("researcher", 200), ("admin_user", 200)],
)
def test_research_endpoints_are_for_researchers_and_admins(
    who: str | None, status: int, request: Any, quick_campaign: Callable[..., Campaign],
    api_client_for: Callable[..., Any], other_annotator: User,
) -> None:
    campaign = quick_campaign(pairs=2)
    vote(campaign, other_annotator, "a")
    pair = campaign.pairs.order_by("id").first()
    client = api_client_for(request.getfixturevalue(who) if who else None)
    assert client.get(f"/api/v1/campaigns/{campaign.pk}/stats/").status_code == status
    assert client.get(f"/api/v1/campaigns/{campaign.pk}/pairs/").status_code == status
    assert client.get(f"/api/v1/pairs/{pair.pk}/").status_code == status
    body = {"annotator_id": other_annotator.pk, "excluded": True}
    assert client.post(f"/api/v1/campaigns/{campaign.pk}/exclusions/", body, format="json").status_code == status
    assert AnnotatorExclusion.objects.exists() == (status == 200)


def test_pair_drill_down_lists_every_vote_and_the_pairs_page_summarises(
    quick_campaign: Callable[..., Campaign], annotator: User, other_annotator: User, researcher: User,
    api_client_for: Callable[..., Any],
) -> None:
    campaign = quick_campaign(pairs=2, overlap=2)
    first = vote(campaign, annotator, "a").pair
    vote(campaign, other_annotator, "b", pair=first)
    client = api_client_for(researcher)

    detail = client.get(f"/api/v1/pairs/{first.pk}/").json()
    assert [(v["annotator"], v["preference"]) for v in detail["votes"]] == [("annie", "a"), ("otto", "b")]
    assert detail["segment_a"]["id"] == first.segment_a_id
    assert detail["segment_a"]["true_return"] == pytest.approx(first.segment_a.true_return)
    assert client.get("/api/v1/pairs/999999/").status_code == 404

    page = client.get(f"/api/v1/campaigns/{campaign.pk}/pairs/").json()
    assert page["count"] == 2 and page["next_page"] is None
    summary = next(r for r in page["results"] if r["id"] == first.pk)
    assert (summary["votes"], summary["majority"], summary["agreement"]) == (2, None, None)  # a tie
    assert client.get(f"/api/v1/campaigns/{campaign.pk}/pairs/?page=x").status_code == 400


def test_excluding_an_annotator_removes_their_votes_from_agreement_and_can_be_undone(
    quick_campaign: Callable[..., Campaign], annotator: User, other_annotator: User, researcher: User,
    api_client_for: Callable[..., Any],
) -> None:
    campaign = quick_campaign(pairs=2, overlap=2)
    tess = _third()
    Campaign.objects.filter(pk=campaign.pk).update(overlap=3, max_overlap=3)
    Pair.objects.filter(campaign=campaign).update(slot_limit=3, is_open=True)
    campaign.refresh_from_db()
    for a, b, c in [("a", "a", "b"), ("b", "b", "a")]:
        p = vote(campaign, annotator, a).pair
        vote(campaign, other_annotator, b, pair=p)
        vote(campaign, tess, c, pair=p)
    client = api_client_for(researcher)
    url = f"/api/v1/campaigns/{campaign.pk}/exclusions/"
    before = client.get(f"/api/v1/campaigns/{campaign.pk}/stats/").json()["agreement"]["alpha"]

    response = client.post(url, {"annotator_id": tess.pk, "excluded": True, "reason": "contrarian"}, format="json")
    assert response.json() == {"annotator_id": tess.pk, "excluded": True}
    stats = client.get(f"/api/v1/campaigns/{campaign.pk}/stats/").json()
    assert stats["agreement"]["alpha"] == pytest.approx(1.0) and before < 1.0
    assert [r["excluded"] for r in stats["annotators"]] == [False, False, True]
    assert Judgement.objects.filter(annotator=tess).count() == 2  # kept, only left out

    client.post(url, {"annotator_id": tess.pk, "excluded": False}, format="json")
    assert client.get(f"/api/v1/campaigns/{campaign.pk}/stats/").json()["agreement"]["alpha"] == pytest.approx(before)
    bad = client.post(url, {"annotator_id": 999999, "excluded": True}, format="json")
    assert bad.status_code == 404 and "999999" in bad.json()["detail"]
    assert client.post(url, {"excluded": "maybe"}, format="json").status_code == 400


# --- repeats (self-consistency) and the practice round ----------------------------------------------


def test_repeats_reshow_an_earlier_pair_mirrored_and_measure_self_consistency(
    quick_campaign: Callable[..., Campaign], annotator: User,
) -> None:
    campaign = quick_campaign(n_trajectories=5, pairs=8)
    first_answers = {vote(campaign, annotator, "a").pair_id for _ in range(5)}
    Campaign.objects.filter(pk=campaign.pk).update(repeat_rate=1.0)
    campaign.refresh_from_db()

    assignment = services.assignment_lease_next(campaign=campaign, annotator=annotator)
    repeat = assignment.pair
    original = repeat.repeat_of
    # One of the earlier pairs, but not among the last three answered, shown mirrored.
    assert original is not None and original.pk in first_answers
    assert (repeat.segment_a_id, repeat.segment_b_id) == (original.segment_a_id, original.segment_b_id)
    first = original.assignments.get(annotator=annotator)
    assert assignment.left_is_a == (not first.left_is_a)
    recent = set(Judgement.objects.filter(annotator=annotator).order_by("-id").values_list("pair_id", flat=True)[:3])
    assert original.pk not in recent

    # Answer the repeat inconsistently ("b" after "a"): consistency 0 of 1.
    screen = "right" if assignment.left_is_a else "left"
    services.judgement_record(assignment_id=assignment.pk, annotator=annotator,
                              answer=services.JudgementInput(preference=screen, left_desirability="unsure",
                                                             right_desirability="unsure"))
    campaign.refresh_from_db()
    assert campaign.label_count == 5 and campaign.pair_count == 8  # repeats are not progress
    row = campaign_statistics(campaign)["annotators"][0]
    assert (row["repeats_answered"], row["self_consistency"]) == (1, 0.0)
    # Campaign-level statistics use first answers only.
    assert campaign_statistics(campaign)["label_distribution"]["b"] == 0


def test_practice_round_shows_gold_pairs_and_checks_answers_without_storing_them(
    quick_campaign: Callable[..., Campaign], annotator: User, api_client_for: Callable[..., Any],
) -> None:
    campaign = quick_campaign(n_trajectories=4, pairs=2)
    practice = services.pairs_create_gold(campaign=campaign, count=2, practice=True, seed=1)
    client = api_client_for(annotator)
    items = client.get(f"/api/v1/campaigns/{campaign.pk}/practice/").json()["items"]
    assert sorted(i["pair_id"] for i in items) == sorted(p.pk for p in practice)

    item = items[0]
    pair = Pair.objects.get(pk=item["pair_id"])
    left_id = item["left"]["segment_id"]
    better_id = pair.segment_a_id if pair.gold_preference == "a" else pair.segment_b_id
    better = "left" if better_id == left_id else "right"
    url = f"/api/v1/campaigns/{campaign.pk}/practice/{pair.pk}/"
    ok = client.post(url, {"preference": better, "left_segment_id": left_id}, format="json").json()
    assert ok["correct"] is True and ok["better"] == better
    wrong = client.post(url, {"preference": "equal", "left_segment_id": left_id}, format="json").json()
    assert wrong["correct"] is False and better in wrong["message"]
    bad = client.post(url, {"preference": "left", "left_segment_id": 999999}, format="json")
    assert bad.status_code == 400 and "999999" in bad.json()["detail"]
    assert not Judgement.objects.exists()

    # Practice pairs are never leased; the real pairs are.
    leased = {vote(campaign, annotator, "a").pair_id for _ in range(2)}
    assert leased.isdisjoint(p.pk for p in practice)
    assert services.assignment_lease_next(campaign=campaign, annotator=annotator) is None
