"""Data-parallel reward training for labs with several GPUs: ``torchrun`` entry point.

    torchrun --standalone --nproc_per_node=4 -m learning.core.distributed \\
        --dataset prefs.npz --config config.json --out reward_model.pt

``prefs.npz`` is written by :func:`learning.core.data.save_preference_dataset` (``manage.py
train_reward_model --export-dataset`` writes a campaign's); ``config.json`` is
``{"net": RewardNetConfig.to_dict(), "train": RewardTrainingConfig.to_dict()}`` (missing
fields take their defaults). Every rank loads the whole dataset; :func:`train_reward_model`
splits each minibatch across the ranks and DDP averages the gradients, so N processes train
the same model one process would (``tests/learning/test_distributed.py`` checks this with
two CPU processes on the gloo backend). Rank 0 writes the checkpoint and prints the result.
The backend is NCCL when the config's device resolves to CUDA, gloo otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import torch
import torch.distributed as dist

from learning.core.checkpoints import save_reward_model
from learning.core.configs import ConfigError, RewardNetConfig, RewardTrainingConfig
from learning.core.data import PreferenceDataError, load_preference_dataset
from learning.core.reward_learning import resolve_device, train_reward_model

__all__ = ["main"]


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="torchrun ... -m learning.core.distributed",
        description="Train a reward ensemble data-parallel over the ranks torchrun starts.",
    )
    parser.add_argument("--dataset", required=True, help=".npz from save_preference_dataset")
    parser.add_argument("--config", required=True, help='JSON {"net": {...}, "train": {...}}')
    parser.add_argument("--out", required=True, help="where rank 0 writes the checkpoint")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    try:
        with open(args.config) as handle:
            raw = json.load(handle)
        net_config = RewardNetConfig.from_dict(raw.get("net", {}))
        train_config = RewardTrainingConfig.from_dict(raw.get("train", {}))
        dataset = load_preference_dataset(args.dataset)
    except (OSError, ValueError, ConfigError, PreferenceDataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if "RANK" not in os.environ:
        print("note: not under torchrun; training in this one process.", file=sys.stderr)
    else:
        cuda = resolve_device(train_config.device).type == "cuda"
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    try:
        ensemble, result = train_reward_model(dataset, net_config, train_config)
        if not dist.is_initialized() or dist.get_rank() == 0:
            save_reward_model(
                args.out, ensemble, train_config=train_config, extra={"result": result.summary()}
            )
            print(json.dumps(result.summary()))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
