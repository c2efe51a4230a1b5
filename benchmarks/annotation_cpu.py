"""Where the CPU of one label goes: the combined request (judgement + next lease) run
in-process through the ASGI handler, with the thread CPU time of each part.

Serves nothing over the network: one annotator's requests go straight to
``OneHopASGIHandler`` on an event loop, one at a time, against the load benchmark's fixtures
(``annotation_load.seed``) on a fresh PostgreSQL (default) or SQLite database. Each part is
timed with ``time.thread_time()`` around the function that does it, so the numbers are CPU
spent in this process's threads, not waiting for the database. Bounded by ``--requests``.

    .venv/bin/python benchmarks/annotation_cpu.py                      # PostgreSQL
    .venv/bin/python benchmarks/annotation_cpu.py --database sqlite

Prints one line per part, in ms per request (see docs/benchmarks.md, issue 3, fourth round).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.annotation_load import migrated_database, seed, setup_django  # noqa: E402

ANSWER = {"preference": "left", "left_desirability": "desirable", "right_desirability": "unsure",
          "elapsed_ms": 1000, "next": {"exclude": []}}


def _timed(totals: dict[str, float], key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    totals[key] = 0.0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[key] += time.thread_time() - started

    return wrapper


def instrument(handler: Any, totals: dict[str, float]) -> None:
    """Wrap each part of the request in a thread-CPU timer (the functions the view calls are
    looked up at call time, so wrapping the module attributes is enough)."""
    from asgiref.sync import sync_to_async

    import feedback.apis.annotation as api
    import feedback.authentication as auth
    import feedback.services as services
    from feedback.apis.annotation import JudgementApi

    handler._respond_async = sync_to_async(
        _timed(totals, "whole request in the server thread", handler._respond),
        thread_sensitive=False, executor=handler._executor,
    )
    handler._sync.get_response = _timed(totals, "  middleware chain and everything inside", handler._sync.get_response)
    JudgementApi.dispatch = _timed(totals, "    DRF dispatch and everything inside", JudgementApi.dispatch)
    auth.token_user = _timed(totals, "      token lookup", auth.token_user)
    JudgementApi.post = _timed(totals, "      the view (post)", JudgementApi.post)
    services.judgement_record = _timed(totals, "        recording the judgement", services.judgement_record)
    services.assignment_lease_next = _timed(totals, "        leasing the next pair", services.assignment_lease_next)
    api.lease_payload = _timed(totals, "        the lease's response body", api.lease_payload)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--postgres-url", default="postgres://postgres@127.0.0.1:5432/preflab_bench_cpu")
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--warm-up", type=int, default=200)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="preflab-cpu-"))
    _, env = migrated_database(args.database, args.postgres_url, workdir)
    setup_django(env)
    campaigns, tokens = seed([1], args.requests + args.warm_up + 100)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    connection.close()

    from config.asgi_handler import OneHopASGIHandler

    loop = asyncio.new_event_loop()
    handler = OneHopASGIHandler()
    headers = [(b"host", b"127.0.0.1"), (b"authorization", f"Token {tokens[0][0]}".encode()),
               (b"content-type", b"application/json")]

    def call(path: str, body: dict[str, Any]) -> tuple[int, Any]:
        payload = json.dumps(body).encode()
        scope = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "root_path": "", "scheme": "http", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 5000),
                 "headers": [*headers, (b"content-length", str(len(payload)).encode())],
                 "http_version": "1.1", "asgi": {"version": "3.0"}}
        response = loop.run_until_complete(handler._respond_async(scope, io.BytesIO(payload)))
        return response.status_code, json.loads(response.content)

    status, lease = call(f"/api/v1/campaigns/{campaigns[0]}/next/", {})
    if status != 200:
        raise SystemExit(f"next answered {status}: {lease}")

    def label() -> None:
        nonlocal lease
        status, body = call(f"/api/v1/assignments/{lease['assignment_id']}/judgement/", ANSWER)
        if status != 201 or not body.get("next"):
            raise SystemExit(f"judgement answered {status}: {body}")
        lease = body["next"]

    for _ in range(args.warm_up):
        label()
    totals: dict[str, float] = {}
    instrument(handler, totals)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(args.requests):
        label()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    n = args.requests
    print(f"{args.database}: {n} labels (judgement + next lease), one at a time")
    print(f"process CPU {1000 * cpu / n:.2f} ms and wall {1000 * wall / n:.2f} ms per request")
    for key, seconds in totals.items():
        print(f"{key:<50} {1000 * seconds / n:6.2f} ms")


if __name__ == "__main__":
    main()
