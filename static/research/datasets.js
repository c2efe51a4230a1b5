/**
 * Dataset snapshots page: the form becomes a `POST /api/v1/datasets/`; every unfinished
 * snapshot is polled (`GET /api/v1/datasets/<id>/`) until it succeeds or fails, with a
 * progress bar in its row and download links once its files exist.
 */

import { apiRequest } from "../feedback/api.js";

const root = document.getElementById("datasets");
const form = document.getElementById("export-form");
const errorBox = document.getElementById("error");
const table = document.getElementById("snapshots").tBodies[0];
const pollMs = Number(root.dataset.pollMs) || 1000;

const detailUrl = (id) => root.dataset.detailUrl.replace(/0\/$/, `${id}/`);

function showError(message) {
  errorBox.textContent = message;
  errorBox.hidden = !message;
}

function instant(value) {
  // datetime-local has no zone; the page says UTC.
  return value ? `${value}:00Z` : null;
}

function filtersFrom(data) {
  const minAgreement = data.get("min_agreement");
  return {
    campaign_ids: data.getAll("campaign").map(Number),
    created_from: instant(data.get("created_from")),
    created_to: instant(data.get("created_to")),
    annotators: (data.get("annotators") || "").split(",").map((s) => s.trim()).filter(Boolean),
    source: data.get("source"),
    min_agreement: minAgreement === "" ? null : Number(minAgreement),
    exclude_excluded: data.has("exclude_excluded"),
    exclude_flagged: data.has("exclude_flagged"),
    include_gold: data.has("include_gold"),
    include_repeats: data.has("include_repeats"),
  };
}

function row(snapshot) {
  let tr = table.querySelector(`tr[data-snapshot-id="${snapshot.id}"]`);
  if (!tr) {
    tr = document.createElement("tr");
    tr.dataset.snapshotId = String(snapshot.id);
    for (const name of ["id", "name", "campaigns", "status", "pairs", "judgements", "hash", "files"]) {
      const td = tr.insertCell();
      td.dataset.cell = name;
      if (name === "pairs" || name === "judgements") td.className = "num";
    }
    tr.cells[0].textContent = String(snapshot.id);
    tr.cells[1].textContent = snapshot.name;
    tr.cells[2].textContent = snapshot.campaign_ids.map((id) => `#${id}`).join(", ");
    table.prepend(tr);
  }
  return tr;
}

function draw(snapshot) {
  const tr = row(snapshot);
  tr.dataset.status = snapshot.status;
  const cell = (name) => tr.querySelector(`[data-cell="${name}"]`);
  const status = cell("status");
  if (snapshot.status === "queued" || snapshot.status === "running") {
    const bar = document.createElement("progress");
    bar.max = 1;
    bar.value = snapshot.progress;
    bar.setAttribute("aria-label", `Snapshot ${snapshot.id} progress`);
    status.replaceChildren(bar, ` ${snapshot.status} ${Math.round(snapshot.progress * 100)}%`);
  } else {
    status.textContent = snapshot.status === "failed" ? `failed: ${snapshot.error}` : snapshot.status;
  }
  cell("pairs").textContent = snapshot.counts.pairs ?? "";
  cell("judgements").textContent = snapshot.counts.judgements ?? "";
  const hash = document.createElement("code");
  hash.textContent = snapshot.content_hash ? `${snapshot.content_hash.slice(0, 12)}…` : "";
  hash.title = snapshot.content_hash || "";
  cell("hash").replaceChildren(hash);
  cell("files").replaceChildren(
    ...Object.entries(snapshot.files).flatMap(([name, meta]) => {
      const a = document.createElement("a");
      a.href = meta.url;
      a.textContent = name;
      return [a, " "];
    }),
  );
}

async function poll(id) {
  try {
    const snapshot = await apiRequest(detailUrl(id));
    draw(snapshot);
    if (snapshot.status === "queued" || snapshot.status === "running") {
      setTimeout(() => poll(id), pollMs);
    }
  } catch (error) {
    showError(error.detail || String(error));
    setTimeout(() => poll(id), pollMs * 5);
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("");
  const data = new FormData(form);
  try {
    const snapshot = await apiRequest(root.dataset.createUrl, {
      method: "POST",
      body: { name: data.get("name"), filters: filtersFrom(data), formats: ["parquet", ...data.getAll("format")] },
    });
    draw(snapshot);
    poll(snapshot.id);
  } catch (error) {
    showError(error.detail || String(error));
  }
});

for (const tr of table.rows) {
  if (tr.dataset.status === "queued" || tr.dataset.status === "running") poll(tr.dataset.snapshotId);
}
