"""Leasing pairs to annotators and recording their judgements.

Concurrency contract (tested against PostgreSQL with many clients at once):

- a pair is never leased to more annotators at once than its campaign's overlap;
- a pair is never leased twice to the same annotator (database constraint);
- a judgement is recorded once per (pair, annotator) (database constraint); resubmitting
  the same answer returns the stored one, a different answer is a conflict.

Every path that adds a slot to a pair (a new lease, renewing a lapsed one, answering a
lapsed one) holds that pair's row lock while it counts the slots taken and writes.

On PostgreSQL, candidates are locked with ``FOR NO KEY UPDATE SKIP LOCKED`` and the pair's
load is re-counted after the lock, in a new statement, so a lease committed by another
transaction between our snapshot and our lock is seen. ``NO KEY`` because inserting an
assignment or a judgement takes a ``KEY SHARE`` lock on the pair (foreign key check), which
plain ``FOR UPDATE`` would conflict with, so pairs being answered would look busy and be
skipped. A pass that finds nothing is repeated once without ``SKIP LOCKED`` (waiting for
leases in flight) before answering "nothing left", so a pair still being leased by someone
else never makes the caller's queue look empty. On SQLite, ``transaction_mode=IMMEDIATE``
makes every leasing transaction take the database's write lock at BEGIN, so they run one at
a time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Exists, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from feedback.models import Assignment, Campaign, Judgement, Pair

MAX_LEASE_ATTEMPTS = 8
LEASE_BATCH = 8  # candidates locked per attempt


class AnnotationError(Exception):
    """Base of the errors a labelling client can cause; the message is shown to the user."""


class NotYourAssignment(AnnotationError):
    pass


class AssignmentGone(AnnotationError):
    pass


class JudgementConflict(AnnotationError):
    def __init__(self, message: str, existing: Judgement) -> None:
        super().__init__(message)
        self.existing = existing


class CampaignClosed(AnnotationError):
    pass


@dataclass(frozen=True)
class JudgementInput:
    """An answer as the annotator gave it, in screen terms (left/right)."""

    preference: str  # "left" | "right" | "equal" | "cant_tell"
    left_desirability: str  # "desirable" | "undesirable" | "unsure"
    right_desirability: str
    confidence: float | None = None
    elapsed_ms: int | None = None

    def __post_init__(self) -> None:
        if self.preference not in SCREEN_PREFERENCES:
            raise ValueError(f"preference must be one of {sorted(SCREEN_PREFERENCES)}")
        for value in (self.left_desirability, self.right_desirability):
            if value not in Judgement.Desirability.values:
                raise ValueError(f"desirability must be one of {Judgement.Desirability.values}")
        if self.confidence is not None and not 0.0 <= self.confidence <= 1.0:
            raise ValueError("confidence must lie in [0, 1]")


SCREEN_PREFERENCES = {"left", "right", "equal", "cant_tell"}


def to_canonical(answer: JudgementInput, *, left_is_a: bool) -> dict[str, Any]:
    """Map a left/right answer onto the pair's A/B order."""
    if answer.preference in ("left", "right"):
        left_wins = answer.preference == "left"
        preference = "a" if left_wins == left_is_a else "b"
    else:
        preference = answer.preference
    desirability_a, desirability_b = (
        (answer.left_desirability, answer.right_desirability)
        if left_is_a
        else (answer.right_desirability, answer.left_desirability)
    )
    return {
        "preference": preference,
        "desirability_a": desirability_a,
        "desirability_b": desirability_b,
        "confidence": answer.confidence,
    }


def to_screen(judgement: Judgement) -> dict[str, Any]:
    """The stored judgement in the left/right terms its annotator saw."""
    left_is_a = judgement.left_is_a
    if judgement.preference in ("a", "b"):
        preference = "left" if (judgement.preference == "a") == left_is_a else "right"
    else:
        preference = judgement.preference
    left, right = (
        (judgement.desirability_a, judgement.desirability_b)
        if left_is_a
        else (judgement.desirability_b, judgement.desirability_a)
    )
    return {
        "preference": preference,
        "left_desirability": left,
        "right_desirability": right,
        "confidence": judgement.confidence,
        "elapsed_ms": judgement.elapsed_ms,
    }


def _live(now: datetime) -> Q:
    """Assignments that occupy a slot: judged, or leased and not yet expired."""
    return Q(completed_at__isnull=False) | Q(expires_at__gt=now)


def _slots_taken(pair_id: int, *, now: datetime, exclude_annotator_id: int | None = None) -> int:
    qs = Assignment.objects.filter(_live(now), pair_id=pair_id)
    if exclude_annotator_id is not None:
        qs = qs.exclude(annotator_id=exclude_annotator_id)
    return qs.count()


def _lock_pair(pair_id: int) -> None:
    """Hold ``pair_id``'s row lock until the transaction ends (no-op on SQLite)."""
    list(Pair.objects.select_for_update(no_key=True).filter(pk=pair_id).values_list("pk", flat=True))


def _renew(assignment: Assignment, *, campaign: Campaign, now: datetime) -> Assignment:
    assignment.expires_at = now + timedelta(seconds=campaign.lease_seconds)
    if assignment.expires_at <= assignment.leased_at:
        assignment.leased_at = now
    assignment.save(update_fields=["expires_at", "leased_at"])
    return assignment


def _resume_open_lease(
    *, campaign: Campaign, annotator: Any, exclude_ids: Iterable[int], now: datetime
) -> Assignment | None:
    """The caller's oldest unanswered lease in the campaign that still has its slot."""
    others_live = (
        Assignment.objects.filter(_live(now), pair=OuterRef("pair"))
        .exclude(annotator=annotator)
        .order_by()
        .values("pair")
        .annotate(n=Count("id"))
        .values("n")
    )
    open_leases = (
        Assignment.objects.select_for_update(of=("self",))
        .filter(annotator=annotator, pair__campaign=campaign, completed_at__isnull=True)
        .exclude(pk__in=list(exclude_ids))
        .annotate(others=Coalesce(Subquery(others_live, output_field=IntegerField()), Value(0)))
        # Lapsed leases whose pairs others filled are left out here, so abandoned leases do
        # not cost a lock and a count on every later call; the count is redone under the lock.
        .filter(Q(expires_at__gt=now) | Q(others__lt=campaign.overlap))
        .order_by("leased_at", "id")
    )
    for assignment in open_leases:
        if assignment.expires_at > now:
            return _renew(assignment, campaign=campaign, now=now)
        # Expired: renew only if nobody filled the pair meanwhile. Lock the pair row first:
        # every path that adds a lease to a pair holds that lock while it counts.
        _lock_pair(assignment.pair_id)
        if _slots_taken(assignment.pair_id, now=now, exclude_annotator_id=annotator.pk) < campaign.overlap:
            return _renew(assignment, campaign=campaign, now=now)
    return None


def _candidate_pairs(*, campaign: Campaign, annotator: Any, now: datetime) -> Any:
    taken = (
        Assignment.objects.filter(_live(now), pair=OuterRef("pk"))
        .order_by()
        .values("pair")
        .annotate(n=Count("id"))
        .values("n")
    )
    mine = Assignment.objects.filter(pair=OuterRef("pk"), annotator=annotator)
    return (
        Pair.objects.filter(campaign=campaign)
        .annotate(taken=Coalesce(Subquery(taken, output_field=IntegerField()), Value(0)))
        .filter(taken__lt=campaign.overlap)
        .exclude(Exists(mine))
        .order_by("-priority", "id")
    )


def assignment_lease_next(
    *,
    campaign: Campaign,
    annotator: Any,
    exclude_ids: Iterable[int] = (),
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> Assignment | None:
    """Lease the next pair of ``campaign`` to ``annotator``; None when nothing is left.

    An unanswered lease the caller already holds is handed back first (renewed), except
    those whose assignment ids are in ``exclude_ids`` — the labelling page passes the
    assignment it is showing so that its prefetch gets a different pair. Left/right order
    is drawn fresh for each new lease.
    """
    if campaign.status != Campaign.Status.ACTIVE:
        raise CampaignClosed(f"Campaign '{campaign.name}' is {campaign.status}; no pairs are handed out.")
    rng = rng or random.SystemRandom()
    exclude_ids = list(exclude_ids)
    skip_locked = connection.features.has_select_for_update_skip_locked
    for _ in range(MAX_LEASE_ATTEMPTS):
        moment = now or timezone.now()
        try:
            with transaction.atomic():
                resumed = _resume_open_lease(
                    campaign=campaign, annotator=annotator, exclude_ids=exclude_ids, now=moment
                )
                if resumed is not None:
                    return resumed
                candidates = _candidate_pairs(campaign=campaign, annotator=annotator, now=moment)
                candidates = candidates.select_for_update(no_key=True, skip_locked=skip_locked, of=("self",))
                batch = list(candidates[:LEASE_BATCH])
                for pair in batch:
                    # Re-count after the lock, in a new statement (fresh snapshot).
                    if _slots_taken(pair.pk, now=moment) >= campaign.overlap:
                        continue
                    return Assignment.objects.create(
                        pair=pair,
                        annotator=annotator,
                        left_is_a=rng.random() < 0.5,
                        leased_at=moment,
                        expires_at=moment + timedelta(seconds=campaign.lease_seconds),
                    )
        except IntegrityError:
            # The same annotator leased this pair from a parallel request; try again.
            continue
        if len(batch) == LEASE_BATCH:
            continue  # every candidate filled up after our snapshot; there may be more
        if not skip_locked:
            return None
        # Pairs locked by leases in flight were skipped; wait for them before saying "none".
        skip_locked = False
    return None


def judgement_record(
    *,
    assignment_id: int,
    annotator: Any,
    answer: JudgementInput,
    is_simulated: bool = False,
    now: datetime | None = None,
) -> tuple[Judgement, bool]:
    """Record ``answer`` for an assignment; returns ``(judgement, created)``.

    Raises ``Assignment.DoesNotExist`` (unknown id), ``NotYourAssignment``,
    ``AssignmentGone`` (the lease lapsed and the pair is now held by others) and
    ``JudgementConflict`` (a different answer was already recorded). An identical resubmit
    (same preference, desirabilities and confidence) returns the stored judgement.
    """
    now = now or timezone.now()
    with transaction.atomic():
        assignment = (
            Assignment.objects.select_for_update(of=("self",))
            .select_related("pair__campaign")
            .get(pk=assignment_id)
        )
        if assignment.annotator_id != annotator.pk:
            raise NotYourAssignment("This assignment was leased to another annotator.")
        canonical = to_canonical(answer, left_is_a=assignment.left_is_a)
        existing = Judgement.objects.filter(assignment=assignment).first()
        if existing is not None:
            same = all(getattr(existing, field) == value for field, value in canonical.items())
            if same:
                return existing, False
            raise JudgementConflict(
                "A different judgement was already recorded for this assignment; judgements cannot "
                "be changed once submitted.",
                existing,
            )
        campaign = assignment.pair.campaign
        if assignment.expires_at <= now:
            _lock_pair(assignment.pair_id)
            others = _slots_taken(assignment.pair_id, now=now, exclude_annotator_id=annotator.pk)
            if others >= campaign.overlap:
                raise AssignmentGone(
                    "Your lease on this pair expired and the pair was handed to someone else; "
                    "ask for the next pair."
                )
        judgement = Judgement.objects.create(
            pair_id=assignment.pair_id,
            annotator=annotator,
            assignment=assignment,
            elapsed_ms=answer.elapsed_ms,
            left_is_a=assignment.left_is_a,
            is_simulated=is_simulated,
            **canonical,
        )
        assignment.completed_at = now
        assignment.save(update_fields=["completed_at"])
    return judgement, True
