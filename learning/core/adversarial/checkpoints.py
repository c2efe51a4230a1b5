"""Discriminator checkpoints: state dict plus config, loaded with ``weights_only=True``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import torch

from learning.core.adversarial.config import AdversarialConfig
from learning.core.adversarial.discriminator import Discriminator

__all__ = ["DISCRIMINATOR_CHECKPOINT_FORMAT", "DiscriminatorCheckpointError", "load_discriminator", "save_discriminator"]

DISCRIMINATOR_CHECKPOINT_FORMAT = "preflab.discriminator.v1"


class DiscriminatorCheckpointError(ValueError):
    """The file is not a PrefLab discriminator checkpoint, or is damaged."""


def save_discriminator(
    path: str | Path, discriminator: Discriminator, *, extra: Mapping[str, Any] | None = None
) -> None:
    """Write the discriminator's weights, input statistics and config to ``path`` (atomically);
    ``extra`` (plain JSON-like values: metrics, env id) rides along."""
    payload = {
        "format": DISCRIMINATOR_CHECKPOINT_FORMAT,
        "config": discriminator.config.to_dict(),
        "obs_dim": discriminator.obs_dim,
        "act_dim": discriminator.act_dim,
        "state_dict": {k: v.detach().cpu() for k, v in discriminator.state_dict().items()},
        "extra": dict(extra or {}),
    }
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_discriminator(
    source: str | Path | IO[bytes], *, device: str | torch.device = "cpu"
) -> tuple[Discriminator, dict[str, Any]]:
    """The discriminator saved by :func:`save_discriminator`, in eval mode on ``device``, and
    its ``extra``. Wrap it in :class:`~learning.core.adversarial.AdversarialReward` to fine-tune
    against it."""
    name = str(source) if isinstance(source, (str, Path)) else getattr(source, "name", "file")
    try:
        payload = torch.load(source, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises assorted types for foreign files
        raise DiscriminatorCheckpointError(f"Could not read {name} as a checkpoint ({exc}).") from None
    if not isinstance(payload, dict) or payload.get("format") != DISCRIMINATOR_CHECKPOINT_FORMAT:
        raise DiscriminatorCheckpointError(
            f"{name} is not a PrefLab discriminator checkpoint ({DISCRIMINATOR_CHECKPOINT_FORMAT})."
        )
    discriminator = Discriminator(
        AdversarialConfig.from_dict(payload["config"]), payload["obs_dim"], payload["act_dim"]
    )
    discriminator.load_state_dict(payload["state_dict"])
    return discriminator.to(device).eval(), payload["extra"]
