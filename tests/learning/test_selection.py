"""Active pair selection: ensemble disagreement (Christiano et al. 2017) and the random baseline.

Core tests use hand-made member returns; Django tests train a tiny ensemble in-process on a
labelled campaign, register it as the promoted version, and select pairs with it.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from django.core.files.base import ContentFile
from django.core.management import CommandError, call_command

from feedback.models import Pair
from feedback.services import assignment_lease_next, judgement_record
from feedback.services.annotation import JudgementInput
from learning import selectors
from learning.core.checkpoints import save_reward_model
from learning.core.configs import RewardNetConfig, RewardTrainingConfig
from learning.core.reward_learning import train_reward_model
from learning.core.selection import (
    disagreement_scores,
    preference_probabilities,
    sample_candidate_pairs,
    select_by_disagreement,
    select_random,
    top_n,
)
from learning.models import ModelVersion, TrainingRun
from learning.pair_selection import (
    NoPromotedModel,
    _candidate_pool,
    _load_version,
    candidate_segments,
    pairs_select_active,
    pairs_select_random,
    segment_member_returns,
)
from learning.runner import build_dataset
from tests.feedback.conftest import quick_campaign  # noqa: F401 - a fixture

# --- core: scores and selectors ----------------------------------------------------------------


def test_pairs_members_disagree_on_score_higher_than_pairs_they_agree_on() -> None:
    # 3 members, 6 segments. Segments 0/1: every member says 0 ≫ 1 (agree, confident).
    # 2/3: every member says they are equal (agree, unsure). 4/5: members split hard.
    returns = torch.tensor(
        [
            [5.0, -5.0, 1.0, 1.0, 4.0, -4.0],
            [5.0, -5.0, 2.0, 2.0, -4.0, 4.0],
            [5.0, -5.0, 3.0, 3.0, 4.0, -4.0],
        ]
    )
    pairs = torch.tensor([[0, 1], [2, 3], [4, 5], [0, 4]])
    probs = preference_probabilities(returns, pairs)
    assert probs.shape == (3, 4)
    torch.testing.assert_close(probs[:, 1], torch.full((3,), 0.5))
    torch.testing.assert_close(probs[0, 0], torch.sigmoid(torch.tensor(10.0)))

    scores = disagreement_scores(returns, pairs)
    assert scores.shape == (4,)
    assert scores[0] < 1e-6 and scores[1] == 0
    # Hand computation for the split pair: P = σ(8), σ(−8), σ(8); population variance.
    p = torch.sigmoid(torch.tensor([8.0, -8.0, 8.0]))
    torch.testing.assert_close(scores[2], ((p - p.mean()) ** 2).mean())
    assert scores[2] > 0.2  # near the 0.25 maximum
    assert scores[2] > scores[3] > scores[0]


def test_a_single_member_scores_nothing_and_bad_inputs_are_named() -> None:
    assert disagreement_scores(torch.randn(1, 4), [[0, 1], [2, 3]]).eq(0).all()
    with pytest.raises(ValueError, match=r"\(P, 2\)"):
        disagreement_scores(torch.randn(2, 4), [0, 1])
    with pytest.raises(ValueError, match="outside"):
        disagreement_scores(torch.randn(2, 4), [[0, 4]])


def test_top_n_returns_the_highest_scores_first_ties_to_the_lower_index() -> None:
    scores = np.array([0.1, 0.3, 0.05, 0.3, 0.2])
    assert top_n(scores, 3).tolist() == [1, 3, 4]
    assert top_n(torch.tensor(scores), 10).tolist() == [1, 3, 4, 0, 2]
    assert top_n(scores, 0).tolist() == []

    returns = torch.tensor([[2.0, 0.0, 0.0, 1.0], [-2.0, 0.0, 0.0, 1.0]])
    chosen, chosen_scores = select_by_disagreement(returns, [[1, 2], [0, 1], [2, 3]], 2)
    # (0,1) is the split one; (1,2) and (2,3) are agreed (score 0), the tie going to index 0.
    assert chosen.tolist() == [1, 0]
    assert chosen_scores[0] > 0.1


def test_the_random_selector_is_deterministic_under_a_seed() -> None:
    first = select_random(100, 10, seed=7)
    assert first.tolist() == select_random(100, 10, seed=7).tolist()
    assert first.tolist() != select_random(100, 10, seed=8).tolist()
    assert len(set(first.tolist())) == 10 and first.min() >= 0 and first.max() < 100
    assert sorted(select_random(5, 10, seed=0).tolist()) == [0, 1, 2, 3, 4]


def test_candidate_pairs_are_distinct_canonical_and_skip_excluded_pairs() -> None:
    exclude = np.array([[1, 0], [2, 3]])
    pool = sample_candidate_pairs(5, 100, exclude=exclude, seed=0)
    keys = {tuple(p) for p in pool.tolist()}
    assert len(pool) == 10 - 2 == len(keys)  # every remaining pair, once
    assert all(i < j for i, j in keys) and not keys & {(0, 1), (2, 3)}
    assert sample_candidate_pairs(5, 3, exclude=exclude, seed=1).tolist() == (
        sample_candidate_pairs(5, 3, exclude=exclude, seed=1).tolist()
    )
    assert sample_candidate_pairs(1, 5).shape == (0, 2)


def test_candidate_pairs_are_sampled_without_enumeration_on_a_huge_pool(monkeypatch: Any) -> None:
    from learning.core import selection

    monkeypatch.setattr(selection, "_ENUMERATE_LIMIT", 10)
    pool = sample_candidate_pairs(1000, 500, exclude=np.array([[0, 1]]), seed=3)
    keys = {tuple(p) for p in pool.tolist()}
    assert len(pool) == 500 == len(keys)
    assert all(i < j for i, j in keys) and (0, 1) not in keys


# --- Django: the promoted model picks the campaign's next pairs ---------------------------------


def label_all(campaign: Any, annotators: list[Any]) -> int:
    """Oracle labels (higher true return wins) for every pair each annotator is leased."""
    count = 0
    for annotator in annotators:
        while (
            assignment := assignment_lease_next(campaign=campaign, annotator=annotator)
        ) is not None:
            pair = assignment.pair
            a_better = pair.segment_a.true_return >= pair.segment_b.true_return
            judgement_record(
                assignment_id=assignment.pk,
                annotator=annotator,
                answer=JudgementInput(
                    preference="left" if a_better == assignment.left_is_a else "right",
                    left_desirability="unsure",
                    right_desirability="unsure",
                    elapsed_ms=4000,
                ),
            )
            count += 1
    return count


def register_trained_version(
    campaign: Any, tmp_path: Any, *, promoted: bool = True, members: int = 3
) -> ModelVersion:
    """Train a tiny 3-member ensemble on the campaign's judgements, in-process, and register it
    as a model version the way the runner does (run row + checkpoint artifact)."""
    torch.set_num_threads(1)
    judgements = list(selectors.judgements_for_training(campaign=campaign))
    dataset, snapshot = build_dataset(judgements, segment_length=campaign.segment_length)
    net = RewardNetConfig(hidden_sizes=(8,), ensemble_size=members)
    train = RewardTrainingConfig(max_epochs=3, batch_size=4, device="cpu", held_out_fraction=0.0)
    ensemble, _ = train_reward_model(dataset, net, train)
    path = tmp_path / "model.pt"
    save_reward_model(path, ensemble, train_config=train)
    run = TrainingRun.objects.create(
        campaign=campaign,
        config={"net": net.to_dict(), "train": train.to_dict()},
        dataset=snapshot,
        status=TrainingRun.Status.SUCCEEDED,
        progress=1.0,
    )
    version = ModelVersion(run=run, campaign=campaign, metrics={}, promoted=promoted)
    version.artifact.save("selection-test.pt", ContentFile(path.read_bytes()), save=False)
    version.save()
    return version


@pytest.fixture
def labelled(quick_campaign: Callable[..., Any], annotator: Any) -> Any:  # noqa: F811
    """5 trajectories × 2 full segments of 10 steps (10 segments, 45 possible pairs),
    8 pairs queued and labelled."""
    campaign = quick_campaign(name="select", n_trajectories=5, length=20, pairs=8)
    assert label_all(campaign, [annotator]) == 8
    return campaign


def test_active_selection_queues_the_most_disputed_new_pairs_stamped_with_the_version(
    labelled: Any, tmp_path: Any
) -> None:
    version = register_trained_version(labelled, tmp_path)
    before = set(Pair.objects.filter(campaign=labelled).values_list("segment_a_id", "segment_b_id"))
    # What the selector will see: the same seeded pool, and the model's member returns.
    segments = candidate_segments(labelled)
    pool = _candidate_pool(labelled, segments, 20, 0)
    returns = segment_member_returns(_load_version(version, "cpu"), segments, segment_length=10)
    assert returns.shape == (3, 10)
    scores = disagreement_scores(returns, pool)
    expected = [
        tuple(sorted((segments[int(i)].pk, segments[int(j)].pk))) for i, j in pool[top_n(scores, 5)]
    ]

    pairs = pairs_select_active(campaign=labelled, count=5, candidates=20, seed=0)

    assert len(pairs) == 5
    assert {p.selector for p in pairs} == {"disagreement"}
    assert {p.model_version for p in pairs} == {str(version.pk)}
    keys = [(p.segment_a_id, p.segment_b_id) for p in pairs]
    assert keys == expected  # the pool's five most disputed, most disputed first
    assert all(a < b for a, b in keys) and len(set(keys)) == 5
    assert not set(keys) & before
    assert scores.max() > 0  # the members do disagree somewhere
    labelled.refresh_from_db()
    assert labelled.pair_count == 8 + 5


def test_selection_never_repeats_a_pair_and_stops_when_the_pool_is_exhausted(
    labelled: Any, tmp_path: Any
) -> None:
    register_trained_version(labelled, tmp_path)
    first = pairs_select_active(campaign=labelled, count=30, candidates=100, seed=1)
    assert len(first) == 30  # 37 new pairs exist; the pool holds them all
    rest = pairs_select_active(campaign=labelled, count=30, candidates=100, seed=2)
    assert len(first) + len(rest) == 45 - 8
    keys = list(Pair.objects.filter(campaign=labelled).values_list("segment_a_id", "segment_b_id"))
    assert len(keys) == len(set(keys)) == 45
    assert pairs_select_active(campaign=labelled, count=5, seed=3) == []


def test_only_the_promoted_version_is_used(labelled: Any, tmp_path: Any) -> None:
    register_trained_version(labelled, tmp_path, promoted=False)
    with pytest.raises(NoPromotedModel, match="no promoted reward model"):
        pairs_select_active(campaign=labelled, count=2)
    promoted = register_trained_version(labelled, tmp_path)
    pairs = pairs_select_active(campaign=labelled, count=2, seed=0)
    assert {p.model_version for p in pairs} == {str(promoted.pk)}


def test_random_selection_needs_no_model_and_is_seeded(
    quick_campaign: Callable[..., Any],  # noqa: F811
) -> None:
    one = quick_campaign(name="r1", n_trajectories=5, pairs=0)
    pairs = pairs_select_random(campaign=one, count=4, seed=5)
    assert len(pairs) == 4 and {p.selector for p in pairs} == {"random"}
    assert {p.model_version for p in pairs} == {""}
    segments = candidate_segments(one)
    order = {s.pk: i for i, s in enumerate(segments)}
    first = [(order[p.segment_a_id], order[p.segment_b_id]) for p in pairs]
    Pair.objects.filter(campaign=one).delete()
    again = pairs_select_random(campaign=one, count=4, seed=5)
    assert [(order[p.segment_a_id], order[p.segment_b_id]) for p in again] == first


def test_the_command_selects_pairs_and_errors_clearly_without_a_promoted_model(
    labelled: Any, tmp_path: Any
) -> None:
    with pytest.raises(CommandError, match="no promoted reward model.*--selector random"):
        call_command("select_pairs", campaign=labelled.pk, count=3)
    assert Pair.objects.filter(campaign=labelled).count() == 8

    out = io.StringIO()
    call_command(
        "select_pairs", campaign=labelled.pk, count=3, selector="random", seed=0, stdout=out
    )
    assert "Queued 3 random pair(s)" in out.getvalue()

    version = register_trained_version(labelled, tmp_path)
    out = io.StringIO()
    call_command(
        "select_pairs",
        "--campaign",
        str(labelled.pk),
        "--count",
        "4",
        "--candidates",
        "20",
        stdout=out,
    )
    assert (
        f"Queued 4 disagreement pair(s) in campaign {labelled.pk} with model version {version.pk}"
        in out.getvalue()
    )
    assert (
        Pair.objects.filter(
            campaign=labelled, selector="disagreement", model_version=str(version.pk)
        ).count()
        == 4
    )

    with pytest.raises(CommandError, match="No campaign with id 999999"):
        call_command("select_pairs", campaign=999999, count=3)
    with pytest.raises(CommandError, match="candidates"):
        call_command("select_pairs", campaign=labelled.pk, count=5, candidates=2)


def test_a_one_member_model_is_refused_rather_than_stamping_arbitrary_pairs(
    labelled: Any, tmp_path: Any
) -> None:
    register_trained_version(labelled, tmp_path, members=1)
    with pytest.raises(CommandError, match="single member.*ensemble_size ≥ 2"):
        call_command("select_pairs", campaign=labelled.pk, count=3)
    assert Pair.objects.filter(campaign=labelled).count() == 8
