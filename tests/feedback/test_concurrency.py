"""Many annotators leasing and judging at once, over real HTTP against the live server.

Each client thread speaks to ``live_server`` (a threaded WSGI server: one thread and one
database connection per request), so leases and judgements really race in the database.
Run it on SQLite (IMMEDIATE transactions) and on PostgreSQL (``SELECT … FOR UPDATE SKIP
LOCKED``); the contract is the same:

- no pair is held by more annotators than its overlap — leases last 10 minutes here, so
  every assignment row is live until the test ends and the final count per pair is the
  most that ever held it at once;
- no annotator is handed the same pair twice;
- every acknowledged judgement (201) is in the database exactly once, and nothing else is;
- when demand exceeds supply, every slot is filled: no client was told "nothing left" (204)
  while a pair still had room.
"""

from __future__ import annotations

import json
import random
import threading
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
from django.db.models import Count
from rest_framework.authtoken.models import Token

from feedback.models import Assignment, Campaign, Judgement
from tests.conftest import _make_user

ANNOTATORS = 8
LEASES_EACH = 20


@dataclass
class ClientLog:
    """What one client thread saw."""

    statuses: Counter[int] = field(default_factory=Counter)
    acknowledged: dict[int, dict[str, Any]] = field(default_factory=dict)  # judgement id -> body
    leased_pairs: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _post(url: str, token: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def _annotate(base: str, campaign_id: int, token: str, seed: int, start: threading.Barrier) -> ClientLog:
    """Lease and answer up to LEASES_EACH pairs, sometimes prefetching and resubmitting."""
    rng = random.Random(seed)
    log = ClientLog()
    next_url = f"{base}/api/v1/campaigns/{campaign_id}/next/"
    start.wait()
    open_leases: list[dict[str, Any]] = []
    for attempt in range(LEASES_EACH):
        exclude = [lease["assignment_id"] for lease in open_leases]
        status, body = _post(next_url, token, {"exclude": exclude})
        log.statuses[status] += 1
        if status == 200:
            open_leases.append(body)
        elif status != 204:
            log.errors.append(f"next -> {status}: {body}")
        # Like the labelling page: sometimes keep a prefetched pair open while answering,
        # but answer everything before stopping.
        last = status == 204 or attempt == LEASES_EACH - 1
        while open_leases and (last or len(open_leases) > 1 or rng.random() < 0.7):
            lease = open_leases.pop(0)
            answer = {
                "preference": rng.choice(["left", "right", "equal", "cant_tell"]),
                "left_desirability": rng.choice(["desirable", "undesirable", "unsure"]),
                "right_desirability": rng.choice(["desirable", "undesirable", "unsure"]),
                "confidence": rng.choice([None, 0.5, 1.0]),
            }
            url = f"{base}/api/v1/assignments/{lease['assignment_id']}/judgement/"
            status_j, judged = _post(url, token, answer)
            log.statuses[status_j] += 1
            if status_j != 201:
                log.errors.append(f"judgement -> {status_j}: {judged}")
                continue
            log.acknowledged[judged["id"]] = judged
            if rng.random() < 0.2:  # a client retrying after a lost response
                status_r, again = _post(url, token, answer)
                log.statuses[status_r] += 1
                if (status_r, again) != (200, judged):
                    log.errors.append(f"resubmit -> {status_r}: {again}")
        if status == 204 and not open_leases:
            break
    return log


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("overlap", "pairs"), [(1, 120), (2, 60)])
def test_many_annotators_lease_and_judge_at_once_without_losing_or_doubling_anything(
    live_server: Any, quick_campaign: Callable[..., Campaign], overlap: int, pairs: int,
) -> None:
    # 10 trajectories x 2 segments = 20 segments; demand (8 x 20 leases) exceeds the slots.
    campaign = quick_campaign(n_trajectories=10, pairs=pairs, overlap=overlap)
    assert campaign.pairs.count() == pairs
    users = [_make_user(f"annotator{i}", "annotator") for i in range(ANNOTATORS)]
    tokens = [Token.objects.create(user=user).key for user in users]
    start = threading.Barrier(ANNOTATORS)

    with ThreadPoolExecutor(ANNOTATORS) as pool:
        futures = [pool.submit(_annotate, live_server.url, campaign.pk, token, seed, start)
                   for seed, token in enumerate(tokens)]
        logs = [future.result(timeout=300) for future in futures]

    assert [error for log in logs for error in log.errors] == []
    statuses = sum((log.statuses for log in logs), Counter())
    assert set(statuses) <= {200, 201, 204}, statuses

    # Never more holders than the overlap; never the same pair twice to one annotator.
    holders = Counter(Assignment.objects.filter(pair__campaign=campaign).values_list("pair_id", flat=True))
    assert max(holders.values()) <= overlap
    assert not (Assignment.objects.values("pair", "annotator").annotate(n=Count("id")).filter(n__gt=1).exists())

    # Every acknowledged judgement is stored exactly once, as acknowledged; nothing else is.
    acknowledged = {jid: body for log in logs for jid, body in log.acknowledged.items()}
    assert sum(len(log.acknowledged) for log in logs) == len(acknowledged)  # no id acknowledged twice
    stored = {j.pk: j for j in Judgement.objects.select_related("assignment")}
    assert set(stored) == set(acknowledged)
    for jid, body in acknowledged.items():
        judgement = stored[jid]
        assert (judgement.assignment_id, judgement.pair_id) == (body["assignment_id"], body["pair_id"])
        assert judgement.assignment.annotator_id == judgement.annotator_id
        assert judgement.assignment.completed_at is not None
    per_pair = Counter(judgement.pair_id for judgement in stored.values())
    assert max(per_pair.values()) <= overlap

    # Demand exceeded supply, every lease was answered: every slot of every pair is filled.
    assert len(stored) == pairs * overlap
    assert set(per_pair.values()) == {overlap}
    assert Assignment.objects.filter(completed_at__isnull=True).count() == 0
    _assert_counters_match_rows(campaign)


def _assert_counters_match_rows(campaign: Campaign) -> None:
    """The denormalised counters agree with the rows they count, after all the racing."""
    campaign.refresh_from_db()
    assert campaign.label_count == Judgement.objects.filter(pair__campaign=campaign).count()
    assert campaign.pair_count == campaign.pairs.count()
    holding = dict(
        Assignment.objects.filter(pair__campaign=campaign, holds_slot=True)
        .values("pair").annotate(n=Count("id")).values_list("pair", "n")
    )
    for pair in campaign.pairs.all():
        assert pair.slots_taken == holding.get(pair.pk, 0), pair
        assert pair.is_open == (pair.slots_taken < campaign.overlap), pair


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_answers_on_lapsed_leases_race_the_annotators_reclaiming_those_pairs(
    live_server: Any, quick_campaign: Callable[..., Campaign],
) -> None:
    """A late answer and a new lease on the same lapsed pair: exactly one of them wins.

    ``late`` holds lapsed leases on every pair and answers them all while four others lease
    and answer the same pairs. Each late answer is either accepted (201; then nobody else
    may get the pair) or refused as gone (410; then someone else has it).
    """
    from datetime import timedelta

    from django.utils import timezone

    from feedback import services

    campaign = quick_campaign(n_trajectories=5, pairs=24, overlap=1, lease_seconds=5)
    late = _make_user("late", "annotator")
    past = timezone.now() - timedelta(minutes=5)
    lapsed: list[Assignment] = []
    for _ in range(24):
        lease = services.assignment_lease_next(
            campaign=campaign, annotator=late, now=past, exclude_ids=[a.pk for a in lapsed]
        )
        assert lease is not None
        lapsed.append(lease)
    others = [_make_user(f"annotator{i}", "annotator") for i in range(4)]
    tokens = {user.pk: Token.objects.create(user=user).key for user in [late, *others]}
    start = threading.Barrier(5)
    answer = {"preference": "equal", "left_desirability": "unsure", "right_desirability": "unsure"}

    def answer_late() -> dict[int, int]:
        start.wait()
        return {
            lease.pair_id: _post(f"{live_server.url}/api/v1/assignments/{lease.pk}/judgement/",
                                 tokens[late.pk], answer)[0]
            for lease in reversed(lapsed)  # the others lease from the front: meet in the middle
        }

    with ThreadPoolExecutor(5) as pool:
        late_future = pool.submit(answer_late)
        futures = [pool.submit(_annotate, live_server.url, campaign.pk, tokens[user.pk], seed, start)
                   for seed, user in enumerate(others)]
        late_statuses = late_future.result(timeout=300)
        logs = [future.result(timeout=300) for future in futures]

    assert [error for log in logs for error in log.errors] == []
    assert set(late_statuses.values()) <= {201, 410}
    judged_by = dict(Judgement.objects.values_list("pair_id", "annotator_id"))
    assert len(judged_by) == Judgement.objects.count() == 24  # every pair once, none twice
    for pair_id, status in late_statuses.items():
        assert (judged_by[pair_id] == late.pk) == (status == 201)
    acknowledged = {jid for log in logs for jid in log.acknowledged}
    assert acknowledged == set(Judgement.objects.exclude(annotator=late).values_list("pk", flat=True))
    _assert_counters_match_rows(campaign)
