"""Progress callbacks shared by every trainer in ``learning.core``.

A trainer calls ``callback.on_step(step, metrics)`` as it goes (as Stable-Baselines3's
``BaseCallback._on_step``); returning False asks it to stop at that point, keeping what it has
learned so far. The Django side implements this to write heartbeats and progress and to
notice a cancel. A callback that also has ``on_checkpoint(state)`` gets the trainer's
resumable state after each epoch it goes on from, to save it (or not) as it sees fit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # the trainer imports this module
    from learning.core.reward_learning import TrainingState

__all__ = ["CallbackList", "CheckpointCallback", "RecordingCallback", "TrainingCallback"]


@runtime_checkable
class TrainingCallback(Protocol):
    def on_step(self, step: int, metrics: Mapping[str, float]) -> bool:
        """``step``: optimiser steps so far; ``metrics``: plain floats. Return False to stop."""
        ...


@runtime_checkable
class CheckpointCallback(Protocol):
    def on_checkpoint(self, state: TrainingState) -> None:
        """``state``: where training stands after an epoch, as live tensors; save or copy
        what you keep before returning (the next step changes them)."""
        ...


@dataclass
class RecordingCallback:
    """Keeps every report; stops the trainer once ``stop_after_steps`` is reached (if set)."""

    stop_after_steps: int | None = None
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)

    def on_step(self, step: int, metrics: Mapping[str, float]) -> bool:
        self.history.append((step, dict(metrics)))
        return self.stop_after_steps is None or step < self.stop_after_steps


@dataclass
class CallbackList:
    """Calls each callback in order; stops when any of them says stop (all are still called)."""

    callbacks: Sequence[TrainingCallback]

    def on_step(self, step: int, metrics: Mapping[str, float]) -> bool:
        answers = [callback.on_step(step, metrics) for callback in self.callbacks]
        return all(answers)

    def on_checkpoint(self, state: TrainingState) -> None:
        for callback in self.callbacks:
            if isinstance(callback, CheckpointCallback):
                callback.on_checkpoint(state)
