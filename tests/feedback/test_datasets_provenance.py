"""Dataset snapshots of a realistic mix: two campaigns (two environments), pairs stamped by
a selector and a reward-model version, a gold pair, a private repeat, several annotators.

Checks that every vote field and every provenance column the export promises is present
and equal to the database, that the gold/repeat filters choose the right pairs, and that
export → import → export reproduces every judgement, repeats and gold pairs included.
Real database, real files, no mocks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.storage import default_storage

from feedback import services
from feedback.datasets.filters import DatasetFilters
from feedback.datasets.importer import snapshot_import
from feedback.datasets.services import snapshot_create
from feedback.models import Campaign, Judgement, Pair, Segment, Trajectory
from tests.feedback.datasets_helpers import T0, export, label, local, pair_rows

VOTE_FIELDS = ("annotator", "preference", "preferred_a_probability", "desirability_a", "desirability_b",
               "confidence", "elapsed_ms", "left_is_a", "is_simulated", "created_at")


@pytest.fixture
def mixed(quick_campaign: Callable[..., Any], annotator: Any, other_annotator: Any) -> tuple[Campaign, Campaign]:
    """``mixed`` (Toy-v0): 2 pairs chosen by "disagreement" with reward model "reward-v7",
    3 random pairs, 1 gold pair; annie and otto answer all six (day 0 and 1), then annie
    answers one private repeat (day 5). ``second`` (Other-v3): 2 pairs, annie answers both."""
    campaign = quick_campaign(name="mixed", n_trajectories=4, pairs=0, overlap=2)
    segments = list(Segment.objects.filter(trajectory__env=campaign.env).order_by("id").values_list("id", flat=True))
    services.pairs_add(campaign=campaign, segment_pairs=[(segments[0], segments[2]), (segments[1], segments[5])],
                       selector="disagreement", model_version="reward-v7", priority=5)
    services.pairs_create_random(campaign=campaign, count=3, seed=1)
    services.pairs_create_gold(campaign=campaign, count=1, seed=0)
    Campaign.objects.filter(pk=campaign.pk).update(gold_rate=1.0)  # annie and otto each get the gold pair first
    campaign.refresh_from_db()
    label(annotator, campaign, ["left", "right", "equal", "left", "cant_tell", "right"], day=0)
    label(other_annotator, campaign, ["right", "right", "left", "equal", "left", "left"], day=1)
    Campaign.objects.filter(pk=campaign.pk).update(gold_rate=0.0, repeat_rate=1.0)
    campaign.refresh_from_db()
    label(annotator, campaign, ["left"], day=5)
    assert Pair.objects.filter(campaign=campaign, repeat_of__isnull=False).count() == 1
    assert Pair.objects.filter(campaign=campaign, is_gold=True).count() == 1
    second = quick_campaign(name="second", env_id="Other-v3", n_trajectories=3, pairs=2, overlap=1)
    label(annotator, second, ["left", "right"], day=2)
    return campaign, second


def test_every_vote_field_and_provenance_column_equals_the_database(mixed: tuple[Campaign, Campaign]) -> None:
    campaign, second = mixed
    snapshot = export(campaign, second, include_repeats=True)
    rows = pair_rows(snapshot)
    pairs = Pair.objects.filter(campaign__in=mixed).exclude(judgements=None)
    assert sorted(r["pair_id"] for r in rows) == sorted(p.pk for p in pairs)
    assert snapshot.counts["per_campaign"] == {str(campaign.pk): 7, str(second.pk): 2}
    assert snapshot.counts["judgements"] == Judgement.objects.count() == 15
    for row in rows:
        pair = Pair.objects.select_related("campaign__env", "segment_a__trajectory__policy",
                                           "segment_b__trajectory__policy").get(pk=row["pair_id"])
        env_id = pair.campaign.env.env_id
        assert (row["campaign_id"], row["campaign"], row["env_id"], row["env_version"]) == (
            pair.campaign_id, pair.campaign.name, env_id, int(env_id.rsplit("-v", 1)[1]))
        assert (row["selector"], row["model_version"], row["priority"], row["is_gold"], row["gold_preference"],
                row["repeat_of"], row["pair_created_at"]) == (
            pair.selector, pair.model_version, pair.priority, pair.is_gold, pair.gold_preference or None,
            pair.repeat_of_id, pair.created_at)
        for side in ("a", "b"):
            segment = getattr(pair, f"segment_{side}")
            trajectory = segment.trajectory
            assert (row[f"segment_{side}_id"], row[f"trajectory_{side}_id"], row[f"start_{side}"],
                    row[f"end_{side}"], row[f"seed_{side}"], row[f"policy_{side}"], row[f"policy_kind_{side}"],
                    row[f"true_return_{side}"]) == (
                segment.pk, trajectory.pk, segment.start, segment.end, trajectory.seed, trajectory.policy.name,
                trajectory.policy.kind, pytest.approx(segment.true_return))
        stored = list(Judgement.objects.filter(pair=pair).select_related("annotator").order_by("created_at", "id"))
        assert [tuple(v[f] for f in VOTE_FIELDS) for v in row["votes"]] == [
            (j.annotator.username, j.preference, j.preferred_a_probability, j.desirability_a, j.desirability_b,
             j.confidence, j.elapsed_ms, j.left_is_a, j.is_simulated, j.created_at) for j in stored]
        decisive = [j.preferred_a_probability for j in stored if j.preferred_a_probability is not None]
        assert row["num_votes"] == len(stored)
        assert row["soft_label"] == (pytest.approx(sum(decisive) / len(decisive)) if decisive else None)
    # The stamped pairs really are among them, and the repeat points at its original.
    assert {(r["selector"], r["model_version"]) for r in rows} >= {("disagreement", "reward-v7"), ("gold", ""),
                                                                    ("repeat", ""), ("random", "")}
    [repeat] = [r for r in rows if r["repeat_of"] is not None]
    assert repeat["repeat_of"] in {r["pair_id"] for r in rows}


def test_jsonl_rows_equal_the_parquet_rows(mixed: tuple[Campaign, Campaign]) -> None:
    snapshot = export(*mixed, formats=("parquet", "jsonl"), include_repeats=True)

    def iso(value: Any) -> Any:
        return value.isoformat().replace("+00:00", "Z") if hasattr(value, "isoformat") else value

    expected = [
        {k: ([{f: iso(x) for f, x in vote.items()} for vote in v] if k == "votes" else iso(v)) for k, v in r.items()}
        for r in pair_rows(snapshot)
    ]
    lines = local(snapshot, "pairs.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == expected


def test_gold_and_repeat_filters_choose_the_pairs(mixed: tuple[Campaign, Campaign]) -> None:
    campaign, _ = mixed
    gold = Pair.objects.get(campaign=campaign, is_gold=True)
    repeat = Pair.objects.get(campaign=campaign, repeat_of__isnull=False)

    def pair_ids(**filters: Any) -> set[int]:
        return {r["pair_id"] for r in pair_rows(export(campaign, **filters))}

    default = pair_ids()
    assert gold.pk in default and repeat.pk not in default and len(default) == 6
    assert pair_ids(include_gold=False) == default - {gold.pk}
    assert pair_ids(include_repeats=True) == default | {repeat.pk}
    # The end of the date range is exclusive: a vote at exactly created_to is left out.
    first_vote = Judgement.objects.filter(pair__campaign=campaign).order_by("created_at").first()
    assert first_vote.created_at == T0
    only_first = export(campaign, created_from=T0, created_to=T0 + timedelta(minutes=1))
    assert [len(r["votes"]) for r in pair_rows(only_first)] == [1]


def _wipe() -> None:
    """What a fresh instance has: none of the exported rows or users."""
    Judgement.objects.all().delete()
    Campaign.objects.all().delete()
    Segment.objects.all().delete()
    Trajectory.objects.all().delete()
    User.objects.filter(username__in=["annie", "otto"]).delete()


def _comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without instance-local ids; ``repeat_of`` as the identity of the original."""
    def identity(r: dict[str, Any]) -> tuple[Any, ...]:
        return (r["campaign"], r["seed_a"], r["start_a"], r["seed_b"], r["start_b"], r["repeat_of"] is not None)

    by_id = {r["pair_id"]: identity(r) for r in rows}
    local_ids = {"pair_id", "campaign_id", "segment_a_id", "segment_b_id", "trajectory_a_id", "trajectory_b_id",
                 "repeat_of"}
    out = [{**{k: v for k, v in r.items() if k not in local_ids},
            "repeat_of": None if r["repeat_of"] is None else by_id.get(r["repeat_of"], "absent")} for r in rows]
    return sorted(out, key=lambda r: (r["campaign"], r["seed_a"], r["start_a"], r["seed_b"], r["start_b"],
                                      r["repeat_of"] is not None))


def test_export_import_export_reproduces_every_judgement_of_both_campaigns(
    mixed: tuple[Campaign, Campaign], tmp_path: Path,
) -> None:
    snapshot = export(*mixed, include_repeats=True)
    bundle = tmp_path / "snapshot.zip"
    bundle.write_bytes(local(snapshot, "snapshot.zip").read_bytes())
    before = _comparable(pair_rows(snapshot))
    _wipe()

    imported, created = snapshot_import(source=bundle)
    assert created and imported.content_hash == snapshot.content_hash
    campaigns = list(imported.campaigns.order_by("name"))
    assert [c.name for c in campaigns] == ["mixed", "second"]
    assert Judgement.objects.count() == 15
    # Gold and repeats do not count as progress, here as in the instance they came from.
    assert [c.label_count for c in campaigns] == [10, 2]
    again = export(*campaigns, include_repeats=True)
    assert _comparable(pair_rows(again)) == before
    # Gold pairs and repeats are still told apart by the filters after the import.
    assert len(pair_rows(export(campaigns[0]))) == 6
    assert len(pair_rows(export(campaigns[0], include_gold=False))) == 5


def test_a_repeat_whose_original_was_filtered_out_still_imports(
    mixed: tuple[Campaign, Campaign], tmp_path: Path,
) -> None:
    """Only annie's day-5 vote (the repeat) is in range: the original pair is not exported,
    yet the snapshot must import, and the repeat must stay a repeat."""
    campaign, _ = mixed
    snapshot = export(campaign, include_repeats=True, created_from=T0 + timedelta(days=5))
    [row] = pair_rows(snapshot)
    assert row["repeat_of"] is not None
    bundle = tmp_path / "snapshot.zip"
    bundle.write_bytes(local(snapshot, "snapshot.zip").read_bytes())
    _wipe()

    imported, created = snapshot_import(source=bundle)
    assert created and Judgement.objects.count() == 1
    again = imported.campaigns.get()
    [copy] = pair_rows(export(again, include_repeats=True))
    assert copy["repeat_of"] is not None and _comparable([copy])[0] | {"repeat_of": None} == (
        _comparable([row])[0] | {"repeat_of": None})
    # Left out by default, as repeats are.
    empty = snapshot_create(name="none", filters=DatasetFilters(campaign_ids=(again.pk,)), background=False)
    assert empty.status == "failed" and "No judgements match" in empty.error


@pytest.mark.parametrize("mid_stream", [
    False,
    # Tiny chunks: the lookups happen while PostgreSQL's COPY still holds the connection.
    pytest.param(True, marks=pytest.mark.django_db(transaction=True)),
])
def test_a_pair_and_an_annotator_that_arrive_during_the_export_get_their_own_provenance(
    mixed: tuple[Campaign, Campaign], annotator: Any, monkeypatch: pytest.MonkeyPatch, mid_stream: bool,
) -> None:
    """The segments' provenance and the usernames are read before the judgements stream. A
    new trajectory, pair and annotator labelled in between (the loop keeps adding pairs)
    must be exported with their own segment bounds, seed and name — not a neighbour's."""
    from django.contrib.auth.models import Group
    from django.core.files.base import ContentFile

    from feedback.datasets import export as export_module
    from feedback.models import PolicyVersion
    from feedback.services.annotation import JudgementInput
    from feedback.storage import TrajectoryArrays
    from tests.feedback.conftest import FAKE_MP4, trajectory_arrays

    _, second = mixed
    stream_rows = export_module.stream_rows

    def labelled_meanwhile(queryset: Any) -> Any:
        policy = PolicyVersion.objects.get(env=second.env)
        trajectory = services.trajectory_create(
            env=second.env, policy=policy, arrays=TrajectoryArrays(**trajectory_arrays(30, seed=99)),
            segment_length=10, source=Trajectory.Source.ROLLOUT, seed=99, render_in_background=False)
        for segment in trajectory.segments.all():
            clip = default_storage.save(f"clips/late-{segment.pk}.mp4", ContentFile(FAKE_MP4))
            Segment.objects.filter(pk=segment.pk).update(clip=clip, clip_status=Segment.ClipStatus.READY)
        late_segment = trajectory.segments.order_by("start").last()
        services.pairs_add(campaign=second, segment_pairs=[(second.pairs.first().segment_a_id, late_segment.pk)],
                           priority=100)
        newbie = User.objects.create_user(username="newbie", password="x")
        newbie.groups.add(Group.objects.get_or_create(name="annotator")[0])
        assignment = services.assignment_lease_next(campaign=second, annotator=newbie)
        services.judgement_record(assignment_id=assignment.pk, annotator=newbie,
                                  answer=JudgementInput("left", "desirable", "unsure", elapsed_ms=3000))
        # One more pair after it, so that the late pair is not the stream's last.
        services.pairs_create_random(campaign=second, count=1, seed=5)
        label(annotator, second, ["right"], day=3)
        return stream_rows(queryset)

    monkeypatch.setattr(export_module, "stream_rows", labelled_meanwhile)
    if mid_stream:
        monkeypatch.setattr(export_module, "CURSOR_CHUNK", 1)
        monkeypatch.setattr(export_module, "COPY_BLOCK", 16)
    rows = pair_rows(export(second))
    [late] = [r for r in rows if r["votes"][0]["annotator"] == "newbie"]
    segment = Segment.objects.select_related("trajectory").get(pk=late["segment_b_id"])
    assert (late["trajectory_b_id"], late["start_b"], late["end_b"], late["seed_b"]) == (
        segment.trajectory_id, segment.start, segment.end, 99) == (segment.trajectory_id, 20, 30, 99)
    assert {v["annotator"] for r in rows for v in r["votes"]} == {"annie", "newbie"}
