"""What the browser tests share: logging in, reading the labelling page, clip fixtures."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from playwright.sync_api import Page

from feedback import services
from feedback.models import Campaign, PolicyVersion, Trajectory
from feedback.storage import TrajectoryArrays
from tests.conftest import random_frames

PASSWORD = "annie-pass-123"

# Everything the tests read off the page, in one round trip.
READ_PAIR = """() => {
  const root = document.getElementById("labeller");
  const video = (side) => root.querySelector(`video[data-role="current"][data-side="${side}"]`);
  const left = video("left"), right = video("right");
  return {
    assignment: Number(root.dataset.assignmentId),
    hook: window.preflab.currentAssignmentId,
    prefetched: window.preflab.prefetchedAssignmentId,
    left: Number(left.dataset.segmentId),
    right: Number(right.dataset.segmentId),
    leftAssignment: Number(left.dataset.assignmentId),
    leftReady: left.readyState,
    rightReady: right.readyState,
    leftVisible: left.checkVisibility(),
    rightVisible: right.checkVisibility(),
    // The hidden buffer: the prefetched pair's clips, loading before they are needed.
    buffered: [...root.querySelectorAll('video[data-role="prefetch"]')].map((v) => ({
      assignment: Number(v.dataset.assignmentId), readyState: v.readyState, hidden: !v.checkVisibility(),
    })),
  };
}"""

# The pair is on screen, its clips are showing, and the next lease is settled (loaded or none).
SETTLED = """() => {
  const root = document.getElementById("labeller");
  const current = window.preflab.state.current;
  return root.dataset.state === "ready" && current !== null && current.shownAt !== null
    && ["ready", "none"].includes(root.dataset.prefetch);
}"""

# Both clips' playback positions, read in one task so they describe the same instant.
CLOCKS = """() => {
  const pick = (side) => document.querySelector(`video[data-role="current"][data-side="${side}"]`);
  const left = pick("left"), right = pick("right");
  return {
    left: left.currentTime, right: right.currentTime,
    leftDuration: left.duration, rightDuration: right.duration,
    leftPaused: left.paused, rightPaused: right.paused,
    fps: window.preflab.state.current.pair.fps,
  };
}"""

# Sample both clips' positions on every animation frame for `ms` milliseconds.
SAMPLE = """(ms) => new Promise((resolve) => {
  const pick = (side) => document.querySelector(`video[data-role="current"][data-side="${side}"]`);
  const left = pick("left"), right = pick("right");
  const samples = [];
  const start = performance.now();
  const step = () => {
    samples.push([left.currentTime, right.currentTime]);
    if (performance.now() - start < ms) requestAnimationFrame(step); else resolve(samples);
  };
  requestAnimationFrame(step);
})"""


def log_in(
    page: Page, base_url: str, *, username: str, password: str, next_path: str = "/"
) -> None:
    page.goto(f"{base_url}/accounts/login/?next={next_path}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base_url}{next_path}")


def wait_settled(page: Page) -> dict[str, Any]:
    page.wait_for_function(SETTLED, timeout=10_000)
    return page.evaluate(READ_PAIR)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def make_clip_campaign(
    *, lengths: tuple[int, int], fps: int | tuple[int, int], name: str = "sync"
) -> Campaign:
    """One pair of two clips of the given lengths (frames) at ``fps`` (one for both, or one
    per clip, in the order of ``lengths``): the frame-lock fixture."""
    rates = (fps, fps) if isinstance(fps, int) else fps
    env = services.environment_get_or_create(env_id="Sync-v0", render_fps=rates[0])
    policy = services.policy_get_or_create(env=env, name="random", kind=PolicyVersion.Kind.RANDOM)
    segments = []
    for seed, (length, rate) in enumerate(zip(lengths, rates, strict=True)):
        rng = np.random.default_rng(seed)
        trajectory = services.trajectory_create(
            env=env,
            policy=policy,
            segment_length=length,
            seed=seed,
            render_in_background=False,
            source=Trajectory.Source.ROLLOUT,
            arrays=TrajectoryArrays(
                observations=rng.normal(size=(length, 3)).astype(np.float32),
                actions=rng.normal(size=(length, 1)).astype(np.float32),
            ),
        )
        segment = trajectory.segments.get()
        services.segment_clip_attach(
            segment=segment, frames=random_frames(length, seed=seed), fps=rate
        )
        segments.append(segment)
    campaign = services.campaign_create(name=name, env=env, segment_length=max(lengths))
    services.pairs_add(campaign=campaign, segment_pairs=[(segments[0].pk, segments[1].pk)])
    return campaign


def loop_distance(a: float, b: float, period: float) -> float:
    """Distance between two positions on a loop of ``period`` seconds."""
    d = abs(a - b) % period
    return min(d, period - d)


def label_page(page: Page, base_url: str, campaign: Campaign, *, username: str = "annie") -> str:
    """Log in as ``username`` straight onto the campaign's labelling page; returns its path."""
    path = f"/campaigns/{campaign.pk}/label/"
    log_in(page, base_url, username=username, password=PASSWORD, next_path=path)
    return path


# The step each clip shows, read off its own clock: round(currentTime × fps), plus what the
# page displays for the step (slider, readout, the marked timeline cells) and the player state.
FRAMES = """() => {
  const root = document.getElementById("labeller");
  const current = window.preflab.state.current;
  const pick = (side) => root.querySelector(`video[data-role="current"][data-side="${side}"]`);
  const left = pick("left"), right = pick("right");
  const marked = (side) => {
    const cells = [...root.querySelectorAll(`.timeline[data-side="${side}"] [data-step]`)];
    return {
      cells: cells.length,
      current: cells.filter((c) => c.hasAttribute("aria-current")).map((c) => Number(c.dataset.step)),
    };
  };
  return {
    left: Math.round(left.currentTime * current.lease.left.fps),
    right: Math.round(right.currentTime * current.lease.right.fps),
    leftFps: current.lease.left.fps,
    rightFps: current.lease.right.fps,
    leftSteps: current.lease.left.length,
    rightSteps: current.lease.right.length,
    leftPaused: left.paused,
    rightPaused: right.paused,
    leftRate: left.playbackRate,
    rightRate: right.playbackRate,
    seeking: left.seeking || right.seeking,
    paused: window.preflab.state.paused,
    speed: window.preflab.state.player.speed,
    step: Number(root.dataset.step),
    slider: Number(root.querySelector('input[data-action="scrub"]').value),
    sliderMax: Number(root.querySelector('input[data-action="scrub"]').max),
    readout: root.querySelector("[data-step-readout]").textContent,
    leftTimeline: marked("left"),
    rightTimeline: marked("right"),
  };
}"""

# Both clips' step indices on every animation frame for `ms` milliseconds.
SAMPLE_STEPS = """(ms) => new Promise((resolve) => {
  const lease = window.preflab.state.current.lease;
  const pick = (side) => document.querySelector(`video[data-role="current"][data-side="${side}"]`);
  const left = pick("left"), right = pick("right");
  const samples = [];
  const start = performance.now();
  const step = () => {
    samples.push([left.currentTime * lease.left.fps, right.currentTime * lease.right.fps]);
    if (performance.now() - start < ms) requestAnimationFrame(step); else resolve(samples);
  };
  requestAnimationFrame(step);
})"""

# No seek is pending on either clip: what currentTime says is what is on screen.
SETTLED_SEEKS = """() => {
  const videos = document.querySelectorAll('video[data-role="current"]');
  return [...videos].every((v) => !v.seeking && v.readyState >= 2);
}"""


def off_the_loop(action: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Run ``action`` in a thread of its own and return its result.

    Sync Playwright keeps an event loop in the test's thread, where ``async_to_sync`` (used
    to send channel-layer events) refuses to run.
    """
    from django.db import connections

    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = action()
        except BaseException as error:  # noqa: BLE001 — re-raised in the test's thread
            outcome["error"] = error
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"{action} did not finish within {timeout} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


# --- the practice round ------------------------------------------------------------------------

# The practice pair on screen: its clips' segment ids (what the answer is checked against)
# and whether both clips show a frame.
READ_PRACTICE = """() => {
  const root = document.getElementById("labeller");
  const video = (side) => root.querySelector(`video[data-role="current"][data-side="${side}"]`);
  const left = video("left"), right = video("right");
  return {
    step: root.dataset.practice,
    left: Number(left.dataset.segmentId),
    right: Number(right.dataset.segmentId),
    loaded: left.readyState >= 2 && right.readyState >= 2 && !left.hidden && !right.hidden,
  };
}"""


def make_practice_campaign(
    make_campaign: Callable[..., Campaign], *, practice: int, pairs: int
) -> Campaign:
    """A campaign of ``pairs`` ordinary pairs and ``practice`` practice pairs (gold pairs kept
    for the practice round, answered by the synthetic rewards' true returns)."""
    campaign = make_campaign(pairs=pairs, n_trajectories=4)
    made = services.pairs_create_gold(
        campaign=campaign, count=practice, practice=True, min_gap=1e-6, seed=0
    )
    assert len(made) == practice
    return campaign


def practice_keys(page: Page) -> tuple[str, str]:
    """(the right key, a wrong key) for the practice pair on screen, from the DB's answer.

    Waits until the pair's clips show; the answer is checked against the left clip's segment.
    """
    from feedback.models import Pair

    page.wait_for_function(f"({READ_PRACTICE})().loaded", timeout=10_000)
    shown = page.evaluate(READ_PRACTICE)
    pair = Pair.objects.get(
        is_practice=True,
        segment_a_id=min(shown["left"], shown["right"]),
        segment_b_id=max(shown["left"], shown["right"]),
    )
    better = pair.segment_a_id if pair.gold_preference == "a" else pair.segment_b_id
    return ("ArrowLeft", "ArrowRight") if better == shown["left"] else ("ArrowRight", "ArrowLeft")
