"""The researcher's datasets page in a real browser: export a campaign from the form, watch
the snapshot's progress until a real ``db_worker`` has built it, download a file with the
browser's session.

    PREFLAB_MODE=test python -m pytest tests/e2e -m e2e -q -p no:asyncio -k datasets
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from typing import Any, Callable

import pytest
from django.conf import settings
from django.db import connection
from playwright.sync_api import Page, expect

from feedback.models import DatasetSnapshot
from tests.e2e.conftest import REPO_ROOT, _database_url
from tests.e2e.pages import log_in
from tests.feedback.datasets_helpers import label

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("transactional_db")]


def test_a_researcher_exports_a_campaign_and_downloads_it(
    page: Page, live_server: Any, make_campaign: Callable[..., Any], annotator: Any, researcher: Any,
) -> None:
    campaign = make_campaign(name="to-export", pairs=3)
    label(annotator, campaign, ["left", "right", "equal"])
    path = f"/research/datasets/?campaign={campaign.pk}"
    log_in(page, live_server.url, username="rita", password="rita-pass-123", next_path=path)
    expect(page.get_by_label("to-export")).to_be_checked()
    page.get_by_label("Hugging Face datasets").uncheck()
    page.get_by_label("JSONL").check()
    page.get_by_role("button", name="Export").click()

    row = page.locator("#snapshots tbody tr").first
    expect(row).to_have_attribute("data-status", "queued")
    expect(row.locator("progress")).to_be_visible()
    snapshot = DatasetSnapshot.objects.get()
    assert snapshot.formats == ["parquet", "jsonl"] and snapshot.created_by == researcher

    worker = subprocess.run(
        [sys.executable, "manage.py", "db_worker", "--batch", "--no-startup-delay", "--interval", "0"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "DATABASE_URL": _database_url(connection.settings_dict), "PREFLAB_MODE": "test",
             "PREFLAB_TASKS_BACKEND": "db", "MEDIA_ROOT": str(settings.MEDIA_ROOT)},
    )
    assert worker.returncode == 0, worker.stdout + worker.stderr

    expect(row).to_have_attribute("data-status", "succeeded", timeout=15_000)
    expect(row.locator('[data-cell="judgements"]')).to_have_text("3")
    link = row.get_by_role("link", name="pairs.jsonl")
    response = page.request.get(link.get_attribute("href"))
    assert response.status == 200
    snapshot.refresh_from_db()
    assert hashlib.sha256(response.body()).hexdigest() == snapshot.files["pairs.jsonl"]["sha256"]
