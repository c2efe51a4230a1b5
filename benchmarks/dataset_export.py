"""Benchmark: export 1,000,000 judgements over 200,000 pairs from PostgreSQL to Parquet.

Target (issue 6): under 30 s and under 1 GiB peak RSS on 2 cores, memory bounded (the rows
are streamed with ``COPY (…) TO STDOUT``, parsed a few MiB at a time, into Parquet row groups;
never loaded whole).

1. ``load``: (re)creates the database ``preflab_bench_export`` on 127.0.0.1:5432 (trust
   auth, user postgres), migrates it, and bulk-loads it server-side with INSERT … SELECT
   generate_series: 2,000 trajectories of 100 steps (11-d observations, 3-d actions, real
   ``.npz`` files in a scratch MEDIA_ROOT), 20,000 segments of 10 steps, 200,000 pairs,
   50 annotators, and 5 judgements (with their assignments) per pair.
2. ``measure``: in a fresh process, ``snapshot_create(..., background=False)`` — the same
   code the job runs: stream, Parquet (pairs + segments), content hash, manifest, the
   import bundle, files saved to storage. Wall time, and peak RSS from getrusage
   (the whole process: Python, Django, pyarrow included).

    .venv/bin/python benchmarks/dataset_export.py                # load + measure, full size
    .venv/bin/python benchmarks/dataset_export.py --scale 0.25   # a quarter: RSS should not shrink much
    .venv/bin/python benchmarks/dataset_export.py --skip-load    # measure the loaded database again

Writes benchmarks/results/dataset_export[_<scale>].json and prints a Markdown row.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB_NAME = "preflab_bench_export"
DB_URL = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
MEDIA = Path("/tmp/preflab_bench_export_media")
TRAJECTORIES, LENGTH, SEGMENT, OBS_DIM, ACT_DIM = 2_000, 100, 10, 11, 3
PAIRS, VOTES_PER_PAIR, ANNOTATORS = 200_000, 5, 50


def _env() -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": DB_URL, "MEDIA_ROOT": str(MEDIA), "PREFLAB_MODE": "test",
            "OMP_NUM_THREADS": "1", "DJANGO_SETTINGS_MODULE": "config.settings"}


def recreate_database() -> None:
    import psycopg

    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME}")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=_env(), check=True)


def load(scale: float) -> dict[str, float]:
    """Bulk-load in a Django process (ORM for the few rows, SQL for the many)."""
    import django
    import numpy as np

    os.environ.update(_env())
    sys.path.insert(0, str(ROOT))
    django.setup()
    from django.contrib.auth.models import User
    from django.db import connection

    from feedback import services
    from feedback.models import PolicyVersion
    from feedback.storage import npz_bytes

    trajectories, pairs = int(TRAJECTORIES * scale), int(PAIRS * scale)
    segments = trajectories * (LENGTH // SEGMENT)
    started = time.perf_counter()
    env = services.environment_get_or_create(env_id="Bench-v1")
    policy = services.policy_get_or_create(env=env, name="random", kind=PolicyVersion.Kind.RANDOM)
    campaign = services.campaign_create(name="bench", env=env, segment_length=SEGMENT, overlap=VOTES_PER_PAIR,
                                        max_overlap=VOTES_PER_PAIR)
    User.objects.bulk_create([User(username=f"annotator{i:03d}", password="!") for i in range(ANNOTATORS)])
    (MEDIA / "trajectories").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(trajectories):
        (MEDIA / "trajectories" / f"bench-{i}.npz").write_bytes(npz_bytes({
            "observations": rng.normal(size=(LENGTH, OBS_DIM)), "actions": rng.normal(size=(LENGTH, ACT_DIM)).astype(np.float32),
            "rewards": rng.normal(size=LENGTH).astype(np.float32), "terminations": np.zeros(LENGTH, dtype=bool)}))
    files_s = time.perf_counter() - started
    with connection.cursor() as cur:
        cur.execute("SELECT setseed(0.42)")
        cur.execute(
            "INSERT INTO feedback_trajectory (env_id, policy_id, seed, length, arrays, pending_frames, has_rewards,"
            " true_return, source, created_at) SELECT %s, %s, i, %s, 'trajectories/bench-' || i || '.npz', '', true,"
            " random() * 100, 'rollout', now() FROM generate_series(0, %s - 1) i",
            [env.pk, policy.pk, LENGTH, trajectories])
        cur.execute(
            "INSERT INTO feedback_segment (trajectory_id, start, \"end\", clip, clip_status, clip_error, fps,"
            " true_return, created_at) SELECT t.id, s * %s, (s + 1) * %s, 'clips/bench.mp4', 'ready', '', 30,"
            " random() * 10, now() FROM feedback_trajectory t CROSS JOIN generate_series(0, %s - 1) s ORDER BY t.id, s",
            [SEGMENT, SEGMENT, LENGTH // SEGMENT])
        cur.execute("CREATE TEMP TABLE seg AS SELECT id, row_number() OVER (ORDER BY id) - 1 AS idx FROM feedback_segment")
        cur.execute("CREATE INDEX ON seg (idx)")
        # Pair i: segment a = i mod S, b = a + 1 + i div S (mod S): distinct and never repeated.
        cur.execute(
            "INSERT INTO feedback_pair (campaign_id, segment_a_id, segment_b_id, priority, selector, model_version,"
            " slots_taken, slot_limit, is_open, is_gold, gold_preference, is_practice, created_at)"
            " SELECT %s, a.id, b.id, 0, 'random', '', %s, %s, false, false, '', false,"
            " now() - interval '30 days' FROM generate_series(0, %s - 1) i"
            " JOIN seg a ON a.idx = i %% %s JOIN seg b ON b.idx = (i %% %s + 1 + i / %s) %% %s ORDER BY i",
            [campaign.pk, VOTES_PER_PAIR, VOTES_PER_PAIR, pairs, segments, segments, segments, segments])
        cur.execute("CREATE TEMP TABLE ann AS SELECT id, row_number() OVER (ORDER BY id) - 1 AS idx FROM auth_user")
        cur.execute(
            "CREATE TEMP TABLE votes AS SELECT p.id AS pair_id, u.id AS annotator_id, random() < 0.5 AS left_is_a,"
            " now() - interval '30 days' + (p.id * 5 + k) * interval '1 second' AS done,"
            " (1500 + random() * 8000)::int AS elapsed, random() AS r, random() AS d"
            " FROM (SELECT id, row_number() OVER (ORDER BY id) - 1 AS idx FROM feedback_pair) p"
            " CROSS JOIN generate_series(0, %s - 1) k JOIN ann u ON u.idx = (p.idx + k * 7) %% %s",
            [VOTES_PER_PAIR, ANNOTATORS])
        cur.execute(
            "INSERT INTO feedback_assignment (pair_id, annotator_id, left_is_a, leased_at, expires_at, completed_at,"
            " holds_slot) SELECT pair_id, annotator_id, left_is_a, done - elapsed * interval '1 millisecond',"
            " done + interval '10 minutes', done, true FROM votes ORDER BY pair_id, annotator_id")
        cur.execute(
            "INSERT INTO feedback_judgement (pair_id, annotator_id, assignment_id, preference, desirability_a,"
            " desirability_b, confidence, elapsed_ms, left_is_a, is_simulated, created_at)"
            " SELECT v.pair_id, v.annotator_id, a.id,"
            " CASE WHEN v.r < 0.45 THEN 'a' WHEN v.r < 0.85 THEN 'b' WHEN v.r < 0.95 THEN 'equal' ELSE 'cant_tell' END,"
            " CASE WHEN v.d < 0.5 THEN 'desirable' WHEN v.d < 0.8 THEN 'undesirable' ELSE 'unsure' END,"
            " CASE WHEN v.d < 0.3 THEN 'desirable' ELSE 'undesirable' END,"
            " CASE WHEN v.r < 0.5 THEN round(v.d::numeric, 2)::float END, v.elapsed, v.left_is_a, false, v.done"
            " FROM votes v JOIN feedback_assignment a ON a.pair_id = v.pair_id AND a.annotator_id = v.annotator_id"
            " ORDER BY v.pair_id, v.annotator_id")
        cur.execute("UPDATE feedback_campaign SET pair_count = %s WHERE id = %s", [pairs, campaign.pk])
        cur.execute("INSERT INTO feedback_campaigncounter (campaign_id, shard, label_count, extra_slots)"
                    " VALUES (%s, 0, %s, 0)", [campaign.pk, pairs * VOTES_PER_PAIR])
        cur.execute("ANALYZE")
        cur.execute("SELECT count(*) FROM feedback_judgement")
        judgements = cur.fetchone()[0]
    return {"load_s": round(time.perf_counter() - started, 1), "npz_files_s": round(files_s, 1),
            "judgements": judgements, "pairs": pairs, "segments": segments, "trajectories": trajectories}


def measure(formats: list[str]) -> None:
    """Runs in its own process, so getrusage's peak is this export's (plus Django's start-up)."""
    import django

    sys.path.insert(0, str(ROOT))
    django.setup()
    import pyarrow  # noqa: F401  (counted in the baseline: every export process has it loaded)

    from feedback.datasets.filters import DatasetFilters
    from feedback.datasets.services import snapshot_create
    from feedback.models import Campaign

    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    campaign = Campaign.objects.get(name="bench")
    started = time.perf_counter()
    snapshot = snapshot_create(name="bench", filters=DatasetFilters(campaign_ids=(campaign.pk,)),
                               formats=formats, background=False)
    elapsed = time.perf_counter() - started
    assert snapshot.status == "succeeded", snapshot.error
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "export_s": round(elapsed, 2), "cpu_user_s": round(usage.ru_utime, 1), "cpu_sys_s": round(usage.ru_stime, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "baseline_rss_mib": round(baseline_kib / 1024, 1),
        "counts": snapshot.counts, "content_hash": snapshot.content_hash,
        "files": {name: meta["bytes"] for name, meta in snapshot.files.items()},
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--formats", default="parquet",
                        help="comma-separated formats to write (parquet, jsonl, hf); the target is parquet")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        print(json.dumps(load(args.scale)))
        return
    if args.measure:
        measure(args.formats.split(","))
        return
    loaded: dict[str, float] = {}
    if not args.skip_load:
        recreate_database()
        loaded = json.loads(subprocess.run(
            [sys.executable, __file__, "--load", "--scale", str(args.scale)],
            cwd=ROOT, env=_env(), check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        print("loaded:", loaded, flush=True)
    run = subprocess.run([sys.executable, __file__, "--measure", "--formats", args.formats], cwd=ROOT, env=_env(), check=True,
                         capture_output=True, text=True)
    result = json.loads(run.stdout.strip().splitlines()[-1])
    result.update({"scale": args.scale, "formats": args.formats, "load": loaded, "machine": {
        "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2)}})
    suffix = "" if args.scale == 1.0 else f"_{args.scale:g}"
    if args.formats != "parquet":
        suffix += "_" + args.formats.replace(",", "_")
    out = ROOT / "benchmarks" / "results" / f"dataset_export{suffix}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    c = result["counts"]
    print(f"| {c['judgements']:,} | {c['pairs']:,} | {result['export_s']} s | {result['peak_rss_mib']} MiB "
          f"| {result['baseline_rss_mib']} MiB | {result['files']['pairs.parquet'] / 2**20:.1f} MiB |")


if __name__ == "__main__":
    main()
