"""Campaigns and the pairs queued in them."""

from __future__ import annotations

import math
import random
from typing import Any

from django.db import transaction
from django.db.models import F

from feedback.broadcast import campaign_event_send
from feedback.models import Campaign, EnvironmentSpec, Pair, Segment


class NotEnoughSegments(ValueError):
    """Fewer eligible segments than needed to form the requested pairs."""


def campaign_create(
    *,
    name: str,
    env: EnvironmentSpec,
    segment_length: int,
    overlap: int = 1,
    lease_seconds: int = 600,
    instructions: str = "",
    created_by: Any = None,
    adaptive_overlap: bool = False,
    max_overlap: int | None = None,
    gold_rate: float = 0.0,
    min_answer_ms: int = 1500,
) -> Campaign:
    return Campaign.objects.create(
        name=name,
        env=env,
        segment_length=segment_length,
        overlap=overlap,
        adaptive_overlap=adaptive_overlap,
        max_overlap=max(overlap, max_overlap if max_overlap is not None else 3),
        gold_rate=gold_rate,
        min_answer_ms=min_answer_ms,
        lease_seconds=lease_seconds,
        instructions=instructions,
        created_by=created_by,
    )


def eligible_segments(campaign: Campaign) -> Any:
    """Ready segments of the campaign's env whose length is within [ceil(L/2), L]."""
    length = campaign.segment_length
    return (
        Segment.objects.filter(trajectory__env=campaign.env, clip_status=Segment.ClipStatus.READY)
        .annotate(span=F("end") - F("start"))
        .filter(span__gte=math.ceil(length / 2), span__lte=length)
    )


def pairs_create_random(
    *, campaign: Campaign, count: int, seed: int | None = None, priority: int = 0
) -> list[Pair]:
    """Queue up to ``count`` new random pairs of distinct ready segments.

    Pairs are unordered (A is the lower segment id; the page randomises left/right per
    lease) and never repeat a pair already in the campaign. Pairs of segments from two
    different trajectories are preferred. Returns the pairs created, which may be fewer
    than asked when the segment pool is exhausted.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    ids = list(eligible_segments(campaign).values_list("id", "trajectory_id"))
    if len(ids) < 2:
        raise NotEnoughSegments(
            f"Campaign '{campaign.name}' has {len(ids)} ready segment(s) of length "
            f"{math.ceil(campaign.segment_length / 2)}–{campaign.segment_length} for {campaign.env}; "
            "collect rollouts first (manage.py collect_rollouts)."
        )
    rng = random.Random(seed)
    existing = set(campaign.pairs.values_list("segment_a_id", "segment_b_id"))
    chosen: set[tuple[int, int]] = set()
    # Try cross-trajectory pairs first, then fall back to any pair.
    for cross_only in (True, False):
        attempts = 0
        while len(chosen) < count and attempts < 20 * count:
            attempts += 1
            (a, ta), (b, tb) = rng.sample(ids, 2)
            if cross_only and ta == tb:
                continue
            key = (min(a, b), max(a, b))
            if key not in existing and key not in chosen:
                chosen.add(key)
    return pairs_add(campaign=campaign, segment_pairs=sorted(chosen), priority=priority, selector="random")


def pairs_add(
    *,
    campaign: Campaign,
    segment_pairs: list[tuple[int, int]],
    priority: int = 0,
    selector: str = "random",
    model_version: str = "",
) -> list[Pair]:
    """Queue pairs of segment ids in ``campaign``: the one place pairs are created.

    Keeps the campaign's ``pair_count`` and announces the new pairs on the campaign's
    live channel after commit.
    """
    with transaction.atomic():
        pairs = Pair.objects.bulk_create(
            (
                Pair(campaign=campaign, segment_a_id=a, segment_b_id=b, priority=priority,
                     selector=selector, model_version=model_version, slot_limit=campaign.overlap)
                for a, b in segment_pairs
            ),
            batch_size=2000,
        )
        if pairs:
            campaign_id, added = campaign.pk, len(pairs)
            Campaign.objects.filter(pk=campaign_id).update(pair_count=F("pair_count") + added)
            transaction.on_commit(
                lambda: campaign_event_send(campaign_id=campaign_id, event="pairs_added", extra={"added": added})
            )
    return pairs


# Every annotator may answer each gold pair once: the limit is just "no limit".
GOLD_SLOT_LIMIT = 32_000


def pairs_create_gold(
    *, campaign: Campaign, count: int, min_gap: float | None = None, seed: int | None = None,
    practice: bool = False,
) -> list[Pair]:
    """Queue up to ``count`` gold pairs: ready segments whose true returns differ by at least
    ``min_gap`` (default: the spread between the pool's 25th and 75th percentile returns),
    answered by the true return. Gold pairs are served at the campaign's gold rate, look
    like any other pair, and never count towards campaign progress.

    With ``practice``, the pairs are kept for the practice round instead: never leased
    (created closed), their answers shown to annotators after they try.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    rows = list(
        eligible_segments(campaign).filter(true_return__isnull=False).values_list("id", "true_return")
    )
    if len(rows) < 2:
        raise NotEnoughSegments(
            f"Campaign '{campaign.name}' has {len(rows)} ready segment(s) with true rewards; gold pairs "
            "need environments that report rewards."
        )
    returns = sorted(r for _, r in rows)
    if min_gap is None:
        q1, q3 = returns[len(returns) // 4], returns[(3 * len(returns)) // 4]
        min_gap = max(q3 - q1, 1e-9)
    rng = random.Random(seed)
    existing = set(campaign.pairs.filter(repeat_of__isnull=True).values_list("segment_a_id", "segment_b_id"))
    candidates = [
        (a, b, ra, rb)
        for i, (a, ra) in enumerate(rows)
        for (b, rb) in rows[i + 1:]
        if abs(ra - rb) >= min_gap and (min(a, b), max(a, b)) not in existing
    ]
    rng.shuffle(candidates)
    chosen = candidates[:count]
    if not chosen:
        raise NotEnoughSegments(
            f"No pair of ready segments in '{campaign.name}' differs by {min_gap:.3g} in true return."
        )
    with transaction.atomic():
        return Pair.objects.bulk_create(
            Pair(
                campaign=campaign,
                segment_a_id=min(a, b),
                segment_b_id=max(a, b),
                selector="practice" if practice else "gold",
                is_gold=True,
                is_practice=practice,
                is_open=not practice,
                gold_preference=("a" if (ra > rb) == (a < b) else "b"),
                slot_limit=GOLD_SLOT_LIMIT,
            )
            for a, b, ra, rb in chosen
        )


def annotator_exclusion_set(
    *, campaign: Campaign, annotator: Any, excluded: bool, by: Any = None, reason: str = ""
) -> bool:
    """Exclude (or re-include) an annotator's labels from a campaign's training data, exports
    and agreement statistics; the labels themselves are kept. Returns the new state."""
    from feedback.models import AnnotatorExclusion

    if excluded:
        AnnotatorExclusion.objects.update_or_create(
            campaign=campaign, annotator=annotator, defaults={"reason": reason, "excluded_by": by}
        )
    else:
        AnnotatorExclusion.objects.filter(campaign=campaign, annotator=annotator).delete()
    return excluded
