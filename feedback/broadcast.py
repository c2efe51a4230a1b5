"""Live updates: what changed in a campaign, pushed to its WebSocket group after commit.

Messages carry counts only — never who labelled what — so every role may listen. With the
in-memory channel layer (embedded default) only the web process's own events arrive;
pages poll as a fallback. With Redis, events from workers arrive too.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from feedback.models import Campaign

logger = logging.getLogger(__name__)


def campaign_group(campaign_id: int) -> str:
    return f"campaign-{campaign_id}"


def campaign_progress(campaign_id: int) -> dict[str, Any]:
    """Counts from the campaign row's counters: one indexed read, whatever the campaign's size."""
    row = (
        Campaign.objects.filter(pk=campaign_id)
        .values("pair_count", "label_count", "overlap", "extra_slots")
        .first()
    )
    row = row or {"pair_count": 0, "label_count": 0, "overlap": 1, "extra_slots": 0}
    return {
        "campaign_id": campaign_id,
        "pair_count": row["pair_count"],
        "labels_wanted": row["pair_count"] * row["overlap"] + row["extra_slots"],
        "label_count": row["label_count"],
    }


def campaign_event_send(*, campaign_id: int, event: str, extra: dict[str, Any] | None = None) -> None:
    """Send ``event`` ("progress", "pairs_added") with fresh counts; failures are logged only,
    since a missed live update must never fail the write that caused it."""
    layer = get_channel_layer()
    if layer is None:
        return
    payload = {"event": event, **campaign_progress(campaign_id), **(extra or {})}
    try:
        async_to_sync(layer.group_send)(campaign_group(campaign_id), {"type": "campaign.event", "payload": payload})
    except Exception:  # noqa: BLE001 — the channel layer is best-effort by design
        logger.warning("live update for campaign %s could not be sent", campaign_id, exc_info=True)


__all__ = ["campaign_event_send", "campaign_group", "campaign_progress"]
