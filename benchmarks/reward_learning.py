"""Reward-learning benchmark: PrefLab's trainer on a fixed pool of Pendulum-v1 segments.

The pool: full 200-step episodes of Pendulum-v1 from a random policy, the scripted swing-up
controller, and the controller with random actions mixed in (so returns cover the whole
range), cut into segments of ``--segment-length`` steps. Pairs of segments are drawn with a
fixed seed and labelled by the B-Pref oracle teacher from the true reward. For each label
budget the trainer sees that many labelled pairs and is scored on a fixed set of test pairs
it never saw: accuracy (ties excluded) and Pearson correlation of predicted and true segment
returns over the whole pool; plus the wall and CPU time of ``train_reward_model``.

One trainer configuration for every budget (``TRAIN``): 20% of the labels held out, early
stopping on them only when they are at least ``min_held_out_pairs`` (20, the default) pairs,
i.e. from 100 labels up; below that the split is reported but training runs all
``max_epochs``. An untimed warm-up run first pays the process's one-off costs (torch imports
its compiler stack when the first optimiser is built), so the first timed run is not charged
for them.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/reward_learning.py

Writes ``benchmarks/results/reward_learning.json`` and prints a Markdown table.

Side by side with ``imitation`` 1.0.1 (in its own virtualenv, never imported here): with
``--imitation-python /tmp/imitation-venv/bin/python`` the same pool and pairs are written to
an ``.npz`` (``--save-pool``, or a temporary file) and ``benchmarks/reward_learning_imitation.py``
runs under that interpreter on the same budgets and seeds; one table compares PrefLab (K = 1,
the same single 32-32 net) with imitation, and ``--compare-out`` gets both systems' runs.
``benchmarks/reward_learning_compare.sh`` is the one-command driver.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
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


TRAIN = RewardTrainingConfig(
    lr=1.5e-3,
    batch_size=16,
    max_epochs=80,
    patience=20,
    held_out_fraction=0.2,
    min_held_out_pairs=20,
    random_response=0.0,  # the oracle teacher never answers at random
    device="cpu",
)
"""The one configuration of PrefLab's trainer for every budget (only ``seed`` varies)."""


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
    parser.add_argument(
        "--imitation-python",
        type=Path,
        default=None,
        help="python of a virtualenv with imitation 1.0.1: also run the side-by-side",
    )
    parser.add_argument(
        "--imitation-epochs",
        type=int,
        default=200,
        help="imitation has no early stopping; 200 = its initial_epoch_multiplier default",
    )
    parser.add_argument(
        "--compare-out",
        type=Path,
        default=REPO / "benchmarks" / "results" / "reward_learning_compare.json",
    )
    args = parser.parse_args()
    if args.imitation_python and 1 not in args.ensemble_size:
        parser.error("the side-by-side compares K = 1; include 1 in --ensemble-size")
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
    scratch = tempfile.TemporaryDirectory()
    pool_path = args.save_pool
    if pool_path is None and args.imitation_python:
        pool_path = Path(scratch.name) / "pool.npz"
    if pool_path:
        np.savez_compressed(
            pool_path,
            **pool,
            test_pairs=test_pairs,
            test_labels=test_labels,
            train_pairs=train_pairs_all,
            train_labels=train_labels_all,
        )

    obs_t = torch.from_numpy(pool["observations"])
    act_t = torch.from_numpy(pool["actions"])
    load_before = os.getloadavg()
    warm_up = PreferenceDataset(
        obs_t, act_t, train_pairs_all[: min(args.budgets)], train_labels_all[: min(args.budgets)]
    )
    train_reward_model(
        warm_up,
        RewardNetConfig(hidden_sizes=tuple(args.hidden), ensemble_size=1),
        replace(TRAIN, max_epochs=2),
    )
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
                cpu_started = time.process_time()
                ensemble, result = train_reward_model(dataset, net, replace(TRAIN, seed=seed))
                cpu_s = time.process_time() - cpu_started
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
                        "cpu_time_s": cpu_s,
                        "epochs": result.epochs,
                        "best_epoch": result.best_epoch,
                        "steps": result.steps,
                        "stop_reason": result.stop_reason,
                        "train_pairs": result.num_train_pairs,
                        "held_out_pairs": result.num_held_out_pairs,
                        "pair_epochs_per_s": result.epochs
                        * result.num_train_pairs
                        / result.wall_time_s,
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
                    "cpu_time_s": statistics.mean(r["cpu_time_s"] for r in group),
                    "epochs": statistics.mean(r["epochs"] for r in group),
                    "steps": statistics.mean(r["steps"] for r in group),
                    "pair_epochs_per_s": statistics.mean(r["pair_epochs_per_s"] for r in group),
                }
            )
    report = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "load_average_1_5_15_before": load_before,
            "load_average_1_5_15_after": os.getloadavg(),
        },
        "train_config": TRAIN.to_dict(),
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
    if args.imitation_python:
        compare(args, pool_path, report)
    scratch.cleanup()


def compare(args: argparse.Namespace, pool_path: Path, preflab: dict[str, Any]) -> None:
    """Run imitation's side on the same pool in its own interpreter; print and save the table."""
    imitation_out = args.compare_out.with_name("reward_learning_imitation.json")
    command = [
        str(args.imitation_python),
        str(REPO / "benchmarks" / "reward_learning_imitation.py"),
        "--pool",
        str(pool_path),
        "--budgets",
        *map(str, args.budgets),
        "--seeds",
        str(args.seeds),
        "--epochs",
        str(args.imitation_epochs),
        "--hidden",
        *map(str, args.hidden),
        "--out",
        str(imitation_out),
    ]
    print("\n$ " + " ".join(command), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    subprocess.run(command, check=True, env=env)
    peer = json.loads(imitation_out.read_text())

    rows = []
    for budget in args.budgets:
        ours = next(
            s for s in preflab["summary"] if s["ensemble_size"] == 1 and s["budget"] == budget
        )
        theirs = next(s for s in peer["summary"] if s["budget"] == budget)
        accuracy_gap = ours["test_accuracy"] - theirs["test_accuracy"]
        speedup = theirs["wall_time_s"] / ours["wall_time_s"]
        rows.append(
            {
                "budget": budget,
                "preflab": ours,
                "imitation": theirs,
                "accuracy_gap": accuracy_gap,
                "speedup_wall_time": speedup,
                "speedup_cpu_time": theirs["cpu_time_s"] / ours["cpu_time_s"],
                "speedup_pair_epochs_per_s": ours["pair_epochs_per_s"]
                / theirs["pair_epochs_per_s"],
                "accuracy_target_met": accuracy_gap >= -0.01,
                "speed_target_met": speedup >= 20.0,
            }
        )
    comparison = {
        "machine": preflab["machine"],
        "imitation_machine": peer["machine"],
        "settings": preflab["settings"],
        "imitation_settings": peer["settings"],
        "preflab_runs": preflab["runs"],
        "imitation_runs": peer["runs"],
        "comparison": rows,
    }
    args.compare_out.parent.mkdir(parents=True, exist_ok=True)
    args.compare_out.write_text(json.dumps(comparison, indent=2))

    print(
        f"\nPrefLab K = 1 (one config, TRAIN) vs imitation {peer['machine']['imitation']} "
        f"({args.imitation_epochs} epochs); mean of {args.seeds} seeds; accuracy mean / min\n"
    )
    print(
        "| labels | PrefLab accuracy | imitation accuracy | Δ | PrefLab Pearson | imitation Pearson "
        "| PrefLab s (epochs) | imitation s (epochs) | speed-up wall | speed-up CPU | targets |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ours, theirs = r["preflab"], r["imitation"]
        verdict = (
            ("acc ok" if r["accuracy_target_met"] else "ACC FAIL")
            + ", "
            + ("speed ok" if r["speed_target_met"] else "SPEED FAIL")
        )
        print(
            f"| {r['budget']} "
            f"| {ours['test_accuracy']:.3f} / {ours['test_accuracy_min']:.3f} "
            f"| {theirs['test_accuracy']:.3f} / {theirs['test_accuracy_min']:.3f} "
            f"| {r['accuracy_gap']:+.3f} | {ours['pearson']:.3f} | {theirs['pearson']:.3f} "
            f"| {ours['wall_time_s']:.2f} ({ours['epochs']:.0f}) "
            f"| {theirs['wall_time_s']:.2f} ({theirs['epochs']}) "
            f"| {r['speedup_wall_time']:.1f}× | {r['speedup_cpu_time']:.1f}× | {verdict} |"
        )


if __name__ == "__main__":
    main()
