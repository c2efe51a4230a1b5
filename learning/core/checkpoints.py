"""Reward-model checkpoints: state dict plus configs, nothing pickled beyond plain containers.

A checkpoint is a dict of tensors, strings, numbers, lists and dicts, so it loads with
``torch.load(weights_only=True)``: opening a checkpoint cannot run code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from learning.core.configs import RewardNetConfig, RewardTrainingConfig
from learning.core.nets import RewardEnsemble

__all__ = [
    "CHECKPOINT_FORMAT",
    "RewardCheckpoint",
    "RewardCheckpointError",
    "load_reward_model",
    "save_reward_model",
]

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
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # atomic: a reader never sees half a checkpoint


def load_reward_model(path: str | Path, *, device: str | torch.device = "cpu") -> RewardCheckpoint:
    """Rebuild the ensemble saved by :func:`save_reward_model`, in eval mode, on ``device``."""
    try:
        payload = torch.load(Path(path), map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises assorted types for foreign files
        raise RewardCheckpointError(
            f"Could not read {path} as a checkpoint ({type(exc).__name__}: {exc})."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise RewardCheckpointError(
            f"{path} is not a PrefLab reward-model checkpoint ({CHECKPOINT_FORMAT})."
        )
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
