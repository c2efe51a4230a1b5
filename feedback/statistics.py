"""Campaign quality statistics: reads the votes once, computes with ``feedback.quality``.

Excluded annotators' votes are left out of the campaign-level statistics (agreement,
position bias, distributions, cycles) but each annotator's own row is still computed, so a
researcher can see why someone was excluded and take the decision back.
"""

from __future__ import annotations

import statistics as pystats
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count
from django.db.models.functions import TruncHour

from feedback.models import AnnotatorExclusion, Campaign, Judgement
from feedback.quality import (
    intransitive_triads,
    krippendorff_alpha_nominal,
    pairwise_agreement,
    position_bias,
)

# Flag thresholds: deliberately simple and shown on the page next to the numbers.
TOO_FAST_RATE = 0.2  # more than a fifth of answers faster than the campaign's min_answer_ms
LOW_GOLD_ACCURACY = 0.7
MIN_GOLD_FOR_FLAG = 5
POSITION_BIAS_Z = 3.0
MIN_DECISIVE_FOR_BIAS = 10
LOW_AGREEMENT = 0.6
MIN_SHARED_FOR_AGREEMENT = 10
LOW_CONSISTENCY = 0.7
MIN_REPEATS_FOR_FLAG = 5


@dataclass(frozen=True)
class Vote:
    pair_id: int
    annotator_id: int
    username: str
    preference: str
    desirability_a: str
    desirability_b: str
    elapsed_ms: int | None
    left_is_a: bool
    is_simulated: bool
    created_at: datetime
    segment_a_id: int
    segment_b_id: int
    is_gold: bool
    gold_preference: str
    repeat_of_id: int | None


def campaign_votes(campaign: Campaign) -> list[Vote]:
    rows = Judgement.objects.filter(pair__campaign=campaign).values_list(
        "pair_id", "annotator_id", "annotator__username", "preference", "desirability_a",
        "desirability_b", "elapsed_ms", "left_is_a", "is_simulated", "created_at",
        "pair__segment_a_id", "pair__segment_b_id", "pair__is_gold", "pair__gold_preference",
        "pair__repeat_of_id",
    )
    return [Vote(*row) for row in rows.order_by("created_at", "id")]


def majority(votes: list[str]) -> str | None:
    """The most common answer among a/b/equal, None on a tie or no answers."""
    counts = Counter(v for v in votes if v != "cant_tell").most_common()
    if not counts or (len(counts) > 1 and counts[0][1] == counts[1][1]):
        return None
    return counts[0][0]


def _annotator_row(
    annotator_id: int, votes: list[Vote], by_pair: dict[int, list[Vote]], campaign: Campaign,
    excluded: set[int],
) -> dict[str, Any]:
    elapsed = [v.elapsed_ms for v in votes if v.elapsed_ms is not None]
    too_fast = sum(ms < campaign.min_answer_ms for ms in elapsed)
    gold = [v for v in votes if v.is_gold]
    gold_correct = sum(v.preference == v.gold_preference for v in gold)
    bias = position_bias((v.preference, v.left_is_a) for v in votes)
    # Leave-one-out majority: compare with the other (included) annotators of each pair.
    shared = agreed = 0
    for v in votes:
        if v.is_gold or v.repeat_of_id is not None or v.preference == "cant_tell":
            continue
        others = [o.preference for o in by_pair[v.pair_id] if o.annotator_id != annotator_id
                  and o.annotator_id not in excluded]
        consensus = majority(others)
        if consensus is not None:
            shared += 1
            agreed += v.preference == consensus
    agreement = agreed / shared if shared else None
    span_h = (votes[-1].created_at - votes[0].created_at).total_seconds() / 3600 if votes else 0.0
    gold_accuracy = gold_correct / len(gold) if gold else None
    # Self-consistency: a repeat (shown mirrored) against the same person's first answer.
    first_answer = {v.pair_id: v.preference for v in votes if v.repeat_of_id is None}
    repeats = [(v.preference, first_answer.get(v.repeat_of_id)) for v in votes if v.repeat_of_id is not None]
    repeats = [(again, first) for again, first in repeats if first is not None]
    consistency = sum(again == first for again, first in repeats) / len(repeats) if repeats else None
    # Noise estimate: the B-Pref "mistake" rate ε as seen by quality control — the error on
    # gold pairs when there are enough, else disagreement with the others' majority.
    if len(gold) >= MIN_GOLD_FOR_FLAG:
        noise = 1.0 - gold_correct / len(gold)
    elif agreement is not None:
        noise = 1.0 - agreement
    else:
        noise = None
    flags = []
    if elapsed and too_fast / len(elapsed) > TOO_FAST_RATE:
        flags.append("too_fast")
    if len(gold) >= MIN_GOLD_FOR_FLAG and gold_accuracy is not None and gold_accuracy < LOW_GOLD_ACCURACY:
        flags.append("low_gold_accuracy")
    if bias.decisive >= MIN_DECISIVE_FOR_BIAS and bias.z is not None and abs(bias.z) > POSITION_BIAS_Z:
        flags.append("position_bias")
    if shared >= MIN_SHARED_FOR_AGREEMENT and agreement is not None and agreement < LOW_AGREEMENT:
        flags.append("low_agreement")
    if len(repeats) >= MIN_REPEATS_FOR_FLAG and consistency is not None and consistency < LOW_CONSISTENCY:
        flags.append("inconsistent")
    return {
        "id": annotator_id,
        "username": votes[0].username,
        "labels": len(votes),
        "simulated": any(v.is_simulated for v in votes),
        "median_ms": int(pystats.median(elapsed)) if elapsed else None,
        "too_fast": too_fast,
        "too_fast_rate": too_fast / len(elapsed) if elapsed else 0.0,
        # One label over no time has no rate; at least a minute of activity is assumed.
        "per_hour": round(len(votes) / max(span_h, 1 / 60), 1),
        "gold_answered": len(gold),
        "gold_accuracy": gold_accuracy,
        "left_rate": bias.left_rate,
        "agreement_with_majority": agreement,
        "repeats_answered": len(repeats),
        "self_consistency": consistency,
        "noise_estimate": noise,
        "excluded": annotator_id in excluded,
        "flags": flags,
    }


def campaign_statistics(campaign: Campaign) -> dict[str, Any]:
    """Everything the researcher dashboard shows, as plain JSON-able values."""
    votes = campaign_votes(campaign)
    excluded = set(AnnotatorExclusion.objects.filter(campaign=campaign).values_list("annotator_id", flat=True))
    # Campaign-level statistics use each person's first answer only: repeats are theirs alone.
    included = [v for v in votes if v.annotator_id not in excluded and v.repeat_of_id is None]

    by_pair: dict[int, list[Vote]] = defaultdict(list)
    by_annotator: dict[int, list[Vote]] = defaultdict(list)
    for v in votes:
        by_pair[v.pair_id].append(v)
        by_annotator[v.annotator_id].append(v)

    units: dict[int, list[str | None]] = defaultdict(list)
    for v in included:
        units[v.pair_id].append(None if v.preference == "cant_tell" else v.preference)
    alpha = krippendorff_alpha_nominal(units)
    multi = sum(1 for values in units.values() if sum(x is not None for x in values) >= 2)

    names = {v.annotator_id: v.username for v in votes}
    pairwise = [
        {"annotator_1": names[r.annotator_1], "annotator_2": names[r.annotator_2],
         "shared": r.shared, "agreement": r.agreement}
        for r in pairwise_agreement((v.pair_id, v.annotator_id, v.preference) for v in included)
    ]
    bias = position_bias((v.preference, v.left_is_a) for v in included)

    majority_prefs = []
    for pair_id, pair_votes in by_pair.items():
        if pair_votes[0].repeat_of_id is not None:
            continue
        consensus = majority([v.preference for v in pair_votes if v.annotator_id not in excluded])
        if consensus in ("a", "b"):
            majority_prefs.append((pair_votes[0].segment_a_id, pair_votes[0].segment_b_id, consensus))
    cycles = intransitive_triads(majority_prefs)

    hourly = dict(
        Judgement.objects.filter(pair__campaign=campaign)
        .annotate(t=TruncHour("created_at")).values("t").annotate(n=Count("id"))
        .order_by("t").values_list("t", "n")
    )

    desirability = Counter()
    for v in included:
        desirability[v.desirability_a] += 1
        desirability[v.desirability_b] += 1
    distribution = Counter(v.preference for v in included)

    return {
        "campaign": {
            "id": campaign.pk, "name": campaign.name, "env_id": campaign.env.env_id,
            "overlap": campaign.overlap, "adaptive_overlap": campaign.adaptive_overlap,
            "gold_rate": campaign.gold_rate, "pair_count": campaign.pair_count,
            "label_count": campaign.label_count,
            "labels_wanted": campaign.pair_count * campaign.overlap + campaign.extra_slots,
        },
        "agreement": {"alpha": alpha, "pairs_with_multiple_votes": multi},
        "pairwise": pairwise,
        "position_bias": {"decisive": bias.decisive, "chose_left": bias.chose_left,
                          "left_rate": bias.left_rate, "z": bias.z},
        "label_distribution": {key: distribution.get(key, 0) for key in ("a", "b", "equal", "cant_tell")},
        "desirability": {key: desirability.get(key, 0) for key in ("desirable", "undesirable", "unsure")},
        "labels_over_time": [{"t": t.isoformat(), "count": n} for t, n in sorted(hourly.items())],
        "cycles": {"count": len(cycles), "examples": [list(c) for c in cycles[:5]]},
        "annotators": sorted(
            (_annotator_row(aid, vs, by_pair, campaign, excluded) for aid, vs in by_annotator.items()),
            key=lambda row: row["username"],
        ),
    }


def pair_votes(pair_id: int) -> list[dict[str, Any]]:
    """Every vote on a pair, with whether its annotator is excluded from the campaign."""
    rows = (
        Judgement.objects.filter(pair_id=pair_id)
        .select_related("annotator", "pair")
        .order_by("created_at", "id")
    )
    votes = list(rows)
    if not votes:
        return []
    excluded = set(
        AnnotatorExclusion.objects.filter(campaign_id=votes[0].pair.campaign_id).values_list("annotator_id", flat=True)
    )
    return [
        {
            "annotator": j.annotator.get_username(), "preference": j.preference,
            "desirability_a": j.desirability_a, "desirability_b": j.desirability_b,
            "confidence": j.confidence, "elapsed_ms": j.elapsed_ms, "left_is_a": j.left_is_a,
            "created_at": j.created_at.isoformat(), "is_simulated": j.is_simulated,
            "excluded": j.annotator_id in excluded,
        }
        for j in votes
    ]


PAIRS_PAGE_SIZE = 50


def campaign_pairs_page(campaign: Campaign, *, page: int) -> dict[str, Any]:
    """A page of the campaign's pairs (queue order) with vote count, majority and the share
    of decided votes that agree with it."""
    pairs = campaign.pairs.order_by("-priority", "id")
    count = pairs.count()
    chunk = list(pairs[(page - 1) * PAIRS_PAGE_SIZE : page * PAIRS_PAGE_SIZE])
    votes: dict[int, list[str]] = defaultdict(list)
    for pair_id, preference in Judgement.objects.filter(pair__in=chunk).values_list("pair_id", "preference"):
        votes[pair_id].append(preference)
    results = []
    for pair in chunk:
        mine = votes.get(pair.pk, [])
        consensus = majority(mine)
        decided = [v for v in mine if v != "cant_tell"]
        results.append({
            "id": pair.pk, "is_gold": pair.is_gold, "priority": pair.priority, "selector": pair.selector,
            "model_version": pair.model_version, "votes": len(mine), "majority": consensus,
            "agreement": (sum(v == consensus for v in decided) / len(decided)) if decided and consensus else None,
        })
    next_page = page + 1 if page * PAIRS_PAGE_SIZE < count else None
    return {"count": count, "next_page": next_page, "results": results}
