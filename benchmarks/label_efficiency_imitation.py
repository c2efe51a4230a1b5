"""The peer side of the label-efficiency benchmark: ``imitation`` 1.0.1's preference comparisons
on the same protocol as ``benchmarks/label_efficiency.py``.

Run with the python of imitation's OWN virtualenv (it pins gymnasium 0.29.1 and
stable-baselines3 2.2.1; never imported by PrefLab):

    python3.11 -m venv /tmp/imitation-venv
    /tmp/imitation-venv/bin/pip install torch==2.13.0 imitation==1.0.1
    OMP_NUM_THREADS=1 /tmp/imitation-venv/bin/python benchmarks/label_efficiency_imitation.py \\
        --envs Pendulum-v1 --teachers oracle --seeds 1

What runs, per env, teacher and seed: imitation's documented preference-comparisons recipe
(the Pendulum example of its docs: ``BasicRewardNet`` with ``RunningNorm`` inputs,
``RandomFragmenter``, ``SyntheticGatherer``, ``BasicRewardTrainer`` with cross-entropy, PPO
``FeedForward32Policy`` with its docs' hyperparameters, ``AgentTrainer`` with 5% exploration,
hyperbolic query schedule, 10% of comparisons up front) with the protocol's numbers: 500
comparisons, 100,000 env steps, fragments of 50 steps. The oracle is ``SyntheticGatherer(sample=
False)`` (always the higher true return); the 10%-mistake teacher flips 10% of those answers.
CartPole-v1 needs ``allow_variable_horizon=True`` (episodes end when the pole falls; imitation
warns that this biases learning). Score: mean true return of the deterministic policy over 20
episodes; normalised by ``label_efficiency.py``'s R_random and R_PPO when merged. Timed: the
whole ``train`` call plus setup (as for PrefLab, where a run's wall time is the whole loop).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import gymnasium as gym
import imitation
import numpy as np
import torch
from imitation.algorithms import preference_comparisons as pc
from imitation.policies.base import FeedForward32Policy, NormalizeFeaturesExtractor
from imitation.rewards.reward_nets import BasicRewardNet
from imitation.util.networks import RunningNorm
from imitation.util.util import make_vec_env
from stable_baselines3 import PPO


class MistakeGatherer(pc.SyntheticGatherer):
    """The oracle, with each answer flipped with probability ``mistake`` (B-Pref's mistake teacher)."""

    def __init__(self, *, mistake: float, rng: np.random.Generator, **kwargs: object) -> None:
        super().__init__(rng=rng, **kwargs)
        self.mistake = mistake
        self.flip_rng = rng

    def __call__(self, fragment_pairs):  # type: ignore[no-untyped-def]
        preferences = super().__call__(fragment_pairs)
        flip = self.flip_rng.random(len(preferences)) < self.mistake
        return np.where(flip, 1.0 - preferences, preferences).astype(np.float32)


def run(env_id: str, teacher: str, seed: int, steps: int, comparisons: int, length: int) -> dict[str, object]:
    torch.set_num_threads(1)
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    venv = make_vec_env(env_id, rng=rng)
    reward_net = BasicRewardNet(venv.observation_space, venv.action_space, normalize_input_layer=RunningNorm)
    fragmenter = pc.RandomFragmenter(warning_threshold=0, rng=rng)
    gatherer = (
        pc.SyntheticGatherer(rng=rng, sample=False)
        if teacher == "oracle"
        else MistakeGatherer(mistake=0.1, rng=rng, sample=False)
    )
    preference_model = pc.PreferenceModel(reward_net)
    reward_trainer = pc.BasicRewardTrainer(
        preference_model=preference_model, loss=pc.CrossEntropyRewardLoss(), epochs=3, rng=rng
    )
    agent = PPO(
        policy=FeedForward32Policy,
        policy_kwargs={
            "features_extractor_class": NormalizeFeaturesExtractor,
            "features_extractor_kwargs": {"normalize_class": RunningNorm},
        },
        env=venv, seed=seed, n_steps=2048 // venv.num_envs, batch_size=64, ent_coef=0.01,
        learning_rate=2e-3, clip_range=0.1, gae_lambda=0.95, gamma=0.97, n_epochs=10, device="cpu",
    )
    trajectory_generator = pc.AgentTrainer(
        algorithm=agent, reward_fn=reward_net, venv=venv, exploration_frac=0.05, rng=rng
    )
    comparisons_algo = pc.PreferenceComparisons(
        trajectory_generator, reward_net, num_iterations=60, fragmenter=fragmenter,
        preference_gatherer=gatherer, reward_trainer=reward_trainer, fragment_length=length,
        transition_oversampling=1, initial_comparison_frac=0.1,
        allow_variable_horizon=env_id.startswith("CartPole"), initial_epoch_multiplier=4,
        query_schedule="hyperbolic",
    )
    error = None
    try:
        comparisons_algo.train(total_timesteps=steps, total_comparisons=comparisons)
    except Exception as exc:  # noqa: BLE001 - record the peer's failure, keep the others
        error = f"{type(exc).__name__}: {exc}"
    wall = time.perf_counter() - started
    env = gym.make(env_id)
    returns = []
    for episode in range(20):
        obs, _ = env.reset(seed=10_000 + seed + episode)
        done, total = False, 0.0
        while not done:
            action, _ = agent.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return {
        "system": "imitation", "env": env_id, "teacher": teacher, "seed": seed,
        "true_return_mean": float(np.mean(returns)), "wall_time_s": wall, "error": error,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["Pendulum-v1", "CartPole-v1"])
    parser.add_argument("--teachers", nargs="+", default=["oracle", "mistake"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed … first-seed+seeds−1")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--comparisons", type=int, default=500)
    parser.add_argument("--segment-length", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "label_efficiency_imitation.json")
    args = parser.parse_args()
    rows = []
    for env_id in args.envs:
        for teacher in args.teachers:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                rows.append(run(env_id, teacher, seed, args.steps, args.comparisons, args.segment_length))
                print(json.dumps(rows[-1]), flush=True)
    report = {
        "machine": {
            "platform": platform.platform(), "python": sys.version.split()[0], "cpus": os.cpu_count(),
            "torch": torch.__version__, "imitation": imitation.__version__, "gymnasium": gym.__version__,
        },
        "settings": vars(args) | {"out": str(args.out)},
        "runs": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
