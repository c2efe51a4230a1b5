"""Side-by-side table for a busy machine: accuracy from full runs, speed from a paired timing.

On a shared 2-core machine the load changes by the minute, and imitation's full 200-epoch runs
at four budgets and three seeds take over an hour under heavy load, so a speed-up taken from
two runs an hour apart measures the neighbours as much as the trainers. This script builds
``reward_learning_compare.json`` from:

- ``--preflab``: one or more PrefLab runs of ``reward_learning.py`` (K = 1 rows are used; their
  accuracies must agree, as the trainer is deterministic on CPU; their times are averaged), run
  *before and after* the imitation timing, so load drift hits both sides alike;
- ``--imitation-accuracy``: a full run of ``reward_learning_imitation.py`` (200 epochs, the
  accuracy and Pearson of record; seeded, so the same on every run);
- ``--imitation-timing``: a run of ``reward_learning_imitation.py --epochs E`` on the same pool,
  between the PrefLab runs. imitation has no early stopping and its ``BasicRewardTrainer`` does
  the same work every epoch, so its 200-epoch time is estimated as ``200 / E`` times the
  E-epoch time (wall and CPU). The full runs' own times, where available, are kept as a check.

    .venv/bin/python benchmarks/reward_learning_paired.py \\
        --preflab before.json after.json --imitation-accuracy imitation_200.json \\
        --imitation-timing imitation_20.json --out benchmarks/results/reward_learning_compare.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preflab", type=Path, nargs="+", required=True)
    parser.add_argument("--imitation-accuracy", type=Path, required=True)
    parser.add_argument("--imitation-timing", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    preflab = [json.loads(p.read_text()) for p in args.preflab]
    full = json.loads(args.imitation_accuracy.read_text())
    timing = json.loads(args.imitation_timing.read_text())
    scale = full["settings"]["epochs"] / timing["settings"]["epochs"]
    budgets = [s["budget"] for s in full["summary"]]

    rows: list[dict[str, Any]] = []
    for budget in budgets:
        ours_runs = [
            [r for r in report["runs"] if r["ensemble_size"] == 1 and r["budget"] == budget]
            for report in preflab
        ]
        accuracies = {tuple(round(r["test_accuracy"], 6) for r in runs) for runs in ours_runs}
        if len(accuracies) != 1:
            raise SystemExit(f"PrefLab runs disagree at {budget} labels: {accuracies}")
        first = ours_runs[0]
        all_runs = [r for runs in ours_runs for r in runs]
        ours = {
            "test_accuracy": statistics.mean(r["test_accuracy"] for r in first),
            "test_accuracy_min": min(r["test_accuracy"] for r in first),
            "pearson": statistics.mean(r["pearson"] for r in first),
            "wall_time_s": statistics.mean(r["wall_time_s"] for r in all_runs),
            "cpu_time_s": statistics.mean(r["cpu_time_s"] for r in all_runs),
            "wall_time_s_per_run": [
                statistics.mean(r["wall_time_s"] for r in runs) for runs in ours_runs
            ],
            "epochs": statistics.mean(r["epochs"] for r in first),
            "steps": statistics.mean(r["steps"] for r in first),
        }
        peer = next(s for s in full["summary"] if s["budget"] == budget)
        timed = next(s for s in timing["summary"] if s["budget"] == budget)
        theirs = {
            "test_accuracy": peer["test_accuracy"],
            "test_accuracy_min": peer["test_accuracy_min"],
            "pearson": peer["pearson"],
            "epochs": peer["epochs"],
            "wall_time_s": timed["wall_time_s"] * scale,
            "cpu_time_s": timed["cpu_time_s"] * scale,
            "timed_epochs": timing["settings"]["epochs"],
            "full_run_wall_time_s": peer["wall_time_s"],
        }
        gap = ours["test_accuracy"] - theirs["test_accuracy"]
        speedup = theirs["wall_time_s"] / ours["wall_time_s"]
        rows.append(
            {
                "budget": budget,
                "preflab": ours,
                "imitation": theirs,
                "accuracy_gap": gap,
                "speedup_wall_time": speedup,
                "speedup_cpu_time": theirs["cpu_time_s"] / ours["cpu_time_s"],
                "accuracy_target_met": gap >= -0.01,
                "speed_target_met": speedup >= 20.0,
            }
        )
    comparison = {
        "method": "paired timing; see benchmarks/reward_learning_paired.py",
        "machine": preflab[0]["machine"],
        "machine_after": [report["machine"] for report in preflab[1:]],
        "imitation_machine": timing["machine"],
        "imitation_accuracy_machine": full["machine"],
        "train_config": preflab[0].get("train_config"),
        "settings": preflab[0]["settings"],
        "imitation_settings": full["settings"],
        "imitation_timing_settings": timing["settings"],
        "preflab_runs": [report["runs"] for report in preflab],
        "imitation_runs": full["runs"],
        "imitation_timing_runs": timing["runs"],
        "comparison": rows,
    }
    args.out.write_text(json.dumps(comparison, indent=2))

    print(
        "| labels | PrefLab accuracy | imitation accuracy | Δ | PrefLab Pearson "
        "| imitation Pearson | PrefLab s (CPU s) | imitation s (CPU s) | speed-up wall "
        "| speed-up CPU | targets |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ours, theirs = r["preflab"], r["imitation"]
        verdict = (
            ("accuracy met" if r["accuracy_target_met"] else "**accuracy fails**")
            + ", "
            + ("speed met" if r["speed_target_met"] else "**speed fails**")
        )
        print(
            f"| {r['budget']} "
            f"| {ours['test_accuracy']:.3f} / {ours['test_accuracy_min']:.3f} "
            f"| {theirs['test_accuracy']:.3f} / {theirs['test_accuracy_min']:.3f} "
            f"| {r['accuracy_gap']:+.3f} | {ours['pearson']:.3f} | {theirs['pearson']:.3f} "
            f"| {ours['wall_time_s']:.2f} ({ours['cpu_time_s']:.2f}) "
            f"| {theirs['wall_time_s']:.1f} ({theirs['cpu_time_s']:.1f}) "
            f"| {r['speedup_wall_time']:.1f}× | {r['speedup_cpu_time']:.1f}× | {verdict} |"
        )


if __name__ == "__main__":
    main()
