"""Settings come from the environment and fail loudly, naming the variable, on bad values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_choice, env_int, env_list, env_str

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("raw", "value"), [("1", True), ("TRUE", True), (" yes ", True), ("on", True),
                                            ("0", False), ("False", False), ("no", False), ("", False)])
def test_env_bool_reads_the_usual_spellings(monkeypatch: pytest.MonkeyPatch, raw: str, value: bool) -> None:
    monkeypatch.setenv("PREFLAB_TEST_FLAG", raw)
    assert env_bool("PREFLAB_TEST_FLAG") is value


def test_env_bool_refuses_anything_else_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFLAB_TEST_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="PREFLAB_TEST_FLAG='maybe' is not a boolean"):
        env_bool("PREFLAB_TEST_FLAG")


def test_unset_variables_take_their_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFLAB_TEST_VAR", raising=False)
    assert env_bool("PREFLAB_TEST_VAR", default=True) is True
    assert env_int("PREFLAB_TEST_VAR", 7) == 7
    assert env_str("PREFLAB_TEST_VAR", "fallback") == "fallback"
    assert env_list("PREFLAB_TEST_VAR", ["a"]) == ["a"]
    assert env_choice("PREFLAB_TEST_VAR", "db", ("db", "rq")) == "db"


def test_env_int_refuses_non_integers_and_values_below_the_minimum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFLAB_TEST_INT", "12")
    assert env_int("PREFLAB_TEST_INT", 0, minimum=5) == 12
    for raw in ("twelve", "1.5", "", "1e3"):
        monkeypatch.setenv("PREFLAB_TEST_INT", raw)
        with pytest.raises(ImproperlyConfigured, match=f"PREFLAB_TEST_INT={raw!r} is not an integer"):
            env_int("PREFLAB_TEST_INT", 0)
    monkeypatch.setenv("PREFLAB_TEST_INT", "3")
    with pytest.raises(ImproperlyConfigured, match="PREFLAB_TEST_INT=3 must be at least 5"):
        env_int("PREFLAB_TEST_INT", 10, minimum=5)


def test_a_required_string_must_be_set_and_not_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFLAB_TEST_KEY", raising=False)
    with pytest.raises(ImproperlyConfigured, match="PREFLAB_TEST_KEY is required but not set"):
        env_str("PREFLAB_TEST_KEY")
    monkeypatch.setenv("PREFLAB_TEST_KEY", "  ")
    with pytest.raises(ImproperlyConfigured, match="PREFLAB_TEST_KEY is required but set but empty"):
        env_str("PREFLAB_TEST_KEY")
    monkeypatch.setenv("PREFLAB_TEST_KEY", "s3cret")
    assert env_str("PREFLAB_TEST_KEY") == "s3cret"
    # An optional string may be empty on purpose (e.g. REDIS_URL= to switch Redis off).
    monkeypatch.setenv("PREFLAB_TEST_KEY", "")
    assert env_str("PREFLAB_TEST_KEY", "default") == ""


def test_env_list_splits_on_commas_and_drops_blanks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFLAB_TEST_LIST", " a.example, b.example ,,")
    assert env_list("PREFLAB_TEST_LIST", []) == ["a.example", "b.example"]


def test_env_choice_refuses_values_outside_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFLAB_TEST_MODE", " RQ ")
    assert env_choice("PREFLAB_TEST_MODE", "db", ("db", "rq")) == "rq"
    monkeypatch.setenv("PREFLAB_TEST_MODE", "celery")
    with pytest.raises(ImproperlyConfigured, match="PREFLAB_TEST_MODE='celery' must be one of: db, rq"):
        env_choice("PREFLAB_TEST_MODE", "db", ("db", "rq"))


def _import_settings(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Import the settings module in a fresh interpreter with exactly these PrefLab variables."""
    clean = {key: value for key, value in os.environ.items()
             if not key.startswith(("PREFLAB_", "DJANGO_", "DATABASE_URL", "REDIS_URL"))}
    clean.update({"PREFLAB_VAR_DIR": str(tmp_path / "var"), **env})
    code = "import config.settings as s; print('DEBUG', s.DEBUG, 'HOSTS', s.ALLOWED_HOSTS)"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PREFLAB_MODE": "production", "DJANGO_ALLOWED_HOSTS": "preflab.example"},
         "DJANGO_SECRET_KEY is required but not set"),
        ({"PREFLAB_MODE": "production", "DJANGO_SECRET_KEY": "", "DJANGO_ALLOWED_HOSTS": "preflab.example"},
         "DJANGO_SECRET_KEY is required but set but empty"),
        ({"PREFLAB_MODE": "production", "DJANGO_SECRET_KEY": "k" * 50},
         "DJANGO_ALLOWED_HOSTS is required when PREFLAB_MODE=production"),
        ({"PREFLAB_MODE": "staging"}, "PREFLAB_MODE='staging' must be one of: demo, test, production"),
        ({"DJANGO_DEBUG": "sometimes"}, "DJANGO_DEBUG='sometimes' is not a boolean"),
        ({"PREFLAB_MAX_UPLOAD_BYTES": "64MB"}, "PREFLAB_MAX_UPLOAD_BYTES='64MB' is not an integer"),
        ({"PREFLAB_LEASE_SECONDS": "1"}, "PREFLAB_LEASE_SECONDS=1 must be at least 5"),
        ({"PREFLAB_TASKS_BACKEND": "rq"}, "PREFLAB_TASKS_BACKEND=rq needs REDIS_URL"),
        ({"DATABASE_URL": "localhost/preflab"}, "DATABASE_URL is malformed"),
    ],
    ids=["production-no-secret", "production-empty-secret", "production-no-hosts", "bad-mode",
         "bad-debug", "bad-upload-limit", "lease-too-short", "rq-without-redis", "bad-database-url"],
)
def test_bad_configuration_stops_the_process_at_import(tmp_path: Path, env: dict[str, str], message: str) -> None:
    result = _import_settings(tmp_path, **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr, result.stderr


@pytest.mark.slow
def test_production_with_a_secret_key_and_hosts_starts_with_debug_off(tmp_path: Path) -> None:
    result = _import_settings(tmp_path, PREFLAB_MODE="production", DJANGO_SECRET_KEY="k" * 50,
                              DJANGO_ALLOWED_HOSTS="preflab.example")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "DEBUG False HOSTS ['preflab.example']"
