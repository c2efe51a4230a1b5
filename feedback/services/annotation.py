"""Leasing pairs to annotators and recording their judgements.

Concurrency contract (tested against PostgreSQL with many clients at once):

- a pair is never leased to more annotators at once than its slot limit (the campaign's
  overlap, raised one at a time by adaptive overlap when labels disagree);
- a pair is never leased twice to the same annotator (database constraint);
- a judgement is recorded once per (pair, annotator) (database constraint); resubmitting
  the same answer returns the stored one, a different answer is a conflict.

Each pair carries ``slots_taken`` and ``is_open`` (see ``Pair``). Every path that takes a
slot (a new lease, renewing a reclaimed lease, answering one) holds the pair's row lock
while it reads and writes them; lapsed leases give their slot back lazily, at the start of
the next lease in the campaign (``_reclaim_lapsed``; looked for at most once a second per
campaign and process, and always before a caller is told nothing is left). Finding the next
pair is then an index scan over open pairs, whatever the number of pairs already done.

On PostgreSQL, candidates are locked with ``FOR NO KEY UPDATE SKIP LOCKED``; a locked row is
returned in its newest committed version with ``is_open`` re-checked on it, so a slot taken
by another transaction between our snapshot and our lock is seen. ``NO KEY`` because inserting an
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
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from feedback.broadcast import campaign_progress_soon
from feedback.models import Assignment, Campaign, Judgement, Pair
from feedback.roles import can_label, is_admin
from feedback.services import annotation_sql as sql

MAX_LEASE_ATTEMPTS = 8
RECLAIM_BATCH = 200  # lapsed leases given back per call
# Lapsed leases are looked for at most this often per campaign in each process (a query on
# every lease otherwise); a lease that finds nothing looks at once, so no one is ever told
# "nothing left" while a lapsed lease holds a slot.
RECLAIM_INTERVAL = timedelta(seconds=1)
_last_reclaim: dict[int, datetime] = {}  # campaign id → when this process last looked


def forget_reclaim_times() -> None:
    """Look for lapsed leases on the next lease of every campaign (tests)."""
    _last_reclaim.clear()


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


class NotInvited(AnnotationError):
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


def _take_slot(pair: Pair) -> None:
    """Count one more holder on ``pair``; the caller holds the pair's row lock."""
    pair.slots_taken += 1
    pair.is_open = pair.slots_taken < pair.slot_limit
    Pair.objects.filter(pk=pair.pk).update(slots_taken=pair.slots_taken, is_open=pair.is_open)


def _locked_pair(pair_id: int) -> Pair:
    """The pair's current row, locked until the transaction ends (SQLite: already serialised)."""
    return (
        Pair.objects.select_for_update(no_key=True)
        .only("id", "slots_taken", "slot_limit", "is_open", "is_gold")
        .get(pk=pair_id)
    )


def _renew(assignment: Assignment, *, campaign: Campaign, now: datetime) -> Assignment:
    assignment.expires_at = now + timedelta(seconds=campaign.lease_seconds)
    if assignment.expires_at <= assignment.leased_at:
        assignment.leased_at = now
    assignment.save(update_fields=["expires_at", "leased_at", "holds_slot"])
    return assignment


def _resume_open_lease(
    *, campaign: Campaign, annotator: Any, exclude_ids: Iterable[int], now: datetime
) -> Assignment | None:
    """The caller's oldest unanswered lease in the campaign that still has (or can get) its slot.

    A lease still holding its slot is simply renewed, lapsed or not: nobody else can have
    taken a slot that was never given back. One whose slot was reclaimed is renewed only if
    its pair is still open. Dead leases (reclaimed, pair full) are filtered out in SQL.
    """
    ids = sql.open_lease_ids(campaign_id=campaign.pk, annotator_id=annotator.pk, exclude_ids=list(exclude_ids))
    if not ids:
        return None  # the usual case: one query, no ORM
    # Rare: the caller reloaded the page or lost a response. The rows are locked already.
    resumable = (
        Assignment.objects.filter(pk__in=ids)
        .select_related("pair__segment_a", "pair__segment_b")  # for the response, in this query
        .order_by("leased_at", "id")
    )
    for assignment in resumable:
        if assignment.holds_slot:
            return _renew(assignment, campaign=campaign, now=now)
        pair = _locked_pair(assignment.pair_id)
        if pair.is_open:
            _take_slot(pair)
            assignment.holds_slot = True
            return _renew(assignment, campaign=campaign, now=now)
    return None


def _reclaim_lapsed(*, campaign: Campaign, now: datetime, force: bool = False) -> int | None:
    """Give the slots of lapsed, unanswered leases back to their pairs; returns how many, or
    None when it did not look (it looked less than ``RECLAIM_INTERVAL`` ago, by ``now``).

    Runs at the start of new leases, so no sweeper process is needed. The lapsed lease
    keeps its row: its owner may still answer it if the pair is not filled meanwhile.
    """
    last = _last_reclaim.get(campaign.pk)
    if not force and last is not None and timedelta(0) <= now - last < RECLAIM_INTERVAL:
        return None
    # Leases being renewed or answered right now are locked: theirs to settle (skipped).
    rows = sql.lapsed_leases(campaign_id=campaign.pk, now=now, limit=RECLAIM_BATCH)
    if len(rows) < RECLAIM_BATCH:  # a full batch leaves more for the next lease to give back
        _last_reclaim[campaign.pk] = now
    if not rows:
        return 0
    Assignment.objects.filter(pk__in=[assignment_id for assignment_id, _ in rows]).update(holds_slot=False)
    per_pair = Counter(pair_id for _, pair_id in rows)
    for released in sorted(set(per_pair.values())):
        pair_ids = sorted(p for p, n in per_pair.items() if n == released)
        Pair.objects.filter(pk__in=pair_ids).update(slots_taken=F("slots_taken") - released, is_open=True)
    return len(rows)


REPEAT_NOT_AMONG_LAST = 3  # never re-show one of the caller's last few answers


def _lease_repeat(*, campaign: Campaign, annotator: Any, now: datetime, rng: random.Random) -> Assignment | None:
    """Re-show one of the caller's earlier pairs, mirrored, as a private repeat pair.

    The repeat is a new Pair (``repeat_of`` the original) leased only to this caller, with
    left and right swapped relative to their first showing, so comparing the two answers
    measures self-consistency and position bias at once. Repeats never count as progress.
    """
    answered = (
        Judgement.objects.filter(
            annotator=annotator, pair__campaign=campaign, pair__is_gold=False, pair__repeat_of__isnull=True
        )
        .exclude(Exists(Pair.objects.filter(repeat_of=OuterRef("pair"), assignments__annotator=annotator)))
        .order_by("-created_at", "-id")
        .values_list("pair_id", "left_is_a")[REPEAT_NOT_AMONG_LAST:REPEAT_NOT_AMONG_LAST + 50]
    )
    choices = list(answered)
    if not choices:
        return None
    pair_id, first_left_is_a = rng.choice(choices)
    original = Pair.objects.select_related("segment_a", "segment_b").get(pk=pair_id)
    repeat = Pair.objects.create(
        campaign=campaign, segment_a=original.segment_a, segment_b=original.segment_b,
        priority=original.priority, selector="repeat", repeat_of=original,
        slot_limit=1, slots_taken=1, is_open=False,
    )
    return Assignment.objects.create(
        pair=repeat, annotator=annotator, left_is_a=not first_left_is_a, leased_at=now,
        expires_at=now + timedelta(seconds=campaign.lease_seconds),
    )


def campaign_may_label(campaign: Campaign, user: Any) -> bool:
    """Whether ``user`` may label ``campaign``: admins always; annotators when the campaign
    names no groups and invites nobody, or when they are invited or in a named group.

    Uses a ``may_label`` annotation when the caller's query computed one (no extra query).
    """
    if is_admin(user):
        return True
    if not can_label(user):
        return False
    precomputed = getattr(campaign, "may_label", None)
    if precomputed is not None:
        return bool(precomputed)
    return Campaign.objects.filter(may_label_q(user), pk=campaign.pk).exists()


def may_label_q(user: Any) -> Q:
    """Campaigns open to ``user`` by the who-may-label rule (roles checked separately)."""
    return (
        Q(allowed_groups__isnull=True, invited__isnull=True)
        | Q(invited=user)
        | Q(allowed_groups__in=user.groups.all())
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
    is drawn fresh for each new lease. Pairs are handed out by priority (higher first),
    then in creation order.
    """
    if campaign.status != Campaign.Status.ACTIVE:
        raise CampaignClosed(f"Campaign '{campaign.name}' is {campaign.status}; no pairs are handed out.")
    if not campaign_may_label(campaign, annotator):
        raise NotInvited(
            f"Campaign '{campaign.name}' is open only to invited annotators and chosen groups; "
            "ask its admin for an invitation."
        )
    rng = rng or random.SystemRandom()
    want_repeat = campaign.repeat_rate > 0 and rng.random() < campaign.repeat_rate
    want_gold = campaign.gold_rate > 0 and rng.random() < campaign.gold_rate
    exclude_ids = list(exclude_ids)
    skip_locked = connection.features.has_select_for_update_skip_locked
    left_is_a: bool | None = None
    looked = found_none = False  # looked for lapsed leases / a pass found nothing, in this call
    for _ in range(MAX_LEASE_ATTEMPTS):
        moment = now or timezone.now()
        try:
            with transaction.atomic():
                resumed = _resume_open_lease(
                    campaign=campaign, annotator=annotator, exclude_ids=exclude_ids, now=moment
                )
                if resumed is not None:
                    return resumed
                force = found_none and not looked  # must look before answering "nothing left"
                looked = _reclaim_lapsed(campaign=campaign, now=moment, force=force) is not None or looked
                if want_repeat:
                    repeat = _lease_repeat(campaign=campaign, annotator=annotator, now=moment, rng=rng)
                    if repeat is not None:
                        return repeat
                if left_is_a is None:  # drawn once per new lease, whatever the retries
                    left_is_a = rng.random() < 0.5
                # Gold pairs are mixed in at the campaign's gold rate and look like any
                # other pair; when none is left for this annotator, a normal pair is served.
                # Only normal pairs decide "nothing left".
                for gold in [True, False] if want_gold else [False]:
                    leased = sql.lease_new_pair(
                        campaign_id=campaign.pk, annotator=annotator, gold=gold, skip_locked=skip_locked,
                        left_is_a=left_is_a, leased_at=moment,
                        expires_at=moment + timedelta(seconds=campaign.lease_seconds),
                    )
                    if leased is not None:
                        return leased
        except IntegrityError:
            # The same annotator leased this pair from a parallel request; try again (what
            # this pass gave back was rolled back with it).
            looked = False
            continue
        if looked and not skip_locked:
            return None
        # Nothing open. Before saying so, one more pass that waits for pairs locked by leases
        # in flight (skipped above) and looks for lapsed leases if this call has not yet.
        found_none, skip_locked = True, False
    return None


def _widen_if_disagreeing(*, pair_id: int, max_overlap: int) -> int:
    """Adaptive overlap: when every wanted label is in and they disagree, want one more
    (up to the campaign's max_overlap). Returns the number of slots added (0 or 1).

    "Can't tell" votes count as answered but not as disagreement.
    """
    pair = _locked_pair(pair_id)
    votes = list(Judgement.objects.filter(pair_id=pair_id).values_list("preference", flat=True))
    if len(votes) < pair.slot_limit or pair.slot_limit >= max_overlap:
        return 0
    if len({vote for vote in votes if vote != Judgement.Preference.CANT_TELL}) <= 1:
        return 0
    pair.slot_limit += 1
    pair.is_open = pair.slots_taken < pair.slot_limit
    Pair.objects.filter(pk=pair_id).update(slot_limit=pair.slot_limit, is_open=pair.is_open)
    return 1


def judgement_record(
    *,
    assignment_id: int,
    annotator: Any,
    answer: JudgementInput,
    is_simulated: bool = False,
    now: datetime | None = None,
    with_campaign: bool = False,
) -> tuple[Judgement, bool]:
    """Record ``answer`` for an assignment; returns ``(judgement, created)``.

    Raises ``Assignment.DoesNotExist`` (unknown id), ``NotYourAssignment``,
    ``AssignmentGone`` (the lease lapsed and the pair is now held by others) and
    ``JudgementConflict`` (a different answer was already recorded). An identical resubmit
    (same preference, desirabilities and confidence) returns the stored judgement.
    With ``with_campaign`` the judgement carries its campaign row, with ``may_label`` for the
    annotator, as ``leasing_campaign`` (as a queryset annotation would; read by the statement
    that locks the assignment), for a caller that leases the next pair of the same campaign.
    """
    now = now or timezone.now()
    with transaction.atomic():
        assignment = sql.lock_assignment(
            assignment_id=assignment_id, campaign_for=annotator if with_campaign else None
        )
        if assignment is None:
            raise Assignment.DoesNotExist(f"No assignment with id {assignment_id}.")
        if assignment.annotator_id != annotator.pk:
            raise NotYourAssignment("This assignment was leased to another annotator.")
        canonical = to_canonical(answer, left_is_a=assignment.left_is_a)
        # A judgement and its assignment's completed_at are written in one transaction, so
        # an open assignment has no judgement: the first submit skips the lookup.
        existing = (
            Judgement.objects.filter(assignment_id=assignment.id).first() if assignment.completed else None
        )
        if existing is not None:
            same = all(getattr(existing, field) == value for field, value in canonical.items())
            if same:
                existing.leasing_campaign = assignment.campaign
                return existing, False
            raise JudgementConflict(
                "A different judgement was already recorded for this assignment; judgements cannot "
                "be changed once submitted.",
                existing,
            )
        if not assignment.holds_slot:
            # The lease lapsed and its slot went back to the pool: answer only if still open.
            pair = _locked_pair(assignment.pair_id)
            if not pair.is_open:
                raise AssignmentGone(
                    "Your lease on this pair expired and the pair was handed to someone else; "
                    "ask for the next pair."
                )
            _take_slot(pair)
        # Gold and repeat pairs are quality control, not campaign progress.
        progress = not assignment.pair_is_gold and not assignment.pair_is_repeat
        widen = progress and assignment.adaptive_overlap
        values = {
            "annotator_id": annotator.pk, "elapsed_ms": answer.elapsed_ms, "left_is_a": assignment.left_is_a,
            "is_simulated": is_simulated, **canonical,
        }
        judgement_id = sql.record_judgement(
            assignment=assignment, values=values, now=now, count_label=progress and not widen
        )
        campaign_id = assignment.campaign_id
        if widen:
            # Counts the vote just inserted; the counter update stays the last statement.
            extra = _widen_if_disagreeing(pair_id=assignment.pair_id, max_overlap=assignment.max_overlap)
            sql.count_label(campaign_id=campaign_id, assignment_id=assignment.id, extra_slots=extra)
        transaction.on_commit(lambda: campaign_progress_soon(campaign_id=campaign_id))
    judgement = Judgement(id=judgement_id, pair_id=assignment.pair_id, assignment_id=assignment.id,
                          created_at=now, **values)
    judgement._state.adding = False
    judgement._state.db = connection.alias
    judgement.leasing_campaign = assignment.campaign
    return judgement, True
