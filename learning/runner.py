"""The one bridge between Django rows and ``learning.core``: judgements become a
``PreferenceDataset``, a run row's config becomes frozen dataclasses, and training reports go
back to the row.

What resumes after a crash: while training, the reporter saves the trainer's resumable state
to the run's ``checkpoint`` file (after the first epoch, then at most every
``checkpoint_interval_s``). A run that a stale-run sweep re-queued rebuilds its dataset from its
recorded judgement ids and, when the checkpoint holds a training state for the same configs
(``max_epochs`` may differ), continues from the epoch after it: same weights, optimiser,
random draws and early-stopping bookkeeping, and its metrics series is the checkpoint's
history up to that epoch. Otherwise it starts over, and says why in its log.

A run trains on exactly the judgements it was queued with. If any of them can no longer be
used when an attempt starts (deleted, edited to "can't tell", or its annotator excluded from
the campaign since), or a resumed attempt finds their answers edited (the snapshot's
``labels_sha256`` differs), the run fails with ``SnapshotChanged`` naming them: resuming would
continue weights fitted to labels that are gone, with a train/held-out split drawn for another
number of pairs, and silently training on other data would make the run's snapshot lie. A new
run snapshots the campaign's current labels.
"""

from __future__ import annotations

import hashlib
import logging
import math
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from django.core.files import File
from django.utils import timezone

from feedback.models import Judgement, Segment
from feedback.storage import load_npz
from learning import broadcast, selectors
from learning.core.checkpoints import (
    RewardCheckpointError,
    load_training_state,
    save_reward_model,
    save_training_state,
)
from learning.core.configs import RewardNetConfig, RewardTrainingConfig
from learning.core.data import PreferenceDataset
from learning.core.reward_learning import TrainingState, train_reward_model
from learning.models import ModelKind, ModelVersion, TrainingRun

logger = logging.getLogger(__name__)


class NotEnoughData(ValueError):
    """The campaign has too few usable judgements to train on."""


class SnapshotChanged(RuntimeError):
    """Judgements a run was queued with were deleted, excluded or edited before it used them."""


@dataclass(frozen=True)
class RunConfig:
    net: RewardNetConfig
    train: RewardTrainingConfig

    def to_dict(self) -> dict[str, Any]:
        return {"net": self.net.to_dict(), "train": self.train.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """Raises ``ConfigError`` naming the bad field; unknown sections are an error too."""
        from learning.core.configs import ConfigError

        unknown = sorted(set(data) - {"net", "train"})
        if unknown:
            raise ConfigError(
                f"config has no section(s) {', '.join(unknown)}; use 'net' and 'train'."
            )
        return cls(
            net=config_section(data, "net", RewardNetConfig),
            train=config_section(data, "train", RewardTrainingConfig),
        )


def config_section(data: Mapping[str, Any], name: str, config_cls: type[Any]) -> Any:
    """``config_cls`` built from the JSON section ``data[name]`` (absent: all defaults); a
    ``ConfigError`` naming ``config.<name>`` and the field when the section is bad."""
    from learning.core.configs import ConfigError

    values = data.get(name) or {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"config.{name} must be an object of field values.")
    _check_types(config_cls, values, prefix=f"config.{name}")
    try:
        return config_cls.from_dict(values)
    except ConfigError as exc:
        raise ConfigError(f"config.{name}: {exc}") from None


def _check_types(config_cls: type, values: Mapping[str, Any], *, prefix: str) -> None:
    """Each given value has the type of the field's default (JSON numbers: an int is a valid
    float, a bool is not a number), so bad input is a ConfigError naming the field, not a
    TypeError deep in the trainer."""
    from dataclasses import MISSING, fields

    from learning.core.configs import ConfigError

    for field in fields(config_cls):
        if field.name not in values or field.default is MISSING:
            continue
        value, default = values[field.name], field.default
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif isinstance(default, tuple):
            ok = isinstance(value, list) and all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            )
        else:
            ok = isinstance(value, type(default))
        if not ok:
            raise ConfigError(
                f"{prefix}.{field.name} must be {type(default).__name__ if not isinstance(default, tuple) else 'a list of ints'}, "
                f"got {value!r}."
            )


_DESIRABILITY = {"desirable": 1.0, "undesirable": 0.0}


def encode_actions(
    actions: np.ndarray, action_space: Mapping[str, Any] | None, length: int
) -> np.ndarray:
    """A segment's stored actions → (T, act_dim) float32: one-hot for a ``Discrete`` space (the
    encoding ``learning.core.finetune``'s reward wrapper feeds a reward model while a policy
    trains), flattened otherwise. ``action_space`` is the env spec's ``describe_space`` JSON."""
    if action_space and action_space.get("type") == "Discrete" and "n" in action_space:
        index = actions.reshape(length).astype(np.int64) - int(action_space.get("start", 0))
        out = np.zeros((length, int(action_space["n"])), dtype=np.float32)
        out[np.arange(length), index] = 1.0
        return out
    return actions.astype(np.float32).reshape(length, -1)


def _segment_values(
    segment: Segment, cache: dict[int, dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    trajectory = segment.trajectory
    if trajectory.pk not in cache:
        cache[trajectory.pk] = load_npz(trajectory.arrays.name)
    arrays = cache[trajectory.pk]
    return {
        key: arrays[key][segment.start : segment.end]
        for key in ("observations", "actions", "rewards")
        if key in arrays
    }


def build_dataset(
    judgements: list[Judgement],
    *,
    segment_length: int,
    action_space: Mapping[str, Any] | None = None,
) -> tuple[PreferenceDataset, dict[str, Any]]:
    """Rows → core arrays. Returns the dataset and a JSON snapshot of what went in.

    Segments shorter than ``segment_length`` (a trajectory's tail) are left out with their
    pairs: Bradley–Terry compares sums of rewards, fair only over equal lengths. A segment's
    desirability is its labels' common answer (NaN when unsure or when annotators disagree).
    True returns are given only when every segment has one.
    """
    index: dict[int, int] = {}
    observations: list[np.ndarray] = []
    actions: list[np.ndarray] = []
    true_returns: list[float | None] = []
    labels: list[set[float]] = []
    pairs: list[tuple[int, int]] = []
    preferences: list[float] = []
    used: list[int] = []
    segment_pks: list[int] = []
    skipped_short = 0
    cache: dict[int, dict[str, np.ndarray]] = {}

    def segment_index(segment: Segment) -> int | None:
        if segment.pk in index:
            return index[segment.pk]
        if segment.end - segment.start != segment_length:
            return None
        values = _segment_values(segment, cache)
        observations.append(values["observations"].astype(np.float32).reshape(segment_length, -1))
        actions.append(encode_actions(values["actions"], action_space, segment_length))
        if segment.true_return is not None:
            true_returns.append(float(segment.true_return))
        elif "rewards" in values:
            true_returns.append(float(values["rewards"].sum()))
        else:
            true_returns.append(None)
        labels.append(set())
        segment_pks.append(segment.pk)
        index[segment.pk] = len(observations) - 1
        return index[segment.pk]

    for judgement in judgements:
        probability = judgement.preferred_a_probability
        if probability is None:
            continue
        a = segment_index(judgement.pair.segment_a)
        b = segment_index(judgement.pair.segment_b)
        if a is None or b is None:
            skipped_short += 1
            continue
        pairs.append((a, b))
        preferences.append(probability)
        used.append(judgement.pk)
        for seg, answer in ((a, judgement.desirability_a), (b, judgement.desirability_b)):
            labels[seg].add(_DESIRABILITY.get(answer, math.nan))

    if not pairs:
        raise NotEnoughData(
            "The campaign has no usable judgements yet (A/B/equal answers on full-length segments, "
            "from annotators not excluded); collect some labels first."
        )
    desirability = np.array(
        [next(iter(s)) if len(s) == 1 else math.nan for s in labels], dtype=np.float32
    )
    known = (
        None if any(r is None for r in true_returns) else np.array(true_returns, dtype=np.float32)
    )
    pair_array = np.array(pairs, dtype=np.int64)  # (M, 2) indices into the segments
    preference_array = np.array(preferences, dtype=np.float32)  # (M,) P(A preferred)
    dataset = PreferenceDataset(
        observations=np.stack(observations),  # (N, T, obs_dim)
        actions=np.stack(actions),  # (N, T, act_dim)
        pairs=pair_array,
        preferences=preference_array,
        desirability=desirability,
        true_returns=known,
    )
    snapshot = {
        "judgement_ids": used,
        "num_judgements": len(used),
        "num_segments": dataset.num_segments,
        "num_skipped_short_segments": skipped_short,
        "segment_length": segment_length,
        "labels_sha256": _labels_sha256(
            used, segment_pks, pair_array, preference_array, desirability
        ),
    }
    return dataset, snapshot


def _labels_sha256(
    judgement_ids: list[int],
    segment_pks: list[int],
    pairs: np.ndarray,
    preferences: np.ndarray,
    desirability: np.ndarray,
) -> str:
    """A digest of what the labels say (which judgements, on which segments, with which
    preference and desirability), so a resumed attempt can tell that its data is the data
    its checkpoint was trained on. Segment arrays are immutable and left out."""
    digest = hashlib.sha256()
    for array in (
        np.asarray(judgement_ids, dtype=np.int64),
        np.asarray(segment_pks, dtype=np.int64),
        pairs,
        preferences,
        desirability,  # NaN (unsure) hashes as its bit pattern
    ):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def snapshot_judgements(run: TrainingRun) -> list[Judgement]:
    """The judgements ``run`` was queued with (all usable ones for a run without a snapshot).
    Raises ``SnapshotChanged`` naming the recorded ids that can no longer be used."""
    judgements = selectors.judgements_for_training(campaign=run.campaign)
    recorded = run.dataset.get("judgement_ids")
    if recorded is None:
        return list(judgements)
    rows = list(judgements.filter(pk__in=recorded))
    missing = sorted(set(recorded) - {row.pk for row in rows})
    if missing:
        shown = ", ".join(str(pk) for pk in missing[:20]) + (", …" if len(missing) > 20 else "")
        raise SnapshotChanged(
            f"{len(missing)} of the {len(recorded)} judgements this run was queued with can no "
            f"longer be used (ids {shown}): deleted, edited to \"can't tell\", or their annotator "
            "was excluded from the campaign since. A run trains on exactly the judgements it was "
            "queued with; start a new run to train on the campaign's current labels."
        )
    return rows


HEARTBEAT_EVERY_STEPS = 20
"""Optimiser steps between the trainer's reports inside an epoch, when the run's config asks
for none (the reporter throttles what it writes)."""


def trainer_config(train: RewardTrainingConfig) -> RewardTrainingConfig:
    """``train`` as the worker runs it: reporting inside epochs too, so a long epoch still
    heartbeats (the reporter writes at most twice a second) — without that, one epoch longer
    than ``STALE_AFTER_S`` would look like a lost worker. Reports change nothing in training,
    and the run's recorded config stays as it was given."""
    if train.report_every_steps:
        return train
    return replace(train, report_every_steps=HEARTBEAT_EVERY_STEPS)


class RunReporter:
    """The trainer's callback: writes progress, metrics and a heartbeat to the run row, and
    stops training when someone asked to cancel. Writes at most every ``min_interval_s``
    (plus every epoch end), each with ``update_fields`` so the site's cancel flag survives.

    It also saves the trainer's resumable state to the run's checkpoint: at the first epoch end,
    then at most every ``checkpoint_interval_s`` (a crash loses at most that much work).

    Every write is conditional on the run still being this attempt's (status ``running``, same
    ``attempts``): a worker that stalled past the heartbeat window, was swept and whose run
    another worker re-claimed, stops at its next report (``lost``) and never overwrites the
    new attempt's progress or checkpoint."""

    def __init__(
        self,
        run: TrainingRun,
        *,
        max_epochs: int,
        min_interval_s: float = 0.5,
        checkpoint_interval_s: float = 30.0,
        progress_span: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        self.run = run
        self.max_epochs = max_epochs
        self.progress_span = progress_span  # the share of the run's progress bar this covers
        self.min_interval_s = min_interval_s
        self.checkpoint_interval_s = checkpoint_interval_s
        self._last_write = 0.0
        self._last_checkpoint: float | None = None
        self.lost = False  # the run was swept from under this attempt

    def owned(self) -> bool:
        """Whether the run is still this attempt's; sets ``lost`` when it is not."""
        if not self.lost:
            self.lost = not _this_attempt(self.run).exists()
        return not self.lost

    def on_checkpoint(self, state: TrainingState) -> None:
        now = time.monotonic()
        if (
            self._last_checkpoint is not None
            and now - self._last_checkpoint < self.checkpoint_interval_s
        ) or not self.owned():
            return
        self._last_checkpoint = now
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"run-{self.run.pk}-epoch-{state.epoch}.pt"
            save_training_state(path, state)
            store_checkpoint(self.run, path)

    def on_step(self, step: int, metrics: Mapping[str, float]) -> bool:
        run = self.run
        epoch = float(metrics.get("epoch", 0.0))
        epoch_end = "step" in metrics  # the trainer's end-of-epoch record carries the step count
        if epoch_end:
            # Kept in memory every epoch; written with the throttled save below and at the end.
            run.metrics.append({"step": step, **{k: _json_float(v) for k, v in metrics.items()}})
        now = time.monotonic()
        if now - self._last_write < self.min_interval_s and not (
            epoch_end and epoch >= self.max_epochs
        ):
            return True
        self._last_write = now
        run.heartbeat_at = timezone.now()
        done = min(1.0, (epoch if epoch_end else max(epoch - 1.0, 0.0)) / self.max_epochs)
        low, high = self.progress_span
        run.progress = low + (high - low) * done
        if not _this_attempt(run).update(
            heartbeat_at=run.heartbeat_at, progress=run.progress, metrics=run.metrics
        ):
            self.lost = True
            logger.warning("run %s was swept from attempt %s; stopping", run.pk, run.attempts)
            return False
        self._broadcast()
        # Read the cancel flag fresh: the site sets it from another process.
        return not TrainingRun.objects.filter(pk=run.pk, cancel_requested=True).exists()

    def _broadcast(self) -> None:
        """Push the progress just written to the run page's socket; never fails training."""
        run = self.run
        try:
            broadcast.run_event_send(
                run_id=run.pk,
                payload={
                    "id": run.pk,
                    "status": "running",
                    "progress": run.progress,
                    "metrics": run.metrics,
                    "heartbeat_at": run.heartbeat_at.isoformat() if run.heartbeat_at else None,
                },
            )
        except Exception:
            logger.warning("live update for training run %s failed", run.pk, exc_info=True)


def _this_attempt(run: TrainingRun) -> Any:
    """The run's row while it is still running as the attempt ``run`` was claimed for."""
    return TrainingRun.objects.filter(
        pk=run.pk, status=TrainingRun.Status.RUNNING, attempts=run.attempts
    )


def _json_float(value: float) -> float | None:
    return None if not math.isfinite(value) else float(value)


def store_checkpoint(run: TrainingRun, path: Path) -> None:
    """Make the finished local file ``path`` the run's checkpoint. Django storages cannot
    rename, so "write a temporary file, then move it" is: save it under a fresh name, point
    the row at it in one UPDATE, then delete the file it replaced. The row never names a half
    written file; a crash in between leaves at worst an orphan file, never a broken run."""
    previous = run.checkpoint.name
    with path.open("rb") as handle:
        run.checkpoint.save(path.name, File(handle), save=False)
    TrainingRun.objects.filter(pk=run.pk).update(checkpoint=run.checkpoint.name)
    if previous and previous != run.checkpoint.name:
        run.checkpoint.storage.delete(previous)


def resume_state(run: TrainingRun, config: RunConfig) -> tuple[TrainingState | None, str]:
    """The training state to continue ``run`` from, or None; and a line for its log."""
    if not run.checkpoint.name:
        return None, ""
    try:
        with run.checkpoint.open("rb") as handle:
            state = load_training_state(handle)
    except (RewardCheckpointError, OSError) as exc:
        return None, f"Not resuming from the checkpoint ({exc}); training from scratch."
    train = trainer_config(config.train)
    same_train = replace(state.train_config, max_epochs=train.max_epochs) == train
    if state.net_config != config.net or not same_train:
        return None, "The checkpoint was made with other configs; training from scratch."
    return state, f"Attempt {run.attempts}: resumed from epoch {state.epoch}."


def train_run(
    run: TrainingRun,
    *,
    config: RunConfig | None = None,
    progress_span: tuple[float, float] = (0.0, 1.0),
) -> ModelVersion | None:
    """Train a claimed (running) run to the end, from its last checkpoint when it has one.
    Returns the registered reward-model version, or None when the run was cancelled (its
    status is then ``cancelled``). Exceptions propagate to the job, which records them.

    A loop iteration passes its reward sections as ``config`` and the share of its progress
    bar that reward training covers as ``progress_span``."""
    config = config if config is not None else RunConfig.from_dict(run.config)
    torch.set_num_threads(1)  # small nets train faster on one thread (STACK.md)
    # The ids frozen at enqueue time: labels that arrive later wait for the next run, and a
    # re-queued run trains on the same data as its first attempt, or fails saying what changed.
    dataset, snapshot = build_dataset(
        snapshot_judgements(run),
        segment_length=run.campaign.segment_length,
        action_space=run.campaign.env.action_space,
    )
    recorded_sha = run.dataset.get("labels_sha256")
    if recorded_sha is not None and recorded_sha != snapshot["labels_sha256"]:
        raise SnapshotChanged(
            "The answers of judgements this run was queued with were edited since its first "
            "attempt, so its checkpoint was trained on other labels. A run trains on exactly "
            "the judgements it was queued with; start a new run to train on the current labels."
        )
    run.dataset = {**run.dataset, **snapshot}
    run.heartbeat_at = timezone.now()  # loading many arrays can take a while
    run.save(update_fields=["dataset", "heartbeat_at"])

    start, note = resume_state(run, config)
    # A re-queued run's series is the checkpoint's history: the epochs after it are redone.
    run.metrics = (
        [
            {"step": int(record["step"]), **{k: _json_float(v) for k, v in record.items()}}
            for record in start.history
        ]
        if start is not None
        else []
    )
    if note:
        run.log = (run.log + "\n" + note).strip()
        run.save(update_fields=["log", "metrics"])
    reporter = RunReporter(run, max_epochs=config.train.max_epochs, progress_span=progress_span)
    ensemble, result = train_reward_model(
        dataset, config.net, trainer_config(config.train), callback=reporter, start=start
    )
    summary = {
        k: _json_float(v) if isinstance(v, float) else v for k, v in result.summary().items()
    }
    if not reporter.owned():
        # Swept while this worker stalled: the run is another attempt's (or failed) now, and
        # its checkpoint and versions are that attempt's to write.
        return None
    cancelled = TrainingRun.objects.filter(pk=run.pk, cancel_requested=True).exists()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"run-{run.pk}.pt"
        save_reward_model(
            path, ensemble, train_config=config.train, extra={"run": run.pk, "result": summary}
        )
        store_checkpoint(run, path)  # the final model replaces the last training state
        run.device = result.device
        run.result = summary
        run.save(update_fields=["device", "result", "metrics"])
        if cancelled:
            return None
        version = ModelVersion(
            run=run, campaign=run.campaign, kind=ModelKind.REWARD_MODEL, metrics=summary
        )
        with path.open("rb") as handle:
            version.artifact.save(f"reward_model-run-{run.pk}.pt", File(handle), save=False)
        version.save()
    return version
