"""Reward-model checkpoints: state dict plus configs, nothing pickled beyond plain containers.

A checkpoint is a dict of tensors, strings, numbers, lists and dicts, so it loads with
``torch.load(weights_only=True)``: opening a checkpoint cannot run code.

Two kinds share one format: a model (:func:`save_reward_model`: the final weights with their
output normalisation) and a training state (:func:`save_training_state`: the weights mid-run
plus what the trainer needs to continue: Adam's state, the generator, the epoch counter and the
early-stopping bookkeeping, under ``"training"``). Either loads as a model; only the second
resumes training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch

from learning.core.configs import RewardNetConfig, RewardTrainingConfig
from learning.core.nets import RewardEnsemble
from learning.core.reward_learning import TrainingState

__all__ = [
    "CHECKPOINT_FORMAT",
    "RewardCheckpoint",
    "RewardCheckpointError",
    "load_reward_model",
    "load_training_state",
    "save_reward_model",
    "save_training_state",
]

Source = str | Path | IO[bytes]

CHECKPOINT_FORMAT = "preflab.reward_ensemble.v1"


class RewardCheckpointError(ValueError):
    """The file is not a PrefLab reward-model checkpoint, or is damaged."""


@dataclass
class RewardCheckpoint:
    ensemble: RewardEnsemble
    net_config: RewardNetConfig
    train_config: RewardTrainingConfig | None
    extra: dict[str, Any]


def save_reward_model(
    path: str | Path,
    ensemble: RewardEnsemble,
    *,
    train_config: RewardTrainingConfig | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write ``ensemble``'s weights, normalisation buffers and configs to ``path``.
    ``extra`` (plain JSON-like values: metrics, epoch, optimiser state) rides along."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "net_config": ensemble.config.to_dict(),
        "train_config": train_config.to_dict() if train_config is not None else None,
        "obs_shape": list(ensemble.obs_shape),
        "act_dim": ensemble.act_dim,
        "state_dict": {k: v.detach().cpu() for k, v in ensemble.state_dict().items()},
        "extra": extra or {},
    }
    _write(path, payload)


def save_training_state(path: str | Path, state: TrainingState) -> None:
    """Write a resumable :class:`TrainingState` to ``path`` (atomically), on the CPU."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "net_config": state.net_config.to_dict(),
        "train_config": state.train_config.to_dict(),
        "obs_shape": list(state.obs_shape),
        "act_dim": state.act_dim,
        "state_dict": _cpu(state.model),
        "extra": {},
        "training": {
            "epoch": state.epoch,
            "step": state.step,
            "optimiser": _cpu(state.optimiser),
            "generator": state.generator.detach().cpu(),
            "best_loss": state.best_loss,
            "best_epoch": state.best_epoch,
            "bad_epochs": state.bad_epochs,
            "best_model": _cpu(state.best_model) if state.best_model is not None else None,
            "history": [dict(record) for record in state.history],
        },
    }
    _write(path, payload)


def load_training_state(source: Source) -> TrainingState:
    """The :class:`TrainingState` saved by :func:`save_training_state`, on the CPU (the trainer
    moves it to its device). A model checkpoint has none: ``RewardCheckpointError``."""
    payload = _read(source, device="cpu")
    training = payload.get("training")
    if not isinstance(training, dict):
        raise RewardCheckpointError(
            f"{_name(source)} holds a trained model, not a training state to resume from."
        )
    return TrainingState(
        net_config=RewardNetConfig.from_dict(payload["net_config"]),
        train_config=RewardTrainingConfig.from_dict(payload["train_config"]),
        obs_shape=tuple(payload["obs_shape"]),
        act_dim=int(payload["act_dim"]),
        epoch=int(training["epoch"]),
        step=int(training["step"]),
        model=payload["state_dict"],
        optimiser=training["optimiser"],
        generator=training["generator"],
        best_loss=float(training["best_loss"]),
        best_epoch=int(training["best_epoch"]),
        bad_epochs=int(training["bad_epochs"]),
        best_model=training["best_model"],
        history=list(training["history"]),
    )


def _cpu(value: Any) -> Any:
    """Tensors anywhere in nested dicts/lists/tuples, detached and copied to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: _cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cpu(v) for v in value)
    return value


def _write(path: str | Path, payload: dict[str, Any]) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # atomic: a reader never sees half a checkpoint


def _name(source: Source) -> str:
    return str(source) if isinstance(source, (str, Path)) else getattr(source, "name", "file")


def _read(source: Source, *, device: str | torch.device) -> dict[str, Any]:
    try:
        payload = torch.load(
            Path(source) if isinstance(source, str) else source,
            map_location=device,
            weights_only=True,
        )
    except Exception as exc:  # noqa: BLE001 - torch raises assorted types for foreign files
        raise RewardCheckpointError(
            f"Could not read {_name(source)} as a checkpoint ({type(exc).__name__}: {exc})."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise RewardCheckpointError(
            f"{_name(source)} is not a PrefLab reward-model checkpoint ({CHECKPOINT_FORMAT})."
        )
    return payload


def load_reward_model(source: Source, *, device: str | torch.device = "cpu") -> RewardCheckpoint:
    """Rebuild the ensemble saved by :func:`save_reward_model` (or the weights of a training
    state), in eval mode, on ``device``. ``source``: a path or a binary file object."""
    payload = _read(source, device=device)
    net_config = RewardNetConfig.from_dict(payload["net_config"])
    train_config = (
        RewardTrainingConfig.from_dict(payload["train_config"])
        if payload["train_config"] is not None
        else None
    )
    ensemble = RewardEnsemble(net_config, tuple(payload["obs_shape"]), payload["act_dim"])
    ensemble.load_state_dict(payload["state_dict"])
    ensemble.to(device).eval()
    return RewardCheckpoint(
        ensemble=ensemble, net_config=net_config, train_config=train_config, extra=payload["extra"]
    )
