/**
 * One pair, drilled down: both clips side by side (each loops on its own; this page is for
 * looking, not judging, so no frame lock), what each segment is (trajectory, steps, true
 * return — researchers may see it), the gold answer if the pair has one, and every vote.
 * Data: `GET /api/v1/pairs/<id>/`.
 */

import { ApiError, apiRequest } from "../feedback/api.js";

const root = document.getElementById("pair-detail");
const els = {
  error: document.getElementById("error"),
  status: document.getElementById("status"),
  facts: root.querySelector('[data-pair="facts"]'),
  gold: root.querySelector('[data-pair="gold"]'),
  voteCount: root.querySelector('[data-pair="vote-count"]'),
  votes: document.getElementById("votes"),
};

const PREFERENCE_WORDS = {
  a: "A better",
  b: "B better",
  equal: "equally good",
  cant_tell: "can’t tell",
};
const dash = (value, format = String) =>
  value === null || value === undefined || value === "" ? "—" : format(value);

function segmentFacts(segment) {
  return [
    ["Segment", `#${segment.id}`],
    ["Trajectory", `#${segment.trajectory_id}`],
    ["Steps", `${segment.start}–${segment.end - 1} (${segment.length} steps)`],
    ["Frame rate", `${segment.fps} fps`],
    ["True return", dash(segment.true_return, (v) => v.toFixed(3))],
  ];
}

function drawSegment(side, segment, tally) {
  const figure = root.querySelector(`[data-segment="${side}"]`);
  figure.dataset.segmentId = String(segment.id);
  const video = figure.querySelector("video");
  video.src = segment.clip_url;
  const dl = figure.querySelector("dl");
  dl.replaceChildren(
    ...segmentFacts(segment).map(([term, value]) => {
      const div = document.createElement("div");
      const dt = document.createElement("dt");
      dt.textContent = term;
      const dd = document.createElement("dd");
      dd.textContent = value;
      if (term === "True return") dd.dataset.fact = "true-return";
      div.append(dt, dd);
      return div;
    }),
  );
  figure.querySelector("[data-tally]").textContent = `preferred by ${tally}`;
}

function cell(tr, text, className = "") {
  const td = tr.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function drawVotes(votes) {
  const body = els.votes.tBodies[0];
  if (!votes.length) {
    const tr = document.createElement("tr");
    cell(tr, "Nobody has judged this pair yet.", "muted").colSpan = 8;
    body.replaceChildren(tr);
    return;
  }
  body.replaceChildren(
    ...votes.map((vote) => {
      const tr = document.createElement("tr");
      tr.dataset.annotator = vote.annotator;
      tr.dataset.preference = vote.preference;
      if (vote.excluded) tr.className = "excluded";
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = vote.annotator;
      if (vote.is_simulated) th.append(badge("simulated", "badge badge-quiet"));
      if (vote.excluded) th.append(badge("excluded", "badge badge-excluded"));
      tr.append(th);
      cell(tr, PREFERENCE_WORDS[vote.preference] || vote.preference);
      cell(tr, vote.desirability_a);
      cell(tr, vote.desirability_b);
      cell(
        tr,
        dash(vote.confidence, (v) => v.toFixed(2)),
        "num",
      );
      cell(
        tr,
        dash(vote.elapsed_ms, (ms) => `${(ms / 1000).toFixed(1)} s`),
        "num",
      );
      cell(tr, vote.left_is_a ? "A" : "B");
      const when = cell(tr, new Date(vote.created_at).toLocaleString());
      when.title = vote.created_at;
      return tr;
    }),
  );
}

function badge(text, className) {
  const node = document.createElement("span");
  node.className = className;
  node.textContent = text;
  return node;
}

async function load() {
  try {
    const pair = await apiRequest(root.dataset.pairUrl);
    const count = (value) => pair.votes.filter((v) => v.preference === value).length;
    const facts = [`selector ${pair.selector}`];
    if (pair.model_version) facts.push(`model ${pair.model_version}`);
    if (pair.is_gold) facts.push("gold pair");
    els.facts.textContent = facts.join(" · ");
    if (pair.is_gold) {
      els.gold.hidden = false;
      const winner = pair.gold_preference.toUpperCase();
      els.gold.textContent = `Gold answer: ${winner} is better (by true return).`;
    }
    drawSegment("a", pair.segment_a, count("a"));
    drawSegment("b", pair.segment_b, count("b"));
    const tally = `A ${count("a")} · B ${count("b")} · equal ${count("equal")}`;
    els.voteCount.textContent = `(${pair.votes.length}: ${tally} · can’t tell ${count("cant_tell")})`;
    drawVotes(pair.votes);
    els.status.textContent = "";
    root.dataset.state = "ready";
  } catch (error) {
    root.dataset.state = "error";
    els.status.textContent = "";
    els.error.hidden = false;
    els.error.textContent =
      error instanceof ApiError
        ? `Could not load the pair: ${error.detail}`
        : `Could not load the pair: ${error}`;
  }
}

load();
