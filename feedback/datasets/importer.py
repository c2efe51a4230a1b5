"""Import a snapshot made by another PrefLab instance (``snapshot.zip`` or its unpacked
directory): environments, policies, trajectories with their arrays, segments, campaigns,
pairs, annotators and every judgement.

Contract:
- **Verified first.** The manifest's file checksums and the content hash are recomputed
  from the tables before anything is written; a mismatch names the file.
- **Atomic.** Everything is written in one transaction; on any error the rows are rolled
  back and the array files written so far are deleted: nothing is partially imported.
- **Idempotent.** Importing a snapshot whose content hash was already imported returns
  the earlier import and writes nothing.
- **Annotators by username.** Votes are attributed to the local account named
  ``user_prefix + annotator``; a missing account is created inactive, with no password
  and no role, so labels stay attributable and nobody can log in as the original
  annotator. Pass a prefix (e.g. ``"lab-b:"``) to keep another lab's people apart from
  local accounts of the same name.
- Imported campaigns are paused (their pairs are closed); a campaign whose name is taken
  gets `` (imported <hash>)`` appended. Clips are not part of a snapshot: imported segments
  have ``clip_status = none``.
- Repeats stay repeats. A repeat whose original the export's filters left out gets a
  closed, unlabelled stand-in original on the same segments (selector
  ``original-not-in-snapshot``), which no export includes.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from feedback.datasets.digest import TableDigest
from feedback.datasets.export import table_hash
from feedback.datasets.schema import PAIR_SCHEMA, SCHEMA_VERSION, SEGMENT_SCHEMA
from feedback.models import (
    Assignment,
    Campaign,
    CampaignCounter,
    DatasetSnapshot,
    Judgement,
    Pair,
    Segment,
    Trajectory,
)
from feedback.services.trajectories import environment_get_or_create, policy_get_or_create
from feedback.storage import TrajectoryArrays, TrajectoryFormatError, save_trajectory_arrays

TABLES = ("manifest.json", "pairs.parquet", "segments.parquet")
MAX_ARCHIVE_MEMBER_BYTES = 50 * 1024**3  # refuse absurd (zip bomb) entries before unpacking
STAND_IN_SELECTOR = "original-not-in-snapshot"


class DatasetImportError(ValueError):
    """The snapshot cannot be imported; the message says what is wrong with it."""


def _unpack(source: Path, into: Path) -> Path:
    if source.is_dir():
        folder = source
    elif zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as archive:
            names = set(archive.namelist())
            missing = [n for n in TABLES if n not in names]
            if missing:
                raise DatasetImportError(
                    f"The archive lacks {', '.join(missing)}; import the snapshot.zip PrefLab exports.")
            for name in TABLES:
                if archive.getinfo(name).file_size > MAX_ARCHIVE_MEMBER_BYTES:
                    raise DatasetImportError(f"{name} in the archive is implausibly large; refused.")
                archive.extract(name, into)
        folder = into
    elif source.exists():
        raise DatasetImportError(f"{source} is neither a snapshot.zip nor a directory holding {', '.join(TABLES)}.")
    else:
        raise DatasetImportError(f"{source} does not exist.")
    missing = [n for n in TABLES if not (folder / n).is_file()]
    if missing:
        raise DatasetImportError(f"{folder} lacks {', '.join(missing)}.")
    return folder


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _read_manifest(folder: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetImportError(f"manifest.json is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "preflab-dataset":
        raise DatasetImportError("manifest.json is not a PrefLab dataset manifest (format != preflab-dataset).")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise DatasetImportError(
            f"Snapshot schema version {manifest.get('schema_version')!r} is not supported; "
            f"this PrefLab reads version {SCHEMA_VERSION}.")
    for key in ("name", "content_hash", "environments", "policies", "campaigns", "files"):
        if key not in manifest:
            raise DatasetImportError(f"manifest.json lacks '{key}'.")
    for name in ("pairs.parquet", "segments.parquet"):
        expected = (manifest["files"].get(name) or {}).get("sha256")
        if expected != _sha256(folder / name):
            raise DatasetImportError(f"{name} does not match the sha256 in manifest.json: it was changed or corrupted.")
    for name, schema in (("pairs.parquet", PAIR_SCHEMA), ("segments.parquet", SEGMENT_SCHEMA)):
        try:
            found = pq.read_schema(folder / name)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DatasetImportError(f"{name} is not a readable Parquet file: {exc}") from None
        missing = [f.name for f in schema if f.name not in found.names]
        if missing:
            raise DatasetImportError(f"{name} lacks the column(s) {', '.join(missing)}.")
    return manifest


def pair_batches(path: Path) -> Iterator[pa.RecordBatch]:
    yield from pq.ParquetFile(path).iter_batches(batch_size=10_000, columns=PAIR_SCHEMA.names)


ARRAY_KEYS = ("observations", "actions", "rewards", "terminations")


def segment_rows(path: Path) -> Iterator[dict[str, Any]]:
    for batch in pq.ParquetFile(path).iter_batches(batch_size=256, columns=SEGMENT_SCHEMA.names):
        for row in batch.to_pylist():
            for key in ("observations", "actions", "rewards"):
                if row[key] is not None:
                    row[key] = np.asarray(row[key], dtype=np.float64)
            if row["terminations"] is not None:
                row["terminations"] = np.asarray(row["terminations"], dtype=bool)
            yield row


def content_hash(folder: Path) -> str:
    """Recompute a snapshot's content hash from its tables (see ``feedback.datasets.export``)."""
    digests = []
    for name, schema in (("pairs.parquet", PAIR_SCHEMA), ("segments.parquet", SEGMENT_SCHEMA)):
        digest = TableDigest(schema)
        for batch in pq.ParquetFile(folder / name).iter_batches(batch_size=10_000, columns=schema.names):
            digest.update(batch)
        digests.append(digest.hexdigest())
    return table_hash(*digests)


def _trajectories(path: Path) -> Iterator[list[dict[str, Any]]]:
    """Segments grouped by trajectory (the table is written in trajectory order)."""
    group: list[dict[str, Any]] = []
    for row in segment_rows(path):
        if group and row["trajectory_id"] != group[0]["trajectory_id"]:
            yield group
            group = []
        group.append(row)
    if group:
        yield group


def _rebuild(segments: list[dict[str, Any]]) -> TrajectoryArrays:
    first = segments[0]
    length = first["trajectory_length"]
    tid = first["trajectory_id"]
    covered = np.zeros(length, dtype=bool)
    obs = np.zeros((length, *first["observation_shape"]), dtype=first["observation_dtype"])
    act = np.zeros((length, *first["action_shape"]), dtype=first["action_dtype"])
    rewards = np.zeros(length) if first["rewards"] is not None else None
    terminations = np.zeros(length, dtype=bool) if first["terminations"] is not None else None
    for s in segments:
        start, end = s["start"], s["end"]
        if not 0 <= start < end <= length:
            raise DatasetImportError(f"Segment {s['segment_id']} [{start}, {end}) lies outside trajectory {tid}.")
        steps = end - start
        if s["observations"].shape[0] != steps or s["actions"].shape[0] != steps:
            raise DatasetImportError(f"Segment {s['segment_id']} has arrays of the wrong length.")
        obs[start:end] = s["observations"].reshape(steps, *first["observation_shape"]).astype(obs.dtype)
        act[start:end] = s["actions"].reshape(steps, *first["action_shape"]).astype(act.dtype)
        if rewards is not None and s["rewards"] is not None:
            rewards[start:end] = s["rewards"]
        if terminations is not None and s["terminations"] is not None:
            terminations[start:end] = s["terminations"]
        covered[start:end] = True
    if not covered.all():
        gap = int(np.argmin(covered))
        raise DatasetImportError(
            f"Trajectory {tid}'s segments do not cover step {gap}; the snapshot cannot rebuild its arrays.")
    try:
        return TrajectoryArrays(
            observations=obs, actions=act,
            rewards=None if rewards is None else rewards.astype(np.float32), terminations=terminations,
        )
    except TrajectoryFormatError as exc:
        raise DatasetImportError(f"Trajectory {tid}: {exc}") from None


def _unique_campaign_name(name: str, content_hash: str) -> str:
    if not Campaign.objects.filter(name=name).exists():
        return name
    candidate = f"{name} (imported {content_hash[:8]})"
    n = 2
    while Campaign.objects.filter(name=candidate).exists():
        candidate = f"{name} (imported {content_hash[:8]} #{n})"
        n += 1
    return candidate


def snapshot_import(*, source: Path, by: Any = None, user_prefix: str = "") -> tuple[DatasetSnapshot, bool]:
    """Import a snapshot; returns ``(snapshot, created)`` — ``created`` is False when the
    same content was imported before. Raises DatasetImportError, having written nothing."""
    with tempfile.TemporaryDirectory(prefix="preflab-import-") as tmp:
        folder = _unpack(Path(source), Path(tmp))
        manifest = _read_manifest(folder)
        computed = content_hash(folder)
        if computed != manifest["content_hash"]:
            raise DatasetImportError(
                "The tables' content hash does not match manifest.json's content_hash: the snapshot "
                "was edited after export or is damaged.")
        earlier = DatasetSnapshot.objects.filter(
            origin=DatasetSnapshot.Origin.IMPORTED, content_hash=computed,
            status=DatasetSnapshot.Status.SUCCEEDED).first()
        if earlier is not None:
            return earlier, False
        written: list[str] = []
        try:
            with transaction.atomic():
                snapshot = _write(folder, manifest, by=by, user_prefix=user_prefix, written=written)
        except Exception:
            for name in written:
                default_storage.delete(name)
            raise
        return snapshot, True


def _write(folder: Path, manifest: dict[str, Any], *, by: Any, user_prefix: str, written: list[str]) -> DatasetSnapshot:
    envs = {}
    for spec in manifest["environments"]:
        envs[spec["env_id"]] = environment_get_or_create(
            env_id=spec["env_id"], observation_space=spec.get("observation_space") or {},
            action_space=spec.get("action_space") or {}, render_fps=spec.get("render_fps", 30),
            render_width=spec.get("render_width"), render_height=spec.get("render_height"))
    policy_configs = {(p["env_id"], p["name"]): p for p in manifest["policies"]}
    policies: dict[tuple[str, str], Any] = {}
    segment_ids: dict[int, int] = {}
    tag = manifest["content_hash"][:12]
    for group in _trajectories(folder / "segments.parquet"):
        first = group[0]
        env_id = first["env_id"]
        if env_id not in envs:
            envs[env_id] = environment_get_or_create(env_id=env_id)
        key = (env_id, first["policy"])
        if key not in policies:
            config = policy_configs.get(key, {})
            policies[key] = policy_get_or_create(env=envs[env_id], name=first["policy"],
                                                 kind=first["policy_kind"], config=config.get("config"))
        arrays = _rebuild(group)
        name = save_trajectory_arrays(arrays, name=f"trajectories/imported-{tag}-{first['trajectory_id']}.npz")
        written.append(name)
        trajectory = Trajectory.objects.create(
            env=envs[env_id], policy=policies[key], seed=first["seed"], length=arrays.length, arrays=name,
            has_rewards=arrays.rewards is not None, true_return=arrays.true_return,
            source=Trajectory.Source.UPLOAD, created_by=by)
        created = Segment.objects.bulk_create([
            Segment(trajectory=trajectory, start=s["start"], end=s["end"], clip_status=Segment.ClipStatus.NONE,
                    true_return=s["true_return"]) for s in group])
        segment_ids.update({s["segment_id"]: c.pk for s, c in zip(group, created)})

    campaigns: dict[int, Campaign] = {}
    for spec in manifest["campaigns"]:
        env = envs.get(spec["env_id"]) or environment_get_or_create(env_id=spec["env_id"])
        campaigns[spec["id"]] = Campaign.objects.create(
            name=_unique_campaign_name(spec["name"], manifest["content_hash"]), env=env,
            instructions=spec.get("instructions", ""), segment_length=spec.get("segment_length", 50),
            overlap=spec.get("overlap", 1), max_overlap=max(spec.get("overlap", 1), spec.get("max_overlap", 3)),
            adaptive_overlap=spec.get("adaptive_overlap", False), gold_rate=spec.get("gold_rate", 0.0),
            repeat_rate=spec.get("repeat_rate", 0.0), min_answer_ms=spec.get("min_answer_ms", 1500),
            lease_seconds=spec.get("lease_seconds", 600), status=Campaign.Status.PAUSED, created_by=by)

    users: dict[str, Any] = {}
    User = get_user_model()

    def user_for(username: str) -> Any:
        local = f"{user_prefix}{username}"
        if local not in users:
            user = User.objects.filter(username=local).first()
            if user is None:
                user = User(username=local, is_active=False)
                user.set_unusable_password()
                user.save()
            users[local] = user
        return users[local]

    pair_ids: dict[int, int] = {}
    stand_ins: dict[int, int] = {}  # exported id of an original not in the snapshot -> its stand-in
    progress: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    preferences = set(Judgement.Preference.values)
    desirabilities = set(Judgement.Desirability.values)

    def original_of(row: dict[str, Any], campaign: Campaign) -> int:
        """The local id of the pair ``row`` repeats. A repeat is exported without its
        original when the filters left out the original's votes (a date range, an
        agreement threshold): a closed, unlabelled stand-in on the same segments takes
        the original's place, so the repeat stays a repeat (left out of default exports,
        never counted as progress) and the snapshot still imports."""
        old = row["repeat_of"]
        if old in pair_ids:
            return pair_ids[old]
        if old not in stand_ins:
            stand_ins[old] = Pair.objects.create(
                campaign=campaign, segment_a_id=segment_ids[row["segment_a_id"]],
                segment_b_id=segment_ids[row["segment_b_id"]], priority=row["priority"] or 0,
                selector=STAND_IN_SELECTOR, slot_limit=campaign.overlap, is_open=False).pk
        return stand_ins[old]

    for batch in pair_batches(folder / "pairs.parquet"):
        rows = batch.to_pylist()
        pairs = []
        for row in rows:
            if row["campaign_id"] not in campaigns:
                raise DatasetImportError(f"Pair {row['pair_id']} names campaign {row['campaign_id']}, "
                                         "which manifest.json does not describe.")
            for side in ("a", "b"):
                if row[f"segment_{side}_id"] not in segment_ids:
                    raise DatasetImportError(f"Pair {row['pair_id']} uses segment {row[f'segment_{side}_id']}, "
                                             "which segments.parquet lacks.")
            campaign = campaigns[row["campaign_id"]]
            votes = len(row["votes"])
            pairs.append(Pair(
                campaign=campaign, segment_a_id=segment_ids[row["segment_a_id"]],
                segment_b_id=segment_ids[row["segment_b_id"]], priority=row["priority"] or 0,
                selector=row["selector"] or "", model_version=row["model_version"] or "",
                is_gold=bool(row["is_gold"]), gold_preference=row["gold_preference"] or "",
                slots_taken=min(votes, 32_000), slot_limit=min(max(campaign.overlap, votes), 32_000),
                is_open=False))
        # Originals first, then their repeats: a repeat shows the same two segments, and only
        # one pair per campaign and segments may be a non-repeat, so a repeat is inserted with
        # its original's local id already known (the original is often in the same batch).
        for is_repeat in (False, True):
            chosen = [(row, pair) for row, pair in zip(rows, pairs) if (row["repeat_of"] is not None) == is_repeat]
            for row, pair in chosen:
                if is_repeat:
                    pair.repeat_of_id = original_of(row, pair.campaign)
            Pair.objects.bulk_create([pair for _, pair in chosen])
            for row, pair in chosen:
                pair_ids[row["pair_id"]] = pair.pk
        for row, pair in zip(rows, pairs):
            pair.created_at = row["pair_created_at"]
        Pair.objects.bulk_update(pairs, ["created_at"])
        assignments, judgements = [], []
        for row, pair in zip(rows, pairs):
            counts = not row["is_gold"] and row["repeat_of"] is None
            progress[row["campaign_id"]][0] += counts
            for vote in row["votes"]:
                if vote["preference"] not in preferences:
                    raise DatasetImportError(f"Pair {row['pair_id']}: unknown preference {vote['preference']!r}.")
                if {vote["desirability_a"], vote["desirability_b"]} - desirabilities:
                    raise DatasetImportError(f"Pair {row['pair_id']}: unknown desirability value.")
                annotator = user_for(vote["annotator"])
                done = vote["created_at"]
                leased = done - timedelta(milliseconds=vote["elapsed_ms"] or 1000)
                assignment = Assignment(
                    pair=pair, annotator=annotator, left_is_a=vote["left_is_a"], leased_at=leased,
                    expires_at=leased + timedelta(seconds=pair.campaign.lease_seconds), completed_at=done)
                assignments.append(assignment)
                judgements.append(Judgement(
                    pair=pair, annotator=annotator, assignment=assignment, preference=vote["preference"],
                    desirability_a=vote["desirability_a"], desirability_b=vote["desirability_b"],
                    confidence=vote["confidence"], elapsed_ms=vote["elapsed_ms"], left_is_a=vote["left_is_a"],
                    is_simulated=vote["is_simulated"], created_at=done))
                progress[row["campaign_id"]][1] += counts
        Assignment.objects.bulk_create(assignments, batch_size=2000)
        times = [j.created_at for j in judgements]
        created_judgements = Judgement.objects.bulk_create(judgements, batch_size=2000)
        # auto_now_add overwrote the recorded times on insert: put the original ones back.
        for judgement, when in zip(created_judgements, times):
            judgement.created_at = when
        Judgement.objects.bulk_update(created_judgements, ["created_at"], batch_size=2000)
    for old_id, (pair_count, label_count) in progress.items():
        Campaign.objects.filter(pk=campaigns[old_id].pk).update(pair_count=pair_count)
        CampaignCounter.objects.create(campaign=campaigns[old_id], shard=0, label_count=label_count)

    snapshot = DatasetSnapshot.objects.create(
        name=manifest["name"], filters=manifest.get("filters") or {}, formats=["parquet"],
        origin=DatasetSnapshot.Origin.IMPORTED, status=DatasetSnapshot.Status.SUCCEEDED, progress=1.0,
        content_hash=manifest["content_hash"], counts=manifest.get("counts") or {},
        statistics=manifest.get("statistics") or {}, created_by=by, finished_at=timezone.now())
    snapshot.campaigns.set([c.pk for c in campaigns.values()])
    records = {}
    for name in TABLES:
        path = folder / name
        with path.open("rb") as handle:
            saved = default_storage.save(f"datasets/{snapshot.pk}/{name}", File(handle, name=name))
        written.append(saved)
        records[name] = {"path": saved, "bytes": path.stat().st_size, "sha256": _sha256(path)}
    snapshot.files = records
    snapshot.save(update_fields=["files"])
    return snapshot
