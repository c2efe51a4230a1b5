"""The peer side of the reward-learning benchmark: ``imitation`` 1.0.1 on PrefLab's fixed pool.

Run with the python of imitation's OWN virtualenv (never PrefLab's; imitation pins gymnasium
0.29.1 and stable-baselines3 2.2.1), on a pool written by
``benchmarks/reward_learning.py --save-pool pool.npz``:

    python3.11 -m venv /tmp/imitation-venv
    /tmp/imitation-venv/bin/pip install torch==2.13.0 imitation==1.0.1   # the CPU torch wheel
    OMP_NUM_THREADS=1 /tmp/imitation-venv/bin/python benchmarks/reward_learning_imitation.py \\
        --pool pool.npz

No PrefLab imports: the pool (segments, true rewards, train and test pairs with the oracle
teacher's labels) comes from the ``.npz``, and the two metrics are re-implemented here in numpy
exactly as ``learning.core.metrics`` defines them (accuracy over decided test pairs, ties
excluded, P(A≻B) = σ(R̂_A − R̂_B) > 0.5; Pearson of predicted and true segment returns over the
whole pool).

What is trained, per label budget and seed: imitation's ``BasicRewardNet`` with its defaults
(MLP 32-32, ReLU, inputs state and action, no input normalisation), wrapped in
``PreferenceModel`` (Bradley–Terry on undiscounted segment returns, noise_prob 0, the default),
trained by ``BasicRewardTrainer`` with ``CrossEntropyRewardLoss`` and its defaults (AdamW,
lr 1e-3, batch 32 pairs) on all ``budget`` labelled pairs. imitation has no early stopping; the
number of epochs is ``--epochs`` (default 200 = ``BasicRewardTrainer``'s ``epochs=1`` times
``PreferenceComparisons``' ``initial_epoch_multiplier=200``, which is what imitation does with
comparisons that are all available up front). Timed (wall and CPU): ``BasicRewardTrainer.train``
only (building the trajectory objects and evaluating are not counted), after one untimed
one-epoch warm-up run, as on PrefLab's side.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # imitation draws a progress bar per training call

import gymnasium as gym
import imitation
import numpy as np
import torch
from imitation.algorithms import preference_comparisons as pc
from imitation.data.types import TrajectoryWithRew
from imitation.rewards.reward_nets import BasicRewardNet
from imitation.util import logger as imit_logger


def fragments(pool: dict[str, np.ndarray]) -> list[TrajectoryWithRew]:
    """One ``TrajectoryWithRew`` per pool segment. imitation wants T+1 observations (it builds
    next_obs from them); ``BasicRewardNet`` does not use the next state by default, so the
    last observation is repeated to fill the slot."""
    out = []
    for obs, acts, rews in zip(pool["observations"], pool["actions"], pool["rewards"]):
        out.append(
            TrajectoryWithRew(
                obs=np.concatenate([obs, obs[-1:]]).astype(np.float32),
                acts=acts.astype(np.float32),
                infos=None,
                terminal=False,
                rews=rews.astype(np.float32),
            )
        )
    return out


def predicted_returns(net: BasicRewardNet, pool: dict[str, np.ndarray]) -> np.ndarray:
    """Predicted return of every pool segment, (N,), in one batched forward (not timed)."""
    n, t, d_obs = pool["observations"].shape
    obs = pool["observations"].reshape(n * t, d_obs).astype(np.float32)
    acts = pool["actions"].reshape(n * t, -1).astype(np.float32)
    with torch.no_grad():
        net.eval()
        rewards = net(*net.preprocess(obs, acts, obs, np.zeros(n * t, dtype=bool)))
        net.train()
    return rewards.reshape(n, t).sum(1).double().numpy()


def accuracy(returns: np.ndarray, pairs: np.ndarray, labels: np.ndarray) -> float:
    """As ``learning.core.metrics.preference_accuracy``: decided pairs only."""
    delta = (returns[pairs[:, 0]] - returns[pairs[:, 1]]).astype(np.float32)
    p_a = 1.0 / (1.0 + np.exp(-delta))
    decided = labels != 0.5
    if not decided.any():
        return float("nan")
    return float(((p_a[decided] > 0.5) == (labels[decided] > 0.5)).mean())


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    xc, yc = x - x.mean(), y - y.mean()
    denominator = np.linalg.norm(xc) * np.linalg.norm(yc)
    return float((xc * yc).sum() / denominator) if denominator > 0 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--pool", type=Path, required=True, help="from reward_learning.py --save-pool"
    )
    parser.add_argument("--budgets", type=int, nargs="+", default=[50, 200, 1000])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--hidden", type=int, nargs="+", default=[32, 32])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "reward_learning_imitation.json",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)

    loaded = np.load(args.pool)
    pool = {k: loaded[k] for k in ("observations", "actions", "rewards")}
    test_pairs, test_labels = loaded["test_pairs"], loaded["test_labels"]
    train_pairs_all, train_labels_all = loaded["train_pairs"], loaded["train_labels"]
    true_returns = pool["rewards"].astype(np.float64).sum(1)
    n_segments, _, d_obs = pool["observations"].shape
    d_act = pool["actions"].shape[-1]
    # Pendulum-v1's spaces (gymnasium 0.29 here): observation cos θ, sin θ, θ̇; torque in [-2, 2].
    observation_space = gym.spaces.Box(
        low=np.array([-1.0, -1.0, -8.0], dtype=np.float32)[:d_obs],
        high=np.array([1.0, 1.0, 8.0], dtype=np.float32)[:d_obs],
        dtype=np.float32,
    )
    action_space = gym.spaces.Box(low=-2.0, high=2.0, shape=(d_act,), dtype=np.float32)
    segments = fragments(pool)

    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as log_dir:

        def make_trainer(seed: int) -> tuple[BasicRewardNet, pc.BasicRewardTrainer]:
            torch.manual_seed(seed)
            net = BasicRewardNet(observation_space, action_space, hid_sizes=tuple(args.hidden))
            trainer = pc.BasicRewardTrainer(
                pc.PreferenceModel(net),
                pc.CrossEntropyRewardLoss(),
                rng=np.random.default_rng(seed),
                batch_size=args.batch_size,
                epochs=1,
                lr=args.lr,
                custom_logger=imit_logger.configure(log_dir, format_strs=[]),
            )
            return net, trainer

        def preference_dataset(budget: int) -> pc.PreferenceDataset:
            pairs, labels = train_pairs_all[:budget], train_labels_all[:budget]
            dataset = pc.PreferenceDataset()
            dataset.push([(segments[a], segments[b]) for a, b in pairs], labels.astype(np.float32))
            return dataset

        _, warm_up = make_trainer(0)  # untimed: one-off costs of the first training call
        warm_up.train(preference_dataset(min(args.budgets)), epoch_multiplier=1.0)
        for budget in args.budgets:
            pairs = train_pairs_all[:budget]
            for seed in range(args.seeds):
                dataset = preference_dataset(budget)
                net, trainer = make_trainer(seed)
                started, cpu_started = time.perf_counter(), time.process_time()
                trainer.train(dataset, epoch_multiplier=float(args.epochs))
                wall = time.perf_counter() - started
                cpu = time.process_time() - cpu_started
                predicted = predicted_returns(net, pool)
                rows.append(
                    {
                        "budget": budget,
                        "seed": seed,
                        "test_accuracy": accuracy(predicted, test_pairs, test_labels),
                        "pearson": pearson(predicted, true_returns),
                        "wall_time_s": wall,
                        "cpu_time_s": cpu,
                        "epochs": args.epochs,
                        "train_pairs": len(pairs),
                        "pair_epochs_per_s": args.epochs * len(pairs) / wall,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)

    summary = []
    for budget in args.budgets:
        group = [r for r in rows if r["budget"] == budget]
        summary.append(
            {
                "budget": budget,
                "test_accuracy": statistics.mean(r["test_accuracy"] for r in group),
                "test_accuracy_min": min(r["test_accuracy"] for r in group),
                "pearson": statistics.mean(r["pearson"] for r in group),
                "wall_time_s": statistics.mean(r["wall_time_s"] for r in group),
                "cpu_time_s": statistics.mean(r["cpu_time_s"] for r in group),
                "epochs": args.epochs,
                "pair_epochs_per_s": statistics.mean(r["pair_epochs_per_s"] for r in group),
            }
        )
    report = {
        "machine": {
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "imitation": imitation.__version__,
            "gymnasium": gym.__version__,
            "threads": torch.get_num_threads(),
            "load_average_1_5_15_before": load_before,
            "load_average_1_5_15_after": os.getloadavg(),
        },
        "settings": {
            **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "segments": n_segments,
            "net": "BasicRewardNet(use_state, use_action), build_mlp defaults (ReLU)",
            "trainer": "BasicRewardTrainer + CrossEntropyRewardLoss, AdamW, no early stopping",
        },
        "runs": rows,
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print("\n| labels | test accuracy (mean / min) | Pearson | train wall time s | epochs |")
    print("|---|---|---|---|---|")
    for s in summary:
        print(
            f"| {s['budget']} | {s['test_accuracy']:.3f} / {s['test_accuracy_min']:.3f} "
            f"| {s['pearson']:.3f} | {s['wall_time_s']:.2f} | {s['epochs']} |"
        )


if __name__ == "__main__":
    main()
