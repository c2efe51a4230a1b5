"""Background rendering: an upload with frames is rendered by a real ``db_worker`` process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection
from django_tasks_db.models import DBTaskResult

from feedback.models import Segment, Trajectory
from tests.feedback.conftest import npz_file, trajectory_arrays

ROOT = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    """The URL of the database this test runs against (pytest-django's test database)."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    if db["ENGINE"] == "django.db.backends.postgresql":
        credentials = quote(db["USER"] or "", safe="")
        if db["PASSWORD"]:
            credentials += ":" + quote(db["PASSWORD"], safe="")
        return f"postgres://{credentials}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"
    raise NotImplementedError(f"no worker URL for {db['ENGINE']}: the suite runs on SQLite and PostgreSQL")


def _run_worker() -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "PREFLAB_MODE": "test",
        "PREFLAB_TASKS_BACKEND": "db",
    }
    return subprocess.run(
        [sys.executable, "manage.py", "db_worker", "--batch", "--no-startup-delay", "--interval", "0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_db_worker_process_renders_uploaded_frames_into_clips(
    admin_user: Any, api_client_for: Callable[..., Any],
) -> None:
    assert settings.TASKS["default"]["BACKEND"] == "django_tasks_db.DatabaseBackend"
    response = api_client_for(admin_user).post(
        "/api/v1/trajectories/",
        {"file": npz_file(**trajectory_arrays(25, frames=True)), "env_id": "Toy-v0", "segment_length": 10},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    trajectory = Trajectory.objects.get(pk=response.json()["id"])
    frames = Path(settings.MEDIA_ROOT) / trajectory.pending_frames.name
    assert frames.is_file()
    assert set(trajectory.segments.values_list("clip_status", flat=True)) == {Segment.ClipStatus.PENDING}
    [task] = DBTaskResult.objects.all()
    assert task.status == "READY"

    worker = _run_worker()
    assert worker.returncode == 0, worker.stdout + worker.stderr

    task.refresh_from_db()
    assert task.status == "SUCCESSFUL", task.traceback
    assert task.return_value == 3
    segments = list(trajectory.segments.order_by("start"))
    assert [(s.start, s.end, s.clip_status) for s in segments] == [
        (0, 10, "ready"), (10, 20, "ready"), (20, 25, "ready")]
    for segment in segments:
        clip = Path(settings.MEDIA_ROOT) / segment.clip.name
        assert clip.read_bytes()[4:8] == b"ftyp"
    trajectory.refresh_from_db()
    assert trajectory.pending_frames.name == "" and not frames.exists()


REDIS_URL = "redis://127.0.0.1:6379/7"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_rq_worker_on_redis_renders_uploaded_frames_into_clips(
    admin_user: Any, api_client_for: Callable[..., Any], settings: Any,
) -> None:
    """The same render job through the other runtime column: RQ on Redis (DESIGN, Runtime)."""
    import django_rq

    settings.RQ_QUEUES = {name: {"URL": REDIS_URL} for name in ("default", "gpu")}
    # django_tasks resets its backends when TASKS changes (setting_changed).
    settings.TASKS = {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": ["default", "gpu"]}}
    django_rq.get_queue("default").empty()

    response = api_client_for(admin_user).post(
        "/api/v1/trajectories/",
        {"file": npz_file(**trajectory_arrays(25, frames=True)), "env_id": "Toy-v0", "segment_length": 10},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    trajectory = Trajectory.objects.get(pk=response.json()["id"])
    assert django_rq.get_queue("default").count == 1
    assert not DBTaskResult.objects.exists()  # went to Redis, not the database queue

    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "PREFLAB_MODE": "test",
        "PREFLAB_TASKS_BACKEND": "rq",
        "REDIS_URL": REDIS_URL,
    }
    worker = subprocess.run(
        [sys.executable, "manage.py", "rqworker", "default", "--burst", "--job-class", "django_tasks_rq.Job"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert worker.returncode == 0, worker.stdout + worker.stderr
    assert list(trajectory.segments.order_by("start").values_list("clip_status", flat=True)) == ["ready"] * 3
    for segment in trajectory.segments.all():
        assert (Path(settings.MEDIA_ROOT) / segment.clip.name).read_bytes()[4:8] == b"ftyp"
