"""Helpers for the dataset tests: a labelled campaign with known votes."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from django.contrib.auth.models import Group, User
from django.core.files.storage import default_storage

from feedback import services
from feedback.datasets.filters import DatasetFilters
from feedback.datasets.services import snapshot_create
from feedback.models import Campaign, DatasetSnapshot, Judgement
from feedback.services.annotation import JudgementInput

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def label(user: Any, campaign: Any, answers: list[str], *, simulated: bool = False,
          day: int = 0) -> list[Judgement]:
    """``user`` answers the next pairs of ``campaign`` with ``answers`` (screen terms);
    the judgements are dated ``T0 + day`` days, a minute apart."""
    out = []
    for index, answer in enumerate(answers):
        # A fixed rng: which side is shown left (and so the canonical answer) is reproducible.
        assignment = services.assignment_lease_next(campaign=campaign, annotator=user, rng=random.Random(index))
        assert assignment is not None
        judgement, _ = services.judgement_record(
            assignment_id=assignment.pk, annotator=user, is_simulated=simulated,
            answer=JudgementInput(answer, "desirable", "desirable" if index % 3 else "undesirable",
                                  confidence=0.25 * (index % 4), elapsed_ms=2000 + index),
        )
        when = T0 + timedelta(days=day, minutes=index)
        Judgement.objects.filter(pk=judgement.pk).update(created_at=when)
        out.append(judgement)
    return out


def simulated_user() -> User:
    user = User.objects.create_user(username="sim-teacher", password="x")
    user.groups.add(Group.objects.get_or_create(name="annotator")[0])
    return user


def export(*campaigns: Campaign, formats: tuple[str, ...] = ("parquet",), **filters: Any) -> DatasetSnapshot:
    """A snapshot of ``campaigns`` built in this process, which must succeed."""
    snapshot = snapshot_create(
        name="test", filters=DatasetFilters(campaign_ids=tuple(c.pk for c in campaigns), **filters),
        formats=formats, background=False,
    )
    assert snapshot.status == DatasetSnapshot.Status.SUCCEEDED, snapshot.error
    return snapshot


def local(snapshot: DatasetSnapshot, name: str) -> Path:
    return Path(default_storage.path(snapshot.files[name]["path"]))


def pair_rows(snapshot: DatasetSnapshot) -> list[dict[str, Any]]:
    return pq.read_table(local(snapshot, "pairs.parquet")).to_pylist()
