"""Policy checkpoints: ``policy.state_dict()`` plus config, loaded with ``weights_only=True``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

import torch

from learning.core.finetune.config import FinetuneConfig
from learning.core.finetune.training import algo_name, build_model
from learning.core.finetune.vec_env import make_vec_env
from learning.core.rollouts import CheckpointError

__all__ = ["POLICY_CHECKPOINT_FORMAT", "load_policy", "save_policy"]

POLICY_CHECKPOINT_FORMAT = "preflab.sb3_policy.v1"

Source = str | Path | IO[bytes]


def save_policy(
    path: str | Path,
    model: Any,
    config: FinetuneConfig,
    *,
    env_id: str,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write ``model.policy.state_dict()``, the config and the env id to ``path`` (atomically).
    Plain containers only, so :func:`load_policy` reads it with ``weights_only=True``."""
    payload = {
        "format": POLICY_CHECKPOINT_FORMAT,
        "algo": algo_name(model),
        "env_id": env_id,
        "config": replace(config, algo=algo_name(model)).to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.policy.state_dict().items()},
        "extra": dict(extra or {}),
    }
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_policy(source: Source, *, device: str = "cpu") -> tuple[Any, FinetuneConfig, str]:
    """Rebuild the SB3 model saved by :func:`save_policy`: (model, config, env_id). The model
    sits on a one-env ``DummyVecEnv`` of its env id (``set_env`` moves it). Raises
    :class:`~learning.core.rollouts.CheckpointError` for foreign or damaged files."""
    name = str(source) if isinstance(source, (str, Path)) else getattr(source, "name", "file")
    try:
        payload = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises assorted types for foreign files
        raise CheckpointError(f"Could not read {name} as a policy checkpoint ({exc}).") from None
    if not isinstance(payload, dict) or payload.get("format") != POLICY_CHECKPOINT_FORMAT:
        raise CheckpointError(f"{name} is not a PrefLab policy checkpoint ({POLICY_CHECKPOINT_FORMAT}).")
    config = replace(FinetuneConfig.from_dict(payload["config"]), device=device)
    venv = make_vec_env(payload["env_id"], 1, seed=config.seed)
    model = build_model(replace(config, n_envs=1), venv)
    try:
        model.policy.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{name} does not fit a {payload['algo'].upper()} policy: {exc}") from None
    return model, config, str(payload["env_id"])
