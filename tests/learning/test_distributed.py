"""Data-parallel reward training under torchrun: two CPU processes on gloo train the model one
process trains."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from learning.core.checkpoints import load_reward_model
from learning.core.configs import RewardNetConfig, RewardTrainingConfig
from learning.core.data import (
    PreferenceDataError,
    PreferenceDataset,
    load_preference_dataset,
    save_preference_dataset,
)
from learning.core.reward_learning import train_reward_model

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[2]


def _dataset(seed: int = 0) -> PreferenceDataset:
    """60 segments of 8 steps with a known linear reward; 150 pairs labelled by it (some ties)."""
    g = torch.Generator().manual_seed(seed)
    obs, act = torch.randn(60, 8, 3, generator=g), torch.randn(60, 8, 2, generator=g)
    true = (obs @ torch.tensor([1.0, -2.0, 0.5])).sum(1) + act[..., 0].sum(1)
    pairs = torch.randint(0, 60, (150, 2), generator=g)
    prefs = (true[pairs[:, 0]] > true[pairs[:, 1]]).float()
    prefs[:10] = 0.5
    desirability = (true > true.median()).float()
    desirability[::7] = float("nan")
    return PreferenceDataset(obs, act, pairs, prefs, desirability=desirability, true_returns=true)


def test_dataset_file_round_trip(tmp_path: Path) -> None:
    data = _dataset()
    save_preference_dataset(str(tmp_path / "prefs.npz"), data)
    loaded = load_preference_dataset(str(tmp_path / "prefs.npz"))
    for name in ("observations", "actions", "pairs", "preferences", "desirability", "true_returns"):
        torch.testing.assert_close(getattr(loaded, name), getattr(data, name), equal_nan=True)


def test_dataset_file_without_pairs_is_rejected(tmp_path: Path) -> None:
    import numpy as np

    np.savez(tmp_path / "bad.npz", observations=np.zeros((2, 3, 4), dtype=np.float32))
    with pytest.raises(PreferenceDataError, match="lacks pairs, preferences"):
        load_preference_dataset(str(tmp_path / "bad.npz"))


@pytest.mark.slow
def test_two_gloo_processes_train_the_one_process_model(tmp_path: Path) -> None:
    data = _dataset()
    net = RewardNetConfig(hidden_sizes=(16, 16), ensemble_size=2)
    # batch 13 over 120 training pairs: the last minibatch is odd-sized, and 13 does not split
    # evenly over two ranks, so the loss weighting by each rank's share is exercised.
    train = RewardTrainingConfig(
        lr=3e-3, batch_size=13, max_epochs=6, patience=0, device="cpu", seed=3
    )
    save_preference_dataset(str(tmp_path / "prefs.npz"), data)
    (tmp_path / "config.json").write_text(
        json.dumps({"net": net.to_dict(), "train": train.to_dict()})
    )

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    completed = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "learning.core.distributed",
            "--dataset", str(tmp_path / "prefs.npz"),
            "--config", str(tmp_path / "config.json"),
            "--out", str(tmp_path / "ddp.pt"),
        ],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads(completed.stdout.strip().splitlines()[-1])

    single, result = train_reward_model(data, net, train)
    ddp = load_reward_model(tmp_path / "ddp.pt").ensemble

    assert summary["steps"] == result.steps == 6 * 10
    for name, value in single.state_dict().items():
        torch.testing.assert_close(ddp.state_dict()[name], value, atol=1e-5, rtol=1e-5)
    assert summary["held_out_accuracy"] == pytest.approx(result.held_out_accuracy, abs=1e-6)
    # Training moved the weights well beyond the tolerance: the comparison means something.
    fresh = RewardTrainingConfig(max_epochs=1, lr=1e-9, patience=0, device="cpu", seed=3)
    untrained, _ = train_reward_model(data, net, fresh)
    moved = single.state_dict()["layers.0.weight"] - untrained.state_dict()["layers.0.weight"]
    assert moved.abs().max() > 1e-2


def test_distributed_entry_point_reports_a_bad_config(tmp_path: Path) -> None:
    from learning.core import distributed

    save_preference_dataset(str(tmp_path / "prefs.npz"), _dataset())
    (tmp_path / "config.json").write_text(json.dumps({"train": {"lr": -1}}))
    code = distributed.main(
        [
            "--dataset", str(tmp_path / "prefs.npz"),
            "--config", str(tmp_path / "config.json"),
            "--out", str(tmp_path / "x.pt"),
        ]
    )  # fmt: skip
    assert code == 2
    assert not (tmp_path / "x.pt").exists()
