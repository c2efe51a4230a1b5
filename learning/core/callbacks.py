"""Progress callbacks shared by every trainer in ``learning.core``.

A trainer calls ``callback.on_step(step, metrics)`` as it goes (as Stable-Baselines3's
``BaseCallback._on_step``); returning False asks it to stop at that point, keeping what it has
learned so far. The Django side implements this to write heartbeats and progress and to
notice a cancel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = ["CallbackList", "RecordingCallback", "TrainingCallback"]


@runtime_checkable
class TrainingCallback(Protocol):
    def on_step(self, step: int, metrics: Mapping[str, float]) -> bool:
        """``step``: optimiser steps so far; ``metrics``: plain floats. Return False to stop."""
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
