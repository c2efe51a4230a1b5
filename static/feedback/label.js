/**
 * The labelling page: two clips side by side, frame-locked; one key answers; the next
 * pair is already loaded.
 *
 * Prefetch. Two buffers of two <video> elements each: one shows the current pair, the other
 * (hidden) holds the next lease with its clips already loaded. Answering swaps the buffers
 * at once, then saves the answer, and only after the save asks for the following lease:
 * until the answer is stored the answered pair is still the caller's open lease, and
 * `next` would hand it straight back.
 *
 * Frame lock: one clock per pair. The longer clip is the leader; it plays natively and
 * loops. The other clip follows it: on every animation frame its position is compared with
 * the leader's; a drift under one frame is trimmed by nudging its playbackRate, a larger one
 * (a loop restart, a stall) by seeking it to the leader's time. Native playback keeps motion
 * smooth — a JS clock that seeked both videos every frame would decode each frame again from
 * the last keyframe — while the two clips never show timesteps more than a frame apart.
 * Clips of different lengths: the follower does not loop, so once the leader passes its end
 * it holds its last frame (an ended video keeps showing it) until the leader wraps, and then
 * restarts with it. Pausing pauses both and seeks the follower to the leader's exact time.
 */

import { ApiError, campaignProgress, leaseNext, submitJudgement } from "./api.js";

const NUDGE_GAIN = 4; // playbackRate change per second of drift: 25 ms of drift → 0.9×
const MAX_NUDGE = 0.25;
const SAVE_RETRIES = 3;

const KEYS = {
  ArrowLeft: ["prefer", "left"],
  ArrowRight: ["prefer", "right"],
  ArrowUp: ["prefer", "equal"],
  ArrowDown: ["prefer", "cant_tell"],
  1: ["desirability", "left", "desirable"],
  2: ["desirability", "left", "undesirable"],
  3: ["desirability", "left", "unsure"],
  8: ["desirability", "right", "desirable"],
  9: ["desirability", "right", "undesirable"],
  0: ["desirability", "right", "unsure"],
  " ": ["toggle-play"],
};

const PREFERENCE_WORDS = {
  left: "left is better",
  right: "right is better",
  equal: "equally good",
  cant_tell: "can’t tell",
};

/** A load that was superseded by another; never shown to the user. */
class StaleLoad extends Error {}

function clamp(value, low, high) {
  return Math.min(high, Math.max(low, value));
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves once the video has its first frame (readyState ≥ HAVE_CURRENT_DATA). */
function whenLoaded(video, segmentId, signal) {
  return new Promise((resolve, reject) => {
    if (video.readyState >= HTMLMediaElement.HAVE_CURRENT_DATA) {
      resolve();
      return;
    }
    const options = { once: true, signal };
    video.addEventListener("loadeddata", () => resolve(), options);
    video.addEventListener(
      "error",
      () => {
        const code = video.error ? ` (media error ${video.error.code})` : "";
        const message = `The clip of segment ${segmentId} could not be loaded${code}.`;
        reject(new Error(`${message} Reload the page to try again.`));
      },
      options,
    );
    signal.addEventListener("abort", () => reject(new StaleLoad()), { once: true });
  });
}

/** Two videos shown as one: loads a lease's clips and keeps them on the same timestep. */
class ClipPair {
  constructor(left, right) {
    this.left = left;
    this.right = right;
    this.lease = null;
    this.ready = Promise.resolve();
    this.loaded = false;
    this.playing = false;
    this.fps = 30;
    this.leader = left;
    this.follower = right;
    this.raf = 0;
    this.abort = null;
    this.tick = this.tick.bind(this);
  }

  get videos() {
    return [this.left, this.right];
  }

  /** Start loading a lease's clips; `ready` resolves when both show their first frame. */
  load(lease) {
    this.stop();
    this.abort?.abort();
    this.abort = new AbortController();
    this.lease = lease;
    this.loaded = false;
    this.fps = Math.max(lease.left.fps || 0, lease.right.fps || 0) || 30;
    const waits = [];
    for (const [video, clip] of [[this.left, lease.left], [this.right, lease.right]]) {
      video.dataset.segmentId = String(clip.segment_id);
      video.dataset.assignmentId = String(lease.assignment_id);
      video.playbackRate = 1;
      video.loop = false;
      video.src = clip.clip_url;
      video.load();
      waits.push(whenLoaded(video, clip.segment_id, this.abort.signal));
    }
    this.ready = Promise.all(waits).then(() => {
      this.loaded = true;
      this.arrange();
    });
    this.ready.catch(() => {}); // failures are reported by whoever presents the pair
    return this.ready;
  }

  clear() {
    this.stop();
    this.abort?.abort();
    this.lease = null;
    this.loaded = false;
    for (const video of this.videos) {
      video.removeAttribute("src");
      video.load();
      delete video.dataset.segmentId;
      delete video.dataset.assignmentId;
    }
  }

  /** The longer clip leads and loops; the shorter follows and holds its end. */
  arrange() {
    const seconds = (video, clip) =>
      Number.isFinite(video.duration) ? video.duration : clip.length / (clip.fps || this.fps);
    const leftSeconds = seconds(this.left, this.lease.left);
    const leftLonger = leftSeconds >= seconds(this.right, this.lease.right) - 1e-3;
    [this.leader, this.follower] = leftLonger ? [this.left, this.right] : [this.right, this.left];
    this.leader.loop = true;
    this.follower.loop = false;
  }

  rewind() {
    for (const video of this.videos) {
      video.playbackRate = 1;
      // A seek drops readyState until it completes: skip it when already at the start.
      if (video.readyState >= HTMLMediaElement.HAVE_METADATA && video.currentTime !== 0) {
        video.currentTime = 0;
      }
    }
  }

  /** Start both clips together; rejects if the browser refuses to autoplay. */
  play() {
    this.playing = true;
    this.align();
    const started = [this.leader.play()];
    if (!this.followerHolds()) started.push(this.follower.play());
    if (!this.raf) this.raf = requestAnimationFrame(this.tick);
    return Promise.all(started);
  }

  pause() {
    this.playing = false;
    for (const video of this.videos) video.pause();
    this.align();
  }

  stop() {
    this.pause();
    if (this.raf) cancelAnimationFrame(this.raf);
    this.raf = 0;
  }

  followerHolds() {
    const end = this.follower.duration;
    return Number.isFinite(end) && this.leader.currentTime >= end - 0.5 / this.fps;
  }

  /** Put the follower exactly on the leader's timestep (or on its own last frame). */
  align() {
    if (this.leader.readyState < HTMLMediaElement.HAVE_METADATA) return;
    if (this.follower.readyState < HTMLMediaElement.HAVE_METADATA) return;
    const end = this.follower.duration;
    const t = this.leader.currentTime;
    const target = Number.isFinite(end) ? Math.min(t, end) : t;
    this.follower.playbackRate = 1;
    if (this.follower.currentTime !== target) this.follower.currentTime = target;
  }

  tick() {
    this.raf = requestAnimationFrame(this.tick);
    const leader = this.leader;
    const follower = this.follower;
    if (!this.playing) return;
    const { HAVE_METADATA } = HTMLMediaElement;
    if (leader.readyState < HAVE_METADATA || follower.readyState < HAVE_METADATA) return;
    const frame = 1 / this.fps;
    const t = leader.currentTime;
    if (this.followerHolds()) {
      // The leader is past the follower's end: the follower shows its last frame.
      follower.playbackRate = 1;
      const behind = follower.duration - follower.currentTime;
      if (!follower.ended && !follower.seeking && behind > frame) {
        follower.currentTime = follower.duration;
      }
      return;
    }
    if (follower.seeking) return;
    if (follower.ended || follower.paused) {
      // The leader looped (or the follower stopped): restart the follower on its timestep.
      follower.currentTime = t;
      follower.play().catch(() => {});
      return;
    }
    const drift = follower.currentTime - t;
    if (Math.abs(drift) > frame) {
      follower.playbackRate = 1;
      follower.currentTime = t;
      return;
    }
    follower.playbackRate = clamp(1 - NUDGE_GAIN * drift, 1 - MAX_NUDGE, 1 + MAX_NUDGE);
  }
}

// --- the page -------------------------------------------------------------------------------

const root = document.getElementById("labeller");
const urls = {
  next: root.dataset.nextUrl,
  progress: root.dataset.progressUrl,
  // The template renders the judgement URL for assignment 0; substitute the real id.
  judgement: (id) => root.dataset.judgementUrl.replace("/0/", `/${id}/`),
  login: root.dataset.loginUrl,
};
const els = {
  status: document.getElementById("status"),
  error: document.getElementById("error"),
  workspace: document.getElementById("workspace"),
  done: document.getElementById("done"),
  playButton: root.querySelector('[data-action="toggle-play"]'),
  preferButtons: root.querySelectorAll('[data-action="prefer"]'),
};

function buffer(index) {
  const pick = (side) => root.querySelector(`video[data-side="${side}"][data-buffer="${index}"]`);
  return new ClipPair(pick("left"), pick("right"));
}

const pairs = [buffer(0), buffer(1)];

const state = {
  /** loading | ready | saving | done | error */
  phase: "loading",
  /** {lease, pair, shownAt}: the pair on screen; shownAt is when its clips became visible. */
  current: null,
  /** {lease, pair, ready, settled, done}: the next lease, loading in the hidden buffer. */
  prefetch: null,
  desirability: { left: "unsure", right: "unsure" },
  paused: false,
  saved: 0,
  /** The last save: {assignmentId, answer, ok, status, detail}. */
  lastSave: null,
};

function otherPair(pair) {
  return pair === pairs[0] ? pairs[1] : pairs[0];
}

function render() {
  root.dataset.state = state.phase;
  root.dataset.assignmentId = state.current ? String(state.current.lease.assignment_id) : "";
  const prefetch = state.prefetch;
  root.dataset.prefetchAssignmentId =
    prefetch && prefetch.lease ? String(prefetch.lease.assignment_id) : "";
  root.dataset.prefetch = !prefetch
    ? ""
    : prefetch.ready
      ? "ready"
      : prefetch.error
        ? "failed"
        : prefetch.settled && !prefetch.lease
          ? "none"
          : "loading";
  const answering = state.phase === "ready";
  for (const button of els.preferButtons) button.disabled = !answering;
  for (const button of root.querySelectorAll('[data-action="desirability"]')) {
    const chosen = state.desirability[button.dataset.side] === button.dataset.value;
    button.setAttribute("aria-pressed", String(chosen));
  }
  els.playButton.setAttribute("aria-pressed", String(state.paused));
  els.playButton.querySelector("[data-label]").textContent = state.paused ? "Play" : "Pause";
}

function setPhase(phase) {
  state.phase = phase;
  render();
}

function showStatus(text) {
  els.status.textContent = text;
}

function showError(text, { retry = false, login = false } = {}) {
  els.error.replaceChildren(document.createTextNode(text));
  if (login) {
    const link = document.createElement("a");
    link.href = urls.login;
    link.textContent = "Log in again";
    els.error.append(" ", link);
  }
  if (retry) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Try again";
    button.addEventListener("click", () => start());
    els.error.append(" ", button);
  }
  els.error.hidden = false;
}

function clearError() {
  els.error.hidden = true;
  els.error.replaceChildren();
}

function describe(err) {
  if (err instanceof ApiError && err.status === 401) {
    return ["Your session has ended.", { login: true }];
  }
  return [err instanceof ApiError || err instanceof Error ? err.message : String(err), {}];
}

/** Make `pair` (already loading its lease) the one on screen, and start it playing. */
function present(pair) {
  const previous = state.current ? state.current.pair : null;
  if (previous && previous !== pair) previous.stop();
  for (const each of pairs) {
    const shown = each === pair;
    for (const video of each.videos) {
      video.hidden = !shown;
      video.dataset.role = shown ? "current" : "prefetch";
    }
  }
  const entry = { lease: pair.lease, pair, shownAt: null };
  state.current = entry;
  state.desirability = { left: "unsure", right: "unsure" };
  state.paused = false;
  pair.rewind();
  render();
  pair.ready.then(
    () => {
      if (state.current !== entry) return;
      entry.shownAt = performance.now();
      pair.rewind();
      pair.play().catch((err) => {
        if (state.current !== entry || err.name === "AbortError") return;
        // Autoplay refused: leave it to the annotator to start playback.
        state.paused = true;
        pair.pause();
        render();
        showStatus("Press Space to play the clips.");
      });
    },
    (err) => {
      if (state.current !== entry || err instanceof StaleLoad) return;
      showError(err.message);
    },
  );
}

/** Lease the pair after the current one and load it into the hidden buffer. */
function prefetchNext() {
  if (state.prefetch) state.prefetch.cancelled = true;
  const current = state.current;
  const pair = otherPair(current.pair);
  const entry = { lease: null, pair, ready: false, settled: false, error: null, done: null };
  entry.cancelled = false; // replaced by a newer prefetch, or the page is done
  state.prefetch = entry;
  render();
  // An answer given before this settles takes the entry (and awaits `done`): still load it.
  entry.done = leaseNext(urls.next, [current.lease.assignment_id]).then(
    (lease) => {
      entry.settled = true;
      if (entry.cancelled) return;
      if (!lease) {
        pair.clear();
        render();
        return;
      }
      entry.lease = lease;
      pair.load(lease).then(
        () => {
          entry.ready = true;
          render();
        },
        (err) => {
          if (err instanceof StaleLoad) return;
          entry.error = err; // shown if this pair is presented
          render();
        },
      );
      render();
    },
    (err) => {
      // Not shown now: after the next answer the page asks for a lease again.
      entry.settled = true;
      entry.error = err;
      render();
    },
  );
}

function showDone() {
  if (state.prefetch) state.prefetch.cancelled = true;
  for (const pair of pairs) pair.clear();
  state.current = null;
  state.prefetch = null;
  els.workspace.hidden = true;
  els.done.hidden = false;
  showStatus("Nothing left to label in this campaign.");
  setPhase("done");
}

/** Show the caller's open lease (or a new one), then prefetch the one after it. */
async function start() {
  clearError();
  setPhase("loading");
  showStatus("Loading a pair…");
  let lease;
  try {
    lease = await leaseNext(urls.next, []);
  } catch (err) {
    const [text, options] = describe(err);
    showStatus("");
    showError(text, { retry: true, ...options });
    setPhase("error");
    return;
  }
  if (!lease) {
    showDone();
    return;
  }
  const pair = state.current ? otherPair(state.current.pair) : pairs[0];
  pair.load(lease);
  present(pair);
  showStatus("");
  setPhase("ready");
  prefetchNext();
}

/** Save an answer, retrying transient failures; reports and returns whether it was stored. */
async function save(assignmentId, answer) {
  const record = { assignmentId, answer, ok: false, status: null, detail: "" };
  for (let attempt = 0; ; attempt += 1) {
    try {
      await submitJudgement(urls.judgement(assignmentId), answer);
      record.ok = true;
      state.saved += 1;
      state.lastSave = record;
      return true;
    } catch (err) {
      if (err instanceof ApiError && err.transient && attempt < SAVE_RETRIES) {
        showStatus(`Saving your answer… (${err.detail})`);
        await sleep(500 * 2 ** attempt);
        continue;
      }
      record.status = err instanceof ApiError ? err.status : null;
      record.detail = err.message;
      state.lastSave = record;
      const [text, options] = describe(err);
      if (record.status === 410) {
        showError(`Your answer to the previous pair was not needed: ${text}`);
      } else {
        showError(`Your answer to the previous pair was not saved: ${text}`, options);
      }
      return false;
    }
  }
}

async function refreshProgress() {
  try {
    const campaign = await campaignProgress(urls.progress);
    const set = (key, value) => {
      const el = root.querySelector(`[data-progress="${key}"]`);
      if (el) el.textContent = value;
    };
    set("mine", String(campaign.my_label_count));
    set("mine-plural", campaign.my_label_count === 1 ? "" : "s");
    set("done", String(campaign.label_count));
    set("wanted", String(campaign.labels_wanted));
  } catch {
    // Progress is informative only; the next refresh will catch up.
  }
}

/** Answer the pair on screen with the desirabilities set so far; show the next pair. */
async function answer(preference) {
  if (state.phase !== "ready" || !state.current) return;
  const answered = state.current;
  const body = {
    preference,
    left_desirability: state.desirability.left,
    right_desirability: state.desirability.right,
  };
  if (answered.shownAt !== null) body.elapsed_ms = Math.round(performance.now() - answered.shownAt);
  clearError();
  setPhase("saving");

  // Show the prefetched pair at once: its clips are already loaded in the hidden buffer.
  const prefetched = state.prefetch;
  state.prefetch = null;
  let shown = false;
  if (prefetched && prefetched.lease) {
    present(prefetched.pair);
    shown = true;
  } else {
    answered.pair.stop();
    showStatus("Loading the next pair…");
  }
  const saving = save(answered.lease.assignment_id, body);
  if (!shown && prefetched && !prefetched.settled) {
    await prefetched.done; // asked with exclude=[answered], so it is safe to use before the save
    if (prefetched.lease) {
      present(prefetched.pair);
      shown = true;
    }
  }
  const saved = await saving;
  if (saved) showStatus(`Saved: ${PREFERENCE_WORDS[preference]}.`);
  if (!shown) {
    // Nothing was prefetched (or it failed): ask again now that the answer is stored. An
    // answer that could not be saved leaves its lease open, so that pair comes back here.
    let lease;
    try {
      lease = await leaseNext(urls.next, []);
    } catch (err) {
      const [text, options] = describe(err);
      showError(text, { retry: true, ...options });
      setPhase("error");
      return;
    }
    if (!lease) {
      showDone();
      refreshProgress();
      return;
    }
    const pair = otherPair(answered.pair);
    pair.load(lease);
    present(pair);
  }
  setPhase("ready");
  prefetchNext();
  refreshProgress();
}

function setDesirability(side, value) {
  if (!state.current) return;
  state.desirability[side] = value;
  render();
}

function togglePlay() {
  if (!state.current) return;
  const pair = state.current.pair;
  state.paused = !state.paused;
  if (state.paused) {
    pair.pause();
  } else {
    pair.play().catch(() => {});
  }
  render();
}

function perform(action, ...args) {
  if (action === "prefer") answer(args[0]);
  else if (action === "desirability") setDesirability(args[0], args[1]);
  else if (action === "toggle-play") togglePlay();
}

function typingInto(target) {
  if (!(target instanceof HTMLElement)) return false;
  return target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName);
}

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || typingInto(event.target)) return;
  const binding = KEYS[event.key];
  if (!binding) return;
  // Space must not also press a focused button or scroll; arrows must not scroll.
  event.preventDefault();
  if (event.repeat) return; // a held key answers one pair, not several
  perform(...binding);
});
document.addEventListener("keyup", (event) => {
  if (event.key === " " && !typingInto(event.target)) event.preventDefault();
});

root.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button || !root.contains(button)) return;
  const { action, side, value } = button.dataset;
  if (action === "prefer") perform(action, value);
  else if (action === "desirability") perform(action, side, value);
  else if (action === "toggle-play") perform(action);
});

// A small hook for tests and for debugging from the console.
window.preflab = {
  state,
  pairs,
  get currentAssignmentId() {
    return state.current ? state.current.lease.assignment_id : null;
  },
  get prefetchedAssignmentId() {
    return state.prefetch && state.prefetch.lease ? state.prefetch.lease.assignment_id : null;
  },
  get prefetchReady() {
    return Boolean(state.prefetch && state.prefetch.ready);
  },
};

render();
start();
