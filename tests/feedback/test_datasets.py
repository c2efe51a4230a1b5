"""Dataset snapshots: export, content hash, filters, formats, import round trip.

Real database, real files in a temporary MEDIA_ROOT, real pyarrow / datasets / minari.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError

from feedback.datasets.filters import DatasetFilterError, DatasetFilters
from feedback.datasets.importer import DatasetImportError, snapshot_import
from feedback.datasets.services import snapshot_create
from feedback.models import (
    AnnotatorExclusion,
    Campaign,
    DatasetSnapshot,
    Judgement,
    Pair,
    Segment,
    Trajectory,
)
from feedback.quality import krippendorff_alpha_nominal
from tests.feedback.datasets_helpers import T0, export, label, local, pair_rows, simulated_user

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def labelled(quick_campaign: Callable[..., Any], annotator: Any, other_annotator: Any) -> Campaign:
    """6 pairs, overlap 3: annie (day 0), otto (day 1) and a simulated teacher (day 2) each
    answer all six."""
    campaign = quick_campaign(name="labelled", n_trajectories=4, pairs=6, overlap=3)
    label(annotator, campaign, ["left", "left", "right", "equal", "cant_tell", "left"], day=0)
    label(other_annotator, campaign, ["left", "right", "right", "left", "left", "equal"], day=1)
    label(simulated_user(), campaign, ["right", "left", "left", "equal", "right", "left"], simulated=True, day=2)
    return campaign


def test_parquet_has_one_row_per_pair_with_every_vote_and_provenance(labelled: Campaign) -> None:
    snapshot = export(labelled)
    rows = pair_rows(snapshot)
    assert len(rows) == 6 and snapshot.counts["pairs"] == 6 and snapshot.counts["judgements"] == 18
    for row in rows:
        pair = Pair.objects.select_related("segment_a__trajectory__policy").get(pk=row["pair_id"])
        stored = list(Judgement.objects.filter(pair=pair).order_by("created_at", "id"))
        assert [(v["annotator"], v["preference"], v["desirability_a"], v["desirability_b"], v["confidence"],
                 v["elapsed_ms"], v["left_is_a"], v["is_simulated"], v["created_at"]) for v in row["votes"]] == [
            (j.annotator.username, j.preference, j.desirability_a, j.desirability_b, j.confidence, j.elapsed_ms,
             j.left_is_a, j.is_simulated, j.created_at) for j in stored]
        known = [j.preferred_a_probability for j in stored if j.preferred_a_probability is not None]
        assert row["soft_label"] == pytest.approx(sum(known) / len(known))
        segment = pair.segment_a
        assert (row["env_id"], row["env_version"], row["trajectory_a_id"], row["start_a"], row["end_a"],
                row["seed_a"], row["policy_a"], row["selector"]) == (
            "Toy-v0", 0, segment.trajectory_id, segment.start, segment.end, segment.trajectory.seed,
            segment.trajectory.policy.name, pair.selector)
    segments = pq.read_table(local(snapshot, "segments.parquet")).to_pylist()
    assert {s["segment_id"] for s in segments} >= {r["segment_a_id"] for r in rows}
    first = segments[0]
    assert len(first["observations"]) == first["end"] - first["start"] and len(first["observations"][0]) == 3


def test_streamed_alpha_equals_the_quality_module(labelled: Campaign) -> None:
    snapshot = export(labelled)
    units = {r["pair_id"]: [None if v["preference"] == "cant_tell" else v["preference"] for v in r["votes"]]
             for r in pair_rows(snapshot)}
    assert snapshot.statistics["agreement"]["krippendorff_alpha"] == pytest.approx(krippendorff_alpha_nominal(units))


def test_the_hash_is_stable_across_exports_and_changes_with_the_data(labelled: Campaign, annotator: Any) -> None:
    first, second = export(labelled), export(labelled)
    assert first.content_hash == second.content_hash and len(first.content_hash) == 64
    # Stored files are downloadable again byte for byte: their recorded sha256 holds.
    for snapshot in (first, second):
        for name, meta in snapshot.files.items():
            with default_storage.open(meta["path"], "rb") as handle:
                import hashlib
                assert hashlib.sha256(handle.read()).hexdigest() == meta["sha256"], name
    Judgement.objects.filter(annotator=annotator).update(confidence=0.9)
    assert export(labelled).content_hash != first.content_hash


def test_the_hash_and_rows_do_not_depend_on_how_the_stream_is_chunked(
    labelled: Campaign, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from feedback.datasets import export as export_module

    whole = export(labelled)
    # Tiny chunks: every pair's votes straddle a chunk boundary somewhere.
    monkeypatch.setattr(export_module, "CURSOR_CHUNK", 2)
    monkeypatch.setattr(export_module, "COPY_BLOCK", 64)
    chunked = export(labelled)
    assert chunked.content_hash == whole.content_hash
    assert pair_rows(chunked) == pair_rows(whole)
    assert pq.ParquetFile(local(chunked, "pairs.parquet")).num_row_groups > 1


def test_filters_choose_the_judgements(labelled: Campaign, annotator: Any, other_annotator: Any) -> None:
    def voters(**filters: Any) -> set[tuple[str, int]]:
        return {(v["annotator"], r["pair_id"]) for r in pair_rows(export(labelled, **filters)) for v in r["votes"]}

    everyone = voters()
    assert {name for name, _ in everyone} == {"annie", "otto", "sim-teacher"}
    assert {n for n, _ in voters(annotators=("otto",))} == {"otto"}
    assert {n for n, _ in voters(source="human")} == {"annie", "otto"}
    assert {n for n, _ in voters(source="simulated")} == {"sim-teacher"}
    day1 = T0.replace(day=2)
    assert {n for n, _ in voters(created_from=day1, created_to=day1.replace(day=3))} == {"otto"}
    AnnotatorExclusion.objects.create(campaign=labelled, annotator=annotator)
    assert "annie" not in {n for n, _ in voters()}
    assert "annie" in {n for n, _ in voters(exclude_excluded=False)}
    unanimous, split = labelled.pairs.order_by("id")[:2]
    Judgement.objects.filter(pair=unanimous).update(preference="a")
    for judgement, answer in zip(Judgement.objects.filter(pair=split).order_by("id"), ["a", "b", "equal"]):
        Judgement.objects.filter(pk=judgement.pk).update(preference=answer)
    strict = pair_rows(export(labelled, min_agreement=1.0, exclude_excluded=False))
    assert all(r["agreement"] == 1.0 for r in strict)
    kept = {r["pair_id"] for r in strict}
    assert unanimous.pk in kept and split.pk not in kept
    with pytest.raises(DatasetFilterError, match="min_agreement"):
        DatasetFilters(campaign_ids=(labelled.pk,), min_agreement=1.5)
    with pytest.raises(DatasetFilterError, match="created_from"):
        DatasetFilters.from_json({"campaign_ids": [labelled.pk], "created_from": "yesterday"})
    with pytest.raises(DatasetFilterError, match="unknown filter"):
        DatasetFilters.from_json({"campaign_ids": [labelled.pk], "colour": "red"})


def test_flagged_annotators_can_be_left_out(labelled: Campaign, other_annotator: Any) -> None:
    # Every one of otto's answers is implausibly quick: quality control flags him too_fast.
    Judgement.objects.filter(annotator=other_annotator).update(elapsed_ms=100)
    names = {v["annotator"] for r in pair_rows(export(labelled, exclude_flagged=True)) for v in r["votes"]}
    assert names == {"annie", "sim-teacher"}


def test_no_matching_judgements_fails_the_snapshot_with_the_reason(labelled: Campaign) -> None:
    snapshot = snapshot_create(name="empty", filters=DatasetFilters(campaign_ids=(labelled.pk,),
                               annotators=("nobody",)), background=False)
    assert snapshot.status == "failed" and "No judgements match" in snapshot.error
    assert not snapshot.files


def test_jsonl_holds_the_same_rows(labelled: Campaign) -> None:
    snapshot = export(labelled, formats=("parquet", "jsonl"))
    lines = local(snapshot, "pairs.jsonl").read_text().splitlines()
    parquet = pair_rows(snapshot)
    assert [json.loads(line)["pair_id"] for line in lines] == [r["pair_id"] for r in parquet]
    assert json.loads(lines[0])["votes"][0]["created_at"].endswith("Z")


def test_loads_in_one_line_with_pandas_and_datasets_offline(labelled: Campaign, tmp_path: Path) -> None:
    import datasets
    import pandas as pd

    snapshot = export(labelled, formats=("parquet", "hf"))
    frame = pd.read_parquet(local(snapshot, "pairs.parquet"))
    assert len(frame) == 6 and list(frame["num_votes"]) == [3] * 6
    loaded = datasets.load_dataset("parquet", data_files=str(local(snapshot, "pairs.parquet")),
                                   split="train", cache_dir=str(tmp_path / "cache"))
    assert loaded.num_rows == 6 and len(loaded[0]["votes"]) == 3
    with zipfile.ZipFile(local(snapshot, "hf.zip")) as archive:
        archive.extractall(tmp_path)
    from_disk = datasets.load_from_disk(str(tmp_path / "hf"))
    assert sorted(from_disk["pair_id"]) == sorted(frame["pair_id"])
    assert datasets.load_from_disk(str(tmp_path / "hf" / "segments")).num_rows == snapshot.counts["segments"]
    card = (tmp_path / "hf" / "README.md").read_text()
    assert snapshot.content_hash in card and "Krippendorff" in card and "`votes`" in card


def test_minari_holds_the_desirable_segments(labelled: Campaign, tmp_path: Path) -> None:
    pytest.importorskip("minari", reason="minari is an optional extra: pip install 'preflab[minari]'")
    import minari

    snapshot = export(labelled, formats=("parquet", "minari"))
    segments = pq.read_table(local(snapshot, "segments.parquet")).to_pylist()
    desirable = [s for s in segments if s["desirable_votes"] > s["undesirable_votes"] + s["unsure_votes"]]
    assert desirable, "the fixture labels some clips desirable"
    with zipfile.ZipFile(local(snapshot, "minari.zip")) as archive:
        archive.extractall(tmp_path)
    os.environ["MINARI_DATASETS_PATH"] = str(tmp_path / "minari")
    dataset = minari.load_dataset(f"preflab/Toy/desirable-v{snapshot.pk}")
    assert dataset.total_episodes == len(desirable)
    episode = next(iter(dataset.iterate_episodes()))
    assert episode.observations.shape[0] == episode.actions.shape[0] + 1


def test_minari_missing_is_a_clear_error(labelled: Campaign, monkeypatch: pytest.MonkeyPatch) -> None:
    from feedback.datasets import minari_writer
    from feedback.datasets.export import DatasetExportError

    # Simulates an install without the extra (the one thing this test is about).
    monkeypatch.setattr(minari_writer, "minari_available", lambda: False)
    with pytest.raises(DatasetExportError, match=r"preflab\[minari\]"):
        snapshot_create(name="m", filters=DatasetFilters(campaign_ids=(labelled.pk,)), formats=["minari"],
                        background=False)


def _imitation_snippet() -> str:
    text = (ROOT / "docs" / "datasets.md").read_text()
    match = re.search(r"<!-- snippet: imitation -->\s*```python\n(.*?)```", text, re.DOTALL)
    assert match, "docs/datasets.md must hold the imitation snippet"
    return match.group(1)


def test_the_documented_imitation_snippet_turns_an_export_into_fragment_pairs(
    labelled: Campaign, tmp_path: Path,
) -> None:
    snapshot = export(labelled)
    for name in ("pairs.parquet", "segments.parquet"):
        (tmp_path / name).write_bytes(local(snapshot, name).read_bytes())
    namespace: dict[str, Any] = {"SNAPSHOT_DIR": str(tmp_path)}
    exec(compile(_imitation_snippet(), "docs/datasets.md", "exec"), namespace)  # noqa: S102
    fragments, preferences = namespace["fragment_pairs"], namespace["preferences"]
    rows = [r for r in pair_rows(snapshot) if r["soft_label"] is not None]
    assert len(fragments) == len(preferences) == len(rows)
    assert preferences.dtype.name == "float32"
    assert list(preferences) == pytest.approx([r["soft_label"] for r in rows])
    a, _b = fragments[0]
    assert a.obs.shape == (a.acts.shape[0] + 1, 3) and a.rews.shape == (a.acts.shape[0],)


def _wipe() -> None:
    """What a fresh instance has: none of the exported rows or users."""
    from django.contrib.auth.models import User

    Judgement.objects.all().delete()
    Campaign.objects.all().delete()
    Segment.objects.all().delete()
    Trajectory.objects.all().delete()
    User.objects.filter(username__in=["annie", "otto", "sim-teacher"]).delete()


def _comparable(rows: list[dict[str, Any]]) -> list[Any]:
    """Rows without the instance-local ids, in a canonical order."""
    local_ids = {"pair_id", "campaign_id", "segment_a_id", "segment_b_id", "trajectory_a_id", "trajectory_b_id",
                 "repeat_of", "pair_created_at"}
    out = [{k: v for k, v in r.items() if k not in local_ids} for r in rows]
    return sorted(out, key=lambda r: (r["seed_a"], r["start_a"], r["seed_b"], r["start_b"]))


def test_export_then_import_reproduces_every_judgement(labelled: Campaign, tmp_path: Path) -> None:
    snapshot = export(labelled, include_repeats=True)
    bundle = tmp_path / "snapshot.zip"
    bundle.write_bytes(local(snapshot, "snapshot.zip").read_bytes())
    before = _comparable(pair_rows(snapshot))
    _wipe()

    imported, created = snapshot_import(source=bundle)
    assert created and imported.origin == "imported" and imported.content_hash == snapshot.content_hash
    [campaign] = imported.campaigns.all()
    assert campaign.status == Campaign.Status.PAUSED and campaign.label_count == 18
    assert Judgement.objects.count() == 18
    again = export(campaign, include_repeats=True)
    assert _comparable(pair_rows(again)) == before
    # Placeholders for people this instance did not know: inactive, no password.
    from django.contrib.auth.models import User
    annie = User.objects.get(username="annie")
    assert not annie.is_active and not annie.has_usable_password()
    # Importing the same snapshot again writes nothing.
    counts = Judgement.objects.count(), Campaign.objects.count()
    same, created_again = snapshot_import(source=bundle)
    assert not created_again and same.pk == imported.pk
    assert (Judgement.objects.count(), Campaign.objects.count()) == counts


def test_segment_arrays_survive_the_round_trip(labelled: Campaign, tmp_path: Path) -> None:
    snapshot = export(labelled)
    bundle = tmp_path / "snapshot.zip"
    bundle.write_bytes(local(snapshot, "snapshot.zip").read_bytes())
    original = {(s["seed"], s["start"]): s for s in pq.read_table(local(snapshot, "segments.parquet")).to_pylist()}
    _wipe()
    imported, _ = snapshot_import(source=bundle, user_prefix="lab-a:")
    again = export(imported.campaigns.get())
    assert {v["annotator"] for r in pair_rows(again) for v in r["votes"]} == {"lab-a:annie", "lab-a:otto",
                                                                               "lab-a:sim-teacher"}
    for s in pq.read_table(local(again, "segments.parquet")).to_pylist():
        o = original[(s["seed"], s["start"])]
        assert (s["observations"], s["actions"], s["rewards"], s["observation_dtype"]) == (
            o["observations"], o["actions"], o["rewards"], o["observation_dtype"])


def test_bad_imports_name_the_problem(labelled: Campaign, tmp_path: Path) -> None:
    snapshot = export(labelled)
    bundle = local(snapshot, "snapshot.zip")
    with zipfile.ZipFile(bundle) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    before = (Judgement.objects.count(), Campaign.objects.count(), Trajectory.objects.count(),
              DatasetSnapshot.objects.count())

    def attempt(**replace: bytes) -> str:
        path = tmp_path / "bad.zip"
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in {**members, **replace}.items():
                archive.writestr(name, data)
        with pytest.raises(DatasetImportError) as caught:
            snapshot_import(source=path)
        return str(caught.value)

    assert "not valid JSON" in attempt(**{"manifest.json": b"{"})
    manifest = json.loads(members["manifest.json"])
    assert "schema version" in attempt(**{"manifest.json": json.dumps({**manifest, "schema_version": 99}).encode()})
    assert "pairs.parquet does not match" in attempt(**{"pairs.parquet": members["pairs.parquet"][:-10]})
    forged = {**manifest, "content_hash": "0" * 64}
    assert "content hash does not match" in attempt(**{"manifest.json": json.dumps(forged).encode()})
    (tmp_path / "nope.txt").write_text("hello")
    with pytest.raises(DatasetImportError, match="neither a snapshot.zip"):
        snapshot_import(source=tmp_path / "nope.txt")
    assert (Judgement.objects.count(), Campaign.objects.count(), Trajectory.objects.count(),
            DatasetSnapshot.objects.count()) == before


def test_a_failing_import_rolls_back_rows_and_files(labelled: Campaign, tmp_path: Path) -> None:
    """A consistent snapshot (checksums and hash recomputed) whose last pair holds an
    unknown answer: trajectories are written before the bad vote is reached, and all of it
    must go."""
    import hashlib

    import pyarrow as pa

    from feedback.datasets.importer import content_hash

    snapshot = export(labelled)
    folder = tmp_path / "forged"
    folder.mkdir()
    with zipfile.ZipFile(local(snapshot, "snapshot.zip")) as archive:
        archive.extractall(folder)
    rows = pq.read_table(folder / "pairs.parquet").to_pylist()
    rows[-1]["votes"][0]["preference"] = "maybe"
    schema = pq.read_schema(folder / "pairs.parquet")
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / "pairs.parquet")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["pairs.parquet"]["sha256"] = hashlib.sha256((folder / "pairs.parquet").read_bytes()).hexdigest()
    manifest["content_hash"] = content_hash(folder)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    _wipe()
    files_before = sorted(p for p in Path(default_storage.location).rglob("*") if p.is_file())
    with pytest.raises(DatasetImportError, match="unknown preference 'maybe'"):
        snapshot_import(source=folder)
    assert (Judgement.objects.count(), Trajectory.objects.count(), Campaign.objects.count()) == (0, 0, 0)
    assert DatasetSnapshot.objects.filter(origin="imported").count() == 0
    assert sorted(p for p in Path(default_storage.location).rglob("*") if p.is_file()) == files_before


def test_management_commands_export_and_import(labelled: Campaign, tmp_path: Path) -> None:
    out = io.StringIO()
    call_command("export_dataset", "--campaign", "labelled", "--format", "jsonl", "--source", "human",
                 "--out", str(tmp_path / "export"), stdout=out)
    assert "12 judgements" in out.getvalue()
    assert {p.name for p in (tmp_path / "export").iterdir()} >= {"pairs.parquet", "segments.parquet", "pairs.jsonl",
                                                                 "manifest.json", "snapshot.zip"}
    with pytest.raises(CommandError, match="No campaign 'nope'"):
        call_command("export_dataset", "--campaign", "nope")
    with pytest.raises(CommandError, match="min_agreement"):
        call_command("export_dataset", "--campaign", "labelled", "--min-agreement", "2")
    _wipe()
    out = io.StringIO()
    call_command("import_dataset", str(tmp_path / "export" / "snapshot.zip"), stdout=out)
    assert "12 judgements" in out.getvalue()
    out = io.StringIO()
    call_command("import_dataset", str(tmp_path / "export"), stdout=out)
    assert "Already imported" in out.getvalue()
    with pytest.raises(CommandError, match="does not exist"):
        call_command("import_dataset", str(tmp_path / "missing.zip"))


def test_export_dataset_can_queue_the_job_for_a_worker(
    labelled: Campaign, django_capture_on_commit_callbacks: Any,
) -> None:
    from django_tasks_db.models import DBTaskResult

    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("export_dataset", "--campaign", str(labelled.pk), "--background", stdout=out)
    snapshot = DatasetSnapshot.objects.get()
    assert snapshot.status == "queued" and f"Snapshot {snapshot.pk} queued" in out.getvalue()
    assert DBTaskResult.objects.filter(status="READY").count() == 1


def test_an_export_that_fails_while_storing_leaves_no_file_behind(
    labelled: Campaign, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The storage refuses the third file (a full disk): the snapshot fails with the reason
    and the two files already stored are deleted."""
    from feedback.datasets import services as services_module

    class FullAfterTwo:
        def __init__(self) -> None:
            self.saved = 0

        def __getattr__(self, name: str) -> Any:
            return getattr(default_storage, name)

        def save(self, name: str, content: Any) -> str:
            self.saved += 1
            if self.saved == 3:
                raise OSError(28, "No space left on device")
            return default_storage.save(name, content)

    storage = FullAfterTwo()
    monkeypatch.setattr(services_module, "default_storage", storage)
    snapshot = snapshot_create(name="full", filters=DatasetFilters(campaign_ids=(labelled.pk,)),
                               formats=("parquet", "jsonl"), background=False)
    assert storage.saved == 3
    assert snapshot.status == "failed" and "No space left on device" in snapshot.error
    assert snapshot.files == {} and snapshot.content_hash == ""
    assert not list(Path(default_storage.location, "datasets").rglob("*.*"))
