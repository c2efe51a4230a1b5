"""Streaming export: judgements → Parquet (and JSONL) row groups with bounded memory.

The filtered judgements are read once, ordered by pair — on PostgreSQL as ``COPY (…) TO
STDOUT`` parsed by pyarrow a few MiB at a time, elsewhere through a chunked cursor — with
times as integer microseconds so no datetime object is ever made. Each chunk of
``CURSOR_CHUNK`` rows (cut at a pair boundary) is turned column-wise — numpy and Arrow
compute, no per-row Python — into one Arrow record batch of pairs with their votes,
written as a Parquet row group and fed to the content hash. Memory holds one chunk, the
segments' provenance and a few counters, never the whole campaign.

The content hash (``feedback.datasets.digest``) is a sha256 over the values of the two
tables, independent of batching and of the Parquet bytes:
sha256("preflab-dataset-v<schema>\\n" + digest(pairs) + "\\n" + digest(segments)).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from django.db.models import BigIntegerField, Func, Q

from feedback.datasets.digest import TableDigest
from feedback.datasets.filters import DatasetFilters
from feedback.datasets.schema import (
    PAIR_SCHEMA,
    SCHEMA_VERSION,
    SEGMENT_SCHEMA,
    TIMESTAMP,
    VOTE_TYPE,
    VOTES_TYPE,
)
from feedback.models import AnnotatorExclusion, Campaign, Judgement, Pair, Segment
from feedback.storage import load_npz

CURSOR_CHUNK = 50_000  # judgement rows per fetch and (about) per Parquet row group
SEGMENT_BATCH = 512
COPY_BLOCK = 4 << 20  # bytes of CSV parsed at a time on PostgreSQL
ENV_VERSION = re.compile(r"-v(\d+)$")
DESIRABILITY = ("desirable", "undesirable", "unsure")

ProgressCallback = Callable[[float], None]


class DatasetExportError(ValueError):
    """The export cannot be made as asked (unknown campaign, no judgements…)."""


class EpochMicros(Func):
    """A timestamp column as integer microseconds since 1970-01-01 UTC, computed by the
    database: exact, and much cheaper to stream than datetime objects."""

    output_field = BigIntegerField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, template="(EXTRACT(EPOCH FROM %(expressions)s) * 1000000)::bigint",
                           **extra)

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        # Django stores "YYYY-MM-DD HH:MM:SS[.ffffff]" in UTC; the fraction is absent when 0.
        # '%%%%s' survives both the template's % formatting and the SQLite cursor's own.
        template = ("(CAST(strftime('%%%%s', %(expressions)s) AS INTEGER) * 1000000"
                    " + CAST(substr(%(expressions)s || '.000000', 21, 6) AS INTEGER))")
        return self.as_sql(compiler, connection, template=template, **extra)


def table_hash(pairs: str, segments: str) -> str:
    return hashlib.sha256(f"preflab-dataset-v{SCHEMA_VERSION}\n{pairs}\n{segments}".encode()).hexdigest()


@dataclass
class ExportStats:
    """Counters and agreement accumulated chunk by chunk; bounded by annotators/segments."""

    judgements: int = 0
    pairs: int = 0
    gold_pairs: int = 0
    simulated_judgements: int = 0
    annotators: dict[str, int] = field(default_factory=dict)
    preferences: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("a", "b", "equal", "cant_tell"), 0))
    desirability: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DESIRABILITY, 0))
    per_campaign: dict[int, int] = field(default_factory=dict)
    # Krippendorff's α (nominal) coincidence matrix over a/b/equal, "can't tell" as missing
    # (as in feedback.statistics): o_ck = Σ_pairs n_c (n_k − [c = k]) / (m − 1).
    coincidence: np.ndarray = field(default_factory=lambda: np.zeros((3, 3)))
    pairs_with_multiple_votes: int = 0
    agreement_sum: float = 0.0
    agreement_pairs: int = 0
    decisive: int = 0
    chose_left: int = 0

    def alpha(self) -> float | None:
        totals = self.coincidence.sum(axis=1)
        n = float(totals.sum())
        if n < 2:
            return None
        observed = float(self.coincidence.sum() - np.trace(self.coincidence))
        expected = (n * n - float((totals * totals).sum())) / (n - 1)
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
            "label_distribution": dict(self.preferences),
            "desirability": dict(self.desirability),
            "position_bias": {
                "decisive": self.decisive,
                "left_rate": self.chose_left / self.decisive if self.decisive else None,
            },
            "labels_per_annotator": dict(sorted(self.annotators.items())),
        }
        return counts, statistics


PROVENANCE = ("id", "trajectory_id", "start", "end", "true_return", "trajectory__seed",
              "trajectory__policy__name", "trajectory__policy__kind")


class SegmentTable:
    """Provenance of every segment the campaigns' pairs use, as sorted arrays (bounded by
    the segment pool, not by the number of pairs or votes)."""

    def __init__(self, campaign_ids: list[int]) -> None:
        pairs = Pair.objects.filter(campaign_id__in=campaign_ids)
        self._set(list(Segment.objects.filter(
            Q(id__in=pairs.values("segment_a_id")) | Q(id__in=pairs.values("segment_b_id"))
        ).order_by("id").values_list(*PROVENANCE)))
        # Desirability votes per segment (desirable, undesirable, unsure) in the export.
        self.votes = np.zeros((len(self.ids), 3), dtype=np.int64)

    def _set(self, rows: list[tuple[Any, ...]]) -> None:
        columns = list(zip(*rows)) if rows else [()] * len(PROVENANCE)
        self.ids = np.asarray(columns[0], dtype=np.int64)
        self.trajectory_ids = np.asarray(columns[1], dtype=np.int64)
        self.arrow = {
            "trajectory_id": pa.array(columns[1], pa.int64()),
            "start": pa.array(columns[2], pa.int64()),
            "end": pa.array(columns[3], pa.int64()),
            "true_return": pa.array(columns[4], pa.float64()),
            "seed": pa.array(columns[5], pa.int64()),
            "policy": pa.array(columns[6], pa.string()),
            "policy_kind": pa.array(columns[7], pa.string()),
        }

    def index(self, segment_ids: np.ndarray) -> np.ndarray:
        """Row of each segment id. A pair created (and labelled) after this table was read
        can reach the stream, which is a later read: its segments are added here rather
        than matched to a neighbour's provenance by ``searchsorted``."""
        found = np.searchsorted(self.ids, segment_ids)
        hit = found < len(self.ids)
        hit[hit] = self.ids[found[hit]] == segment_ids[hit]
        if hit.all():
            return found
        missing = sorted(set(segment_ids[~hit].tolist()))
        rows = list(zip(*(c.to_pylist() for c in self.arrow.values())))
        old = [(int(i), *r) for i, r in zip(self.ids, rows)]
        extra = beside_stream(
            lambda: list(Segment.objects.filter(id__in=missing).values_list(*PROVENANCE)))
        if len(extra) != len(missing):
            raise DatasetExportError("A segment was deleted while the export ran; start the export again.")
        order = sorted(range(len(old) + len(extra)), key=lambda k: (old + extra)[k][0])
        self._set([(old + extra)[k] for k in order])
        votes = np.concatenate([self.votes, np.zeros((len(extra), 3), dtype=np.int64)])
        self.votes = votes[order]
        return np.searchsorted(self.ids, segment_ids)


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
        # A few rows, read once: an explicit condition instead of an anti-join per judgement.
        excluded = Q(pk__in=[])
        for campaign_id, annotator_id in AnnotatorExclusion.objects.filter(
                campaign_id__in=filters.campaign_ids).values_list("campaign_id", "annotator_id"):
            excluded |= Q(pair__campaign_id=campaign_id, annotator_id=annotator_id)
        qs = qs.exclude(excluded)
    if filters.exclude_flagged:
        qs = qs.exclude(flagged_annotators(campaigns))
    if not filters.include_gold:
        qs = qs.filter(pair__is_gold=False)
    if not filters.include_repeats:
        qs = qs.filter(pair__repeat_of__isnull=True)
    return qs.order_by("pair_id", "created_at", "id")


ROW_SCHEMA = pa.schema([
    ("pair_id", pa.int64()), ("annotator_id", pa.int64()), ("preference", pa.string()),
    ("desirability_a", pa.string()), ("desirability_b", pa.string()), ("confidence", pa.float64()),
    ("elapsed_ms", pa.int64()), ("left_is_a", pa.bool_()), ("is_simulated", pa.bool_()),
    ("created_us", pa.int64()), ("pair__campaign_id", pa.int64()), ("pair__segment_a_id", pa.int64()),
    ("pair__segment_b_id", pa.int64()), ("pair__is_gold", pa.bool_()), ("pair__gold_preference", pa.string()),
    ("pair__repeat_of_id", pa.int64()), ("pair__priority", pa.int64()), ("pair__selector", pa.string()),
    ("pair__model_version", pa.string()), ("pair_created_us", pa.int64()),
])
ROW_FIELDS = tuple(ROW_SCHEMA.names)


_stream = threading.local()  # copy_open: this thread's connection is busy with the export's COPY
T = TypeVar("T")


def beside_stream(query: Callable[[], T]) -> T:
    """Run a query (a read, or a progress write) while the judgements may be streaming. On
    PostgreSQL the COPY holds the main connection (and psycopg's lock on it) until its last
    row is read, so a query issued in mid-stream would wait on itself forever: it goes
    through a thread's own short-lived connection instead (autocommit, so a write is seen
    at once). Outside a stream it runs here, on the caller's connection."""
    if not getattr(_stream, "copy_open", False):
        return query()
    from django.db import connections

    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(query())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome.append(exc)
        finally:
            connections.close_all()  # this thread's connections only

    thread = threading.Thread(target=run, name="dataset-export-beside-stream")
    thread.start()
    thread.join()
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]  # type: ignore[no-any-return]


def _copy_csv(connection: Any, sql: str, params: Any) -> Iterator[pa.Table]:
    """``COPY (sql) TO STDOUT (FORMAT csv)`` read through libpq directly, parsed by pyarrow
    a few MiB at a time. PostgreSQL sends one message per row; psycopg's ``Copy`` iterator
    spends ~10 µs of Python on each, the blocking ``get_copy_data`` loop about a tenth of
    that. The COPY holds the connection until the last row is read (see ``beside_stream``)."""
    import psycopg
    import pyarrow.csv as pcsv

    options = {
        "read_options": pcsv.ReadOptions(column_names=ROW_FIELDS, use_threads=False, block_size=64 << 20),
        "convert_options": pcsv.ConvertOptions(
            column_types=ROW_SCHEMA, true_values=["t"], false_values=["f"],
            # COPY writes NULL unquoted and the empty string as "": tell them apart.
            strings_can_be_null=True, quoted_strings_can_be_null=False, null_values=[""],
        ),
    }
    connection.ensure_connection()
    raw = connection.connection
    statement = psycopg.ClientCursor(raw).mogrify(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)", params)
    pgconn = raw.pgconn
    with raw.lock:  # psycopg's own lock: nothing else may use the connection meanwhile
        # The plan is a merge join walked in pair order; compiling it with JIT costs more
        # than it saves on a streaming read.
        pgconn.send_query(b"SET jit = off")
        while pgconn.get_result() is not None:
            pass
        pgconn.send_query(statement.encode())
        result = pgconn.get_result()
        if result is None or result.status != psycopg.pq.ExecStatus.COPY_OUT:
            message = result.error_message.decode(errors="replace") if result is not None else "no result"
            while pgconn.get_result() is not None:
                pass
            raise DatasetExportError(f"The database refused the export query: {message}")
        block: list[bytes] = []
        size = 0
        _stream.copy_open = True
        try:
            while True:
                n, data = pgconn.get_copy_data(0)
                if n < 0:
                    break
                block.append(bytes(data))
                size += n
                if size >= COPY_BLOCK:
                    yield pcsv.read_csv(pa.py_buffer(b"".join(block)), **options)
                    block, size = [], 0
            if block:
                yield pcsv.read_csv(pa.py_buffer(b"".join(block)), **options)
        except GeneratorExit:
            # Abandoned mid-COPY (the export failed downstream): the connection cannot run
            # another statement until the COPY is drained, so drop it; Django reconnects.
            connection.close()
            raise
        finally:
            _stream.copy_open = False
        final = pgconn.get_result()
        while pgconn.get_result() is not None:
            pass
        pgconn.send_query(b"RESET jit")
        while pgconn.get_result() is not None:
            pass
        if final is not None and final.status != psycopg.pq.ExecStatus.COMMAND_OK:
            raise DatasetExportError(f"The export query failed: {final.error_message.decode(errors='replace')}")


def stream_rows(queryset: Any) -> Iterator[pa.Table]:
    """The rows of ``queryset.values_list(*ROW_FIELDS)`` as Arrow tables of a few thousand
    rows, in order. On PostgreSQL the query runs as ``COPY (…) TO STDOUT (FORMAT csv)`` and
    pyarrow parses the stream in C: no Python object per row and no cursor materialised on
    the server. Elsewhere (SQLite) a chunked cursor, converted column by column."""
    from django.db import connections

    connection = connections[queryset.db]
    values = queryset.values_list(*ROW_FIELDS)
    if connection.vendor == "postgresql":
        sql, params = values.query.sql_with_params()
        yield from _copy_csv(connection, sql, params)
        return
    chunk: list[tuple[Any, ...]] = []
    for row in values.iterator(chunk_size=CURSOR_CHUNK):
        chunk.append(row)
        if len(chunk) >= CURSOR_CHUNK:
            yield _rows_to_table(chunk)
            chunk = []
    if chunk:
        yield _rows_to_table(chunk)


def _rows_to_table(rows: list[tuple[Any, ...]]) -> pa.Table:
    columns = list(zip(*rows))
    return pa.Table.from_arrays([pa.array(c, f.type) for c, f in zip(columns, ROW_SCHEMA)], schema=ROW_SCHEMA)


def _bools(array: pa.Array) -> np.ndarray:
    return array.to_numpy(zero_copy_only=False).astype(bool)


class PairBatcher:
    """Turns complete pairs' judgement rows (ordered by pair) into record batches."""

    def __init__(self, filters: DatasetFilters, campaigns: dict[int, Campaign], segments: SegmentTable) -> None:
        self.min_agreement = filters.min_agreement
        self.segments = segments
        self.stats = ExportStats()
        self._load_users()
        self.campaign_facts = {}
        for pk, campaign in campaigns.items():
            version = ENV_VERSION.search(campaign.env.env_id)
            self.campaign_facts[pk] = (campaign.name, campaign.env.env_id,
                                       int(version.group(1)) if version else None)

    def _load_users(self) -> None:
        from django.contrib.auth import get_user_model

        users = beside_stream(
            lambda: list(get_user_model().objects.order_by("pk").values_list("pk", "username")))
        self.user_ids = np.array([u[0] for u in users], dtype=np.int64)
        self.usernames = pa.array([u[1] for u in users], pa.string())

    def _usernames(self, ids: pa.Array) -> pa.Array:
        # Usernames are joined here rather than in SQL: one small lookup table instead of a
        # join per judgement row. An annotator who signed up after the table was read (the
        # stream is a later read) reloads it, rather than taking a neighbour's name.
        wanted = ids.to_numpy()
        for attempt in range(2):
            found = np.searchsorted(self.user_ids, wanted)
            hit = found < len(self.user_ids)
            hit[hit] = self.user_ids[found[hit]] == wanted[hit]
            if hit.all():
                return self.usernames.take(pa.array(found))
            if attempt == 0:
                self._load_users()
        raise DatasetExportError("An annotator was deleted while the export ran; start the export again.")

    def batch(self, table: pa.Table) -> pa.RecordBatch | None:
        """Complete pairs' judgement rows (ordered by pair) as one record batch of pairs."""
        table = table.combine_chunks()
        col = {name: table.column(name).chunk(0) if table.column(name).num_chunks else
               pa.array([], table.schema.field(name).type) for name in ROW_FIELDS}
        n = table.num_rows
        pair_ids = col["pair_id"].to_numpy()
        starts = np.flatnonzero(np.r_[True, pair_ids[1:] != pair_ids[:-1]])
        sizes = np.diff(np.r_[starts, n])
        preference = col["preference"]
        is_a = _bools(pc.equal(preference, "a"))
        is_b = _bools(pc.equal(preference, "b"))
        is_equal = _bools(pc.equal(preference, "equal"))
        counts = np.stack([np.add.reduceat(x.astype(np.int64), starts) for x in (is_a, is_b, is_equal)], axis=1)
        decided = counts.sum(axis=1)
        top = counts.max(axis=1)
        # The majority as feedback.statistics.majority: most common of a/b/equal, none on a tie.
        has_majority = (decided > 0) & ((counts == top[:, None]).sum(axis=1) == 1)
        safe = np.maximum(decided, 1)
        agreement = top / safe
        soft_label = (counts[:, 0] + 0.5 * counts[:, 2]) / safe
        keep = np.ones(len(starts), dtype=bool)
        if self.min_agreement is not None:
            keep = has_majority & (agreement >= self.min_agreement)
        if not keep.any():
            return None
        row_keep = np.repeat(keep, sizes)
        filtered = not keep.all()
        row_mask = pa.array(row_keep)

        def votes_col(array: pa.Array) -> pa.Array:
            return array.filter(row_mask) if filtered else array

        probability = np.where(is_a, 1.0, np.where(is_b, 0.0, 0.5))
        vote_arrays = {
            "annotator": votes_col(self._usernames(col["annotator_id"])),
            "preference": votes_col(preference),
            "preferred_a_probability": votes_col(
                pa.array(probability, pa.float64(), mask=~(is_a | is_b | is_equal))),
            "desirability_a": votes_col(col["desirability_a"]),
            "desirability_b": votes_col(col["desirability_b"]),
            "confidence": votes_col(col["confidence"]),
            "elapsed_ms": votes_col(col["elapsed_ms"]),
            "left_is_a": votes_col(col["left_is_a"]),
            "is_simulated": votes_col(col["is_simulated"]),
            "created_at": votes_col(col["created_us"].cast(TIMESTAMP)),
        }
        kept_sizes = sizes[keep]
        offsets = np.r_[0, np.cumsum(kept_sizes)].astype(np.int32)
        struct = pa.StructArray.from_arrays([vote_arrays[f.name] for f in VOTE_TYPE], fields=list(VOTE_TYPE))
        votes = pa.ListArray.from_arrays(pa.array(offsets), struct, type=VOTES_TYPE)

        firsts = pa.array(starts[keep])

        def first(name: str) -> pa.Array:
            return col[name].take(firsts)

        seg_a = first("pair__segment_a_id").to_numpy()
        seg_b = first("pair__segment_b_id").to_numpy()
        # One lookup for both sides: a lookup may add late segments and renumber the rows.
        index_a, index_b = np.split(self.segments.index(np.concatenate([seg_a, seg_b])), [len(seg_a)])
        take_a, take_b = pa.array(index_a), pa.array(index_b)
        prov = self.segments.arrow
        campaign_ids = first("pair__campaign_id")
        facts = [self.campaign_facts[c] for c in campaign_ids.to_pylist()]
        arrays = {
            "pair_id": pa.array(pair_ids[starts[keep]], pa.int64()),
            "campaign_id": campaign_ids,
            "campaign": pa.array([f[0] for f in facts], pa.string()),
            "env_id": pa.array([f[1] for f in facts], pa.string()),
            "env_version": pa.array([f[2] for f in facts], pa.int32()),
            "pair_created_at": first("pair_created_us").cast(TIMESTAMP),
            "is_gold": first("pair__is_gold"),
            # Stored as "" when not gold; exported as null.
            "gold_preference": pc.if_else(pc.equal(first("pair__gold_preference"), ""), None,
                                          first("pair__gold_preference")),
            "repeat_of": first("pair__repeat_of_id"),
            "priority": first("pair__priority"),
            "selector": first("pair__selector"),
            "model_version": first("pair__model_version"),
            "segment_a_id": pa.array(seg_a), "segment_b_id": pa.array(seg_b),
            "trajectory_a_id": prov["trajectory_id"].take(take_a),
            "trajectory_b_id": prov["trajectory_id"].take(take_b),
            "start_a": prov["start"].take(take_a), "end_a": prov["end"].take(take_a),
            "start_b": prov["start"].take(take_b), "end_b": prov["end"].take(take_b),
            "seed_a": prov["seed"].take(take_a), "seed_b": prov["seed"].take(take_b),
            "policy_a": prov["policy"].take(take_a), "policy_b": prov["policy"].take(take_b),
            "policy_kind_a": prov["policy_kind"].take(take_a), "policy_kind_b": prov["policy_kind"].take(take_b),
            "true_return_a": prov["true_return"].take(take_a), "true_return_b": prov["true_return"].take(take_b),
            "votes": votes,
            "num_votes": pa.array(kept_sizes, pa.int64()),
            "soft_label": pa.array(soft_label[keep], pa.float64(), mask=decided[keep] == 0),
            "majority": pa.array(np.array(["a", "b", "equal"])[counts[keep].argmax(axis=1)], pa.string(),
                                 mask=~has_majority[keep]),
            "agreement": pa.array(agreement[keep], pa.float64(), mask=~has_majority[keep]),
        }
        self._count(keep, counts, decided, has_majority, agreement, arrays, vote_arrays, is_a, is_b, row_keep,
                    np.repeat(index_a, kept_sizes), np.repeat(index_b, kept_sizes))
        return pa.RecordBatch.from_arrays([arrays[f.name] for f in PAIR_SCHEMA], schema=PAIR_SCHEMA)

    def _count(self, keep: np.ndarray, counts: np.ndarray, decided: np.ndarray, has_majority: np.ndarray,
               agreement: np.ndarray, arrays: dict[str, pa.Array], votes: dict[str, pa.Array],
               is_a: np.ndarray, is_b: np.ndarray, row_keep: np.ndarray,
               rows_a: np.ndarray, rows_b: np.ndarray) -> None:
        s = self.stats
        counts, decided = counts[keep], decided[keep]
        s.pairs += int(keep.sum())
        s.judgements += len(votes["annotator"])
        s.gold_pairs += int(pc.sum(arrays["is_gold"]).as_py() or 0)
        s.simulated_judgements += int(pc.sum(votes["is_simulated"]).as_py() or 0)
        for item in pc.value_counts(arrays["campaign_id"]).to_pylist():
            s.per_campaign[item["values"]] = s.per_campaign.get(item["values"], 0) + item["counts"]
        for item in pc.value_counts(votes["annotator"]).to_pylist():
            s.annotators[item["values"]] = s.annotators.get(item["values"], 0) + item["counts"]
        for key, total in zip(("a", "b", "equal"), counts.sum(axis=0)):
            s.preferences[key] += int(total)
        s.preferences["cant_tell"] += len(votes["annotator"]) - int(decided.sum())
        multi = decided >= 2
        s.pairs_with_multiple_votes += int(multi.sum())
        if multi.any():
            n, m = counts[multi].astype(float), decided[multi].astype(float)
            pairs = n[:, :, None] * (n[:, None, :] - np.eye(3)[None])  # n_c (n_k − [c = k])
            s.coincidence += (pairs / (m - 1)[:, None, None]).sum(axis=0)
            agreed = multi & has_majority[keep]
            s.agreement_sum += float(agreement[keep][agreed].sum())
            s.agreement_pairs += int(agreed.sum())
        a, b = is_a[row_keep], is_b[row_keep]
        left = _bools(votes["left_is_a"])
        s.decisive += int((a | b).sum())
        s.chose_left += int((a & left).sum() + (b & ~left).sum())
        for side, rows in (("desirability_a", rows_a), ("desirability_b", rows_b)):
            for code, value in enumerate(DESIRABILITY):
                mask = _bools(pc.equal(votes[side], value))
                s.desirability[value] += int(mask.sum())
                np.add.at(self.segments.votes[:, code], rows[mask], 1)


@dataclass
class ExportResult:
    content_hash: str
    counts: dict[str, Any]
    statistics: dict[str, Any]
    files: dict[str, Path]


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
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
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
    segments = SegmentTable(list(campaigns))
    judgements = judgements_for(filters, list(campaigns.values()))
    total = judgements.count()
    batcher = PairBatcher(filters, campaigns, segments)
    digest = TableDigest(PAIR_SCHEMA)
    pairs_path = workdir / "pairs.parquet"
    jsonl_sink = JsonlSink(workdir / "pairs.jsonl") if jsonl else None
    writer = pq.ParquetWriter(pairs_path, PAIR_SCHEMA, **parquet_options(PAIR_SCHEMA))
    seen = 0

    def emit(table: pa.Table) -> None:
        batch = batcher.batch(table)
        if batch is None:
            return
        digest.update(batch)
        writer.write_batch(batch)
        if jsonl_sink is not None:
            jsonl_sink.write(batch)
        # The pair pass is most of the work; the segment pass reports the last 10%.
        report(0.9 * seen / total if total else 0.9)

    try:
        query = judgements.annotate(
            created_us=EpochMicros("created_at"), pair_created_us=EpochMicros("pair__created_at"))
        pending: list[pa.Table] = []
        pending_rows = 0
        for table in stream_rows(query):
            pending.append(table)
            pending_rows += table.num_rows
            if pending_rows < CURSOR_CHUNK:
                continue
            rows = pa.concat_tables(pending)
            # Cut before the last pair, which may go on in the next table.
            pair_ids = rows.column("pair_id").to_numpy()
            cut = int(np.searchsorted(pair_ids, pair_ids[-1], side="left"))
            if cut > 0:
                seen += cut
                emit(rows.slice(0, cut))
            pending, pending_rows = [rows.slice(cut)], rows.num_rows - cut
        if pending_rows:
            seen += pending_rows
            emit(pa.concat_tables(pending))
    finally:
        writer.close()
        if jsonl_sink is not None:
            jsonl_sink.close()
    if batcher.stats.pairs == 0:
        raise DatasetExportError(
            "No judgements match these filters; widen the date range, annotators or agreement."
        )
    segment_digest = TableDigest(SEGMENT_SCHEMA)
    segment_count, trajectory_count = _write_segments(
        workdir / "segments.parquet", segments, segment_digest, on_progress=report
    )
    counts, statistics = batcher.stats.summary(segment_count, trajectory_count)
    files = {"pairs.parquet": pairs_path, "segments.parquet": workdir / "segments.parquet"}
    if jsonl:
        files["pairs.jsonl"] = workdir / "pairs.jsonl"
    return ExportResult(table_hash(digest.hexdigest(), segment_digest.hexdigest()), counts, statistics, files)


def _steps(arrays: list[np.ndarray]) -> pa.Array:
    """A list<list<float64>> column from per-segment (T, D) arrays."""
    lengths = np.array([a.shape[0] for a in arrays], dtype=np.int64)
    widths = np.concatenate([np.full(a.shape[0], a.shape[1], dtype=np.int64) for a in arrays]) if arrays else \
        np.zeros(0, dtype=np.int64)
    values = pa.array(np.concatenate([a.ravel() for a in arrays]) if arrays else np.zeros(0), pa.float64())
    inner = pa.ListArray.from_arrays(pa.array(np.r_[0, np.cumsum(widths)].astype(np.int32)), values)
    return pa.ListArray.from_arrays(pa.array(np.r_[0, np.cumsum(lengths)].astype(np.int32)), inner)


def parquet_options(schema: pa.Schema) -> dict[str, Any]:
    """zstd; dictionary encoding and statistics only where they pay: strings get
    dictionaries (few distinct values), scalars get min/max; arrays of floats get neither."""
    strings = [f.name for f in schema if pa.types.is_string(f.type)]
    scalars = [f.name for f in schema if not pa.types.is_list(f.type)]
    return {"compression": "zstd", "use_dictionary": strings, "write_statistics": scalars}


_NPY_HEADER = re.compile(
    rb"\{'descr': '([<>|][a-z]\d+)', 'fortran_order': False, 'shape': \(([\d, ]*)\), \}")


def read_npz_fast(name: str) -> dict[str, np.ndarray]:
    """``load_npz`` without numpy's per-array header parser (``ast.literal_eval``, most of
    the cost for small arrays): the plain C-order numeric headers numpy writes are matched
    by a regular expression; anything else falls back to ``load_npz``."""
    import zipfile

    from django.core.files.storage import default_storage

    out: dict[str, np.ndarray] = {}
    with default_storage.open(name, "rb") as handle, zipfile.ZipFile(handle) as archive:
        for info in archive.infolist():
            data = archive.read(info)
            if not data.startswith(b"\x93NUMPY"):
                return load_npz(name)
            major = data[6]
            if major == 1:
                length, start = int.from_bytes(data[8:10], "little"), 10
            else:
                length, start = int.from_bytes(data[8:12], "little"), 12
            match = _NPY_HEADER.match(data, start, start + length)
            if match is None or match.group(1)[1:2] not in b"fiub":
                return load_npz(name)
            shape = tuple(int(x) for x in match.group(2).split(b",") if x.strip())
            array = np.frombuffer(data, dtype=np.dtype(match.group(1).decode()), offset=start + length)
            out[info.filename.removesuffix(".npy")] = array.reshape(shape)
    return out


_DTYPE_NAMES: dict[Any, str] = {}


def _dtype_name(dtype: np.dtype) -> str:
    # str(dtype) runs Python code in numpy; it is asked twice per segment.
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype)
    return name


def _write_segments(path: Path, table: SegmentTable, digest: TableDigest, *,
                    on_progress: ProgressCallback) -> tuple[int, int]:
    """Every segment of every trajectory a pair uses (so the importer can rebuild whole
    trajectories), with arrays sliced from the trajectory's .npz, loaded once per trajectory."""
    used = table.votes.sum(axis=1) > 0
    positions = {int(sid): i for i, sid in enumerate(table.ids)}
    trajectory_ids = sorted(set(table.trajectory_ids[used].tolist()))
    writer = pq.ParquetWriter(path, SEGMENT_SCHEMA, **parquet_options(SEGMENT_SCHEMA))
    buffer: list[dict[str, Any]] = []
    written = 0

    def flush() -> None:
        columns: dict[str, Any] = {}
        for f in SEGMENT_SCHEMA:
            if f.name in ("observations", "actions"):
                columns[f.name] = _steps([row[f.name] for row in buffer])
            elif f.name in ("rewards", "terminations"):
                columns[f.name] = pa.array(
                    [None if row[f.name] is None else row[f.name] for row in buffer], type=f.type)
            else:
                columns[f.name] = pa.array([row[f.name] for row in buffer], type=f.type)
        batch = pa.RecordBatch.from_pydict(columns, schema=SEGMENT_SCHEMA)
        digest.update(batch)
        writer.write_batch(batch)
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
                    loaded = (tid, read_npz_fast(arrays_name))
                arrays = loaded[1]
                obs = arrays["observations"][start:end]
                act = arrays["actions"][start:end]
                rewards = arrays.get("rewards")
                terminations = arrays.get("terminations")
                position = positions.get(sid)
                counts = table.votes[position] if position is not None else np.zeros(3, dtype=np.int64)
                buffer.append({
                    "segment_id": sid, "trajectory_id": tid, "env_id": env_id, "policy": policy,
                    "policy_kind": kind, "seed": seed, "trajectory_length": length, "start": start,
                    "end": end, "true_return": true_return, "in_pairs": bool(counts.sum() > 0),
                    "desirable_votes": int(counts[0]), "undesirable_votes": int(counts[1]),
                    "unsure_votes": int(counts[2]),
                    "observation_shape": list(obs.shape[1:]), "observation_dtype": _dtype_name(obs.dtype),
                    "action_shape": list(act.shape[1:]), "action_dtype": _dtype_name(act.dtype),
                    "observations": obs.reshape(len(obs), -1).astype(np.float64),
                    "actions": act.reshape(len(act), -1).astype(np.float64),
                    "rewards": None if rewards is None else rewards[start:end].astype(np.float64),
                    "terminations": None if terminations is None else terminations[start:end].astype(bool),
                })
                written += 1
                if len(buffer) >= SEGMENT_BATCH:
                    flush()
            on_progress(0.9 + 0.1 * min(1.0, (index + len(chunk)) / max(1, len(trajectory_ids))))
        if buffer or written == 0:
            flush()
    finally:
        writer.close()
    return written, len(trajectory_ids)
