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
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote
from urllib.request import urlopen

import pytest

from config.channel_layers import redis_channel_layer

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


@pytest.fixture(autouse=True)
def _no_script_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a browser test whose page threw an uncaught error, even if its assertions passed."""
    if "page" not in request.fixturenames:
        yield
        return
    page = request.getfixturevalue("page")
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield
    assert not errors, f"the page threw: {errors}"


# --- an ASGI server for the WebSocket tests ----------------------------------------------------

# The test process and the server share this Redis database as their channel layer, so events
# the test sends reach the server's consumers. Redis must be running on 127.0.0.1:6379.
E2E_REDIS_URL = "redis://127.0.0.1:6379/6"
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class AsgiServer:
    url: str
    media_root: Path
    log: Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _database_url(settings_dict: dict[str, Any]) -> str:
    """A DATABASE_URL for the test database this process uses (SQLite file or PostgreSQL)."""
    if settings_dict["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{settings_dict['NAME']}"
    user = quote(settings_dict.get("USER") or "")
    password = quote(settings_dict.get("PASSWORD") or "")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    return f"postgres://{auth}{host}{port}/{settings_dict['NAME']}"


@pytest.fixture(scope="module")
def _daphne(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AsgiServer]:
    """Daphne serving ``config.asgi`` (HTTP and WebSocket) on the test database.

    pytest-django's ``live_server`` speaks WSGI only, so it cannot carry a WebSocket.
    """
    from django.db import connection

    if connection.vendor == "sqlite" and str(connection.settings_dict["NAME"]).startswith(
        ("file:", ":memory:")
    ):
        pytest.fail("the ASGI server needs the test database in a file")
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        pytest.fail(
            "The WebSocket browser tests need Redis at 127.0.0.1:6379 (their channel layer): "
            "apt-get install -y redis-server, or start it."
        )
    workdir = tmp_path_factory.mktemp("asgi")
    media_root = workdir / "media"
    media_root.mkdir()
    log = workdir / "daphne.log"
    port = _free_port()
    env = {
        **os.environ,
        "PREFLAB_MODE": "test",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": _database_url(connection.settings_dict),
        "REDIS_URL": E2E_REDIS_URL,
        "PREFLAB_TASKS_BACKEND": "db",
        "MEDIA_ROOT": str(media_root),
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
             "config.asgi:application"],
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if server.poll() is not None:
                pytest.fail(f"daphne exited with {server.returncode}:\n{log.read_text()}")
            try:
                with urlopen(f"{url}/healthz", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"daphne did not answer within 20 s:\n{log.read_text()}")
            time.sleep(0.1)
        yield AsgiServer(url=url, media_root=media_root, log=log)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture
def asgi_server(_daphne: AsgiServer, settings: Any, transactional_db: None) -> AsgiServer:
    """The ASGI server, with this process writing clips where it reads them and sending
    channel-layer events through the same Redis."""
    settings.MEDIA_ROOT = _daphne.media_root
    settings.CHANNEL_LAYERS = {"default": redis_channel_layer(E2E_REDIS_URL)}
    return _daphne
