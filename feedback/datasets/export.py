"""Streaming export: judgements → Parquet (and JSONL) row groups with bounded memory.

The judgements are read once, ordered by pair, through a server-side cursor on PostgreSQL
(``QuerySet.iterator(chunk_size=…)``); votes are grouped per pair as they arrive and every
``BATCH_PAIRS`` pairs become one Arrow record batch, written as a Parquet row group and fed
to the content hash. Memory holds one batch, the segments' provenance and a few counters —
never the whole campaign.

The content hash is a sha256 over, in order: a header naming the schema version; for each
batch of ``BATCH_PAIRS`` pairs (in pair id order) the canonical JSON of its columns (sorted
keys, no spaces, times as integer microseconds since the epoch, UTC); then, per segment in
(trajectory, start) order, the canonical JSON of its metadata and the float64 little-endian
bytes of its arrays. It depends on the exported data only — not on file bytes, snapshot ids
or the time of export.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from django.db.models import Exists, OuterRef, Q

from feedback.datasets.filters import DatasetFilters
from feedback.datasets.schema import PAIR_SCHEMA, SCHEMA_VERSION, SEGMENT_SCHEMA, VOTES_TYPE
from feedback.models import AnnotatorExclusion, Campaign, Judgement, Pair, Segment
from feedback.statistics import majority
from feedback.storage import load_npz

BATCH_PAIRS = 10_000  # part of the hash's definition: changing it changes every hash
CURSOR_CHUNK = 20_000
SEGMENT_BATCH = 256
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MICROSECOND = timedelta(microseconds=1)
PREFERRED_A = {"a": 1.0, "b": 0.0, "equal": 0.5}
ENV_VERSION = re.compile(r"-v(\d+)$")

ProgressCallback = Callable[[float], None]


class DatasetExportError(ValueError):
    """The export cannot be made as asked (unknown campaign, no judgements…)."""


def _micros(value: datetime) -> int:
    return (value - EPOCH) // MICROSECOND


@dataclass
class ExportStats:
    """Counters and agreement accumulated while streaming; bounded by annotators/segments."""

    judgements: int = 0
    pairs: int = 0
    gold_pairs: int = 0
    simulated_judgements: int = 0
    annotators: Counter[str] = field(default_factory=Counter)
    preferences: Counter[str] = field(default_factory=Counter)
    desirability: Counter[str] = field(default_factory=Counter)
    per_campaign: Counter[int] = field(default_factory=Counter)
    # Krippendorff's α (nominal) accumulated pair by pair; cant_tell counts as missing, as in
    # feedback.statistics. Keys are (value, value) over a/b/equal.
    coincidence: Counter[tuple[str, str]] = field(default_factory=Counter)
    pairs_with_multiple_votes: int = 0
    agreement_sum: float = 0.0
    agreement_pairs: int = 0
    decisive: int = 0
    chose_left: int = 0

    def add_pair(self, preferences: list[str], agreement: float | None) -> None:
        present = [p for p in preferences if p != "cant_tell"]
        m = len(present)
        if m >= 2:
            self.pairs_with_multiple_votes += 1
            counts = Counter(present)
            # Σ over ordered pairs of distinct coders (i≠j) of [v_i, v_j] / (m−1), by value.
            for c, n_c in counts.items():
                for k, n_k in counts.items():
                    pairs = n_c * (n_k - 1) if c == k else n_c * n_k
                    if pairs:
                        self.coincidence[(c, k)] += pairs / (m - 1)
            if agreement is not None:
                self.agreement_sum += agreement
                self.agreement_pairs += 1

    def alpha(self) -> float | None:
        totals: Counter[str] = Counter()
        for (c, _), weight in self.coincidence.items():
            totals[c] += weight
        n = sum(totals.values())
        if n < 2:
            return None
        observed = sum(w for (c, k), w in self.coincidence.items() if c != k)
        expected = (n * n - sum(t * t for t in totals.values())) / (n - 1)
        return None if expected == 0 else 1.0 - observed / expected

    def summary(self, segments: int, trajectories: int) -> tuple[dict[str, Any], dict[str, Any]]:
        counts = {
            "pairs": self.pairs,
            "judgements": self.judgements,
            "gold_pairs": self.gold_pairs,
            "simulated_judgements": self.simulated_judgements,
            "annotators": len(self.annotators),
            "segments": segments,
            "trajectories": trajectories,
            "per_campaign": {str(k): v for k, v in sorted(self.per_campaign.items())},
        }
        statistics = {
            "agreement": {
                "krippendorff_alpha": self.alpha(),
                "pairs_with_multiple_votes": self.pairs_with_multiple_votes,
                "mean_majority_agreement": (
                    self.agreement_sum / self.agreement_pairs if self.agreement_pairs else None
                ),
            },
            "label_distribution": {k: self.preferences.get(k, 0) for k in ("a", "b", "equal", "cant_tell")},
            "desirability": {k: self.desirability.get(k, 0) for k in ("desirable", "undesirable", "unsure")},
            "position_bias": {
                "decisive": self.decisive,
                "left_rate": self.chose_left / self.decisive if self.decisive else None,
            },
            "labels_per_annotator": dict(sorted(self.annotators.items())),
        }
        return counts, statistics


@dataclass(frozen=True)
class SegmentInfo:
    trajectory_id: int
    start: int
    end: int
    true_return: float | None
    seed: int | None
    policy: str
    policy_kind: str
    trajectory_length: int


def flagged_annotators(campaigns: list[Campaign]) -> Q:
    """A Q matching the judgements of annotators quality control flags in their campaign."""
    from feedback.statistics import campaign_statistics

    condition = Q(pk__in=[])
    for campaign in campaigns:
        flagged = [row["id"] for row in campaign_statistics(campaign)["annotators"] if row["flags"]]
        if flagged:
            condition |= Q(pair__campaign_id=campaign.pk, annotator_id__in=flagged)
    return condition


def judgements_for(filters: DatasetFilters, campaigns: list[Campaign]) -> Any:
    """The filtered judgements, ordered by pair (the order the export streams them in)."""
    qs = Judgement.objects.filter(pair__campaign_id__in=filters.campaign_ids, pair__is_practice=False)
    if filters.created_from is not None:
        qs = qs.filter(created_at__gte=filters.created_from)
    if filters.created_to is not None:
        qs = qs.filter(created_at__lt=filters.created_to)
    if filters.annotators:
        qs = qs.filter(annotator__username__in=filters.annotators)
    if filters.source != "all":
        qs = qs.filter(is_simulated=filters.source == "simulated")
    if filters.exclude_excluded:
        qs = qs.exclude(Exists(AnnotatorExclusion.objects.filter(
            campaign_id=OuterRef("pair__campaign_id"), annotator_id=OuterRef("annotator_id"))))
    if filters.exclude_flagged:
        qs = qs.exclude(flagged_annotators(campaigns))
    if not filters.include_gold:
        qs = qs.filter(pair__is_gold=False)
    if not filters.include_repeats:
        qs = qs.filter(pair__repeat_of__isnull=True)
    return qs.order_by("pair_id", "created_at", "id")


ROW_FIELDS = (
    "pair_id", "annotator__username", "preference", "desirability_a", "desirability_b",
    "confidence", "elapsed_ms", "left_is_a", "is_simulated", "created_at",
    "pair__campaign_id", "pair__segment_a_id", "pair__segment_b_id", "pair__is_gold",
    "pair__gold_preference", "pair__repeat_of_id", "pair__priority", "pair__selector",
    "pair__model_version", "pair__created_at",
)


class PairStream:
    """Groups the ordered judgement rows into pair rows and Arrow record batches."""

    PAIR_COLUMNS = [f.name for f in PAIR_SCHEMA if f.name != "votes"]
    VOTE_COLUMNS = [f.name for f in VOTES_TYPE.value_type]

    def __init__(self, filters: DatasetFilters, campaigns: dict[int, Campaign],
                 segments: dict[int, SegmentInfo]) -> None:
        self.filters = filters
        self.campaigns = campaigns
        self.segments = segments
        self.stats = ExportStats()
        self.segment_votes: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
        self._reset()

    def _reset(self) -> None:
        self.columns: dict[str, list[Any]] = {name: [] for name in self.PAIR_COLUMNS}
        self.votes: dict[str, list[Any]] = {name: [] for name in self.VOTE_COLUMNS}
        self.offsets: list[int] = [0]

    def __len__(self) -> int:
        return len(self.columns["pair_id"])

    def add(self, rows: list[tuple[Any, ...]]) -> None:
        """One pair's judgement rows (same pair id), in created order."""
        preferences = [r[2] for r in rows]
        consensus = majority(preferences)
        decided = [p for p in preferences if p != "cant_tell"]
        agreement = (sum(p == consensus for p in decided) / len(decided)) if decided and consensus else None
        if self.filters.min_agreement is not None and (
            agreement is None or agreement < self.filters.min_agreement
        ):
            return
        first = rows[0]
        (pair_id, campaign_id, seg_a, seg_b, is_gold, gold_pref, repeat_of, priority, selector,
         model_version, pair_created) = (first[0], *first[10:])
        campaign = self.campaigns[campaign_id]
        a, b = self.segments[seg_a], self.segments[seg_b]
        version = ENV_VERSION.search(campaign.env.env_id)
        probabilities = [PREFERRED_A.get(p) for p in preferences]
        known = [p for p in probabilities if p is not None]
        c = self.columns
        for name, value in (
            ("pair_id", pair_id), ("campaign_id", campaign_id), ("campaign", campaign.name),
            ("env_id", campaign.env.env_id), ("env_version", int(version.group(1)) if version else None),
            ("pair_created_at", _micros(pair_created)), ("is_gold", is_gold),
            ("gold_preference", gold_pref or None), ("repeat_of", repeat_of), ("priority", priority),
            ("selector", selector), ("model_version", model_version),
            ("segment_a_id", seg_a), ("segment_b_id", seg_b),
            ("trajectory_a_id", a.trajectory_id), ("trajectory_b_id", b.trajectory_id),
            ("start_a", a.start), ("end_a", a.end), ("start_b", b.start), ("end_b", b.end),
            ("seed_a", a.seed), ("seed_b", b.seed), ("policy_a", a.policy), ("policy_b", b.policy),
            ("policy_kind_a", a.policy_kind), ("policy_kind_b", b.policy_kind),
            ("true_return_a", a.true_return), ("true_return_b", b.true_return),
            ("num_votes", len(rows)),
            ("soft_label", sum(known) / len(known) if known else None),
            ("majority", consensus), ("agreement", agreement),
        ):
            c[name].append(value)
        v = self.votes
        for row, probability in zip(rows, probabilities):
            v["annotator"].append(row[1])
            v["preference"].append(row[2])
            v["preferred_a_probability"].append(probability)
            v["desirability_a"].append(row[3])
            v["desirability_b"].append(row[4])
            v["confidence"].append(row[5])
            v["elapsed_ms"].append(row[6])
            v["left_is_a"].append(row[7])
            v["is_simulated"].append(row[8])
            v["created_at"].append(_micros(row[9]))
        self.offsets.append(self.offsets[-1] + len(rows))
        # Counters for the statistics and the segments' desirability (Minari, the card).
        s = self.stats
        s.pairs += 1
        s.judgements += len(rows)
        s.gold_pairs += bool(is_gold)
        s.per_campaign[campaign_id] += 1
        s.add_pair(preferences, agreement)
        index = {"desirable": 0, "undesirable": 1, "unsure": 2}
        for row in rows:
            s.annotators[row[1]] += 1
            s.preferences[row[2]] += 1
            s.desirability[row[3]] += 1
            s.desirability[row[4]] += 1
            s.simulated_judgements += bool(row[8])
            self.segment_votes[seg_a][index[row[3]]] += 1
            self.segment_votes[seg_b][index[row[4]]] += 1
            if row[2] in ("a", "b"):
                s.decisive += 1
                s.chose_left += (row[2] == "a") == row[7]

    def flush(self) -> tuple[pa.RecordBatch, bytes]:
        """The buffered pairs as a record batch plus their canonical JSON; then empty."""
        canonical = json.dumps(
            {"pairs": self.columns, "votes": self.votes, "offsets": self.offsets},
            sort_keys=True, separators=(",", ":"), allow_nan=False,
        ).encode()
        arrays: list[pa.Array] = []
        for f in PAIR_SCHEMA:
            if f.name == "votes":
                children = [pa.array(self.votes[vf.name], type=vf.type) for vf in VOTES_TYPE.value_type]
                struct = pa.StructArray.from_arrays(children, fields=list(VOTES_TYPE.value_type))
                arrays.append(pa.ListArray.from_arrays(pa.array(self.offsets, pa.int32()), struct,
                                                       type=VOTES_TYPE))
            else:
                arrays.append(pa.array(self.columns[f.name], type=f.type))
        batch = pa.RecordBatch.from_arrays(arrays, schema=PAIR_SCHEMA)
        self._reset()
        return batch, canonical


def _segment_infos(campaign_ids: list[int]) -> dict[int, SegmentInfo]:
    """Provenance of every segment the campaigns' pairs use (bounded by the segment pool)."""
    pairs = Pair.objects.filter(campaign_id__in=campaign_ids)
    rows = Segment.objects.filter(
        Q(id__in=pairs.values("segment_a_id")) | Q(id__in=pairs.values("segment_b_id"))
    ).values_list(
        "id", "trajectory_id", "start", "end", "true_return", "trajectory__seed",
        "trajectory__policy__name", "trajectory__policy__kind", "trajectory__length",
    )
    return {row[0]: SegmentInfo(*row[1:]) for row in rows.iterator(chunk_size=CURSOR_CHUNK)}


@dataclass
class ExportResult:
    content_hash: str
    counts: dict[str, Any]
    statistics: dict[str, Any]
    files: dict[str, Path]
    segment_votes: dict[int, list[int]]


class JsonlSink:
    def __init__(self, path: Path) -> None:
        self.handle = path.open("w", encoding="utf-8")

    def write(self, batch: pa.RecordBatch) -> None:
        for row in batch.to_pylist():
            self.handle.write(json.dumps(row, default=_json_default, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self.handle.close()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def export_tables(
    *, filters: DatasetFilters, workdir: Path, jsonl: bool = False,
    on_progress: ProgressCallback | None = None,
) -> ExportResult:
    """Write ``pairs.parquet``, ``segments.parquet`` (and ``pairs.jsonl``) into ``workdir``."""
    campaigns = {c.pk: c for c in Campaign.objects.select_related("env").filter(pk__in=filters.campaign_ids)}
    missing = sorted(set(filters.campaign_ids) - set(campaigns))
    if missing:
        raise DatasetExportError(f"No campaign with id {', '.join(map(str, missing))}.")
    report = on_progress or (lambda fraction: None)
    segments = _segment_infos(list(campaigns))
    judgements = judgements_for(filters, list(campaigns.values()))
    total = judgements.count()
    stream = PairStream(filters, campaigns, segments)
    hasher = hashlib.sha256(f"preflab-dataset-v{SCHEMA_VERSION}\n".encode())
    pairs_path = workdir / "pairs.parquet"
    jsonl_sink = JsonlSink(workdir / "pairs.jsonl") if jsonl else None
    writer = pq.ParquetWriter(pairs_path, PAIR_SCHEMA, compression="zstd")
    seen = 0

    def emit() -> None:
        batch, canonical = stream.flush()
        hasher.update(canonical)
        writer.write_batch(batch)
        if jsonl_sink is not None:
            jsonl_sink.write(batch)
        # The pair pass is most of the work; the segment pass reports the last 10%.
        report(0.9 * seen / total if total else 0.9)

    try:
        current: list[tuple[Any, ...]] = []
        for row in judgements.values_list(*ROW_FIELDS).iterator(chunk_size=CURSOR_CHUNK):
            seen += 1
            if current and row[0] != current[0][0]:
                stream.add(current)
                current = []
                if len(stream) >= BATCH_PAIRS:
                    emit()
            current.append(row)
        if current:
            stream.add(current)
        if len(stream) or stream.stats.pairs == 0:
            emit()  # an empty export still writes a valid, empty file
    finally:
        writer.close()
        if jsonl_sink is not None:
            jsonl_sink.close()
    if stream.stats.pairs == 0:
        raise DatasetExportError(
            "No judgements match these filters; widen the date range, annotators or agreement."
        )
    segment_count, trajectory_count = _write_segments(
        workdir / "segments.parquet", segments, stream.segment_votes, hasher, on_progress=report
    )
    counts, statistics = stream.stats.summary(segment_count, trajectory_count)
    files = {"pairs.parquet": pairs_path, "segments.parquet": workdir / "segments.parquet"}
    if jsonl:
        files["pairs.jsonl"] = workdir / "pairs.jsonl"
    return ExportResult(hasher.hexdigest(), counts, statistics, files, dict(stream.segment_votes))


def _steps(arrays: list[np.ndarray]) -> pa.Array:
    """A list<list<float64>> column from per-segment (T, D) arrays."""
    inner_offsets = [0]
    outer_offsets = [0]
    for array in arrays:
        t, d = array.shape
        start = inner_offsets[-1]
        inner_offsets.extend(start + d * (i + 1) for i in range(t))
        outer_offsets.append(outer_offsets[-1] + t)
    values = pa.array(np.concatenate([a.ravel() for a in arrays]) if arrays else np.zeros(0), pa.float64())
    inner = pa.ListArray.from_arrays(pa.array(inner_offsets, pa.int32()), values)
    return pa.ListArray.from_arrays(pa.array(outer_offsets, pa.int32()), inner)


def _write_segments(
    path: Path, infos: dict[int, SegmentInfo], votes: dict[int, list[int]], hasher: Any,
    *, on_progress: ProgressCallback,
) -> tuple[int, int]:
    """Every segment of every trajectory a pair uses (so the importer can rebuild whole
    trajectories), with arrays sliced from the trajectory's .npz, loaded once per trajectory."""
    trajectory_ids = sorted({info.trajectory_id for sid, info in infos.items() if sid in votes})
    writer = pq.ParquetWriter(path, SEGMENT_SCHEMA, compression="zstd")
    buffer: list[dict[str, Any]] = []
    written = 0

    def flush() -> None:
        columns: dict[str, Any] = {}
        for f in SEGMENT_SCHEMA:
            if f.name in ("observations", "actions"):
                columns[f.name] = _steps([row[f.name] for row in buffer])
            elif f.name in ("rewards", "terminations"):
                columns[f.name] = pa.array(
                    [None if row[f.name] is None else row[f.name].tolist() for row in buffer], type=f.type)
            else:
                columns[f.name] = pa.array([row[f.name] for row in buffer], type=f.type)
        writer.write_batch(pa.RecordBatch.from_pydict(columns, schema=SEGMENT_SCHEMA))
        buffer.clear()

    try:
        for index in range(0, len(trajectory_ids), 500):
            chunk = trajectory_ids[index:index + 500]
            rows = (
                Segment.objects.filter(trajectory_id__in=chunk)
                .order_by("trajectory_id", "start", "end")
                .values_list("id", "trajectory_id", "start", "end", "true_return", "trajectory__arrays",
                             "trajectory__env__env_id", "trajectory__policy__name",
                             "trajectory__policy__kind", "trajectory__seed", "trajectory__length")
            )
            loaded: tuple[int, dict[str, np.ndarray]] | None = None
            for sid, tid, start, end, true_return, arrays_name, env_id, policy, kind, seed, length in rows:
                if loaded is None or loaded[0] != tid:
                    loaded = (tid, load_npz(arrays_name))
                arrays = loaded[1]
                obs = arrays["observations"][start:end]
                act = arrays["actions"][start:end]
                rewards = arrays.get("rewards")
                terminations = arrays.get("terminations")
                counts = votes.get(sid, [0, 0, 0])
                row = {
                    "segment_id": sid, "trajectory_id": tid, "env_id": env_id, "policy": policy,
                    "policy_kind": kind, "seed": seed, "trajectory_length": length, "start": start,
                    "end": end, "true_return": true_return, "in_pairs": sid in votes,
                    "desirable_votes": counts[0], "undesirable_votes": counts[1], "unsure_votes": counts[2],
                    "observation_shape": list(obs.shape[1:]), "observation_dtype": str(obs.dtype),
                    "action_shape": list(act.shape[1:]), "action_dtype": str(act.dtype),
                    "observations": obs.reshape(len(obs), -1).astype(np.float64),
                    "actions": act.reshape(len(act), -1).astype(np.float64),
                    "rewards": None if rewards is None else rewards[start:end].astype(np.float64),
                    "terminations": None if terminations is None else terminations[start:end].astype(bool),
                }
                meta = {k: v for k, v in row.items() if not isinstance(v, np.ndarray)}
                hasher.update(json.dumps(meta, sort_keys=True, separators=(",", ":")).encode())
                for key in ("observations", "actions", "rewards", "terminations"):
                    if row[key] is not None:
                        hasher.update(np.ascontiguousarray(row[key]).astype(row[key].dtype.newbyteorder("<")).tobytes())
                buffer.append(row)
                written += 1
                if len(buffer) >= SEGMENT_BATCH:
                    flush()
            on_progress(0.9 + 0.1 * min(1.0, (index + len(chunk)) / max(1, len(trajectory_ids))))
        if buffer or written == 0:
            flush()
    finally:
        writer.close()
    return written, len(trajectory_ids)


def iter_parquet_rows(path: Path, *, batch_size: int = 1024) -> Iterator[dict[str, Any]]:
    """Rows of a snapshot table, a batch at a time (for readers that want dicts)."""
    parquet = pq.ParquetFile(path)
    for batch in parquet.iter_batches(batch_size=batch_size):
        yield from batch.to_pylist()


