/**
 * One training run, live: status, progress, loss and accuracy curves, log, cancel.
 *
 * Starts from the state the server rendered (`#run-state`), then follows `ws/runs/<id>/`:
 * the worker's progress reports (`progress` events) and every status change — queued →
 * running → succeeded / failed / cancelled, re-queued after a lost worker — as `status`
 * events carrying the whole run (log, result, device). While the socket is down it polls
 * `GET /api/v1/learning/runs/<id>/` every data-poll-ms. While live it still re-reads the run
 * now and then in case a message was dropped: every LIVE_CHECK_MS when the channel layer is
 * shared between processes (data-shared-layer="true", i.e. Redis), every data-poll-ms when it
 * is in-memory (the worker's events cannot reach this page then).
 */

import { ApiError, apiRequest } from "../feedback/api.js";
import { CampaignFeed } from "../feedback/live.js";
import { lineChart } from "../research/plot.js";

const ACTIVE = new Set(["queued", "running"]);
const LIVE_CHECK_MS = 10_000;

const root = document.getElementById("run");
const state = JSON.parse(document.getElementById("run-state").textContent);
const errorBox = document.getElementById("error");
const cancelButton = document.getElementById("cancel");

const CHARTS = [
  ["chart-train-loss", "train_loss", "Training loss per epoch", (v) => v.toFixed(3)],
  ["chart-held-out-loss", "held_out_loss", "Held-out loss per epoch", (v) => v.toFixed(3)],
  ["chart-train-accuracy", "train_accuracy", "Training accuracy per epoch", percent],
  ["chart-held-out-accuracy", "held_out_accuracy", "Held-out accuracy per epoch", percent],
];

function percent(v) {
  return `${Math.round(v * 100)}%`;
}

/** A run's polled detail or pushed event, in the same shape. */
class RunFeed extends CampaignFeed {
  async poll() {
    this.pollTimer = 0;
    if (this.mode !== "polling") return;
    try {
      const run = await apiRequest(this.pollUrl);
      this.polls += 1;
      root.dataset.polls = String(this.polls);
      if (this.mode === "polling") this.onEvent({ event: "progress", polled: true, ...run });
    } catch {
      // Offline or a server error: try again at the next interval.
    }
    if (this.mode === "polling" && ACTIVE.has(state.status)) this.startPolling();
  }
}

function text(name, value) {
  const node = root.querySelector(`[data-run="${name}"]`);
  if (node) node.textContent = value;
}

let drawnPoints = -1;

function drawCharts() {
  const series = (state.metrics || []).filter((m) => m && typeof m.epoch === "number");
  if (series.length === drawnPoints) return;
  drawnPoints = series.length;
  for (const [id, key, label, format] of CHARTS) {
    const points = series
      .filter((m) => typeof m[key] === "number")
      .map((m) => ({
        // plot.js's line chart is laid out on time: epoch N is drawn at N seconds.
        t: new Date(m.epoch * 1000),
        value: m[key],
        label: `epoch ${m.epoch}: ${format(m[key])}`,
      }));
    lineChart(document.getElementById(id), points, {
      label,
      format,
      formatTime: (t) => `epoch ${Math.round(t.getTime() / 1000)}`,
      empty: "No epoch finished yet.",
    });
  }
  root.dataset.points = String(series.length);
}

function render() {
  root.dataset.status = state.status;
  text("status", state.cancel_requested && ACTIVE.has(state.status) ? `${state.status} (cancelling)` : state.status);
  const bar = root.querySelector('[data-run="progress-bar"]');
  bar.value = state.progress;
  text("progress", `${Math.round(state.progress * 100)}%`);
  text("device", state.device || "—");
  text("triggered-by", state.triggered_by || "—");
  text("attempts", String(state.attempts ?? ""));
  const log = document.getElementById("log");
  if (typeof state.log === "string" && log.textContent !== state.log) log.textContent = state.log;
  if (cancelButton) cancelButton.hidden = !ACTIVE.has(state.status) || state.cancel_requested;
  drawCharts();
}

async function refresh() {
  try {
    Object.assign(state, await apiRequest(root.dataset.detailUrl));
    render();
  } catch {
    // The next check or event will catch up.
  }
}

const feed = new RunFeed({
  socketPath: root.dataset.socketPath,
  pollUrl: root.dataset.detailUrl,
  pollMs: Number(root.dataset.pollMs) || 3000,
  onEvent: (message) => {
    const { event: _event, polled: _polled, ...run } = message;
    if (!message.polled) root.dataset.pushed = String(Number(root.dataset.pushed || 0) + 1);
    Object.assign(state, run);
    render();
  },
  onMode: (mode) => {
    root.dataset.live = mode;
    const label = root.querySelector("[data-live-label]");
    if (label) label.textContent = mode === "live" ? "live" : mode === "polling" ? "polling" : "connecting…";
  },
});

if (cancelButton) {
  cancelButton.addEventListener("click", async () => {
    errorBox.hidden = true;
    cancelButton.disabled = true;
    try {
      Object.assign(state, await apiRequest(root.dataset.cancelUrl, { method: "POST" }));
      render();
    } catch (error) {
      errorBox.textContent = error instanceof ApiError ? error.detail : String(error);
      errorBox.hidden = false;
    } finally {
      cancelButton.disabled = false;
    }
  });
}

const sharedLayer = root.dataset.sharedLayer === "true";
setInterval(
  () => {
    if (feed.mode === "live" && ACTIVE.has(state.status)) refresh();
  },
  sharedLayer ? LIVE_CHECK_MS : Number(root.dataset.pollMs) || 3000,
);

render();
feed.start();
window.preflabRun = { state, feed };
