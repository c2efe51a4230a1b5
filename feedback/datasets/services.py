"""Writes for dataset snapshots: create (and enqueue), build (the job's body)."""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import zipfile
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from feedback.datasets.export import DatasetExportError, beside_stream, export_tables
from feedback.datasets.filters import DatasetFilters
from feedback.datasets.schema import SCHEMA_VERSION
from feedback.models import Campaign, DatasetSnapshot, PolicyVersion

logger = logging.getLogger(__name__)

FORMATS = ("parquet", "jsonl", "hf", "minari")
# Fixed zip entry times so the same files always make the same archive bytes.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _check_formats(formats: Sequence[str]) -> list[str]:
    from feedback.datasets.minari_writer import MISSING, minari_available

    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise DatasetExportError(f"Unknown format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}.")
    if "minari" in formats and not minari_available():
        raise DatasetExportError(MISSING)
    # Parquet is always written: it is what every other format and the importer are made from.
    return [f for f in FORMATS if f == "parquet" or f in formats]


def snapshot_create(
    *, name: str, filters: DatasetFilters, formats: Sequence[str] = ("parquet",), created_by: Any = None,
    background: bool = True,
) -> DatasetSnapshot:
    """Record a snapshot request and build it: in a job (default) or right here.

    Raises DatasetExportError for unknown campaigns or formats, before anything is written.
    """
    chosen = _check_formats(formats)
    name = name.strip()
    if not name or len(name) > 200:
        raise DatasetExportError("name: give a name of 1–200 characters.")
    known = set(Campaign.objects.filter(pk__in=filters.campaign_ids).values_list("pk", flat=True))
    missing = sorted(set(filters.campaign_ids) - known)
    if missing:
        raise DatasetExportError(f"No campaign with id {', '.join(map(str, missing))}.")
    with transaction.atomic():
        snapshot = DatasetSnapshot.objects.create(
            name=name, filters=filters.to_json(), formats=chosen, created_by=created_by
        )
        snapshot.campaigns.set(sorted(known))
        if background:
            from feedback.tasks import build_dataset_snapshot

            snapshot_id = snapshot.pk
            transaction.on_commit(lambda: build_dataset_snapshot.enqueue(snapshot_id))
    if not background:
        snapshot_build(snapshot_id=snapshot.pk)
        snapshot.refresh_from_db()
    return snapshot


def _deterministic_zip(target: Path, entries: list[tuple[str, Path]], *, deflate: bool = True) -> None:
    """Sorted entries with fixed times: the same files always make the same bytes.
    ``deflate=False`` stores already-compressed files (Parquet) as they are."""
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(target, "w", compression=method) as archive:
        for arcname, path in sorted(entries):
            info = zipfile.ZipInfo(arcname, date_time=ZIP_TIME)
            info.compress_type = method
            info.external_attr = 0o644 << 16
            with path.open("rb") as source, archive.open(info, "w") as sink:
                while chunk := source.read(1 << 20):
                    sink.write(chunk)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_for(snapshot: DatasetSnapshot, *, content_hash: str, counts: dict[str, Any],
                 statistics: dict[str, Any]) -> dict[str, Any]:
    """What an importer needs beyond the two tables: environments, policies, campaigns."""
    campaigns = list(snapshot.campaigns.select_related("env").order_by("pk"))
    envs = {c.env for c in campaigns}
    policies = PolicyVersion.objects.filter(env__in=envs).select_related("env").order_by("env__env_id", "name")
    return {
        "format": "preflab-dataset",
        "schema_version": SCHEMA_VERSION,
        "name": snapshot.name,
        "content_hash": content_hash,
        "filters": snapshot.filters,
        "counts": counts,
        "statistics": statistics,
        "exported_at": timezone.now().isoformat(),
        "environments": [
            {"env_id": e.env_id, "observation_space": e.observation_space, "action_space": e.action_space,
             "render_fps": e.render_fps, "render_width": e.render_width, "render_height": e.render_height}
            for e in sorted(envs, key=lambda e: e.env_id)
        ],
        "policies": [
            {"env_id": p.env.env_id, "name": p.name, "kind": p.kind, "config": p.config} for p in policies
        ],
        "campaigns": [
            {"id": c.pk, "name": c.name, "env_id": c.env.env_id, "instructions": c.instructions,
             "segment_length": c.segment_length, "overlap": c.overlap, "max_overlap": c.max_overlap,
             "adaptive_overlap": c.adaptive_overlap, "gold_rate": c.gold_rate, "repeat_rate": c.repeat_rate,
             "min_answer_ms": c.min_answer_ms, "lease_seconds": c.lease_seconds}
            for c in campaigns
        ],
    }


SNAPSHOT_STALE_AFTER_S = 900.0
"""A running export with no progress for this long lost its worker. Progress (and with it the
heartbeat) is written every 2 % of the rows; the longest silent phase is writing the optional
formats after the tables, which takes minutes only for millions of judgements."""


def snapshots_mark_stale(*, stale_after_s: float = SNAPSHOT_STALE_AFTER_S) -> int:
    """Fail running snapshots whose job stopped giving signs of life (a killed worker), with a
    message saying so, so that none stays "running" forever. One conditional UPDATE; returns
    how many it failed. The files of a killed export were never recorded on the row."""
    cutoff = timezone.now() - timedelta(seconds=stale_after_s)
    return DatasetSnapshot.objects.filter(
        status=DatasetSnapshot.Status.RUNNING, heartbeat_at__lt=cutoff
    ).update(
        status=DatasetSnapshot.Status.FAILED,
        error=(
            f"The export stopped: its worker gave no sign of life for {stale_after_s:g} s "
            "(it was probably killed). Start the export again."
        ),
        finished_at=timezone.now(),
    )


def _progress_write(snapshot_id: int, fraction: float) -> None:
    """Record progress, visible to the page at once (beside the judgements' COPY when it holds
    the main connection)."""
    beside_stream(
        lambda: DatasetSnapshot.objects.filter(pk=snapshot_id).update(
            progress=fraction, heartbeat_at=timezone.now()
        )
    )


def snapshot_build(*, snapshot_id: int) -> str:
    """The job's body: claim a queued snapshot, export, store the files; returns the status.

    The claim is a conditional UPDATE, so two workers never build the same snapshot.
    Any failure ends the snapshot as failed with the reason; partial files are deleted.
    """
    snapshots_mark_stale()  # a restarted worker fails what its predecessor left running
    claimed = DatasetSnapshot.objects.filter(pk=snapshot_id, status=DatasetSnapshot.Status.QUEUED).update(
        status=DatasetSnapshot.Status.RUNNING, progress=0.0, heartbeat_at=timezone.now()
    )
    if not claimed:
        return "not claimed"
    snapshot = DatasetSnapshot.objects.get(pk=snapshot_id)
    stored: list[str] = []
    last = [0.0]

    def progress(fraction: float) -> None:
        # A row write per two percent at most: the page polls it, the export must not wait on it.
        if fraction - last[0] >= 0.02:
            last[0] = fraction
            _progress_write(snapshot_id, min(0.99, round(fraction, 4)))

    try:
        with tempfile.TemporaryDirectory(prefix="preflab-dataset-") as tmp:
            work = Path(tmp)
            filters = DatasetFilters.from_json(snapshot.filters)
            result = export_tables(filters=filters, workdir=work, jsonl="jsonl" in snapshot.formats,
                                   on_progress=progress)
            manifest = manifest_for(snapshot, content_hash=result.content_hash, counts=result.counts,
                                    statistics=result.statistics)
            files = dict(result.files)
            if "hf" in snapshot.formats:
                from feedback.datasets.hf import dataset_card, write_hf

                hf_dir = work / "hf"
                card = dataset_card(name=snapshot.name, content_hash=result.content_hash,
                                    filters=snapshot.filters, counts=result.counts,
                                    statistics=result.statistics, campaigns=manifest["campaigns"])
                write_hf(pairs=files["pairs.parquet"], segments=files["segments.parquet"], out=hf_dir,
                         cache=work / "hf-cache", card=card)
                _deterministic_zip(work / "hf.zip", [
                    (f"hf/{p.relative_to(hf_dir)}", p) for p in hf_dir.rglob("*") if p.is_file()])
                files["hf.zip"] = work / "hf.zip"
            if "minari" in snapshot.formats:
                from feedback.datasets.minari_writer import write_minari
                from feedback.models import Trajectory

                minari_dir = work / "minari"
                trajectory_arrays = dict(
                    Trajectory.objects.filter(env__campaigns__in=filters.campaign_ids).values_list("pk", "arrays"))
                manifest["minari_datasets"] = write_minari(
                    segments=files["segments.parquet"], out=minari_dir, snapshot_id=snapshot.pk,
                    trajectory_arrays=trajectory_arrays)
                _deterministic_zip(work / "minari.zip", [
                    (f"minari/{p.relative_to(minari_dir)}", p) for p in minari_dir.rglob("*") if p.is_file()])
                files["minari.zip"] = work / "minari.zip"
            manifest["files"] = {
                name: {"bytes": path.stat().st_size, "sha256": _sha256(path)}
                for name, path in sorted(files.items())
            }
            manifest_path = work / "manifest.json"
            manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
            files["manifest.json"] = manifest_path
            # The bundle the importer reads: the manifest and the two tables in one file.
            _deterministic_zip(work / "snapshot.zip", [
                ("manifest.json", manifest_path), ("pairs.parquet", files["pairs.parquet"]),
                ("segments.parquet", files["segments.parquet"])], deflate=False)
            files["snapshot.zip"] = work / "snapshot.zip"
            records = {}
            for name, path in sorted(files.items()):
                with path.open("rb") as handle:
                    saved = default_storage.save(f"datasets/{snapshot_id}/{name}", File(handle, name=name))
                stored.append(saved)
                records[name] = {"path": saved, "bytes": path.stat().st_size, "sha256": _sha256(path)}
        DatasetSnapshot.objects.filter(pk=snapshot_id).update(
            status=DatasetSnapshot.Status.SUCCEEDED, progress=1.0, content_hash=result.content_hash,
            counts=result.counts, statistics=result.statistics, files=records, finished_at=timezone.now(),
        )
        return DatasetSnapshot.Status.SUCCEEDED
    except Exception as exc:
        if isinstance(exc, DatasetExportError):
            logger.info("dataset snapshot %s failed: %s", snapshot_id, exc)
        else:
            logger.exception("dataset snapshot %s failed", snapshot_id)
        for name in stored:
            default_storage.delete(name)
        message = str(exc) if isinstance(exc, DatasetExportError) else f"{type(exc).__name__}: {exc}"
        DatasetSnapshot.objects.filter(pk=snapshot_id).update(
            status=DatasetSnapshot.Status.FAILED, error=message, finished_at=timezone.now()
        )
        return DatasetSnapshot.Status.FAILED
