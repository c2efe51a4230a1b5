"""Reward-learning benchmark: PrefLab's trainer on a fixed pool of Pendulum-v1 segments.

The pool: full 200-step episodes of Pendulum-v1 from a random policy, the scripted swing-up
controller, and the controller with random actions mixed in (so returns cover the whole
range), cut into segments of ``--segment-length`` steps. Pairs of segments are drawn with a
fixed seed and labelled by the B-Pref oracle teacher from the true reward. For each label
budget the trainer sees that many labelled pairs (its own 20% held out for early stopping)
and is scored on a fixed set of test pairs it never saw: accuracy (ties excluded) and
Pearson correlation of predicted and true segment returns over the whole pool; plus the wall
time of ``train_reward_model``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/reward_learning.py

Writes ``benchmarks/results/reward_learning.json`` and prints a Markdown table. The
side-by-side with ``imitation`` 1.0.1 (its own virtualenv) will read the same pool from
``--save-pool``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from learning.core.configs import RewardNetConfig, RewardTrainingConfig
from learning.core.data import PreferenceDataset
from learning.core.metrics import pearson, preference_accuracy
from learning.core.reward_learning import segment_returns, train_reward_model
from learning.core.rollouts import collect_episode, make_env, policy_for
from learning.core.teachers import teacher


class EpsilonMix:
    """The scripted controller, replaced by a random action with probability ``epsilon``."""

    def __init__(self, env: Any, epsilon: float) -> None:
        self.scripted = policy_for("scripted", env)
        self.random = policy_for("random", env)
        self.epsilon = epsilon
        self.name = f"scripted-eps{epsilon}"
        self.rng = np.random.default_rng(0)

    def reset(self, *, seed: int) -> None:
        self.scripted.reset(seed=seed)
        self.random.reset(seed=seed)
        self.rng = np.random.default_rng(seed)

    def act(self, observation: np.ndarray) -> Any:
        chooser = self.random if self.rng.random() < self.epsilon else self.scripted
        return chooser.act(observation)


def collect_pool(episodes_per_policy: int, segment_length: int) -> dict[str, np.ndarray]:
    """Segments (N, T, 3) observations, (N, T, 1) actions, (N, T) true rewards."""
    env = make_env("Pendulum-v1", render=False)
    observations, actions, rewards = [], [], []
    try:
        policies = [
            policy_for("random", env),
            policy_for("scripted", env),
            EpsilonMix(env, 0.3),
            EpsilonMix(env, 0.7),
        ]
        for policy_index, policy in enumerate(policies):
            for episode in range(episodes_per_policy):
                rollout = collect_episode(
                    env, policy, seed=1000 * policy_index + episode, max_steps=200, render=False
                )
                for start in range(0, rollout.length - segment_length + 1, segment_length):
                    cut = slice(start, start + segment_length)
                    observations.append(rollout.observations[cut].astype(np.float32))
                    actions.append(
                        rollout.actions[cut].astype(np.float32).reshape(segment_length, -1)
                    )
                    rewards.append(rollout.rewards[cut])
    finally:
        env.close()
    return {
        "observations": np.stack(observations),
        "actions": np.stack(actions),
        "rewards": np.stack(rewards),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--budgets", type=int, nargs="+", default=[50, 200, 1000])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--segment-length", type=int, default=25)
    parser.add_argument("--episodes-per-policy", type=int, default=25)
    parser.add_argument("--test-pairs", type=int, default=2000)
    parser.add_argument("--ensemble-size", type=int, nargs="+", default=[1, 3])
    parser.add_argument(
        "--hidden", type=int, nargs="+", default=[32, 32], help="imitation's BasicRewardNet default"
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "reward_learning.json"
    )
    parser.add_argument(
        "--save-pool", type=Path, default=None, help="also write the pool and pairs as .npz"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)

    started = time.perf_counter()
    pool = collect_pool(args.episodes_per_policy, args.segment_length)
    collect_s = time.perf_counter() - started
    n_segments = pool["observations"].shape[0]
    true_returns = pool["rewards"].sum(1)

    rng = np.random.default_rng(12345)
    total_pairs = max(args.budgets) + args.test_pairs
    pairs = rng.integers(n_segments, size=(total_pairs, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    oracle = teacher("oracle")
    labels = np.array(
        oracle.answer_batch(pool["rewards"][pairs[:, 0]], pool["rewards"][pairs[:, 1]], rng=rng),
        dtype=np.float32,
    )
    test_pairs, test_labels = pairs[: args.test_pairs], labels[: args.test_pairs]
    train_pairs_all, train_labels_all = pairs[args.test_pairs :], labels[args.test_pairs :]
    if args.save_pool:
        np.savez_compressed(
            args.save_pool,
            **pool,
            test_pairs=test_pairs,
            test_labels=test_labels,
            train_pairs=train_pairs_all,
            train_labels=train_labels_all,
        )

    obs_t = torch.from_numpy(pool["observations"])
    act_t = torch.from_numpy(pool["actions"])
    rows: list[dict[str, Any]] = []
    for members in args.ensemble_size:
        net = RewardNetConfig(hidden_sizes=tuple(args.hidden), ensemble_size=members)
        for budget in args.budgets:
            for seed in range(args.seeds):
                dataset = PreferenceDataset(
                    obs_t,
                    act_t,
                    train_pairs_all[:budget],
                    train_labels_all[:budget],
                    true_returns=torch.from_numpy(true_returns.astype(np.float32)),
                )
                config = RewardTrainingConfig(
                    lr=1e-3,
                    batch_size=32,
                    max_epochs=300,
                    patience=20,
                    random_response=0.0,
                    held_out_fraction=0.2,
                    seed=seed,
                    device="cpu",
                )
                ensemble, result = train_reward_model(dataset, net, config)
                predicted = segment_returns(ensemble, dataset, torch.arange(n_segments)).mean(
                    0
                )  # (N,)
                delta = (
                    predicted[torch.from_numpy(test_pairs[:, 0])]
                    - predicted[torch.from_numpy(test_pairs[:, 1])]
                )
                p_a = torch.sigmoid(delta)
                rows.append(
                    {
                        "ensemble_size": members,
                        "budget": budget,
                        "seed": seed,
                        "test_accuracy": preference_accuracy(p_a, torch.from_numpy(test_labels)),
                        "pearson": pearson(predicted, torch.from_numpy(true_returns)),
                        "wall_time_s": result.wall_time_s,
                        "epochs": result.epochs,
                        "steps": result.steps,
                        "stop_reason": result.stop_reason,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)

    summary = []
    for members in args.ensemble_size:
        for budget in args.budgets:
            group = [r for r in rows if r["ensemble_size"] == members and r["budget"] == budget]
            summary.append(
                {
                    "ensemble_size": members,
                    "budget": budget,
                    "test_accuracy": statistics.mean(r["test_accuracy"] for r in group),
                    "test_accuracy_min": min(r["test_accuracy"] for r in group),
                    "pearson": statistics.mean(r["pearson"] for r in group),
                    "wall_time_s": statistics.mean(r["wall_time_s"] for r in group),
                    "epochs": statistics.mean(r["epochs"] for r in group),
                }
            )
    report = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "settings": {
            **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "segments": n_segments,
            "collect_s": collect_s,
            "true_return_range": [float(true_returns.min()), float(true_returns.max())],
        },
        "runs": rows,
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(
        f"\n{n_segments} segments of {args.segment_length} steps; {args.test_pairs} test pairs; "
        f"hidden {args.hidden}; {args.seeds} seeds\n"
    )
    print("| K | labels | test accuracy (mean / min) | Pearson | train wall time s | epochs |")
    print("|---|---|---|---|---|---|")
    for s in summary:
        print(
            f"| {s['ensemble_size']} | {s['budget']} | {s['test_accuracy']:.3f} / {s['test_accuracy_min']:.3f} "
            f"| {s['pearson']:.3f} | {s['wall_time_s']:.2f} | {s['epochs']:.0f} |"
        )


if __name__ == "__main__":
    main()
