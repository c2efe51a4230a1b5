"""Background task entry points of the feedback app (Django's task API)."""

from __future__ import annotations

from django_tasks import task

from feedback.services.trajectories import trajectory_render_pending


@task()
def render_trajectory_clips(trajectory_id: int) -> int:
    """Encode the clips of an uploaded trajectory's segments from its parked frames."""
    return trajectory_render_pending(trajectory_id=trajectory_id)


@task()
def build_dataset_snapshot(snapshot_id: int) -> str:
    """Export a dataset snapshot (Parquet and the other formats asked for) into storage."""
    from feedback.datasets.services import snapshot_build

    return snapshot_build(snapshot_id=snapshot_id)
