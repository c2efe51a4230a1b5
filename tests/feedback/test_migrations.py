"""Data migrations, run forwards and backwards on the test database with rows in it."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from feedback.models import Campaign, CampaignCounter

BEFORE_SHARDS = ("feedback", "0009_drop_redundant_key_indexes")
AFTER_SHARDS = ("feedback", "0011_remove_campaign_row_counters")


def _migrate(target: tuple[str, str]) -> Any:
    """Migrate the test database to ``target``; the app registry as of that migration."""
    executor = MigrationExecutor(connection)
    executor.migrate([target])
    return executor.loader.project_state([target]).apps


@pytest.fixture
def back_to_latest() -> Any:
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.usefixtures("back_to_latest")
@pytest.mark.django_db(transaction=True)
def test_campaign_label_counters_move_to_shards_and_back() -> None:
    old = _migrate(BEFORE_SHARDS)
    env = old.get_model("feedback", "EnvironmentSpec").objects.create(env_id="Pendulum-v1")
    old_campaign = old.get_model("feedback", "Campaign")
    counted = old_campaign.objects.create(name="counted", env=env, label_count=7, extra_slots=2).pk
    fresh = old_campaign.objects.create(name="fresh", env=env).pk

    _migrate(AFTER_SHARDS)
    assert list(CampaignCounter.objects.values_list("campaign_id", "shard", "label_count", "extra_slots")) == [
        (counted, 0, 7, 2)
    ]
    assert (Campaign.objects.get(pk=counted).label_count, Campaign.objects.get(pk=counted).extra_slots) == (7, 2)
    assert Campaign.objects.with_counts().get(pk=fresh).label_count == 0
    CampaignCounter.objects.create(campaign_id=counted, shard=5, label_count=3, extra_slots=1)

    old = _migrate(BEFORE_SHARDS)
    rows = old.get_model("feedback", "Campaign").objects.order_by("pk").values_list("label_count", "extra_slots")
    assert list(rows) == [(10, 3), (0, 0)]
