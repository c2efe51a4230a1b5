/**
 * The labelling page: two clips side by side, frame-locked; one key answers; the next
 * pair is already loaded; campaign progress and new pairs arrive live. This module holds the
 * page's state and elements, draws them, and wires the parts together:
 *
 * Player. `player.js` drives both clips from one clock counted in steps: step k of the left
 * clip is shown with step k of the right one. The clip with more steps leads; when the fps
 * differ the clock runs in steps at the leader's fps and the follower is sought to step k at
 * its own fps; the shorter clip holds its last frame until the loop restarts (its header
 * comment has the details). Controls (`controls.js`): play/pause (Space), loop (L, on by
 * default), a scrub slider over steps, a per-step timeline under each clip (click a cell to go
 * to that step), frame step (`,` back, `.` forward; pauses first), speed 0.25×–4× (`[` slower,
 * `]` faster, or the select; one speed for both clips, kept from pair to pair).
 *
 * Prefetch (`lease.js`). Two buffers of two <video> elements each: one shows the current
 * pair, the other (hidden) holds the next lease with its clips already loaded. Answering swaps
 * the buffers at once, then saves the answer, and only after the save asks for the following
 * lease: until the answer is stored the answered pair is still the caller's open lease, and
 * `next` would hand it straight back.
 *
 * Live updates (`live.js`): a WebSocket to the campaign's group updates the progress line;
 * when nothing is left and pairs are added, the page leases one and shows it without a
 * reload. When the socket is down the feed polls the campaign every `data-poll-ms` and the
 * page retries `next` on each poll while nothing is left.
 *
 * Done for today (D; `summary.js`): stops leasing and shows what this visit achieved. Leases
 * still held are not released; they expire on the server and their pairs return to the pool.
 *
 * Practice (`practice.js`): before an annotator's first label in a campaign with practice
 * pairs, and on demand, a short round on gold pairs in this same player, each answer checked
 * and never stored. While it runs the page leases nothing (phase "practice"); a pair leased
 * before it stays the caller's open lease and comes back first afterwards.
 */

import { ApiError, campaignProgress } from "./api.js";
import { createPlayerControls } from "./controls.js";
import { createLeasing } from "./lease.js";
import { CampaignFeed } from "./live.js";
import { ClipPair } from "./player.js";
import { PracticeRound } from "./practice.js";
import { newSession, renderSummary } from "./summary.js";

// While nothing is left and the socket is up, still look now and then: leases held by
// others expire without any event.
const DONE_RETRY_MS = 60_000;

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
  session: newSession(),
  /** The latest campaign counts, from the socket, a poll or the API. */
  progress: {
    label_count: Number(root.querySelector('[data-progress="done"]').textContent),
    labels_wanted: Number(root.querySelector('[data-progress="wanted"]').textContent),
    my_label_count: Number(root.querySelector('[data-progress="mine"]').textContent),
    pair_count: null,
  },
  live: "connecting",
};

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

/** The summary section, from this visit and the latest campaign counts. */
function showSummary() {
  renderSummary(els.summary, state.session, state.progress);
}

const controls = createPlayerControls({ root, els, state, pairs, render });
const { present, dropPairs, stopped, start, lookAgain, answer, setDesirability } = createLeasing({
  state,
  pairs,
  urls,
  view: { render, setPhase, showStatus, showError, clearError, describe, showSection },
  controls,
  refreshProgress,
});

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

// --- progress -------------------------------------------------------------------------------

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
  if (state.phase === "summary") showSummary();
}

async function refreshProgress() {
  try {
    showProgress(await campaignProgress(urls.progress));
  } catch {
    // Progress is informative only; the next refresh will catch up.
  }
}

// --- done for today -------------------------------------------------------------------------

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
  showSummary();
  if (pending) await pending.catch(() => {}); // the last answer counts once it is stored
  await refreshProgress();
  showSummary();
}

/** Back from the summary: a new visit, beginning with the caller's open lease, if any. */
function keepLabelling() {
  if (state.phase !== "summary") return;
  state.session = newSession();
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
  else if (action === "toggle-play") controls.togglePlay();
  else if (action === "step") controls.stepBy(args[0]);
  else if (action === "speed-step") controls.speedStep(args[0]);
  else if (action === "toggle-loop") controls.toggleLoop();
  else if (action === "done-for-today") doneForToday();
  else if (action === "keep-labelling") keepLabelling();
  // "Practice again" waits while the day's summary is up; "Keep labelling" comes first.
  else if (action.startsWith("practice-") && state.phase !== "summary") practice.act(action);
}

controls.listen(perform);

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
