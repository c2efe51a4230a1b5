"""Browser tests: a real Chromium (Debian's, not a Playwright download) against a live server.

The e2e suite runs in its own pytest invocation, without pytest-asyncio:

    PREFLAB_MODE=test python -m pytest tests/e2e -m e2e -q -p no:asyncio

Sync Playwright drives the browser from an event loop of its own; pytest-asyncio in the same
process breaks it (and the other way round), so ``scripts/test`` runs ``-m "not e2e"`` and then
this suite separately. In a session that also selects asyncio tests, these are skipped with
that instruction.
"""

from __future__ import annotations

import inspect
import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.hookimpl(trylast=True)  # after -m/-k deselection: judge only what will run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the browser tests in a session that also runs asyncio tests: they break each other."""
    if not config.pluginmanager.has_plugin("asyncio"):
        return
    if not any(_is_async_test(item) for item in items):
        return
    skip = pytest.mark.skip(
        reason="browser tests run in their own process: pytest tests/e2e -m e2e -p no:asyncio"
    )
    for item in items:
        if "e2e" in item.keywords:
            item.add_marker(skip)


def _is_async_test(item: pytest.Item) -> bool:
    function = getattr(item, "obj", None)
    return item.get_closest_marker("asyncio") is not None or inspect.iscoroutinefunction(function)


@pytest.fixture(scope="session", autouse=True)
def _allow_orm_beside_playwright() -> Iterator[None]:
    """Sync Playwright runs an event loop in the test's thread, so Django takes the test body
    for async code and refuses ORM calls unless told that this is safe here.

    Set for this suite's session only (not at import): a unit-test run that merely collects
    this directory keeps Django's async-safety check.
    """
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if previous is None:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Debian's chromium is not installed: apt-get install -y chromium")
    return {
        **browser_type_launch_args,
        "executable_path": executable,
        "headless": True,
        "args": CHROMIUM_ARGS,
    }


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    django_db_modify_db_settings_parallel_suffix: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Keep this process's SQLite test database apart from a unit-test run going on beside it."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        database.setdefault("TEST", {})["NAME"] = str(
            tmp_path_factory.mktemp("e2e-db") / "e2e.sqlite3"
        )
    yield
