"""Quality-control statistics over judgements, as pure functions of plain values.

Nothing here touches the database: selectors gather the votes, these functions compute.
Votes are canonical A/B answers ("a", "b", "equal"); "cant_tell" is treated as missing,
as in the reward-learning data.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Hashable, Iterable, Mapping, Sequence

DECISIVE = ("a", "b")
VALUES = ("a", "b", "equal")


def krippendorff_alpha_nominal(units: Mapping[Hashable, Sequence[Hashable | None]]) -> float | None:
    """Krippendorff's α for nominal data (Krippendorff 2011, "Computing Krippendorff's
    Alpha-Reliability").

    ``units`` maps each unit (a pair) to the values its coders gave; ``None`` is missing.
    Units with fewer than two values are not pairable and are dropped. Returns None when
    fewer than two pairable values exist or all values are identical (α is undefined:
    no disagreement is expected, 0/0).

    α = 1 − D_o / D_e, with the coincidence matrix o_ck = Σ_u (pairs (c,k) in u) / (m_u − 1).
    """
    coincidence: Counter[tuple[Hashable, Hashable]] = Counter()
    for values in units.values():
        present = [v for v in values if v is not None]
        m = len(present)
        if m < 2:
            continue
        for i, j in itertools.permutations(range(m), 2):
            coincidence[(present[i], present[j])] += 1.0 / (m - 1)
    totals: Counter[Hashable] = Counter()
    for (c, _), weight in coincidence.items():
        totals[c] += weight
    n = sum(totals.values())
    if n < 2:
        return None
    # Both scaled by n: observed = n·D_o, expected = n·D_e.
    observed = sum(w for (c, k), w in coincidence.items() if c != k)
    expected = (n * n - sum(t * t for t in totals.values())) / (n - 1)
    if expected == 0:
        return None
    return 1.0 - observed / expected


@dataclass(frozen=True)
class PairwiseAgreement:
    annotator_1: Hashable
    annotator_2: Hashable
    shared: int  # pairs both answered with a decisive or equal vote
    agreement: float | None  # fraction of shared pairs with the same answer


def pairwise_agreement(
    votes: Iterable[tuple[Hashable, Hashable, str]],
) -> list[PairwiseAgreement]:
    """Raw agreement for each pair of annotators over the pairs both labelled.

    ``votes`` are ``(pair, annotator, preference)`` triples; "cant_tell" is ignored.
    """
    by_annotator: dict[Hashable, dict[Hashable, str]] = defaultdict(dict)
    for pair, annotator, preference in votes:
        if preference in VALUES:
            by_annotator[annotator][pair] = preference
    result = []
    for first, second in itertools.combinations(sorted(by_annotator, key=str), 2):
        shared = by_annotator[first].keys() & by_annotator[second].keys()
        same = sum(by_annotator[first][p] == by_annotator[second][p] for p in shared)
        result.append(
            PairwiseAgreement(first, second, len(shared), same / len(shared) if shared else None)
        )
    return result


def intransitive_triads(preferences: Iterable[tuple[Hashable, Hashable, str]]) -> list[tuple[Hashable, ...]]:
    """Cycles x > y > z > x among strict preferences ``(segment_a, segment_b, "a"|"b")``.

    Each cycle is returned once, rotated to start at its smallest element (by ``str``).
    Used per annotator (self-consistency) and on majority labels (data consistency).
    """
    beats: dict[Hashable, set[Hashable]] = defaultdict(set)
    for a, b, preference in preferences:
        if preference == "a":
            beats[a].add(b)
        elif preference == "b":
            beats[b].add(a)
    cycles = set()
    for x in list(beats):
        for y in beats[x]:
            for z in beats.get(y, ()):
                if x in beats.get(z, ()) and len({x, y, z}) == 3:
                    cycle = (x, y, z)
                    start = min(range(3), key=lambda i: str(cycle[i]))
                    cycles.add(cycle[start:] + cycle[:start])
    return sorted(cycles, key=lambda c: tuple(map(str, c)))


@dataclass(frozen=True)
class PositionBias:
    decisive: int  # judgements that preferred one side
    chose_left: int
    left_rate: float | None  # chose_left / decisive; 0.5 is unbiased
    z: float | None  # normal-approximation z-score against 0.5


def position_bias(answers: Iterable[tuple[str, bool]]) -> PositionBias:
    """How often the left clip wins, from ``(canonical preference, left_is_a)`` pairs."""
    decisive = chose_left = 0
    for preference, left_is_a in answers:
        if preference not in DECISIVE:
            continue
        decisive += 1
        chose_left += (preference == "a") == left_is_a
    if not decisive:
        return PositionBias(0, 0, None, None)
    rate = chose_left / decisive
    z = (chose_left - 0.5 * decisive) / math.sqrt(0.25 * decisive)
    return PositionBias(decisive, chose_left, rate, z)
