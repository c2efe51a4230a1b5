/**
 * A campaign's research dashboard: progress, quality statistics drawn as plain SVG, the
 * annotator table (sortable, with an Exclude/Include toggle per annotator) and the pairs
 * table (paged, each pair linking to its drill-down page).
 *
 * Data. Everything comes from the research API: `stats/` (one payload for every chart and
 * the annotator table), `pairs/?page=N` (50 a page) and `exclusions/` (POST). The page keeps
 * the latest payloads and redraws from them; the annotator table's sort order and the pairs
 * page survive a refresh.
 *
 * Live updates (`../feedback/live.js`). The campaign's WebSocket pushes an event after every
 * judgement and every batch of queued pairs. The progress line follows each event's counts at
 * once; the statistics are re-read at most about once a second (events arriving meanwhile
 * are folded into the next read), since a busy campaign sends many events a second and the
 * statistics are computed over every label. While the socket is down the feed polls the
 * campaign every `data-poll-ms` and each poll re-reads the statistics too, so changes that
 * raise no event (another researcher's exclusion) show up as well.
 */

import { ApiError, apiRequest } from "../feedback/api.js";
import { CampaignFeed } from "../feedback/live.js";
import { barChart, heatMap, lineChart, splitBar } from "./plot.js";

const REFRESH_DELAY_MS = 1000;
const HOUR_MS = 3_600_000;
// Beyond this many hours between the first and the last label, hours with no label are not
// filled in (the chart would be all dots); the line then joins the hours that have labels.
const MAX_FILLED_HOURS = 24 * 14;

const root = document.getElementById("dashboard");
const urls = {
  stats: root.dataset.statsUrl,
  pairs: root.dataset.pairsUrl,
  exclusions: root.dataset.exclusionsUrl,
  progress: root.dataset.progressUrl,
  pairPage: root.dataset.pairPageUrl,
  socket: root.dataset.socketPath,
};
const els = {
  error: document.getElementById("error"),
  status: document.getElementById("status"),
  annotators: document.getElementById("annotators"),
  annotatorsEmpty: root.querySelector('[data-empty="annotators"]'),
  pairs: document.getElementById("pairs"),
  pairsRange: root.querySelector('[data-pairs="range"]'),
  liveLabel: root.querySelector("[data-live-label]"),
};

const state = {
  stats: null,
  pairs: null,
  pairsPage: 1,
  sort: { key: "labels", descending: true },
  live: "connecting",
  /** Refresh bookkeeping: a timer waiting to read, a read in flight, an event during it. */
  refreshTimer: 0,
  refreshing: false,
  refreshAgain: false,
  refreshes: 0,
  /** Annotator ids whose exclusion is being saved: their toggle stays disabled. */
  saving: new Set(),
};

// --- formatting -------------------------------------------------------------------------------

const percent = (value) =>
  value === null || value === undefined ? "—" : `${(value * 100).toFixed(0)}%`;
const fixed = (digits) => (value) =>
  value === null || value === undefined ? "—" : value.toFixed(digits);
const seconds = (ms) => (ms === null || ms === undefined ? "—" : `${(ms / 1000).toFixed(1)} s`);
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

const PREFERENCE_WORDS = { a: "A better", b: "B better", equal: "equal", cant_tell: "can’t tell" };
const DESIRABILITY_WORDS = { desirable: "desirable", undesirable: "undesirable", unsure: "unsure" };
const FLAG_WORDS = {
  too_fast: "too fast",
  low_gold_accuracy: "low gold accuracy",
  position_bias: "position bias",
  low_agreement: "low agreement",
  inconsistent: "inconsistent",
};
const flagWord = (flag) => FLAG_WORDS[flag] || String(flag).replaceAll("_", " ");

function timeLabel(date, spanMs) {
  const options =
    spanMs > 20 * HOUR_MS
      ? { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }
      : { hour: "2-digit", minute: "2-digit" };
  return date.toLocaleString(undefined, options);
}

function setText(selector, text) {
  for (const node of root.querySelectorAll(selector)) node.textContent = text;
}

// --- progress ----------------------------------------------------------------------------------

function showProgress({ label_count, labels_wanted, pair_count }) {
  if (label_count !== undefined) setText('[data-progress="done"]', String(label_count));
  if (labels_wanted !== undefined) setText('[data-progress="wanted"]', String(labels_wanted));
  if (pair_count !== undefined) setText('[data-progress="pairs"]', String(pair_count));
  const bar = root.querySelector('[data-progress="bar"]');
  if (bar && labels_wanted !== undefined) bar.max = Math.max(1, labels_wanted);
  if (bar && label_count !== undefined) bar.value = Math.min(label_count, bar.max);
}

function showCampaignFacts(campaign) {
  setText(
    '[data-fact="adaptive"]',
    campaign.adaptive_overlap ? "(adaptive: one more when they disagree)" : "",
  );
  setText(
    '[data-fact="gold"]',
    campaign.gold_rate ? `· gold rate ${percent(campaign.gold_rate)}` : "",
  );
}

// --- charts ------------------------------------------------------------------------------------

/** Hourly counts with the hours that had no label filled in as zeros (up to a limit). */
export function hourlySeries(rows) {
  const points = rows
    .map((row) => ({ t: new Date(row.t), value: row.count }))
    .filter((p) => !Number.isNaN(p.t.getTime()))
    .sort((p, q) => p.t - q.t);
  if (points.length < 2) return points;
  const first = points[0].t.getTime();
  const last = points[points.length - 1].t.getTime();
  const hours = Math.round((last - first) / HOUR_MS);
  if (hours > MAX_FILLED_HOURS) return points;
  const byHour = new Map(
    points.map((p) => [Math.round((p.t.getTime() - first) / HOUR_MS), p.value]),
  );
  return Array.from({ length: hours + 1 }, (_, i) => ({
    t: new Date(first + i * HOUR_MS),
    value: byHour.get(i) || 0,
  }));
}

function drawCharts(stats) {
  const series = hourlySeries(stats.labels_over_time || []);
  const span = series.length ? series[series.length - 1].t - series[0].t : 0;
  lineChart(document.getElementById("chart-over-time"), series, {
    label: `Labels per hour over ${plural(series.length, "hour")}`,
    formatTime: (t) => timeLabel(t, span),
    format: (v) => String(Math.round(v)),
    empty: "No labels yet.",
  });
  setText('[data-stat="total-labels"]', String(series.reduce((sum, p) => sum + p.value, 0)));

  const annotators = [...stats.annotators].sort(
    (a, b) => b.labels - a.labels || a.username.localeCompare(b.username),
  );
  const tone = (a) => (a.excluded ? "muted" : a.flags.length ? "flagged" : null);
  barChart(
    document.getElementById("chart-labels"),
    annotators.map((a) => ({
      key: a.username,
      label: a.username,
      value: a.labels,
      tone: tone(a),
      title: `${a.username}: ${plural(a.labels, "label")}${a.excluded ? " (excluded)" : ""}`,
    })),
    { label: "Labels per annotator", format: (v) => String(v), empty: "Nobody has labelled yet." },
  );
  barChart(
    document.getElementById("chart-rate"),
    annotators.map((a) => ({
      key: a.username,
      label: a.username,
      value: a.per_hour,
      tone: tone(a),
      title:
        a.per_hour === null
          ? `${a.username}: not enough answers to tell`
          : `${a.username}: ${a.per_hour.toFixed(1)} labels per hour`,
    })),
    { label: "Labels per hour per annotator", format: fixed(1), empty: "Nobody has labelled yet." },
  );
  const gold = annotators.filter((a) => a.gold_answered > 0);
  barChart(
    document.getElementById("chart-gold"),
    gold.map((a) => ({
      key: a.username,
      label: a.username,
      value: a.gold_accuracy,
      tone: a.flags.includes("low_gold_accuracy") ? "flagged" : tone(a),
      title: `${a.username}: ${percent(a.gold_accuracy)} right of ${a.gold_answered} gold`,
    })),
    {
      label: "Gold accuracy per annotator",
      max: 1,
      format: percent,
      reference: 0.5,
      empty: stats.campaign.gold_rate
        ? "No gold pair answered yet."
        : "This campaign mixes in no gold pairs (gold rate 0).",
    },
  );

  const agreement = stats.agreement || {};
  setText(
    '[data-stat="alpha"]',
    agreement.alpha === null || agreement.alpha === undefined ? "—" : agreement.alpha.toFixed(3),
  );
  setText('[data-stat="multi-vote"]', String(agreement.pairs_with_multiple_votes ?? 0));
  drawPairwise(stats.pairwise || []);

  const bias = stats.position_bias || {};
  const decisive = bias.decisive || 0;
  setText('[data-stat="left-rate"]', percent(bias.left_rate));
  setText(
    '[data-stat="left-z"]',
    bias.z === null || bias.z === undefined ? "—" : bias.z.toFixed(2),
  );
  setText('[data-stat="decisive"]', String(decisive));
  splitBar(
    document.getElementById("chart-bias"),
    [
      { key: "left", label: "left", value: bias.chose_left || 0 },
      { key: "right", label: "right", value: decisive - (bias.chose_left || 0) },
    ],
    {
      label: `Decisive answers: ${percent(bias.left_rate)} chose the left clip`,
      reference: 0.5,
      empty: "No decisive answer yet.",
    },
  );

  const labels = stats.label_distribution || {};
  barChart(
    document.getElementById("chart-preferences"),
    Object.entries(PREFERENCE_WORDS).map(([key, word]) => ({
      key,
      label: word,
      value: labels[key] || 0,
    })),
    { label: "How often each answer was given", format: (v) => String(v) },
  );
  const desirability = stats.desirability || {};
  barChart(
    document.getElementById("chart-desirability"),
    Object.entries(DESIRABILITY_WORDS).map(([key, word]) => ({
      key,
      label: word,
      value: desirability[key] || 0,
    })),
    { label: "How clips were marked", format: (v) => String(v) },
  );
  const cycles = stats.cycles || { count: 0, examples: [] };
  const example =
    cycles.examples && cycles.examples.length
      ? ` — e.g. segments ${cycles.examples[0].join(" › ")} › ${cycles.examples[0][0]}`
      : "";
  setText(
    '[data-stat="cycles"]',
    `Intransitive cycles (majority prefers A to B, B to C and C to A): ${cycles.count}${example}`,
  );
}

function drawPairwise(rows) {
  const names = [...new Set(rows.flatMap((r) => [r.annotator_1, r.annotator_2]))].sort();
  const cells = new Map();
  for (const row of rows) {
    cells.set(`${row.annotator_1}\u0000${row.annotator_2}`, row);
    cells.set(`${row.annotator_2}\u0000${row.annotator_1}`, row);
  }
  heatMap(
    document.getElementById("chart-pairwise"),
    names,
    (i, j) => {
      const row = cells.get(`${names[i]}\u0000${names[j]}`);
      const who = `${names[i]} and ${names[j]}`;
      if (!row) return { value: null, title: `${who} share no pair` };
      const title =
        row.agreement === null
          ? `${who}: ${plural(row.shared, "shared pair")}, not enough to compare`
          : `${who} agree on ${percent(row.agreement)} of ${plural(row.shared, "shared pair")}`;
      return { value: row.agreement, title };
    },
    {
      caption: "Pairwise agreement (rows and columns: annotators)",
      format: (v) => v.toFixed(2),
      empty: "Agreement needs two annotators who answered the same pairs.",
    },
  );
}

// --- annotator table --------------------------------------------------------------------------

/** Columns: heading, the value sorted on, and the cell. Nulls sort last either way. */
const COLUMNS = [
  {
    key: "username",
    label: "Annotator",
    value: (a) => a.username.toLowerCase(),
    cell: annotatorCell,
    header: true,
  },
  {
    key: "labels",
    label: "Labels",
    value: (a) => a.labels,
    text: (a) => String(a.labels),
    num: true,
  },
  {
    key: "per_hour",
    label: "Per hour",
    value: (a) => a.per_hour,
    text: (a) => fixed(1)(a.per_hour),
    num: true,
  },
  {
    key: "median_ms",
    label: "Median time",
    value: (a) => a.median_ms,
    text: (a) => seconds(a.median_ms),
    num: true,
  },
  {
    key: "too_fast_rate",
    label: "Too fast",
    value: (a) => a.too_fast_rate,
    text: (a) => (a.labels ? `${a.too_fast} (${percent(a.too_fast_rate)})` : "—"),
    num: true,
  },
  {
    key: "gold_accuracy",
    label: "Gold accuracy",
    value: (a) => a.gold_accuracy,
    text: (a) => (a.gold_answered ? `${percent(a.gold_accuracy)} of ${a.gold_answered}` : "—"),
    num: true,
  },
  {
    key: "left_rate",
    label: "Left rate",
    value: (a) => a.left_rate,
    text: (a) => percent(a.left_rate),
    num: true,
  },
  {
    key: "agreement_with_majority",
    label: "Agrees with majority",
    value: (a) => a.agreement_with_majority,
    text: (a) => percent(a.agreement_with_majority),
    num: true,
  },
  {
    key: "self_consistency",
    label: "Self-consistency",
    value: (a) => a.self_consistency ?? null,
    text: (a) =>
      a.repeats_answered ? `${percent(a.self_consistency)} of ${a.repeats_answered}` : "—",
    num: true,
    help: "Repeated pairs (shown mirrored) answered the same way as the first time",
  },
  {
    key: "noise_estimate",
    label: "Noise",
    value: (a) => a.noise_estimate,
    text: (a) => fixed(2)(a.noise_estimate),
    num: true,
    help: "Estimated share of answers that are noise (B-Pref mistake rate)",
  },
  { key: "flags", label: "Flags", value: (a) => a.flags.length, cell: flagsCell },
  {
    key: "excluded",
    label: "Labels used",
    value: (a) => (a.excluded ? 1 : 0),
    cell: exclusionCell,
  },
];

function annotatorCell(a, td) {
  const name = document.createElement("span");
  name.className = "annotator-name";
  name.textContent = a.username;
  td.append(name);
  if (a.simulated) td.append(badge("simulated", "badge badge-quiet"));
  if (a.excluded) td.append(badge("excluded", "badge badge-excluded"));
}

function flagsCell(a, td) {
  if (!a.flags.length) {
    td.append(
      Object.assign(document.createElement("span"), { className: "muted", textContent: "—" }),
    );
    return;
  }
  for (const flag of a.flags) {
    const node = badge(flagWord(flag), "badge badge-flag");
    node.dataset.flag = flag;
    td.append(node);
  }
}

function exclusionCell(a, td) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = `toggle-exclusion${a.excluded ? " is-excluded" : ""}`;
  button.dataset.action = "toggle-exclusion";
  button.dataset.annotatorId = String(a.id);
  button.setAttribute("aria-pressed", String(Boolean(a.excluded)));
  button.textContent = a.excluded ? "Include" : "Exclude";
  button.setAttribute("aria-label", `${a.excluded ? "Include" : "Exclude"} ${a.username}'s labels`);
  button.disabled = state.saving.has(a.id);
  td.append(button);
}

function badge(text, className) {
  const node = document.createElement("span");
  node.className = className;
  node.textContent = text;
  return node;
}

function sortedAnnotators(annotators) {
  const column = COLUMNS.find((c) => c.key === state.sort.key) || COLUMNS[1];
  const direction = state.sort.descending ? -1 : 1;
  return [...annotators].sort((a, b) => {
    const x = column.value(a);
    const y = column.value(b);
    const missingX = x === null || x === undefined;
    const missingY = y === null || y === undefined;
    if (missingX || missingY)
      return missingX === missingY ? a.username.localeCompare(b.username) : missingX ? 1 : -1;
    if (x < y) return -direction;
    if (x > y) return direction;
    return a.username.localeCompare(b.username);
  });
}

function drawAnnotatorHead() {
  const row = els.annotators.tHead.rows[0];
  row.replaceChildren(
    ...COLUMNS.map((column) => {
      const th = document.createElement("th");
      th.scope = "col";
      th.dataset.key = column.key;
      if (column.num) th.className = "num";
      const active = state.sort.key === column.key;
      th.setAttribute(
        "aria-sort",
        active ? (state.sort.descending ? "descending" : "ascending") : "none",
      );
      const button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      button.dataset.action = "sort";
      button.dataset.key = column.key;
      button.textContent = column.label;
      if (column.help) button.title = column.help;
      if (active) {
        // aria-sort says it to screen readers; the arrow must not change the button's name.
        const mark = badge(state.sort.descending ? " ▼" : " ▲", "sort-mark");
        mark.setAttribute("aria-hidden", "true");
        button.append(mark);
      }
      th.append(button);
      return th;
    }),
  );
}

function drawAnnotators(annotators) {
  drawAnnotatorHead();
  const body = els.annotators.tBodies[0];
  body.replaceChildren(
    ...sortedAnnotators(annotators).map((a) => {
      const tr = document.createElement("tr");
      tr.dataset.annotatorId = String(a.id);
      tr.dataset.username = a.username;
      tr.dataset.excluded = String(Boolean(a.excluded));
      if (a.excluded) tr.className = "excluded";
      for (const column of COLUMNS) {
        const cell = document.createElement(column.header ? "th" : "td");
        if (column.header) cell.scope = "row";
        cell.dataset.column = column.key;
        if (column.num) cell.className = "num";
        if (column.cell) column.cell(a, cell);
        else cell.textContent = column.text(a);
        tr.append(cell);
      }
      return tr;
    }),
  );
  els.annotatorsEmpty.hidden = annotators.length > 0;
}

async function toggleExclusion(annotatorId) {
  const annotator = state.stats && state.stats.annotators.find((a) => a.id === annotatorId);
  if (!annotator || state.saving.has(annotatorId)) return;
  const excluded = !annotator.excluded;
  const flagged = annotator.flags.map(flagWord).join(", ");
  const reason = excluded
    ? `Excluded from the campaign dashboard${flagged ? ` (flags: ${flagged})` : ""}.`
    : "Included again from the campaign dashboard.";
  state.saving.add(annotatorId);
  drawAnnotators(state.stats.annotators);
  try {
    await apiRequest(urls.exclusions, {
      method: "POST",
      body: { annotator_id: annotatorId, excluded, reason },
    });
    showStatus(
      excluded
        ? `${annotator.username}'s labels are now left out of training, exports and agreement.`
        : `${annotator.username}'s labels are used again.`,
    );
    state.saving.delete(annotatorId);
    await refresh();
  } catch (error) {
    state.saving.delete(annotatorId);
    showError(
      error instanceof ApiError ? `Could not change the exclusion: ${error.detail}` : String(error),
    );
    if (state.stats) drawAnnotators(state.stats.annotators);
  }
}

// --- pairs table --------------------------------------------------------------------------------

function pairLink(id) {
  const a = document.createElement("a");
  a.href = urls.pairPage.replace(/\/0\/$/, `/${id}/`);
  a.textContent = `Pair ${id}`;
  return a;
}

function drawPairs(data) {
  const body = els.pairs.tBodies[0];
  if (!data.results.length) {
    const tr = document.createElement("tr");
    const td = tr.insertCell();
    td.colSpan = 8;
    td.className = "muted";
    td.textContent = "No pairs are queued in this campaign yet.";
    body.replaceChildren(tr);
  } else {
    body.replaceChildren(
      ...data.results.map((pair) => {
        const tr = document.createElement("tr");
        tr.dataset.pairId = String(pair.id);
        const th = document.createElement("th");
        th.scope = "row";
        th.append(pairLink(pair.id));
        tr.append(th);
        const cells = [
          [pair.is_gold ? "gold" : "", ""],
          [String(pair.priority), "num"],
          [pair.selector, ""],
          [pair.model_version || "—", ""],
          [String(pair.votes), "num"],
          [pair.majority ? PREFERENCE_WORDS[pair.majority] || pair.majority : "—", ""],
          [percent(pair.agreement), "num"],
        ];
        for (const [text, className] of cells) {
          const td = tr.insertCell();
          td.className = className;
          td.textContent = text;
        }
        return tr;
      }),
    );
  }
  const pageSize = 50;
  const from = data.count ? (state.pairsPage - 1) * pageSize + 1 : 0;
  const to = Math.min(data.count, (state.pairsPage - 1) * pageSize + data.results.length);
  els.pairsRange.textContent = data.count ? `pairs ${from}–${to} of ${data.count}` : "no pairs";
  root.querySelector('[data-action="pairs-page"][data-step="-1"]').disabled = state.pairsPage <= 1;
  root.querySelector('[data-action="pairs-page"][data-step="1"]').disabled = !data.next_page;
}

async function loadPairs() {
  const data = await apiRequest(`${urls.pairs}?page=${state.pairsPage}`);
  state.pairs = data;
  drawPairs(data);
}

async function changePairsPage(step) {
  const page = Math.max(1, state.pairsPage + step);
  if (page === state.pairsPage) return;
  state.pairsPage = page;
  try {
    await loadPairs();
  } catch (error) {
    showError(`Could not load the pairs: ${error.detail || error}`);
  }
}

// --- refresh ------------------------------------------------------------------------------------

function showError(message) {
  els.error.hidden = false;
  els.error.textContent = message;
}

function showStatus(message) {
  els.status.textContent = message;
}

/** Read the statistics and the current pairs page and redraw everything. */
async function refresh() {
  state.refreshing = true;
  try {
    const [stats] = await Promise.all([
      apiRequest(urls.stats),
      loadPairs().catch((error) => {
        // A page that no longer exists (pairs were removed): back to the first one.
        if (error instanceof ApiError && error.status === 404 && state.pairsPage > 1) {
          state.pairsPage = 1;
          return loadPairs();
        }
        throw error;
      }),
    ]);
    state.stats = stats;
    showProgress(stats.campaign);
    showCampaignFacts(stats.campaign);
    drawCharts(stats);
    drawAnnotators(stats.annotators);
    els.error.hidden = true;
    state.refreshes += 1;
    root.dataset.refreshes = String(state.refreshes);
    root.dataset.state = "ready";
    if (state.refreshes === 1) showStatus("");
  } catch (error) {
    root.dataset.state = state.stats ? "ready" : "error";
    if (error instanceof ApiError && error.status === 403) {
      showError("Your account may no longer read these statistics (researchers and admins only).");
    } else {
      showError(
        `Could not load the statistics: ${error.detail || error}` +
          (error.transient ? " Retrying with the next update." : ""),
      );
    }
  } finally {
    state.refreshing = false;
  }
}

/** Ask for a refresh soon: events within REFRESH_DELAY_MS of each other share one read. */
function refreshSoon() {
  if (state.refreshTimer) return;
  if (state.refreshing) {
    state.refreshAgain = true;
    return;
  }
  state.refreshTimer = setTimeout(async () => {
    state.refreshTimer = 0;
    await refresh();
    if (state.refreshAgain) {
      state.refreshAgain = false;
      refreshSoon();
    }
  }, REFRESH_DELAY_MS);
}

const LIVE_WORDS = {
  connecting: "connecting…",
  live: "live",
  polling: "live connection lost; checking every few seconds",
};

const feed = new CampaignFeed({
  socketPath: urls.socket,
  pollUrl: urls.progress,
  pollMs: Number(root.dataset.pollMs) || 10_000,
  onEvent(message) {
    showProgress(message);
    // A pushed event whose counts match the last read (the socket's greeting on connect, an
    // event for a label that read already saw) changes nothing. A poll always re-reads: it is
    // the only way to notice changes that raise no event, such as another researcher's exclusion.
    const seen = state.stats && state.stats.campaign;
    const unchanged =
      seen &&
      !message.polled &&
      !state.refreshing &&
      message.label_count === seen.label_count &&
      message.pair_count === seen.pair_count;
    if (!unchanged) refreshSoon();
  },
  onMode(mode) {
    state.live = mode;
    root.dataset.live = mode;
    els.liveLabel.textContent = LIVE_WORDS[mode] || mode;
  },
});

root.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button || !root.contains(button)) return;
  const { action } = button.dataset;
  if (action === "sort") {
    const key = button.dataset.key;
    const numeric = key !== "username";
    state.sort =
      state.sort.key === key
        ? { key, descending: !state.sort.descending }
        : { key, descending: numeric };
    if (state.stats) drawAnnotators(state.stats.annotators);
    root.querySelector(`#annotators th[data-key="${key}"] button`)?.focus();
  } else if (action === "toggle-exclusion") {
    toggleExclusion(Number(button.dataset.annotatorId));
  } else if (action === "pairs-page") {
    changePairsPage(Number(button.dataset.step));
  }
});

// Charts are drawn at their boxes' width in pixels (text keeps its size): redraw on resize.
let resizeTimer = 0;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => state.stats && drawCharts(state.stats), 150);
});

// A small hook for tests and for debugging from the console.
window.preflabResearch = { state, feed, refresh };

drawAnnotatorHead();
refresh();
feed.start();
