"""Load benchmark of the annotation protocol: simulated annotators doing next → judgement.

Two forms of the protocol (``--protocol``): ``combined`` (default, what the labelling page
does) — one ``next``, then each judgement carries ``"next"`` and its response brings the
following lease, one request per pair; ``separate`` — ``next`` then ``judgement`` per pair.
Annotators go as fast as the server answers (zero think time, a closed loop), or, with
``--rate R``, together offer R judgements/s with exponential think times.

Serves PrefLab as in production (uvicorn ASGI workers, PostgreSQL by default) on loopback,
drives it with N concurrent annotators from one asyncio process (a minimal keep-alive
HTTP/1.1 client, so the load generator costs little CPU on a 2-core machine), and reports
judgements/s and p50/p95/p99 latency per request type. Afterwards every acknowledged
judgement (201) is checked to be in the database exactly once, and no other judgement is.

Bounded: each level runs for --duration seconds (default 15) and at most --max-judgements.

    .venv/bin/python benchmarks/annotation_load.py                      # PostgreSQL
    .venv/bin/python benchmarks/annotation_load.py --database sqlite    # embedded default
    .venv/bin/python benchmarks/annotation_load.py --levels 64 --rate 200   # 64 annotators offering 200/s

Writes a JSON file and prints a Markdown table (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# --- a minimal HTTP/1.1 keep-alive client ------------------------------------------------------


class Connection:
    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port, self.token = host, port, token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict | None]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        payload = json.dumps(body or {}).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token {self.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        ).encode()
        self.writer.write(head + payload)
        assert self.reader is not None
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        length = 0
        keep_alive = True
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value.strip())
            elif name.lower() == "connection" and value.strip().lower() == "close":
                keep_alive = False
        data = await self.reader.readexactly(length) if length else b""
        if not keep_alive:  # e.g. gunicorn's sync workers: reconnect for the next request
            self.close()
            self.reader = self.writer = None
        try:
            return status, (json.loads(data) if data else None)
        except ValueError:
            # Not JSON (e.g. an HTML error page): keep a snippet for the error report.
            return status, {"raw": data[:300].decode("utf-8", "replace")}

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@dataclass
class LevelResult:
    annotators: int
    protocol: str
    offered_per_s: float | None  # --rate: judgements/s the annotators offer; None: no think time
    duration_s: float
    judgements: int
    judgements_per_s: float
    next_ms: dict[str, float]
    judgement_ms: dict[str, float]
    errors: dict[str, int]
    acknowledged_in_db_once: bool
    db_judgements: int
    duplicate_leases: int
    # CPU time per acknowledged judgement (one next + one judgement request), from /proc:
    # the server's processes, this database's PostgreSQL backends, and this load generator.
    # Unlike throughput, it hardly moves when other work shares the machine.
    cpu_ms_per_judgement: dict[str, float]
    load_average: list[float]
    # CPU seconds each server process used during the level, busiest first: how evenly the
    # workers shared the connections.
    server_cpu_s_by_process: list[float]
    # [second, requests, p99 ms, max ms] for the requests started in each second of the level.
    latency_by_second: list[list[float]]


# --- CPU accounting (Linux /proc) ---------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _process_tree(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return tree


def _database_backends(database_url: str | None) -> set[int]:
    if database_url is None:
        return set()
    import psycopg

    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(database_url.rsplit("/", 1)[0] + "/postgres") as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [name]).fetchall()
    return {row[0] for row in rows}


class CpuMeter:
    """CPU seconds used by the server tree, the database's backends and this process."""

    def __init__(self, server_pid: int, database_url: str | None) -> None:
        self.server_pid, self.database_url = server_pid, database_url

    def sample(self) -> dict[str, dict[int, float] | float]:
        own = os.times()
        return {
            "server": {pid: _cpu_seconds(pid) for pid in _process_tree(self.server_pid)},
            "postgres": {pid: _cpu_seconds(pid) for pid in _database_backends(self.database_url)},
            "client": own.user + own.system,
        }

    @staticmethod
    def per_judgement(before: dict[str, Any], after: dict[str, Any], judgements: int) -> dict[str, float]:
        def used(kind: str) -> float:
            # Processes that appeared during the level count from zero.
            return sum(cpu - before[kind].get(pid, 0.0) for pid, cpu in after[kind].items())

        n = max(judgements, 1)
        out = {kind: round(1000 * used(kind) / n, 2) for kind in ("server", "postgres")}
        out["client"] = round(1000 * (after["client"] - before["client"]) / n, 2)
        out["total"] = round(sum(out.values()), 2)
        return out

    @staticmethod
    def by_server_process(before: dict[str, Any], after: dict[str, Any]) -> list[float]:
        used = [cpu - before["server"].get(pid, 0.0) for pid, cpu in after["server"].items()]
        return sorted((round(u, 2) for u in used if u > 0.05), reverse=True)


def percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": round(ordered[-1] * 1000, 2)}


def _count(errors: dict[str, int], kind: str, status: int, body: Any) -> None:
    errors[f"{kind} {status}"] = errors.get(f"{kind} {status}", 0) + 1
    if len(errors) < 4:
        print(f"{kind} {status}: {body}", file=sys.stderr)


@dataclass
class Pace:
    """Think time: an annotator starts at a random moment of its first gap, then sends its
    k-th judgement at a schedule with exponential gaps of mean ``mean_gap`` s (a Poisson
    stream of ``1 / mean_gap`` judgements/s per annotator, as long as the server keeps up;
    behind schedule it goes on at once). None: no think time."""

    mean_gap: float
    rng: random.Random
    due: float = 0.0

    async def wait(self, deadline: float) -> bool:
        """Sleep until this annotator's next judgement is due; False (at once) if that is
        past ``deadline``, so the level's elapsed time is not stretched by think time."""
        now = time.perf_counter()
        if self.due == 0.0:
            self.due = now + self.rng.uniform(0, self.mean_gap)  # spread the annotators' phases
        else:
            self.due += self.rng.expovariate(1 / self.mean_gap)
        if self.due >= deadline:
            return False
        if self.due > now:
            await asyncio.sleep(self.due - now)
        return True


async def annotator_loop(
    conn: Connection, campaign_id: int, deadline: float, budget: list[int],
    acked: list[int], errors: dict[str, int], trace: list[tuple[float, float, str]],
    *, combined: bool = False, pace: Pace | None = None,
) -> None:
    """One simulated annotator: ``next`` then ``judgement`` per pair; ``combined``: one
    request per pair after the first, the judgement asking for the next lease (as the
    labelling page does). Each request goes into ``trace`` as (start, latency s, kind)."""
    rng = random.Random()
    lease: Any = None
    # Paced, an annotator opens the page at a random moment of its first gap, and watches each
    # pair for its think time before answering: the first pair's too, which arrives by `next`.
    if pace is not None and not await pace.wait(deadline):
        return
    while time.perf_counter() < deadline and budget[0] > 0:
        budget[0] -= 1
        if lease is None:
            started = time.perf_counter()
            status, lease = await conn.request("POST", f"/api/v1/campaigns/{campaign_id}/next/")
            trace.append((started, time.perf_counter() - started, "next"))
            if status == 204:
                return
            if status != 200 or lease is None or "assignment_id" not in lease:
                _count(errors, "next", status, lease)
                lease = None
                continue
        if pace is not None and not await pace.wait(deadline):
            return
        answer = {
            "preference": rng.choice(["left", "right", "equal", "cant_tell"]),
            "left_desirability": rng.choice(["desirable", "undesirable", "unsure"]),
            "right_desirability": rng.choice(["desirable", "undesirable", "unsure"]),
            "elapsed_ms": rng.randint(800, 9000),
        }
        if combined:
            answer["next"] = {"exclude": []}
        started = time.perf_counter()
        status, body = await conn.request("POST", f"/api/v1/assignments/{lease['assignment_id']}/judgement/", answer)
        trace.append((started, time.perf_counter() - started, "judgement"))
        lease = None
        if status == 201 and body is not None:
            acked.append(body["id"])
            if combined:
                if body.get("next") is None:
                    return  # nothing left (or the campaign closed: next_detail says why)
                lease = body["next"]
        else:
            _count(errors, "judgement", status, body)


async def run_level(
    port: int, tokens: list[str], campaign_id: int, duration: float, max_judgements: int,
    *, combined: bool = False, rate: float | None = None,
) -> tuple[list[int], list[float], list[float], dict[str, int], float, list[list[float]]]:
    conns = [Connection("127.0.0.1", port, token) for token in tokens]
    acked: list[int] = []
    errors: dict[str, int] = {}
    trace: list[tuple[float, float, str]] = []
    budget = [max_judgements]
    started = time.perf_counter()
    deadline = started + duration
    mean_gap = len(conns) / rate if rate else None
    await asyncio.gather(*(
        annotator_loop(
            c, campaign_id, deadline, budget, acked, errors, trace, combined=combined,
            pace=Pace(mean_gap, random.Random(i)) if mean_gap else None,
        )
        for i, c in enumerate(conns)
    ))
    elapsed = time.perf_counter() - started
    for c in conns:
        c.close()
    next_lat = [latency for _, latency, kind in trace if kind == "next"]
    judge_lat = [latency for _, latency, kind in trace if kind == "judgement"]
    return acked, next_lat, judge_lat, errors, elapsed, by_second(trace, started)


def by_second(trace: list[tuple[float, float, str]], origin: float) -> list[list[float]]:
    """Requests of both kinds grouped by the second they started in: [second, requests,
    p99 ms, max ms] each, to tell a slow start or one stall from a tail spread over the run."""
    seconds: dict[int, list[float]] = {}
    for started, latency, _kind in trace:
        seconds.setdefault(int(started - origin), []).append(latency)
    rows = []
    for second in sorted(seconds):
        stats = percentiles(seconds[second])
        rows.append([second, len(seconds[second]), stats["p99"], stats["max"]])
    return rows


# --- fixtures and server ------------------------------------------------------------------------


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def migrated_database(
    database: str, postgres_url: str, workdir: Path, *, pool_size: int = 8
) -> tuple[str, dict[str, str]]:
    """A fresh, migrated database (PostgreSQL at ``postgres_url``, dropped first, or SQLite
    in ``workdir``) and the production settings that serve it; returns (URL, environment)."""
    if database == "postgres":
        import psycopg

        dbname = postgres_url.rsplit("/", 1)[1]
        with psycopg.connect(postgres_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}"')
            conn.execute(f'CREATE DATABASE "{dbname}"')
        database_url = postgres_url
    else:
        database_url = f"sqlite:///{workdir / 'bench.sqlite3'}"
    env = {
        "PREFLAB_MODE": "production",
        "DJANGO_SECRET_KEY": "benchmark-only-secret",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": database_url,
        "DB_POOL_MAX_SIZE": str(pool_size) if database == "postgres" else "0",
        "DB_CONN_MAX_AGE": "0" if database == "postgres" else "600",
        "MEDIA_ROOT": str(workdir / "media"),
        "PREFLAB_VAR_DIR": str(workdir),
        "LOG_LEVEL": "WARNING",
        "OMP_NUM_THREADS": "1",
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT,
                   env={**os.environ, **env}, check=True)
    return database_url, env


def seed(levels: list[int], pairs_per_level: int) -> tuple[list[int], list[list[str]]]:
    """One campaign per level (so each level's check is independent), annotators with tokens."""
    import numpy as np
    from django.contrib.auth.models import Group, User
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from rest_framework.authtoken.models import Token

    from feedback import services
    from feedback.models import PolicyVersion, Segment, Trajectory
    from feedback.rendering import encode_mp4
    from feedback.storage import TrajectoryArrays

    env = services.environment_get_or_create(env_id="Bench-v0", render_fps=30)
    policy = services.policy_get_or_create(env=env, name="random", kind=PolicyVersion.Kind.RANDOM)
    clip_path = encode_mp4(np.zeros((10, 32, 32, 3), dtype=np.uint8), fps=30)
    clip_name = default_storage.save("clips/bench.mp4", ContentFile(clip_path.read_bytes()))
    clip_path.unlink()
    arrays = TrajectoryArrays(observations=np.zeros((10 * 400, 2), np.float32), actions=np.zeros((10 * 400, 1), np.float32))
    trajectory = services.trajectory_create(
        env=env, policy=policy, arrays=arrays, segment_length=10, source=Trajectory.Source.ROLLOUT,
        render_in_background=False,
    )
    trajectory.segments.update(clip=clip_name, clip_status=Segment.ClipStatus.READY)
    segment_ids = list(trajectory.segments.values_list("id", flat=True))
    all_pairs = [(a, b) for i, a in enumerate(segment_ids) for b in segment_ids[i + 1:]]
    group = Group.objects.get(name="annotator")
    # One campaign and one set of annotators per level, in order (a level may repeat, e.g. a
    # warm-up: each run is checked against its own campaign).
    campaigns: list[int] = []
    tokens: list[list[str]] = []
    rng = random.Random(0)
    for level in levels:
        campaign = services.campaign_create(name=f"bench-{level}-{time.time_ns()}", env=env, segment_length=10)
        chosen = rng.sample(all_pairs, pairs_per_level)
        services.pairs_add(campaign=campaign, segment_pairs=chosen)
        campaigns.append(campaign.pk)
        tokens.append([])
        for i in range(level):
            user = User.objects.create_user(username=f"bench-{level}-{i}-{time.time_ns()}", password=None)
            user.groups.add(group)
            tokens[-1].append(Token.objects.create(user=user).key)
    return campaigns, tokens


def check(campaign_id: int, acked: list[int]) -> tuple[bool, int, int]:
    from django.db.models import Count

    from feedback.models import Assignment, Judgement

    in_db = list(Judgement.objects.filter(pair__campaign_id=campaign_id).values_list("id", flat=True))
    exactly_once = sorted(in_db) == sorted(acked) and len(set(acked)) == len(acked)
    # overlap is 1: no pair may have more than one assignment that was ever completed or live.
    duplicates = (
        Assignment.objects.filter(pair__campaign_id=campaign_id)
        .values("pair").annotate(n=Count("id")).filter(n__gt=1).count()
    )
    return exactly_once, len(in_db), duplicates


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                if b"200" in s.recv(100):
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("server did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--postgres-url", default="postgres://postgres@127.0.0.1:5432/preflab_bench")
    parser.add_argument("--levels", default="1,8,32,64")
    parser.add_argument("--workers", type=int, default=2,
                        help="uvicorn worker processes (2 measured best on 2 cores, see docs/benchmarks.md)")
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--pool-size", type=int, default=8, help="PostgreSQL connections per worker")
    parser.add_argument("--threads", type=int, default=8,
                        help="threads per worker for the one-hop labelling requests (PREFLAB_ASGI_THREADS)")
    parser.add_argument("--label", default="", help="suffix for the result file name")
    parser.add_argument("--server", choices=["uvicorn", "gunicorn"], default="uvicorn",
                        help="uvicorn: ASGI, as in production; gunicorn: WSGI, for comparison")
    parser.add_argument("--max-judgements", type=int, default=20000)
    parser.add_argument("--protocol", choices=["combined", "separate"], default="combined",
                        help="combined: each judgement also asks for the next lease, one request per "
                             "pair (what the labelling page does); separate: next, then judgement")
    parser.add_argument("--rate", type=float, default=None,
                        help="judgements/s offered by all annotators together (exponential think "
                             "times); default: none, each annotator goes as fast as the server answers")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    workdir = Path(tempfile.mkdtemp(prefix="preflab-bench-"))
    database_url, env = migrated_database(args.database, args.postgres_url, workdir, pool_size=args.pool_size)
    env["PREFLAB_ASGI_THREADS"] = str(args.threads)
    setup_django(env)
    pairs_per_level = min(args.max_judgements + 100, 60000)
    campaigns, tokens = seed(levels, pairs_per_level)
    # Bulk-loaded tables have no planner statistics yet; a live database has them from
    # autovacuum. Without them PostgreSQL sorts every open pair instead of walking the queue index.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")

    load_before = [round(x, 2) for x in os.getloadavg()]
    port = free_port()
    if args.server == "uvicorn":
        command = [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
                   "--port", str(port), "--workers", str(args.workers), "--no-access-log", "--log-level",
                   "warning", "--loop", "uvloop", "--http", "httptools", "--lifespan", "off"]
    else:  # for comparison only: the same Django app as WSGI, no WebSocket
        command = [sys.executable, "-m", "gunicorn", "config.wsgi:application", "-b", f"127.0.0.1:{port}",
                   "-w", str(args.workers), "--log-level", "warning"]
    server = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, start_new_session=True)
    results: list[LevelResult] = []
    meter = CpuMeter(server.pid, database_url if args.database == "postgres" else None)
    try:
        wait_ready(port)
        for index, level in enumerate(levels):
            before = meter.sample()
            # A full collection in this process (Django and the seeding live here) paused every
            # simulated annotator for ~60 ms mid-level, which read as server latency.
            gc.collect()
            gc.freeze()
            gc.disable()
            try:
                acked, next_lat, judge_lat, errors, elapsed, seconds = asyncio.run(
                    run_level(port, tokens[index], campaigns[index], args.duration, args.max_judgements,
                              combined=args.protocol == "combined", rate=args.rate)
                )
            finally:
                gc.enable()
            after = meter.sample()
            cpu = CpuMeter.per_judgement(before, after, len(acked))
            once, db_count, duplicates = check(campaigns[index], acked)
            result = LevelResult(
                annotators=level, protocol=args.protocol, offered_per_s=args.rate, duration_s=round(elapsed, 2), judgements=len(acked),
                judgements_per_s=round(len(acked) / elapsed, 1), next_ms=percentiles(next_lat),
                judgement_ms=percentiles(judge_lat), errors=errors, acknowledged_in_db_once=once,
                db_judgements=db_count, duplicate_leases=duplicates, cpu_ms_per_judgement=cpu,
                load_average=[round(x, 2) for x in os.getloadavg()],
                server_cpu_s_by_process=CpuMeter.by_server_process(before, after),
                latency_by_second=seconds,
            )
            results.append(result)
            print(json.dumps(asdict(result)), flush=True)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

    meta = {
        "database": args.database, "server": args.server, "workers": args.workers, "duration_s": args.duration,
        "threads_per_worker": args.threads, "load_average_before": load_before,
        "protocol": args.protocol, "offered_judgements_per_s": args.rate,
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                 text=True, check=False).stdout.strip(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "serving": ("uvicorn (uvloop, httptools)" if args.server == "uvicorn" else "gunicorn sync (WSGI)")
                   + ", PREFLAB_MODE=production, "
                  + (f"psycopg pool of {args.pool_size} per worker" if args.database == "postgres" else "SQLite WAL"),
    }
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"annotation_load_{args.database}_{args.server}_{args.protocol}{args.label}.json").write_text(
        json.dumps({"meta": meta, "levels": [asdict(r) for r in results]}, indent=2)
    )
    offered = f"offering {args.rate:g} judgements/s" if args.rate else "no think time"
    print(f"\n{args.database}, {args.server}, {args.protocol} protocol, {offered}, {args.workers} workers,"
          f" {args.duration:.0f} s per level ({meta['machine']}),"
          f" load average before {load_before}\n")
    judged = "judgement + next lease" if args.protocol == "combined" else "judgement"
    print(f"| annotators | judgements/s | next p50/p95/p99 ms | {judged} p50/p95/p99 ms | errors | exactly once "
          "| dup. leases | CPU ms/judgement server+db+client | load avg |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        n, j, c = r.next_ms, r.judgement_ms, r.cpu_ms_per_judgement
        print(f"| {r.annotators} | {r.judgements_per_s} | {n['p50']}/{n['p95']}/{n['p99']} | "
              f"{j['p50']}/{j['p95']}/{j['p99']} | {sum(r.errors.values())} | {r.acknowledged_in_db_once} | "
              f"{r.duplicate_leases} | {c['server']}+{c['postgres']}+{c['client']} = {c['total']} | {r.load_average[0]} |")


if __name__ == "__main__":
    main()
