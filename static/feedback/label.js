/**
 * The labelling page: two clips side by side, frame-locked; one key answers; the next
 * pair is already loaded; campaign progress and new pairs arrive live.
 *
 * Player. `player.js` drives both clips from one clock counted in steps: step k of the left
 * clip is shown with step k of the right one. The clip with more steps leads; when the fps
 * differ the clock runs in steps at the leader's fps and the follower is sought to step k at
 * its own fps; the shorter clip holds its last frame until the loop restarts (its header
 * comment has the details). Controls: play/pause (Space), loop (L, on by default), a scrub
 * slider over steps, a per-step timeline under each clip (click a cell to go to that step),
 * frame step (`,` back, `.` forward; pauses first), speed 0.25×–4× (`[` slower, `]` faster,
 * or the select; one speed for both clips, kept from pair to pair).
 *
 * Prefetch. Two buffers of two <video> elements each: one shows the current pair, the other
 * (hidden) holds the next lease with its clips already loaded. Answering swaps the buffers
 * at once, then saves the answer, and only after the save asks for the following lease:
 * until the answer is stored the answered pair is still the caller's open lease, and
 * `next` would hand it straight back.
 *
 * Live updates (`live.js`): a WebSocket to the campaign's group updates the progress line;
 * when nothing is left and pairs are added, the page leases one and shows it without a
 * reload. When the socket is down the feed polls the campaign every `data-poll-ms` and the
 * page retries `next` on each poll while nothing is left.
 *
 * Done for today (D): stops leasing and shows what this visit achieved. Leases still held
 * are not released; they expire on the server and their pairs return to the pool.
 *
 * Practice (`practice.js`): before an annotator's first label in a campaign with practice
 * pairs, and on demand, a short round on gold pairs in this same player, each answer checked
 * and never stored. While it runs the page leases nothing (phase "practice"); a pair leased
 * before it stays the caller's open lease and comes back first afterwards.
 */

import { ApiError, campaignProgress, leaseNext, submitJudgement } from "./api.js";
import { CampaignFeed } from "./live.js";
import { ClipPair, SPEEDS, StaleLoad } from "./player.js";
import { PracticeRound } from "./practice.js";

const SAVE_RETRIES = 3;
// While nothing is left and the socket is up, still look now and then: leases held by
// others expire without any event.
const DONE_RETRY_MS = 60_000;

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
  ",": ["step", -1],
  ".": ["step", 1],
  "[": ["speed-step", -1],
  "]": ["speed-step", 1],
  l: ["toggle-loop"],
  L: ["toggle-loop"],
  d: ["done-for-today"],
  D: ["done-for-today"],
};

const PREFERENCE_WORDS = {
  left: "left is better",
  right: "right is better",
  equal: "equally good",
  cant_tell: "can’t tell",
};

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const root = document.getElementById("labeller");
const campaignId = Number(root.dataset.campaignId);
const urls = {
  next: root.dataset.nextUrl,
  progress: root.dataset.progressUrl,
  // The template renders the judgement URL for assignment 0; substitute the real id.
  judgement: (id) => root.dataset.judgementUrl.replace("/0/", `/${id}/`),
  login: root.dataset.loginUrl,
  socket: root.dataset.socketPath,
  practice: root.dataset.practiceUrl,
  // Rendered for practice pair 0, like the judgement URL.
  practiceCheck: (id) => root.dataset.practiceCheckUrl.replace(/\/0\/$/, `/${id}/`),
};
const els = {
  status: document.getElementById("status"),
  error: document.getElementById("error"),
  workspace: document.getElementById("workspace"),
  done: document.getElementById("done"),
  summary: document.getElementById("summary"),
  playButton: root.querySelector('[data-action="toggle-play"]'),
  loopButton: root.querySelector('[data-action="toggle-loop"]'),
  speed: root.querySelector('select[data-action="speed"]'),
  scrub: root.querySelector('input[data-action="scrub"]'),
  stepReadout: root.querySelector("[data-step-readout]"),
  timelines: {
    left: root.querySelector('.timeline[data-side="left"]'),
    right: root.querySelector('.timeline[data-side="right"]'),
  },
  preferButtons: root.querySelectorAll('[data-action="prefer"]'),
  doneButton: root.querySelector('[data-action="done-for-today"]'),
};

function buffer(index) {
  const pick = (side) => root.querySelector(`video[data-side="${side}"][data-buffer="${index}"]`);
  return new ClipPair(pick("left"), pick("right"));
}

const pairs = [buffer(0), buffer(1)];

const state = {
  /** loading | ready | saving | done | summary | error | practice */
  phase: "loading",
  /** {lease, pair, shownAt}: the pair on screen; shownAt is when its clips became visible. */
  current: null,
  /** {lease, pair, ready, settled, done}: the next lease, loading in the hidden buffer. */
  prefetch: null,
  desirability: { left: "unsure", right: "unsure" },
  paused: false,
  /** Player settings, kept from pair to pair. */
  player: { speed: 1, loop: true, scrubResume: false },
  saved: 0,
  /** The last save: {assignmentId, answer, ok, status, detail}. */
  lastSave: null,
  /** The save in flight, if any: "done for today" waits for it before summing up. */
  saving: null,
  /** This visit: when it began and every answer stored. */
  session: { startedAt: performance.now(), answers: [], endedAt: null },
  /** The latest campaign counts, from the socket, a poll or the API. */
  progress: {
    label_count: Number(root.querySelector('[data-progress="done"]').textContent),
    labels_wanted: Number(root.querySelector('[data-progress="wanted"]').textContent),
    my_label_count: Number(root.querySelector('[data-progress="mine"]').textContent),
    pair_count: null,
  },
  live: "connecting",
};

const practice = new PracticeRound({
  root,
  listUrl: urls.practice,
  checkUrl: urls.practiceCheck,
  campaignKey: String(campaignId),
  host: {
    enter() {
      dropPairs();
      clearError();
      showStatus("");
      setPhase("practice");
    },
    load(item, index) {
      const pair = pairs[index % 2];
      pair.load({ assignment_id: null, ...item });
      for (const video of pair.videos) delete video.dataset.assignmentId; // not a lease
    },
    present: (index) => present(pairs[index % 2]),
    hide() {
      dropPairs();
      showSection("practice");
    },
    error: (text) => (text ? showError(text) : clearError()),
    leave() {
      dropPairs();
      start();
    },
    render: () => render(),
  },
});

function otherPair(pair) {
  return pair === pairs[0] ? pairs[1] : pairs[0];
}

function render() {
  root.dataset.state = state.phase;
  root.dataset.assignmentId = String(state.current?.lease.assignment_id ?? "");
  root.dataset.live = state.live;
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
  const answering = state.phase === "ready" || (state.phase === "practice" && practice.answering);
  for (const button of els.preferButtons) button.disabled = !answering;
  for (const button of root.querySelectorAll('[data-action="desirability"]')) {
    const chosen = state.desirability[button.dataset.side] === button.dataset.value;
    button.setAttribute("aria-pressed", String(chosen));
  }
  els.playButton.setAttribute("aria-pressed", String(state.paused));
  els.playButton.querySelector("[data-label]").textContent = state.paused ? "Play" : "Pause";
  els.loopButton.setAttribute("aria-pressed", String(state.player.loop));
  els.speed.value = String(state.player.speed);
  els.doneButton.hidden = state.phase === "summary" || state.phase === "practice";
  const loaded = Boolean(state.current && state.current.pair.loaded);
  els.scrub.disabled = !loaded;
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

/** Show which part of the page is up: the pair, "nothing left", or the day's summary. */
function showSection(name) {
  els.workspace.hidden = name !== "workspace";
  els.done.hidden = name !== "done";
  els.summary.hidden = name !== "summary";
}

// --- the player's controls ------------------------------------------------------------------

/** One cell per step; a shorter clip's bar is shorter, so step k lines up on both. */
function buildTimelines(pair) {
  for (const [side, video] of [["left", pair.left], ["right", pair.right]]) {
    const el = els.timelines[side];
    const steps = pair.clip(video).steps;
    const cells = [];
    for (let k = 0; k < steps; k += 1) {
      const cell = document.createElement("span");
      cell.dataset.step = String(k);
      cell.title = `step ${k + 1}`;
      cells.push(cell);
    }
    el.replaceChildren(...cells);
    el.style.width = `${(100 * steps) / pair.steps}%`;
    el.dataset.steps = String(steps);
  }
  els.scrub.max = String(pair.steps - 1);
  render();
}

function clearTimelines() {
  for (const el of Object.values(els.timelines)) {
    el.replaceChildren();
    el.dataset.steps = "0";
    delete el.dataset.step;
  }
  els.scrub.max = "0";
  els.scrub.value = "0";
  els.stepReadout.textContent = "";
  delete root.dataset.step;
}

/** The clock moved to step k: move the slider, the readout and both timelines' marks. */
function showStep(pair, k) {
  if (!state.current || state.current.pair !== pair) return;
  root.dataset.step = String(k);
  els.scrub.value = String(k);
  els.stepReadout.textContent = `step ${k + 1} / ${pair.steps}`;
  els.scrub.setAttribute("aria-valuetext", `step ${k + 1} of ${pair.steps}`);
  for (const [side, video] of [["left", pair.left], ["right", pair.right]]) {
    const el = els.timelines[side];
    const shown = pair.stepOf(video, k);
    el.classList.toggle("holding", shown < k);
    if (el.dataset.step === String(shown)) continue;
    el.querySelector("[aria-current]")?.removeAttribute("aria-current");
    el.children[shown]?.setAttribute("aria-current", "step");
    el.dataset.step = String(shown);
  }
}

/** The pair on screen, if its clips are loaded (player controls act on nothing else). */
function loadedPair() {
  return state.current && state.current.pair.loaded ? state.current.pair : null;
}

function setPaused(paused) {
  if (!state.current) return;
  const pair = state.current.pair;
  state.paused = paused;
  if (paused) {
    pair.pause();
  } else {
    pair.play().catch(() => {});
  }
  render();
}

function togglePlay() {
  setPaused(!state.paused);
}

/** Frame step: pause first if playing, then move both clips one step. */
function stepBy(delta) {
  const pair = loadedPair();
  if (!pair) return;
  if (!state.paused) setPaused(true);
  pair.seekStep(pair.step + delta);
}

function seekTo(step) {
  loadedPair()?.seekStep(step);
}

function setSpeed(speed) {
  state.player.speed = speed;
  for (const pair of pairs) pair.setSpeed(speed);
  render();
}

function speedStep(direction) {
  const index = SPEEDS.indexOf(state.player.speed);
  const next = SPEEDS[Math.min(SPEEDS.length - 1, Math.max(0, index + direction))];
  if (next !== state.player.speed) setSpeed(next);
}

function toggleLoop() {
  state.player.loop = !state.player.loop;
  for (const pair of pairs) pair.setLooping(state.player.loop);
  render();
}

// --- leasing and answering ------------------------------------------------------------------

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
  showSection("workspace");
  clearTimelines();
  pair.setSpeed(state.player.speed);
  pair.setLooping(state.player.loop);
  pair.onStep = (k) => showStep(pair, k);
  pair.onEnd = () => {
    if (state.current !== entry) return;
    state.paused = true; // looping is off and the clips reached their end
    render();
  };
  pair.rewind();
  render();
  pair.ready.then(
    () => {
      if (state.current !== entry) return;
      entry.shownAt = performance.now();
      buildTimelines(pair);
      pair.rewind();
      pair.play().catch((err) => {
        if (state.current !== entry || err.name === "AbortError") return;
        // Autoplay refused: leave it to the annotator to start playback.
        state.paused = true;
        pair.pause();
        render();
        showStatus("Press Space to play the clips.");
      });
      showStep(pair, pair.step);
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
  entry.cancelled = false; // replaced by a newer prefetch, or the page stopped leasing
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

/** Put every clip away; nothing is on screen or prefetched afterwards. */
function dropPairs() {
  if (state.prefetch) state.prefetch.cancelled = true;
  for (const pair of pairs) pair.clear();
  state.current = null;
  state.prefetch = null;
  clearTimelines();
}

function showDone() {
  dropPairs();
  showSection("done");
  showStatus("Nothing left to label in this campaign.");
  setPhase("done");
}

/** Stopped leasing, for today or for the practice round: nothing may be leased or shown. */
function stopped() {
  return state.phase === "summary" || state.phase === "practice";
}

/**
 * Show the caller's open lease (or a new one), then prefetch the one after it.
 * `quiet`: a look from the "nothing left" state; failures and "still nothing" change nothing.
 */
async function start({ quiet = false } = {}) {
  if (!quiet) {
    clearError();
    setPhase("loading");
    showStatus("Loading a pair…");
  }
  let lease;
  try {
    lease = await leaseNext(urls.next, []);
  } catch (err) {
    if (quiet || stopped()) return;
    const [text, options] = describe(err);
    showStatus("");
    showError(text, { retry: true, ...options });
    setPhase("error");
    return;
  }
  if (stopped() || (quiet && state.phase !== "done")) return;
  if (!lease) {
    if (!quiet) showDone();
    return;
  }
  clearError();
  const pair = state.current ? otherPair(state.current.pair) : pairs[0];
  pair.load(lease);
  present(pair);
  showStatus("");
  setPhase("ready");
  prefetchNext();
}

let lookingAgain = null;

/** From "nothing left": ask for a pair once more (new pairs were added, or may have been). */
function lookAgain() {
  if (state.phase !== "done" || lookingAgain) return;
  lookingAgain = start({ quiet: true }).finally(() => {
    lookingAgain = null;
  });
}

/** Save an answer, retrying transient failures; reports and returns whether it was stored. */
async function save(assignmentId, answer) {
  const record = { assignmentId, answer, ok: false, status: null, detail: "" };
  for (let attempt = 0; ; attempt += 1) {
    try {
      await submitJudgement(urls.judgement(assignmentId), answer);
      record.ok = true;
      state.saved += 1;
      state.session.answers.push(answer);
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

/** Update the progress line from any source; counts a source lacks are left as they are. */
function showProgress(counts) {
  const known = (key) => typeof counts[key] === "number";
  for (const key of ["label_count", "labels_wanted", "my_label_count", "pair_count"]) {
    if (known(key)) state.progress[key] = counts[key];
  }
  const set = (key, value) => {
    const el = root.querySelector(`[data-progress="${key}"]`);
    if (el) el.textContent = value;
  };
  const progress = state.progress;
  set("mine", String(progress.my_label_count));
  set("mine-plural", progress.my_label_count === 1 ? "" : "s");
  set("done", String(progress.label_count));
  set("wanted", String(progress.labels_wanted));
  if (state.phase === "summary") renderSummary();
}

async function refreshProgress() {
  try {
    showProgress(await campaignProgress(urls.progress));
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
  state.saving = saving;
  if (!shown && prefetched && !prefetched.settled) {
    await prefetched.done; // asked with exclude=[answered], so it is safe to use before the save
    if (prefetched.lease && !stopped()) {
      present(prefetched.pair);
      shown = true;
    }
  }
  const saved = await saving;
  if (state.saving === saving) state.saving = null;
  if (stopped()) return; // "done for today" was pressed meanwhile; it sums up on its own
  if (saved) showStatus(`Saved: ${PREFERENCE_WORDS[preference]}.`);
  if (!shown) {
    // Nothing was prefetched (or it failed): ask again now that the answer is stored. An
    // answer that could not be saved leaves its lease open, so that pair comes back here.
    let lease;
    try {
      lease = await leaseNext(urls.next, []);
    } catch (err) {
      if (stopped()) return;
      const [text, options] = describe(err);
      showError(text, { retry: true, ...options });
      setPhase("error");
      return;
    }
    if (stopped()) return;
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

// --- done for today -------------------------------------------------------------------------

function median(values) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

function duration(ms) {
  const seconds = Math.round(ms / 1000);
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${seconds % 60} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function renderSummary() {
  const session = state.session;
  const answers = session.answers;
  const set = (key, text) => {
    const el = els.summary.querySelector(`[data-summary="${key}"]`);
    if (el) el.textContent = text;
  };
  set("pairs", String(answers.length));
  set("time", duration((session.endedAt ?? performance.now()) - session.startedAt));
  const seconds = median(answers.filter((a) => a.elapsed_ms != null).map((a) => a.elapsed_ms));
  set("median", seconds === null ? "—" : `${(seconds / 1000).toFixed(1)} s`);
  for (const preference of Object.keys(PREFERENCE_WORDS)) {
    set(`prefer-${preference}`, String(answers.filter((a) => a.preference === preference).length));
  }
  for (const value of ["desirable", "undesirable", "unsure"]) {
    const count = answers.reduce(
      (n, a) => n + (a.left_desirability === value) + (a.right_desirability === value),
      0,
    );
    set(`clips-${value}`, String(count));
  }
  const progress = state.progress;
  set("campaign", `${progress.label_count} / ${progress.labels_wanted}`);
  set("mine", String(progress.my_label_count));
}

/** Stop leasing and sum up this visit. Held leases are left to expire on the server. */
async function doneForToday() {
  if (stopped()) return;
  state.session.endedAt = performance.now();
  const pending = state.saving;
  dropPairs();
  clearError();
  showStatus("");
  showSection("summary");
  setPhase("summary");
  renderSummary();
  if (pending) await pending.catch(() => {}); // the last answer counts once it is stored
  await refreshProgress();
  renderSummary();
}

/** Back from the summary: a new visit, beginning with the caller's open lease, if any. */
function keepLabelling() {
  if (state.phase !== "summary") return;
  state.session = { startedAt: performance.now(), answers: [], endedAt: null };
  start();
}

// --- live updates ---------------------------------------------------------------------------

function onLiveEvent(message) {
  if (message.campaign_id !== undefined && Number(message.campaign_id) !== campaignId) return;
  const pairCountBefore = state.progress.pair_count;
  showProgress(message);
  if (state.phase !== "done") return;
  const morePairs =
    message.event === "pairs_added" ||
    message.polled ||
    (pairCountBefore !== null && message.pair_count !== pairCountBefore);
  if (morePairs) lookAgain();
}

const feed = new CampaignFeed({
  socketPath: urls.socket,
  pollUrl: urls.progress,
  pollMs: Number(root.dataset.pollMs) || 10_000,
  onEvent: onLiveEvent,
  onMode: (mode) => {
    state.live = mode;
    render();
  },
});

// --- input ----------------------------------------------------------------------------------

function perform(action, ...args) {
  if (action === "prefer" && state.phase === "practice") practice.answer(args[0]);
  else if (action === "prefer") answer(args[0]);
  else if (action === "desirability") setDesirability(args[0], args[1]);
  else if (action === "toggle-play") togglePlay();
  else if (action === "step") stepBy(args[0]);
  else if (action === "speed-step") speedStep(args[0]);
  else if (action === "toggle-loop") toggleLoop();
  else if (action === "done-for-today") doneForToday();
  else if (action === "keep-labelling") keepLabelling();
  // "Practice again" waits while the day's summary is up; "Keep labelling" comes first.
  else if (action.startsWith("practice-") && state.phase !== "summary") practice.act(action);
}

/** Text entry keeps its keys; a focused slider, select or button does not take ours. */
function typingInto(target) {
  if (!(target instanceof HTMLElement)) return false;
  if (target.isContentEditable || target.tagName === "TEXTAREA") return true;
  const nonText = ["range", "checkbox", "radio", "button", "submit", "reset"];
  return target.tagName === "INPUT" && !nonText.includes(target.type);
}

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || typingInto(event.target)) return;
  const binding = KEYS[event.key];
  if (!binding) return;
  // Space must not also press a focused button or scroll; arrows must not scroll or move a
  // focused slider.
  event.preventDefault();
  const [action] = binding;
  // A held key answers one pair, not several; held step and speed keys repeat.
  if (event.repeat && action !== "step" && action !== "speed-step") return;
  perform(...binding);
});
document.addEventListener("keyup", (event) => {
  if (event.key === " " && !typingInto(event.target)) event.preventDefault();
});

root.addEventListener("click", (event) => {
  const cell = event.target.closest(".timeline [data-step]");
  if (cell && root.contains(cell)) {
    seekTo(Number(cell.dataset.step));
    return;
  }
  const button = event.target.closest("button[data-action]");
  if (!button || !root.contains(button)) return;
  const { action, side, value } = button.dataset;
  if (action === "prefer") perform(action, value);
  else if (action === "desirability") perform(action, side, value);
  else if (action === "step") perform(action, Number(value));
  else perform(action);
});

// Dragging the slider moves both clips; playback pauses during the drag and resumes after.
els.scrub.addEventListener("input", () => {
  const pair = loadedPair();
  if (!pair) return;
  if (!state.paused) {
    state.player.scrubResume = true;
    setPaused(true);
  }
  pair.seekStep(Number(els.scrub.value));
});
els.scrub.addEventListener("change", () => {
  if (state.player.scrubResume) {
    state.player.scrubResume = false;
    setPaused(false);
  }
});
els.speed.addEventListener("change", () => setSpeed(Number(els.speed.value)));

// A small hook for tests and for debugging from the console.
window.preflab = {
  state,
  pairs,
  feed,
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

/** Before a first label, the practice round if the campaign keeps one; then labelling. */
async function openPage() {
  if (state.progress.my_label_count === 0 && !practice.seen) {
    if (await practice.begin()) return;
  } else {
    practice.fetch(); // only to offer "Practice again"
  }
  start();
}

render();
openPage();
feed.start();
setInterval(lookAgain, DONE_RETRY_MS);
