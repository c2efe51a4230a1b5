"""Live training-run updates: the run's state, pushed to its WebSocket group — the
trainer's progress reports, and every status change (claimed, finished, cancelled, swept).

With the in-memory channel layer (embedded default) the worker runs in another process, so
its events never reach the web process; the run page then re-reads the REST endpoint every
few seconds instead. With Redis (``REDIS_URL``) the worker's reports and status changes arrive
live.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings

from learning.models import TrainingRun

logger = logging.getLogger(__name__)


def run_group(run_id: int) -> str:
    return f"training-run-{run_id}"


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def run_state(run: TrainingRun) -> dict[str, Any]:
    """What the run page draws, JSON- and msgpack-safe (datetimes as ISO strings)."""
    return {
        "id": run.pk,
        "campaign": run.campaign_id,
        "status": run.status,
        "progress": run.progress,
        "metrics": run.metrics,
        "result": run.result,
        "device": run.device,
        "log": run.log,
        "attempts": run.attempts,
        "cancel_requested": run.cancel_requested,
        "triggered_by": run.triggered_by.get_username() if run.triggered_by else None,
        "heartbeat_at": _iso(run.heartbeat_at),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
    }


def run_state_get(run_id: int) -> dict[str, Any] | None:
    run = TrainingRun.objects.select_related("triggered_by").filter(pk=run_id).first()
    return None if run is None else run_state(run)


def broadcast_reaches_other_processes() -> bool:
    """Whether events a worker sends reach this process's sockets: any layer but the
    in-memory one (channels' only single-process layer)."""
    backend = settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", "")
    return bool(backend) and backend != "channels.layers.InMemoryChannelLayer"


def run_event_send(
    *, run_id: int, payload: dict[str, Any] | None = None, event: str = "progress"
) -> None:
    """Send ``payload`` (default: the run's current state) to the run's watchers as an
    ``{"event": event, ...}`` message: ``progress`` from the trainer's reports, ``status``
    when the run's status changes (``learning.services``). Failures are logged only: a missed
    live update must never fail training or the write that changed the status."""
    try:
        layer = get_channel_layer()
        if layer is None:
            return
        body = payload if payload is not None else run_state_get(run_id)
        if body is None:
            return
        message = {"event": event, **body}
        async_to_sync(layer.group_send)(
            run_group(run_id), {"type": "run.event", "payload": message}
        )
    except Exception:
        logger.warning("live update for training run %s could not be sent", run_id, exc_info=True)


__all__ = [
    "broadcast_reaches_other_processes",
    "run_event_send",
    "run_group",
    "run_state",
    "run_state_get",
]
