"""GPU throughput of reward-ensemble training: rows per second through forward and backward.

The issue's setting: an ensemble of 5 MLPs (256-256) on 100,000 comparisons of 50-step
segments with 23-dim state-action inputs (17-dim observations and 6-dim actions, a MuJoCo
HalfCheetah's shapes), random inputs labelled by a hidden linear reward (so held-out accuracy
shows the fast settings still learn). A "row" is one state-action step of the dataset; an
epoch sends every training pair's 2 × 50 rows through all K members, forward and backward,
so rows/s = training pairs × 100 / epoch time (multiply by K for member-rows/s).

Variants, all in one process on one card:

- ``loop64``: the peer's shape of loop — one ``nn.Sequential`` MLP and one Adam per member,
  a Python loop over members, 64 pairs per step, float32 (the issue's H200 reference:
  ~0.65 M rows/s, 15 s per epoch). Timed over a slice of an epoch and extrapolated.
- ``preflab bXXXX [bf16] [compile]``: ``learning.core.reward_learning.train_reward_model`` itself
  (the product's trainer: all members in one batched forward, data on the device, per-member
  bootstrap minibatches of XXXX pairs), timed per epoch after the first (which pays any
  compilation), plus the whole call's wall time for 20 epochs where asked.

    python benchmarks/reward_learning_gpu.py --out results.json          # on a CUDA machine
    python benchmarks/reward_learning_gpu.py --quick                     # CPU smoke test

Prints a Markdown table; ``--out`` gets every number and the machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import itertools

from learning.core.configs import RewardNetConfig, RewardTrainingConfig
from learning.core.data import PreferenceDataset
from learning.core.losses import bradley_terry_loss
from learning.core.reward_learning import train_reward_model


def synthetic_dataset(
    pairs: int, length: int, obs_dim: int, act_dim: int, device: torch.device, seed: int = 0
) -> PreferenceDataset:
    """2·pairs segments of random inputs; pair i compares segments 2i and 2i+1 under a hidden
    linear reward (a 5% band of near-ties labelled 0.5)."""
    g = torch.Generator(device=device).manual_seed(seed)
    n = 2 * pairs
    obs = torch.randn(n, length, obs_dim, generator=g, device=device)
    act = torch.rand(n, length, act_dim, generator=g, device=device) * 2 - 1
    w_obs = torch.randn(obs_dim, generator=g, device=device)
    w_act = torch.randn(act_dim, generator=g, device=device)
    true = (obs @ w_obs + act @ w_act).sum(1)  # (N,)
    index = torch.arange(n, device=device).reshape(pairs, 2)
    delta = true[index[:, 0]] - true[index[:, 1]]
    prefs = (delta > 0).float()
    prefs[delta.abs() < 0.05 * delta.abs().median()] = 0.5
    return PreferenceDataset(obs, act, index, prefs, true_returns=true)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_loop64(
    data: PreferenceDataset, members: int, hidden: tuple[int, ...], steps: int, batch: int = 64
) -> dict[str, Any]:
    """Per-member Python loop, float32, ``batch`` pairs a step; ``steps`` timed steps per member."""
    device = data.device
    in_dim = data.obs_shape[0] + data.act_dim
    widths = [in_dim, *hidden, 1]
    nets, optims = [], []
    for _ in range(members):
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(widths)):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
        net = nn.Sequential(*layers).to(device)
        nets.append(net)
        optims.append(torch.optim.Adam(net.parameters(), lr=1e-3))
    n_pairs, length = data.num_pairs, data.segment_length

    def one_step(k: int, start: int) -> None:
        ids = torch.arange(start, start + batch, device=device) % n_pairs
        seg = data.pairs[ids]  # (b, 2)
        assert data.actions is not None
        x = torch.cat([data.observations[seg], data.actions[seg]], dim=-1)  # (b, 2, T, in)
        returns = nets[k](x).squeeze(-1).sum(-1)  # (b, 2)
        loss, _ = bradley_terry_loss(returns[:, 0], returns[:, 1], data.preferences[ids])
        optims[k].zero_grad(set_to_none=True)
        loss.backward()
        optims[k].step()

    for k in range(members):  # warm-up
        for s in range(5):
            one_step(k, s * batch)
    sync(device)
    started = time.perf_counter()
    for k in range(members):
        for s in range(steps):
            one_step(k, s * batch)
    sync(device)
    elapsed = time.perf_counter() - started
    seconds_per_pair_all_members = elapsed / (steps * batch)  # K members each did `steps`
    epoch_s = seconds_per_pair_all_members * n_pairs
    return {
        "variant": f"loop{batch} fp32",
        "batch_pairs": batch,
        "epoch_s": epoch_s,
        "rows_per_s": n_pairs * 2 * length / epoch_s,
        "timed_steps": steps * members,
        "extrapolated": True,
    }


class EpochTimer:
    """Training callback recording the wall time at each epoch end (the trainer's epoch report
    reads the loss off the device, so the clock sees finished work)."""

    def __init__(self) -> None:
        self.stamps: list[float] = [time.perf_counter()]
        self.records: list[dict[str, float]] = []

    def on_step(self, step: int, metrics: Mapping[str, float]) -> bool:
        self.stamps.append(time.perf_counter())
        self.records.append(dict(metrics))
        return True


def bench_preflab(
    data: PreferenceDataset,
    members: int,
    hidden: tuple[int, ...],
    *,
    batch: int,
    epochs: int,
    bf16: bool,
    compile: bool,
    compile_mode: str = "default",
    lr: float,
) -> dict[str, Any]:
    net = RewardNetConfig(hidden_sizes=hidden, ensemble_size=members)
    train = RewardTrainingConfig(
        lr=lr,
        batch_size=batch,
        max_epochs=epochs,
        patience=0,
        held_out_fraction=0.02,
        random_response=0.0,
        device=data.device.type,
        mixed_precision=bf16,
        compile=compile,
        compile_mode=compile_mode,
        seed=0,
    )
    timer = EpochTimer()
    sync(data.device)
    started = time.perf_counter()
    _, result = train_reward_model(data, net, train, callback=timer)
    sync(data.device)
    wall = time.perf_counter() - started
    epoch_times = [b - a for a, b in zip(timer.stamps[:-1], timer.stamps[1:], strict=True)]
    steady = epoch_times[1:] if len(epoch_times) > 1 else epoch_times
    epoch_s = statistics.median(steady)
    n_train = result.num_train_pairs
    return {
        "variant": f"preflab b{batch}{' bf16' if bf16 else ' fp32'}"
        + (f" compile {compile_mode}" if compile else ""),
        "batch_pairs": batch,
        "epochs": result.epochs,
        "first_epoch_s": epoch_times[0],
        "epoch_s": epoch_s,
        "epoch_s_all": epoch_times,
        "rows_per_s": n_train * 2 * data.segment_length / epoch_s,
        "wall_time_s": wall,
        "held_out_accuracy": result.held_out_accuracy,
        "pearson": result.pearson,
        "extrapolated": False,
    }


def machine(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1))
        info["cuda"] = torch.version.cuda
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--length", type=int, default=50)
    parser.add_argument("--obs-dim", type=int, default=17)
    parser.add_argument("--act-dim", type=int, default=6)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    parser.add_argument("--loop-steps", type=int, default=300, help="timed steps per member")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a CPU smoke test")
    parser.add_argument(
        "--variants",
        default="loop64,b64:1,b4096:3,b4096bf16:3,b16384bf16:3,b4096bf16c:20,b16384bf16c:20",
        help="comma list: loop64, or bSIZE[bf16][c|m]:EPOCHS (c = torch.compile, "
        "m = torch.compile max-autotune-no-cudagraphs)",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.length, args.hidden, args.loop_steps = 2000, 10, [32, 32], 10
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # float32 variants use TF32 matrix units
    data = synthetic_dataset(args.pairs, args.length, args.obs_dim, args.act_dim, device)
    hidden = tuple(args.hidden)
    results: list[dict[str, Any]] = []
    report: dict[str, Any] = {"machine": machine(device), "settings": vars(args) | {"out": None}}
    for spec in args.variants.split(","):
        if spec == "loop64":
            row = bench_loop64(data, args.members, hidden, args.loop_steps)
        else:
            name, epochs = spec.split(":")
            size = name[1:].removesuffix("m").removesuffix("c").removesuffix("bf16")
            batch = int(size) if not args.quick else min(int(size), 256)
            row = bench_preflab(
                data,
                args.members,
                hidden,
                batch=batch,
                epochs=int(epochs),
                bf16="bf16" in name,
                compile=name.endswith(("c", "m")),
                compile_mode="max-autotune-no-cudagraphs" if name.endswith("m") else "default",
                lr=1e-3 * (batch / 64) ** 0.5 if batch > 64 else 1e-3,
            )
        results.append(row)
        print(json.dumps(row), flush=True)
        if args.out:
            args.out.write_text(json.dumps(report | {"results": results}, indent=2))
    print(f"\n{report['machine']}\n")
    print("| variant | epoch s | rows/s (M) | first epoch s | 20-epoch wall s | held-out acc |")
    print("|---|---|---|---|---|---|")
    for r in results:
        wall = f"{r['wall_time_s']:.2f}" if r.get("epochs") == 20 else "–"
        acc = f"{r['held_out_accuracy']:.3f}" if "held_out_accuracy" in r else "–"
        first = f"{r['first_epoch_s']:.2f}" if "first_epoch_s" in r else "–"
        print(
            f"| {r['variant']} | {r['epoch_s']:.3f} | {r['rows_per_s'] / 1e6:.2f} | {first} "
            f"| {wall} | {acc} |"
        )


if __name__ == "__main__":
    main()
