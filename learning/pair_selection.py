"""Active pair selection for a campaign: the promoted reward model picks the next pairs.

``pairs_select_active`` scores a random pool of not-yet-asked pairs by the disagreement of the
promoted reward ensemble's members (``learning.core.selection``) and queues the most disputed
through ``feedback.services.pairs_add``, stamped ``selector="disagreement"`` and the model
version's id. ``pairs_select_random`` draws from the same kind of pool uniformly, the baseline.

Only full-length segments (exactly the campaign's ``segment_length`` steps) are candidates: the
trainer compares summed rewards and leaves shorter tail segments out (``learning.runner``), so
a pair with a short segment would never be learned from.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from feedback.models import Campaign, Pair, Segment
from feedback.services import NotEnoughSegments, pairs_add
from feedback.services.campaigns import eligible_segments
from learning.core.checkpoints import RewardCheckpoint, load_reward_model
from learning.core.selection import sample_candidate_pairs, select_by_disagreement, select_random
from learning.models import ModelKind, ModelVersion
from learning.runner import _segment_values, encode_actions

__all__ = [
    "NoPromotedModel",
    "candidate_segments",
    "pairs_select_active",
    "pairs_select_random",
    "promoted_reward_model",
    "segment_member_returns",
]

DISAGREEMENT = "disagreement"
RANDOM = "random"


class NoPromotedModel(LookupError):
    """The campaign has no promoted reward-model version to select pairs with."""


def promoted_reward_model(campaign: Campaign) -> ModelVersion:
    version = ModelVersion.objects.filter(
        campaign=campaign, kind=ModelKind.REWARD_MODEL, promoted=True
    ).first()
    if version is None:
        raise NoPromotedModel(
            f"Campaign '{campaign.name}' (id {campaign.pk}) has no promoted reward model: train "
            "one (manage.py train_reward_model) and promote a version first, or select pairs at "
            "random (--selector random)."
        )
    return version


def _load_version(version: ModelVersion, device: str | torch.device) -> RewardCheckpoint:
    """Load the version's checkpoint through Django storage (local or S3) via a temp file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pt"
        with version.artifact.open("rb") as source, path.open("wb") as target:
            for chunk in iter(lambda: source.read(1 << 20), b""):
                target.write(chunk)
        return load_reward_model(path, device=device)


def candidate_segments(campaign: Campaign) -> list[Segment]:
    """The campaign's eligible segments of exactly ``segment_length`` steps, ordered by
    trajectory and start (so each trajectory's arrays are read once)."""
    length = campaign.segment_length
    return list(
        eligible_segments(campaign)
        .filter(span=length)
        .select_related("trajectory")
        .order_by("trajectory_id", "start", "id")
    )


@torch.no_grad()
def segment_member_returns(
    checkpoint: RewardCheckpoint,
    segments: list[Segment],
    *,
    segment_length: int,
    batch_segments: int = 1024,
    device: str | torch.device = "cpu",
    action_space: dict[str, Any] | None = None,
) -> torch.Tensor:
    """Every member's predicted return of each segment: S segments → (K, S), computed in
    batches of ``batch_segments`` segments, holding one trajectory's arrays at a time."""
    ensemble = checkpoint.ensemble
    expected_obs = int(np.prod(ensemble.obs_shape))
    out: list[torch.Tensor] = []
    obs_batch: list[np.ndarray] = []
    act_batch: list[np.ndarray] = []

    def flush() -> None:
        if not obs_batch:
            return
        obs = torch.from_numpy(np.stack(obs_batch)).to(device)  # (B, T, obs_dim)
        act = torch.from_numpy(np.stack(act_batch)).to(device) if ensemble.act_dim else None
        out.append(
            ensemble.segment_returns(
                obs.reshape(len(obs_batch), segment_length, *ensemble.obs_shape), act
            )
            .float()
            .cpu()
        )
        obs_batch.clear()
        act_batch.clear()

    cache: dict[int, dict[str, np.ndarray]] = {}
    for segment in segments:
        if segment.trajectory_id not in cache:
            cache.clear()  # segments come trajectory by trajectory: keep one in memory
        values = _segment_values(segment, cache)
        obs = values["observations"].astype(np.float32).reshape(segment_length, -1)
        if obs.shape[1] != expected_obs:
            raise ValueError(
                f"Segment {segment.pk} has {obs.shape[1]}-dimensional observations but the reward "
                f"model expects {expected_obs}; was it trained on another environment?"
            )
        obs_batch.append(obs)
        if ensemble.act_dim:
            act = encode_actions(values["actions"], action_space, segment_length)
            if act.shape[1] != ensemble.act_dim:
                raise ValueError(
                    f"Segment {segment.pk} has {act.shape[1]}-dimensional actions but the reward "
                    f"model expects {ensemble.act_dim}."
                )
            act_batch.append(act)
        if len(obs_batch) >= batch_segments:
            flush()
    flush()
    if not out:
        return torch.zeros((ensemble.members, 0))
    return torch.cat(out, dim=1)


def _candidate_pool(
    campaign: Campaign, segments: list[Segment], candidates: int, seed: int | None
) -> np.ndarray:
    """(P, 2) indices into ``segments``: up to ``candidates`` pairs not yet in the campaign."""
    if len(segments) < 2:
        raise NotEnoughSegments(
            f"Campaign '{campaign.name}' has {len(segments)} ready segment(s) of the full "
            f"{campaign.segment_length} steps for {campaign.env}; collect rollouts first "
            "(manage.py collect_rollouts)."
        )
    index = {segment.pk: i for i, segment in enumerate(segments)}
    existing = [
        (index[a], index[b])
        for a, b in Pair.objects.filter(campaign=campaign).values_list(
            "segment_a_id", "segment_b_id"
        )
        if a in index and b in index
    ]
    exclude = np.array(existing, dtype=np.int64).reshape(-1, 2)
    return sample_candidate_pairs(len(segments), candidates, exclude=exclude, seed=seed)


def _segment_id_pairs(
    segments: list[Segment], pool: np.ndarray, chosen: np.ndarray
) -> list[tuple[int, int]]:
    """Canonical (lower id, higher id) segment-id pairs, as ``pairs_add`` expects."""
    result = []
    for i, j in pool[chosen]:
        a, b = segments[int(i)].pk, segments[int(j)].pk
        result.append((min(a, b), max(a, b)))
    return result


def _check_counts(count: int, candidates: int | None) -> int:
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}.")
    if candidates is None:
        return max(10 * count, 100)
    if candidates < count:
        raise ValueError(f"candidates ({candidates}) must be at least count ({count}).")
    return candidates


def pairs_select_active(
    *,
    campaign: Campaign,
    count: int,
    candidates: int | None = None,
    seed: int | None = None,
    priority: int = 0,
    device: str = "cpu",
) -> list[Pair]:
    """Queue the ``count`` most disputed new pairs of ``campaign``.

    Loads the campaign's promoted reward-model version, predicts each full-length segment's
    return with every member, draws ``candidates`` (default max(10·count, 100)) pairs not yet
    in the campaign, and queues the ``count`` with the highest variance across members of
    σ(R_A − R_B), stamped with ``selector="disagreement"`` and the version's id. Returns the
    pairs created: fewer than ``count`` only when fewer new pairs exist.

    Raises ``NoPromotedModel`` when no version is promoted, ``NotEnoughSegments`` when fewer
    than two full-length segments are ready, ``ValueError`` for bad counts, a one-member model
    or a model that does not fit the segments.
    """
    candidates = _check_counts(count, candidates)
    version = promoted_reward_model(campaign)
    checkpoint = _load_version(version, device)
    if checkpoint.ensemble.members < 2:
        raise ValueError(
            f"The promoted reward model (version {version.pk}) has a single member, so it has no "
            "disagreement to score pairs by: retrain with ensemble_size ≥ 2, or select pairs at "
            "random (--selector random)."
        )
    segments = candidate_segments(campaign)
    pool = _candidate_pool(campaign, segments, candidates, seed)
    if not len(pool):
        return []
    used = np.unique(pool)  # only score segments that appear in the pool
    returns = segment_member_returns(
        checkpoint,
        [segments[int(i)] for i in used],
        segment_length=campaign.segment_length,
        device=device,
        action_space=campaign.env.action_space,
    )  # (K, U)
    remap = np.full(len(segments), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    chosen, _scores = select_by_disagreement(returns, remap[pool], count)
    return pairs_add(
        campaign=campaign,
        segment_pairs=_segment_id_pairs(segments, pool, chosen),
        priority=priority,
        selector=DISAGREEMENT,
        model_version=str(version.pk),
    )


def pairs_select_random(
    *,
    campaign: Campaign,
    count: int,
    candidates: int | None = None,
    seed: int | None = None,
    priority: int = 0,
) -> list[Pair]:
    """Queue ``count`` new pairs drawn uniformly from the same kind of candidate pool as
    ``pairs_select_active`` (full-length segments, not yet in the campaign), stamped
    ``selector="random"``: the baseline to compare active selection with. Needs no model."""
    candidates = _check_counts(count, candidates)
    segments = candidate_segments(campaign)
    pool = _candidate_pool(campaign, segments, candidates, seed)
    chosen = select_random(len(pool), count, seed=seed)
    return pairs_add(
        campaign=campaign,
        segment_pairs=_segment_id_pairs(segments, pool, chosen),
        priority=priority,
        selector=RANDOM,
    )


def pairs_select(*, selector: str, **kwargs: Any) -> list[Pair]:
    """Dispatch on ``selector``: ``disagreement`` or ``random``."""
    if selector == DISAGREEMENT:
        return pairs_select_active(**kwargs)
    if selector == RANDOM:
        kwargs.pop("device", None)
        return pairs_select_random(**kwargs)
    raise ValueError(f"selector must be '{DISAGREEMENT}' or '{RANDOM}', got {selector!r}.")
