"""Reads for dataset snapshots."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from feedback.models import DatasetSnapshot


def snapshots_list(*, campaign_id: int | None = None) -> QuerySet[DatasetSnapshot]:
    qs = DatasetSnapshot.objects.select_related("created_by").prefetch_related("campaigns")
    if campaign_id is not None:
        qs = qs.filter(campaigns__id=campaign_id)
    return qs.order_by("-created_at", "-id")


def snapshot_get(*, snapshot_id: int) -> DatasetSnapshot:
    """Raises DatasetSnapshot.DoesNotExist."""
    return snapshots_list().get(pk=snapshot_id)


def snapshot_describe(snapshot: DatasetSnapshot) -> dict[str, Any]:
    """The JSON the API and the page show for a snapshot."""
    return {
        "id": snapshot.pk,
        "name": snapshot.name,
        "origin": snapshot.origin,
        "status": snapshot.status,
        "progress": snapshot.progress,
        "error": snapshot.error or None,
        "campaign_ids": sorted(c.pk for c in snapshot.campaigns.all()),
        "filters": snapshot.filters,
        "formats": snapshot.formats,
        "content_hash": snapshot.content_hash or None,
        "counts": snapshot.counts,
        "statistics": snapshot.statistics,
        "files": {name: {"bytes": meta["bytes"], "sha256": meta["sha256"]}
                  for name, meta in sorted(snapshot.files.items())},
        "created_by": snapshot.created_by.get_username() if snapshot.created_by else None,
        "created_at": snapshot.created_at.isoformat(),
        "finished_at": snapshot.finished_at.isoformat() if snapshot.finished_at else None,
    }
