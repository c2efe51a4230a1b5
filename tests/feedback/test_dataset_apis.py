"""Dataset snapshot endpoints and page against every role; the export job in a real worker."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django_tasks_db.models import DBTaskResult

from feedback.datasets.filters import DatasetFilters
from feedback.datasets.services import snapshot_create
from feedback.models import DatasetSnapshot
from tests.feedback.datasets_helpers import label
from tests.feedback.test_tasks import ROOT, _database_url


@pytest.fixture
def small(quick_campaign: Callable[..., Any], annotator: Any, other_annotator: Any) -> Any:
    campaign = quick_campaign(name="small", pairs=4, overlap=2)
    label(annotator, campaign, ["left", "right", "equal", "left"])
    label(other_annotator, campaign, ["left", "left", "right", "cant_tell"])
    return campaign


@pytest.fixture
def built(small: Any, researcher: Any) -> DatasetSnapshot:
    return snapshot_create(name="built", filters=DatasetFilters(campaign_ids=(small.pk,)),
                           formats=["parquet", "jsonl"], created_by=researcher, background=False)


def body(campaign: Any, **extra: Any) -> dict[str, Any]:
    return {"name": "mine", "filters": {"campaign_ids": [campaign.pk], **extra}, "formats": ["parquet"]}


@pytest.mark.django_db
@pytest.mark.parametrize("role, status", [
    (None, 401), ("annotator", 403), ("outsider", 403), ("researcher", 202), ("admin_user", 202)])
def test_who_may_ask_for_an_export(
    role: str | None, status: int, small: Any, request: Any, api_client_for: Callable[..., Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    user = request.getfixturevalue(role) if role else None
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client_for(user).post("/api/v1/datasets/", body(small), format="json")
    assert response.status_code == status, response.content
    assert DatasetSnapshot.objects.count() == (1 if status == 202 else 0)
    if status == 202:
        assert response.json()["status"] == "queued" and response["Location"].endswith(
            f"/api/v1/datasets/{response.json()['id']}/")
        # The export is a job, never the request: a task waits for the worker.
        assert DBTaskResult.objects.filter(status="READY").count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("role, status", [
    (None, 401), ("annotator", 403), ("outsider", 403), ("researcher", 200), ("admin_user", 200)])
def test_who_may_read_and_download(
    role: str | None, status: int, built: DatasetSnapshot, request: Any, api_client_for: Callable[..., Any],
) -> None:
    client = api_client_for(request.getfixturevalue(role) if role else None)
    for url in ("/api/v1/datasets/", f"/api/v1/datasets/{built.pk}/",
                f"/api/v1/datasets/{built.pk}/files/pairs.parquet"):
        assert client.get(url).status_code == status, url


@pytest.mark.django_db
def test_a_download_streams_the_stored_bytes(built: DatasetSnapshot, researcher: Any,
                                             api_client_for: Callable[..., Any]) -> None:
    client = api_client_for(researcher)
    detail = client.get(f"/api/v1/datasets/{built.pk}/").json()
    assert detail["status"] == "succeeded" and detail["progress"] == 1.0 and detail["content_hash"]
    assert detail["counts"]["judgements"] == 8 and detail["filters"]["campaign_ids"] == [built.campaigns.get().pk]
    for name, meta in detail["files"].items():
        response = client.get(meta["url"])
        assert response.status_code == 200 and response.streaming
        data = b"".join(response.streaming_content)
        assert hashlib.sha256(data).hexdigest() == meta["sha256"] and len(data) == meta["bytes"], name
        assert response["Content-Disposition"].startswith("attachment")
    assert client.get(f"/api/v1/datasets/{built.pk}/files/nope.csv").json()["detail"].startswith(
        f"Snapshot {built.pk} has no file 'nope.csv'")
    assert client.get("/api/v1/datasets/999999/").status_code == 404


@pytest.mark.django_db
def test_a_queued_snapshot_cannot_be_downloaded_yet(small: Any, researcher: Any,
                                                    api_client_for: Callable[..., Any]) -> None:
    client = api_client_for(researcher)
    created = client.post("/api/v1/datasets/", body(small), format="json").json()
    response = client.get(f"/api/v1/datasets/{created['id']}/files/pairs.parquet")
    assert response.status_code == 409 and "queued" in response.json()["detail"]


@pytest.mark.django_db
def test_an_export_whose_worker_died_is_reported_failed_not_running(
    small: Any, researcher: Any, api_client_for: Callable[..., Any]
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from feedback.datasets.services import SNAPSHOT_STALE_AFTER_S, snapshot_build

    client = api_client_for(researcher)
    dead = client.post("/api/v1/datasets/", body(small), format="json").json()["id"]
    alive = client.post("/api/v1/datasets/", body(small, source="human"), format="json").json()["id"]
    now = timezone.now()
    DatasetSnapshot.objects.filter(pk=dead).update(
        status="running", heartbeat_at=now - timedelta(seconds=SNAPSHOT_STALE_AFTER_S + 5)
    )
    DatasetSnapshot.objects.filter(pk=alive).update(status="running", heartbeat_at=now)

    polled = client.get(f"/api/v1/datasets/{dead}/").json()
    assert polled["status"] == "failed" and "worker gave no sign of life" in polled["error"]
    assert client.get(f"/api/v1/datasets/{alive}/").json()["status"] == "running"

    # The next export job also sweeps, and a claimed export carries a fresh heartbeat.
    DatasetSnapshot.objects.filter(pk=alive).update(heartbeat_at=now - timedelta(days=1))
    queued = client.post("/api/v1/datasets/", body(small), format="json").json()["id"]
    assert snapshot_build(snapshot_id=queued) == "succeeded"
    assert DatasetSnapshot.objects.get(pk=alive).status == "failed"
    assert DatasetSnapshot.objects.get(pk=queued).heartbeat_at is not None


@pytest.mark.django_db
@pytest.mark.parametrize("payload, message", [
    ({"name": "x", "filters": {"campaign_ids": []}}, "at least one campaign"),
    ({"name": "x", "filters": {"campaign_ids": [999999]}}, "No campaign with id 999999"),
    ({"name": "x", "filters": {"campaign_ids": ["a"]}}, "positive integer"),
    ({"name": "x", "filters": {"campaign_ids": [2**70]}}, "positive integer (at most"),
    ({"name": "x", "filters": "all"}, "must be a JSON object"),
    ({"name": "x", "filters": {"campaign_ids": [1], "source": "robots"}}, "source"),
    ({"name": "x", "filters": {"campaign_ids": [1], "min_agreement": 2}}, "min_agreement"),
    ({"name": "x", "filters": {"campaign_ids": [1], "created_to": "2026-13-01"}}, "created_to"),
    ({"name": "x", "filters": {"campaign_ids": [1]}, "formats": ["csv"]}, "csv"),
    ({"filters": {"campaign_ids": [1]}}, "name"),
])
def test_bad_requests_name_the_problem(payload: dict[str, Any], message: str, researcher: Any,
                                       api_client_for: Callable[..., Any]) -> None:
    response = api_client_for(researcher).post("/api/v1/datasets/", payload, format="json")
    assert response.status_code == 400 and message in response.json()["detail"], response.json()
    assert DatasetSnapshot.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("role, status", [
    ("annotator", 403), ("outsider", 403), ("researcher", 200), ("admin_user", 200)])
def test_the_datasets_page(role: str, status: int, small: Any, request: Any) -> None:
    client = Client()
    client.force_login(request.getfixturevalue(role))
    response = client.get("/research/datasets/")
    assert response.status_code == status
    if status == 200:
        html = response.content.decode()
        assert 'data-create-url="/api/v1/datasets/"' in html and small.name in html


@pytest.mark.django_db
def test_the_datasets_page_needs_a_login() -> None:
    response = Client().get("/research/datasets/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_db_worker_builds_the_snapshot_and_reports_progress(
    small: Any, researcher: Any, api_client_for: Callable[..., Any],
) -> None:
    client = api_client_for(researcher)
    created = client.post("/api/v1/datasets/", {**body(small), "formats": ["parquet", "hf"]}, format="json").json()
    env = {**__import__("os").environ, "DATABASE_URL": _database_url(), "MEDIA_ROOT": str(settings.MEDIA_ROOT),
           "PREFLAB_MODE": "test", "PREFLAB_TASKS_BACKEND": "db"}
    worker = subprocess.run(
        [sys.executable, "manage.py", "db_worker", "--batch", "--no-startup-delay", "--interval", "0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert worker.returncode == 0, worker.stdout + worker.stderr
    detail = client.get(created["url"]).json()
    assert detail["status"] == "succeeded", detail["error"]
    assert detail["progress"] == 1.0 and set(detail["files"]) >= {"pairs.parquet", "hf.zip", "snapshot.zip"}
    stored = Path(settings.MEDIA_ROOT) / DatasetSnapshot.objects.get(pk=created["id"]).files["hf.zip"]["path"]
    assert stored.is_file()
