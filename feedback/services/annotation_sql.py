"""Hand-written SQL for the two hot labelling requests (lease the next pair, record a judgement).

Why not the ORM here: profiled under load (docs/benchmarks.md, issue 3), compiling the ORM
queries of one next → judgement round cost more CPU than PostgreSQL spent executing them.
Each statement below is the SQL the ORM version produced, written once (built once per
database vendor and shape, and cached: rebuilding them and looking the connection up through
Django's per-context proxy for every quoted name was a fifth of a judgement's CPU); the locking rules
(FOR NO KEY UPDATE, SKIP LOCKED, re-checking ``is_open`` on the locked row) are explained in
``feedback.services.annotation``. The rarer paths (renewing a lease, reclaiming lapsed ones,
repeats, adaptive overlap, resubmits) stay in the ORM.

PostgreSQL takes a slot and inserts the lease in one statement (data-modifying CTEs);
SQLite, which has no data-modifying CTEs, runs the same steps as separate statements inside
its ``BEGIN IMMEDIATE`` transaction, which already serialises writers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, connection, connections

from feedback.models import Assignment, Campaign, CampaignCounter, Judgement, Pair, Segment

_SEGMENT_FIELDS = ["id", "start", "end", "fps"]


def _qn(name: str) -> str:
    return connection.ops.quote_name(name)


def _db() -> Any:
    """The default connection wrapper, looked up once (each ``connection.x`` is a lookup in
    the per-context connection store)."""
    return connections[DEFAULT_DB_ALIAS]


# Statements run this many times on a pooled connection are prepared: PostgreSQL plans them
# once. EXPLAIN ANALYZE on the benchmark database: planning the lease statement takes 0.67 ms
# and running it 0.50 ms; the token and campaign lookups plan in 0.4–0.5 ms and run in 0.06 ms.
PREPARE_THRESHOLD = 2


def hot_cursor(db: Any = None) -> Any:
    """A cursor for the statements in this module. On PostgreSQL it binds parameters on the
    server, so psycopg can prepare the statement once per connection (Django's own cursors
    bind on the client and disable preparing, which some ORM queries need); counted and
    error-wrapped like any Django cursor. ``db``: the connection wrapper, when the caller
    has it."""
    db = db or _db()
    if db.vendor != "postgresql":
        return db.cursor()
    from django.db.backends.postgresql.base import ServerBindingCursor

    db.ensure_connection()
    raw = db.connection
    if raw.prepare_threshold != PREPARE_THRESHOLD:
        # Only server-binding cursors prepare, so Django's own queries are unaffected.
        raw.prepare_threshold = PREPARE_THRESHOLD
    cursor = ServerBindingCursor(raw)
    return db.make_debug_cursor(cursor) if db.queries_logged else db.make_cursor(cursor)


def _dt(value: datetime, db: Any) -> Any:
    """A datetime as the ORM stores it (SQLite: naive UTC text, which must compare as text)."""
    return db.ops.adapt_datetimefield_value(value)


@dataclass(frozen=True)
class _Tables:
    campaign: str
    counter: str
    allowed_groups: str
    allowed_groups_campaign: str
    allowed_groups_group: str
    invited: str
    invited_campaign: str
    invited_user: str
    user_groups: str
    pair: str
    assignment: str
    judgement: str
    segment: str


@lru_cache(maxsize=2)
def _tables(vendor: str) -> _Tables:
    """Quoted table and column names, from the models (cached per database vendor)."""
    allowed = Campaign._meta.get_field("allowed_groups")
    invited = Campaign._meta.get_field("invited")
    user_groups = get_user_model()._meta.get_field("groups").remote_field.through._meta  # type: ignore[union-attr]
    return _Tables(
        campaign=_qn(Campaign._meta.db_table),
        counter=_qn(CampaignCounter._meta.db_table),
        allowed_groups=_qn(allowed.m2m_db_table()),  # type: ignore[attr-defined]
        allowed_groups_campaign=_qn(allowed.m2m_column_name()),  # type: ignore[attr-defined]
        allowed_groups_group=_qn(allowed.m2m_reverse_name()),  # type: ignore[attr-defined]
        invited=_qn(invited.m2m_db_table()),  # type: ignore[attr-defined]
        invited_campaign=_qn(invited.m2m_column_name()),  # type: ignore[attr-defined]
        invited_user=_qn(invited.m2m_reverse_name()),  # type: ignore[attr-defined]
        user_groups=_qn(user_groups.db_table),
        pair=_qn(Pair._meta.db_table),
        assignment=_qn(Assignment._meta.db_table),
        judgement=_qn(Judgement._meta.db_table),
        segment=_qn(Segment._meta.db_table),
    )


# --- campaign with the who-may-label rule ---------------------------------------------------------


@lru_cache(maxsize=2)
def _campaign_columns(vendor: str) -> tuple[str, list[str]]:
    """The campaign row (alias ``c``) and, last, whether the user (two ``%s``) may label it."""
    t = _tables(vendor)
    fields = [field.attname for field in Campaign._meta.concrete_fields]
    columns = ", ".join(f"c.{_qn(field.column)}" for field in Campaign._meta.concrete_fields)
    # The same rule as services.annotation.may_label_q: open to everyone when the campaign
    # names no group and invites nobody, else to the invited and to members of its groups.
    sql = (
        f"{columns}, ("
        f"(NOT EXISTS (SELECT 1 FROM {t.allowed_groups} x WHERE x.{t.allowed_groups_campaign} = c.id)"
        f" AND NOT EXISTS (SELECT 1 FROM {t.invited} x WHERE x.{t.invited_campaign} = c.id))"
        f" OR EXISTS (SELECT 1 FROM {t.invited} x WHERE x.{t.invited_campaign} = c.id AND x.{t.invited_user} = %s)"
        f" OR EXISTS (SELECT 1 FROM {t.allowed_groups} x JOIN {t.user_groups} ug"
        f" ON ug.{_qn('group_id')} = x.{t.allowed_groups_group}"
        f" WHERE x.{t.allowed_groups_campaign} = c.id AND ug.{_qn('user_id')} = %s)"
        f")"
    )
    return sql, fields


def _campaign_from_row(row: Sequence[Any], db: Any) -> Campaign:
    """A campaign from ``_campaign_columns``' values, with ``may_label`` set."""
    _, fields = _campaign_columns(db.vendor)
    campaign = Campaign.from_db(db.alias, fields, row[: len(fields)])
    campaign.adaptive_overlap = bool(campaign.adaptive_overlap)  # SQLite answers 0/1
    campaign.may_label = bool(row[len(fields)])  # type: ignore[attr-defined]
    return campaign


def campaign_with_may_label(*, campaign_id: int, user: Any) -> Campaign | None:
    """The campaign row with ``may_label`` set (one query), or None when there is none."""
    db = _db()
    with hot_cursor(db) as cursor:
        cursor.execute(_campaign_sql(db.vendor), [user.pk, user.pk, campaign_id])
        row = cursor.fetchone()
    return None if row is None else _campaign_from_row(row, db)


@lru_cache(maxsize=2)
def _campaign_sql(vendor: str) -> str:
    return f"SELECT {_campaign_columns(vendor)[0]} FROM {_tables(vendor).campaign} c WHERE c.id = %s"


# --- leasing --------------------------------------------------------------------------------------


def open_lease_ids(*, campaign_id: int, annotator_id: int, exclude_ids: list[int]) -> list[int]:
    """The caller's unanswered leases in the campaign that hold or can get a slot, oldest
    first, locked (PostgreSQL); see ``_resume_open_lease``."""
    db = _db()
    with hot_cursor(db) as cursor:
        cursor.execute(_open_lease_sql(db.vendor, len(exclude_ids)), [annotator_id, campaign_id, *exclude_ids])
        return [row[0] for row in cursor.fetchall()]


@lru_cache(maxsize=64)
def _open_lease_sql(vendor: str, excluded: int) -> str:
    t = _tables(vendor)
    exclude = f" AND a.id NOT IN ({', '.join(['%s'] * excluded)})" if excluded else ""
    lock = " FOR UPDATE OF a" if vendor == "postgresql" else ""
    return (
        f"SELECT a.id FROM {t.assignment} a JOIN {t.pair} p ON p.id = a.{_qn('pair_id')} "
        f"WHERE a.{_qn('annotator_id')} = %s AND p.{_qn('campaign_id')} = %s AND a.{_qn('completed_at')} IS NULL "
        f"AND (a.{_qn('holds_slot')} OR p.{_qn('is_open')}){exclude} "
        f"ORDER BY a.{_qn('leased_at')}, a.id LIMIT 8{lock}"
    )


def lapsed_leases(*, campaign_id: int, now: datetime, limit: int) -> list[tuple[int, int]]:
    """(assignment id, pair id) of lapsed leases still holding a slot, oldest first. On
    PostgreSQL they are locked, skipping those being renewed or answered right now."""
    db = _db()
    with hot_cursor(db) as cursor:
        cursor.execute(_lapsed_sql(db.vendor), [campaign_id, _dt(now, db), limit])
        return [(row[0], row[1]) for row in cursor.fetchall()]


@lru_cache(maxsize=2)
def _lapsed_sql(vendor: str) -> str:
    t = _tables(vendor)
    lock = " FOR UPDATE OF a SKIP LOCKED" if vendor == "postgresql" else ""
    return (
        f"SELECT a.id, a.{_qn('pair_id')} FROM {t.assignment} a JOIN {t.pair} p ON p.id = a.{_qn('pair_id')} "
        f"WHERE p.{_qn('campaign_id')} = %s AND a.{_qn('completed_at')} IS NULL AND a.{_qn('holds_slot')} "
        f"AND a.{_qn('expires_at')} <= %s ORDER BY a.{_qn('expires_at')} LIMIT %s{lock}"
    )


def _candidate_where(t: _Tables) -> str:
    # A pair the annotator never had: no assignment row of theirs, answered or not.
    return (
        f"p.{_qn('campaign_id')} = %s AND p.{_qn('is_open')} AND p.{_qn('is_gold')} = %s "
        f"AND NOT EXISTS (SELECT 1 FROM {t.assignment} a WHERE a.{_qn('pair_id')} = p.id "
        f"AND a.{_qn('annotator_id')} = %s) ORDER BY p.{_qn('priority')} DESC, p.id LIMIT 1"
    )


def _segment_columns(alias: str) -> str:
    return ", ".join(f"{alias}.{_qn(name)}" for name in _SEGMENT_FIELDS)


@lru_cache(maxsize=4)
def _lease_sql_postgres(vendor: str, skip_locked: bool) -> str:
    t = _tables(vendor)
    # One statement: lock the first open candidate (skipping, or waiting for, pairs locked
    # by leases in flight), take its slot, insert the lease, and return it with both
    # segments. ``slots_taken < slot_limit`` is re-checked on the locked row version.
    return (
        f"WITH picked AS (SELECT p.id FROM {t.pair} p WHERE {_candidate_where(t)} "
        f"FOR NO KEY UPDATE OF p{' SKIP LOCKED' if skip_locked else ''}), "
        f"taken AS (UPDATE {t.pair} p SET {_qn('slots_taken')} = p.{_qn('slots_taken')} + 1, "
        f"{_qn('is_open')} = p.{_qn('slots_taken')} + 1 < p.{_qn('slot_limit')} "
        f"FROM picked WHERE p.id = picked.id AND p.{_qn('slots_taken')} < p.{_qn('slot_limit')} "
        f"RETURNING p.id, p.{_qn('segment_a_id')}, p.{_qn('segment_b_id')}), "
        f"leased AS (INSERT INTO {t.assignment} ({_qn('pair_id')}, {_qn('annotator_id')}, {_qn('left_is_a')}, "
        f"{_qn('leased_at')}, {_qn('expires_at')}, {_qn('completed_at')}, {_qn('holds_slot')}) "
        f"SELECT taken.id, %s, %s, %s, %s, NULL, TRUE FROM taken RETURNING id, {_qn('pair_id')}) "
        f"SELECT leased.id, leased.{_qn('pair_id')}, {_segment_columns('sa')}, {_segment_columns('sb')} "
        f"FROM leased JOIN taken ON taken.id = leased.{_qn('pair_id')} "
        f"JOIN {t.segment} sa ON sa.id = taken.{_qn('segment_a_id')} "
        f"JOIN {t.segment} sb ON sb.id = taken.{_qn('segment_b_id')}"
    )


@lru_cache(maxsize=2)
def _lease_sql_sqlite(vendor: str) -> tuple[str, str, str]:
    t = _tables(vendor)
    pick = (
        f"SELECT p.id, {_segment_columns('sa')}, {_segment_columns('sb')} FROM {t.pair} p "
        f"JOIN {t.segment} sa ON sa.id = p.{_qn('segment_a_id')} "
        f"JOIN {t.segment} sb ON sb.id = p.{_qn('segment_b_id')} WHERE {_candidate_where(t)}"
    )
    take = (
        f"UPDATE {t.pair} SET {_qn('slots_taken')} = {_qn('slots_taken')} + 1, "
        f"{_qn('is_open')} = {_qn('slots_taken')} + 1 < {_qn('slot_limit')} WHERE id = %s"
    )
    insert = (
        f"INSERT INTO {t.assignment} ({_qn('pair_id')}, {_qn('annotator_id')}, {_qn('left_is_a')}, "
        f"{_qn('leased_at')}, {_qn('expires_at')}, {_qn('completed_at')}, {_qn('holds_slot')}) "
        f"VALUES (%s, %s, %s, %s, %s, NULL, 1) RETURNING id"
    )
    return pick, take, insert


def lease_new_pair(
    *, campaign_id: int, annotator: Any, gold: bool, skip_locked: bool, left_is_a: bool,
    leased_at: datetime, expires_at: datetime,
) -> Assignment | None:
    """Take a slot on the first open pair the annotator never had and lease it to them;
    None when no such pair is free. Runs inside the caller's transaction."""
    db = _db()
    with hot_cursor(db) as cursor:
        if db.vendor == "postgresql":
            cursor.execute(
                _lease_sql_postgres(db.vendor, skip_locked),
                [campaign_id, gold, annotator.pk, annotator.pk, left_is_a, _dt(leased_at, db), _dt(expires_at, db)],
            )
            row = cursor.fetchone()
            if row is None:
                return None
            assignment_id, pair_id, segments = row[0], row[1], row[2:]
        else:
            pick, take, insert = _lease_sql_sqlite(db.vendor)
            cursor.execute(pick, [campaign_id, gold, annotator.pk])
            found = cursor.fetchone()
            if found is None:
                return None
            pair_id, segments = found[0], found[1:]
            cursor.execute(take, [pair_id])
            cursor.execute(insert, [pair_id, annotator.pk, left_is_a, _dt(leased_at, db), _dt(expires_at, db)])
            assignment_id = cursor.fetchone()[0]
    n, alias = len(_SEGMENT_FIELDS), db.alias
    segment_a = Segment.from_db(alias, _SEGMENT_FIELDS, segments[:n])
    segment_b = Segment.from_db(alias, _SEGMENT_FIELDS, segments[n:])
    pair = Pair.from_db(alias, ["id", "campaign_id"], [pair_id, campaign_id])
    pair.segment_a = segment_a
    pair.segment_b = segment_b
    assignment = Assignment(
        id=assignment_id, pair=pair, annotator=annotator, left_is_a=left_is_a, leased_at=leased_at,
        expires_at=expires_at, completed_at=None, holds_slot=True,
    )
    assignment._state.adding = False
    assignment._state.db = alias
    return assignment


# --- judgements -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LockedAssignment:
    """What recording a judgement needs to know about its assignment, read under its row lock."""

    id: int
    annotator_id: int
    pair_id: int
    left_is_a: bool
    completed: bool
    holds_slot: bool
    pair_is_gold: bool
    pair_is_repeat: bool
    campaign_id: int
    adaptive_overlap: bool
    max_overlap: int
    campaign: Campaign | None = None
    """The whole campaign row with ``may_label`` for the caller, when asked for."""


def lock_assignment(*, assignment_id: int, campaign_for: Any = None) -> LockedAssignment | None:
    """Lock the assignment row (PostgreSQL) and read it with its pair and campaign; with
    ``campaign_for`` (a user) also the campaign row and whether that user may label it,
    in the same statement (a judgement that also leases the next pair needs it)."""
    db = _db()
    with_campaign = campaign_for is not None
    params = [campaign_for.pk, campaign_for.pk, assignment_id] if with_campaign else [assignment_id]
    with hot_cursor(db) as cursor:
        cursor.execute(_lock_assignment_sql(db.vendor, with_campaign), params)
        row = cursor.fetchone()
    if row is None:
        return None
    return LockedAssignment(
        id=row[0], annotator_id=row[1], pair_id=row[2], left_is_a=bool(row[3]), completed=bool(row[4]),
        holds_slot=bool(row[5]), pair_is_gold=bool(row[6]), pair_is_repeat=bool(row[7]), campaign_id=row[8],
        adaptive_overlap=bool(row[9]), max_overlap=row[10],
        campaign=_campaign_from_row(row[11:], db) if with_campaign else None,
    )


@lru_cache(maxsize=4)
def _lock_assignment_sql(vendor: str, with_campaign: bool) -> str:
    t = _tables(vendor)
    lock = " FOR UPDATE OF a" if vendor == "postgresql" else ""
    extra = ", " + _campaign_columns(vendor)[0] if with_campaign else ""
    return (
        f"SELECT a.id, a.{_qn('annotator_id')}, a.{_qn('pair_id')}, a.{_qn('left_is_a')}, "
        f"a.{_qn('completed_at')} IS NOT NULL, a.{_qn('holds_slot')}, p.{_qn('is_gold')}, "
        f"p.{_qn('repeat_of_id')} IS NOT NULL, p.{_qn('campaign_id')}, c.{_qn('adaptive_overlap')}, "
        f"c.{_qn('max_overlap')}{extra} FROM {t.assignment} a JOIN {t.pair} p ON p.id = a.{_qn('pair_id')} "
        f"JOIN {t.campaign} c ON c.id = p.{_qn('campaign_id')} WHERE a.id = %s{lock}"
    )


_JUDGEMENT_COLUMNS = [
    "pair_id", "annotator_id", "assignment_id", "preference", "desirability_a", "desirability_b",
    "confidence", "elapsed_ms", "left_is_a", "is_simulated", "created_at",
]


def record_judgement(
    *, assignment: LockedAssignment, values: dict[str, Any], now: datetime, count_label: bool,
) -> int:
    """Insert the judgement, complete its assignment (taking back its slot flag) and, when
    ``count_label``, add one to the campaign's label counter (the shard its assignment
    picks, see ``CampaignCounter``); returns the judgement id. On PostgreSQL one statement.
    """
    db = _db()
    stored_now = _dt(now, db)
    row = {**values, "pair_id": assignment.pair_id, "assignment_id": assignment.id, "created_at": stored_now}
    params = [row[name] for name in _JUDGEMENT_COLUMNS]
    with hot_cursor(db) as cursor:
        if db.vendor == "postgresql":
            args = [*params, stored_now, True, assignment.id]
            if count_label:
                args += count_args(campaign_id=assignment.campaign_id, assignment_id=assignment.id)
            cursor.execute(_record_sql_postgres(db.vendor, count_label), args)
            return cursor.fetchone()[0]
        insert, complete, count = _record_sql(db.vendor)
        cursor.execute(insert, params)
        judgement_id = cursor.fetchone()[0]
        cursor.execute(complete, [stored_now, True, assignment.id])
        if count_label:
            cursor.execute(count, count_args(campaign_id=assignment.campaign_id, assignment_id=assignment.id))
        return judgement_id


def count_args(*, campaign_id: int, assignment_id: int, extra_slots: int = 0) -> list[int]:
    """Parameters of the counting statement: one label (and ``extra_slots``) for the
    campaign, on the shard the assignment picks."""
    return [campaign_id, assignment_id % CampaignCounter.SHARDS, extra_slots]


def count_label(*, campaign_id: int, assignment_id: int, extra_slots: int = 0) -> None:
    """Count one label, and ``extra_slots`` more labels wanted, for the campaign."""
    db = _db()
    with hot_cursor(db) as cursor:
        cursor.execute(_record_sql(db.vendor)[2], count_args(
            campaign_id=campaign_id, assignment_id=assignment_id, extra_slots=extra_slots
        ))


@lru_cache(maxsize=2)
def _record_sql(vendor: str) -> tuple[str, str, str]:
    """Insert the judgement; complete its assignment; count the label."""
    t = _tables(vendor)
    insert = (
        f"INSERT INTO {t.judgement} ({', '.join(_qn(name) for name in _JUDGEMENT_COLUMNS)}) "
        f"VALUES ({', '.join(['%s'] * len(_JUDGEMENT_COLUMNS))}) RETURNING id"
    )
    complete = (
        f"UPDATE {t.assignment} SET {_qn('completed_at')} = %s, {_qn('holds_slot')} = %s WHERE id = %s"
    )
    # Adds to the shard's row, made by the first label it counts.
    labels, extra = _qn("label_count"), _qn("extra_slots")
    count = (
        f"INSERT INTO {t.counter} ({_qn('campaign_id')}, {_qn('shard')}, {labels}, {extra}) VALUES (%s, %s, 1, %s) "
        f"ON CONFLICT ({_qn('campaign_id')}, {_qn('shard')}) DO UPDATE SET {labels} = {t.counter}.{labels} + 1, "
        f"{extra} = {t.counter}.{extra} + excluded.{extra}"
    )
    return insert, complete, count


@lru_cache(maxsize=4)
def _record_sql_postgres(vendor: str, count_label: bool) -> str:
    insert, complete, count = _record_sql(vendor)
    sql = f"WITH j AS ({insert}), done AS ({complete} RETURNING id)"
    if count_label:
        sql += f", counted AS ({count} RETURNING {_qn('shard')})"
    return sql + " SELECT id FROM j"
