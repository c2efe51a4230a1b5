"""PrefLab and ``imitation`` 1.0.1 on the same (env, teacher, seed) at the same time, one
process each (one thread each), so both see the same machine load; pair after pair.

PrefLab runs ``label_efficiency.py`` with this repository's python, imitation runs
``label_efficiency_imitation.py`` with its own virtualenv's python (never imported here).
Both are normalised with R_random / R_PPO from ``--references`` (an earlier
``label_efficiency.py`` results file), so no reference PPO runs are repeated.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/label_efficiency_side_by_side.py \\
        --imitation-python /tmp/imitation-venv/bin/python --out benchmarks/results/X.json

Per pair it records each side's true return, normalised return, its own wall time (the
whole loop / the whole ``train`` call), the process's wall time (start-up and imports
included) and the 1-minute load average before and after. The JSON is rewritten after every
pair, so a run cut short keeps what finished.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _load() -> float:
    return os.getloadavg()[0]


def _start(command: list[str], log: Path) -> tuple[subprocess.Popen[bytes], float]:
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1")
    handle = log.open("wb")
    return subprocess.Popen(
        command, stdout=handle, stderr=subprocess.STDOUT, env=env
    ), time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--teachers", nargs="+", default=["oracle", "mistake"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--imitation-python", default="/tmp/imitation-venv/bin/python")
    parser.add_argument(
        "--references", type=Path, default=HERE / "results" / "label_efficiency.json"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    references = json.loads(args.references.read_text())["references"][args.env]

    def normalised(value: float) -> float:
        return (value - references["random_return"]) / (
            references["ppo_return"] - references["random_return"]
        )

    scratch = Path(tempfile.mkdtemp(prefix="side_by_side_"))
    pairs: list[dict[str, Any]] = []
    for teacher in args.teachers:  # oracle first: the pairs that matter most finish first
        for seed in args.seeds:
            tag = f"{teacher}_{seed}"
            preflab_out, imitation_out = (
                scratch / f"preflab_{tag}.json",
                scratch / f"imitation_{tag}.json",
            )
            load_before = _load()
            started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            # The same run for both: env, teacher, one seed.
            run = ["--envs", args.env, "--teachers", teacher, "--seeds", "1", "--first-seed", str(seed)]
            preflab, preflab_t0 = _start(
                [
                    sys.executable, str(HERE / "label_efficiency.py"), "--suite", "preference", *run,
                    "--references", str(args.references), "--out", str(preflab_out),
                ],
                scratch / f"preflab_{tag}.log",
            )
            imitation, imitation_t0 = _start(
                [args.imitation_python, str(HERE / "label_efficiency_imitation.py"), *run, "--out", str(imitation_out)],
                scratch / f"imitation_{tag}.log",
            )
            loads: list[float] = []
            process_wall: dict[str, float] = {}
            while len(process_wall) < 2:
                time.sleep(5)
                loads.append(_load())
                for name, proc, t0 in (
                    ("preflab", preflab, preflab_t0),
                    ("imitation", imitation, imitation_t0),
                ):
                    if name not in process_wall and proc.poll() is not None:
                        process_wall[name] = time.perf_counter() - t0
            row: dict[str, Any] = {
                "env": args.env,
                "teacher": teacher,
                "seed": seed,
                "started_utc": started_at,
                "load_1min_before": load_before,
                "load_1min_max": max(loads),
                "load_1min_mean": sum(loads) / len(loads),
                "load_1min_after": _load(),
            }
            def result(system: str, out: Path, pick: Any, **extra: Any) -> dict[str, Any]:
                """One system's run from its result file, or the error and its log's tail."""
                try:
                    run = pick(json.loads(out.read_text())["runs"])
                    return {
                        "true_return": run["true_return_mean"],
                        "normalised": normalised(run["true_return_mean"]),
                        "wall_time_s": run["wall_time_s"],
                        "process_wall_time_s": process_wall[system],
                        **{key: run.get(field) for key, field in extra.items()},
                    }
                except (OSError, KeyError, IndexError, StopIteration, json.JSONDecodeError) as exc:
                    return {"error": repr(exc), "log": (scratch / f"{system}_{tag}.log").read_text()[-2000:]}

            row["preflab"] = result(
                "preflab", preflab_out, lambda runs: next(r for r in runs if r["kind"] == "preference"),
                reward_held_out_accuracy="reward_held_out_accuracy", history="history",
            )
            row["imitation"] = result("imitation", imitation_out, lambda runs: runs[0], error="error")
            pairs.append(row)
            print(
                json.dumps(
                    {k: v for k, v in row.items()}
                    | {"preflab": {k: v for k, v in row["preflab"].items() if k != "history"}}
                ),
                flush=True,
            )
            report = {
                "machine": {
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                    "python": sys.version.split()[0],
                    "threads_per_process": 1,
                    "note": args.note,
                },
                "settings": {
                    "env": args.env,
                    "teachers": args.teachers,
                    "seeds": args.seeds,
                    "references_from": str(args.references),
                    "references": references,
                },
                "pairs": pairs,
            }
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
