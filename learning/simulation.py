"""Simulated annotators: B-Pref teachers labelling a campaign through the annotation API.

Each simulated annotator is an ordinary PrefLab user (groups ``annotator`` and ``simulated``)
with an API token. It labels exactly like a person's browser: ``POST next`` leases a pair
(left/right already shuffled by the server), ``POST judgement`` answers it in screen terms.
Only the *answer* is different: a teacher from :mod:`learning.core.teachers` decides it from
the segments' true per-step rewards, which this script (running on the server machine)
reads from the database and the trajectory files by segment id. The server marks judgements
from the ``simulated`` group as simulated.

Mapping the teacher's answer onto the screen: the teacher compares the pair's canonical
segments A and B; 1.0 → the side showing A, 0.0 → the side showing B, 0.5 → "equal",
``None`` (skipped) → "cant_tell". Desirability of each clip comes from its true return
relative to the campaign's return range (lowest to highest true return among its eligible
segments): top third desirable, bottom third undesirable, otherwise unsure.

Segments of unequal length (a trajectory's tail) are compared with the shorter one's
rewards padded by zeros at the *start*, so the myopic teacher still weighs each segment's
last step by 1.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from django.db import connection

from feedback.models import Assignment, Campaign, Segment
from feedback.storage import load_npz
from learning.core.teachers import TeacherConfig

__all__ = [
    "AnnotatorClient",
    "GroundTruth",
    "SimulationError",
    "SimulationResult",
    "desirability",
    "run_simulation",
    "screen_preference",
]

ANSWER_KEYS = ("a", "b", "equal", "cant_tell")
MAX_CONSECUTIVE_ERRORS = 3


class SimulationError(Exception):
    """The simulation cannot start or go on (unreachable server, no true rewards, …)."""


# --- ground truth -----------------------------------------------------------------------------


def campaign_return_range(campaign: Campaign) -> tuple[float, float] | None:
    """Lowest and highest true return among the campaign's eligible segments (None if none)."""
    from feedback.services.campaigns import eligible_segments

    returns = list(
        eligible_segments(campaign)
        .filter(true_return__isnull=False)
        .values_list("true_return", flat=True)
    )
    if not returns:
        return None
    return float(min(returns)), float(max(returns))


def desirability(value: float, low: float, high: float) -> str:
    """Top third of [low, high] desirable, bottom third undesirable, the middle unsure."""
    spread = high - low
    if not spread > 0:
        return "unsure"
    fraction = (value - low) / spread
    if fraction >= 2 / 3:
        return "desirable"
    if fraction <= 1 / 3:
        return "undesirable"
    return "unsure"


@dataclass(frozen=True)
class SegmentTruth:
    rewards: np.ndarray  # (T,) float64 per-step rewards
    true_return: float


class GroundTruth:
    """True rewards of segments, loaded lazily by id and cached; safe to share between threads.

    Per-step rewards come from the trajectory's ``.npz``; a segment whose trajectory holds no
    rewards but has a recorded ``true_return`` is one step of that reward (enough for every
    teacher except the myopic one). A segment with neither raises ``SimulationError``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._segments: dict[int, SegmentTruth] = {}
        self._trajectories: dict[int, dict[str, np.ndarray]] = {}
        self._pair_a: dict[int, int] = {}

    def segment(self, segment_id: int) -> SegmentTruth:
        with self._lock:
            cached = self._segments.get(segment_id)
        if cached is not None:
            return cached
        row = (
            Segment.objects.select_related("trajectory")
            .only("id", "start", "end", "true_return", "trajectory__arrays", "trajectory__has_rewards")
            .get(pk=segment_id)
        )
        rewards: np.ndarray | None = None
        if row.trajectory.has_rewards:
            with self._lock:
                arrays = self._trajectories.get(row.trajectory_id)
            if arrays is None:
                arrays = load_npz(row.trajectory.arrays.name)
                with self._lock:
                    self._trajectories[row.trajectory_id] = arrays
            if "rewards" in arrays:
                rewards = np.asarray(arrays["rewards"][row.start : row.end], dtype=np.float64)
        if rewards is None and row.true_return is not None:
            rewards = np.array([row.true_return], dtype=np.float64)
        if rewards is None:
            raise SimulationError(
                f"Segment {segment_id} has no true rewards; simulated annotators answer from "
                "true rewards only."
            )
        total = float(row.true_return) if row.true_return is not None else float(rewards.sum())
        truth = SegmentTruth(rewards=rewards, true_return=total)
        with self._lock:
            self._segments[segment_id] = truth
        return truth

    def segment_a_of(self, assignment_id: int) -> int:
        """The canonical segment A of the pair behind an assignment."""
        with self._lock:
            cached = self._pair_a.get(assignment_id)
        if cached is not None:
            return cached
        segment_a = Assignment.objects.values_list("pair__segment_a_id", flat=True).get(
            pk=assignment_id
        )
        with self._lock:
            self._pair_a[assignment_id] = segment_a
        return segment_a


def _aligned(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pad the shorter reward sequence with zeros at the start (last steps line up)."""
    length = max(len(a), len(b))
    return (
        np.pad(a, (length - len(a), 0)),
        np.pad(b, (length - len(b), 0)),
    )


def screen_preference(answer: float | None, *, left_is_a: bool) -> str:
    """The teacher's canonical answer as a screen preference (left/right/equal/cant_tell)."""
    if answer is None:
        return "cant_tell"
    if answer == 0.5:
        return "equal"
    a_wins = answer == 1.0
    return "left" if a_wins == left_is_a else "right"


def canonical_key(answer: float | None) -> str:
    if answer is None:
        return "cant_tell"
    return {1.0: "a", 0.0: "b"}.get(answer, "equal")


# --- HTTP -------------------------------------------------------------------------------------


class AnnotatorClient:
    """One annotator's keep-alive HTTP/1.1 connection to the PrefLab API (token auth)."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 60.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SimulationError(f"--base-url must be an http(s) URL, got {base_url!r}.")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout)
        return self._conn

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Token {self._token}", "Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, self._prefix + path, body=payload, headers=headers)
                response = conn.getresponse()
                raw = response.read()
                if response.will_close:
                    self.close()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A keep-alive connection the server closed meanwhile; both calls are safe
                # to repeat (next resumes the lease, an identical judgement is a no-op).
                self.close()
                if attempt == 2:
                    raise
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = {"raw": raw[:300].decode("utf-8", "replace")}
        return response.status, data

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# --- the run ----------------------------------------------------------------------------------


@dataclass
class SimulationResult:
    teacher: str
    workers: int
    labels: int = 0
    answers: Counter[str] = field(default_factory=Counter)  # canonical: a, b, equal, cant_tell
    errors: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    stopped_because: str = ""

    def summary(self) -> str:
        rate = self.labels / self.elapsed_s if self.elapsed_s > 0 else 0.0
        answers = ", ".join(f"{key} {self.answers.get(key, 0)}" for key in ANSWER_KEYS)
        lines = [
            (
                f"Simulated {self.teacher} annotators ({self.workers} workers): {self.labels} "
                f"labels in {self.elapsed_s:.2f} s ({rate:.1f} labels/s); {self.stopped_because}."
            ),
            f"Teacher answers (canonical A/B): {answers}.",
        ]
        if self.errors:
            lines.append(f"{len(self.errors)} error(s); first: {self.errors[0]}")
        return "\n".join(lines)


class _Budget:
    """Labels still to give, shared by the workers (None: unlimited)."""

    def __init__(self, limit: int | None) -> None:
        self._left = limit
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._left is None:
                return True
            if self._left <= 0:
                return False
            self._left -= 1
            return True

    def give_back(self) -> None:
        with self._lock:
            if self._left is not None:
                self._left += 1

    @property
    def exhausted(self) -> bool:
        with self._lock:
            return self._left is not None and self._left <= 0


def run_simulation(
    *,
    campaign_id: int,
    base_url: str,
    tokens: list[str],
    teacher_name: str,
    teacher: TeacherConfig,
    return_range: tuple[float, float],
    labels: int | None = None,
    seed: int | None = None,
) -> SimulationResult:
    """Label ``campaign_id`` with one thread per token until ``labels`` judgements are in or
    the server has nothing left (204) for any of them."""
    truth = GroundTruth()
    budget = _Budget(labels)
    result = SimulationResult(teacher=teacher_name, workers=len(tokens))
    lock = threading.Lock()
    fatal = threading.Event()
    low, high = return_range
    seeds = np.random.SeedSequence(seed).spawn(len(tokens))
    next_path = f"/api/v1/campaigns/{campaign_id}/next/"

    def error(message: str) -> None:
        with lock:
            result.errors.append(message)

    def work(index: int) -> None:
        rng = np.random.default_rng(seeds[index])
        client = AnnotatorClient(base_url, tokens[index])
        consecutive = 0
        try:
            while not fatal.is_set() and consecutive < MAX_CONSECUTIVE_ERRORS:
                if not budget.take():
                    return
                leased_at = time.perf_counter()
                status, lease = client.request("POST", next_path, {})
                if status == 204:
                    budget.give_back()
                    return
                if status != 200 or not isinstance(lease, dict):
                    budget.give_back()
                    error(f"worker {index}: POST next -> {status}: {lease}")
                    if status in (401, 403, 404, 409):  # no point in retrying
                        fatal.set()
                    consecutive += 1
                    continue
                assignment_id = lease["assignment_id"]
                left_id, right_id = lease["left"]["segment_id"], lease["right"]["segment_id"]
                try:
                    a_id = truth.segment_a_of(assignment_id)
                    b_id = right_id if a_id == left_id else left_id
                    seg_a, seg_b = truth.segment(a_id), truth.segment(b_id)
                except SimulationError as exc:
                    budget.give_back()
                    error(str(exc))
                    fatal.set()
                    return
                rewards_a, rewards_b = _aligned(seg_a.rewards, seg_b.rewards)
                answer = teacher.answer(rewards_a, rewards_b, rng=rng, return_range=(low, high))
                left, right = (seg_a, seg_b) if a_id == left_id else (seg_b, seg_a)
                body = {
                    "preference": screen_preference(answer, left_is_a=a_id == left_id),
                    "left_desirability": desirability(left.true_return, low, high),
                    "right_desirability": desirability(right.true_return, low, high),
                    "elapsed_ms": int((time.perf_counter() - leased_at) * 1000),
                }
                status, judged = client.request(
                    "POST", f"/api/v1/assignments/{assignment_id}/judgement/", body
                )
                if status in (200, 201):
                    consecutive = 0
                    with lock:
                        result.labels += 1
                        result.answers[canonical_key(answer)] += 1
                else:
                    budget.give_back()
                    error(f"worker {index}: POST judgement {assignment_id} -> {status}: {judged}")
                    if status in (401, 403):
                        fatal.set()
                    if status != 410:  # 410: the lease lapsed, just ask for the next pair
                        consecutive += 1
        except Exception as exc:  # noqa: BLE001 - reported in the summary, never swallowed
            error(f"worker {index}: {type(exc).__name__}: {exc}")
            fatal.set()
        finally:
            client.close()
            connection.close()  # this thread's own database connection

    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(i,), name=f"sim-{i}") for i in range(len(tokens))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.elapsed_s = time.perf_counter() - started
    if fatal.is_set():
        result.stopped_because = "stopped on an error"
    elif budget.exhausted:
        result.stopped_because = f"reached the budget of {labels} labels"
    elif result.errors:
        result.stopped_because = "stopped after repeated errors"
    else:
        result.stopped_because = "nothing left to label"
    return result
