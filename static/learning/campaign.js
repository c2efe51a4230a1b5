/**
 * A campaign's training page: start a reward-model run through the learning API, keep the
 * runs list current, promote or roll back model versions.
 *
 * Endpoints come from the `#training` element's data-* attributes. Starting POSTs
 * `{campaign, config: {net: {ensemble_size, hidden_sizes}, train: {max_epochs, lr}}}` to
 * `/api/v1/learning/runs/`; a 400's `detail` (and the field's message) is shown as is.
 */

import { ApiError, apiRequest } from "../feedback/api.js";

const REFRESH_MS = 3000;
const ACTIVE = new Set(["queued", "running"]);

const root = document.getElementById("training");
const errorBox = document.getElementById("error");
const statusLine = document.getElementById("status");

function showError(message) {
  errorBox.textContent = message;
  errorBox.hidden = !message;
}

function describe(error) {
  if (!(error instanceof ApiError)) return String(error);
  const fields = error.body && error.body.errors ? error.body.errors : null;
  const extra = fields
    ? Object.values(fields)
        .flat()
        .filter((m) => typeof m === "string" && m !== error.detail)
    : [];
  return [error.detail, ...extra].join(" ");
}

function numberOrRaw(text) {
  const trimmed = String(text).trim();
  const value = Number(trimmed);
  return trimmed !== "" && Number.isFinite(value) ? value : trimmed;
}

function readConfig(form) {
  const data = new FormData(form);
  const hidden = String(data.get("hidden_sizes") || "")
    .split(",")
    .map((part) => part.trim())
    .filter((part) => part !== "")
    .map(numberOrRaw);
  return {
    net: { ensemble_size: numberOrRaw(data.get("ensemble_size")), hidden_sizes: hidden },
    train: { max_epochs: numberOrRaw(data.get("max_epochs")), lr: numberOrRaw(data.get("lr")) },
  };
}

function runUrl(id) {
  return root.dataset.runPageUrl.replace(/\/0\/$/, `/${id}/`);
}

function runRow(run) {
  const row = document.createElement("tr");
  row.dataset.runId = run.id;
  row.dataset.status = run.status;
  const link = document.createElement("a");
  link.href = runUrl(run.id);
  link.textContent = `Run ${run.id}`;
  const kind = run.kind === "loop" ? "loop iteration" : "reward model";
  const cells = [link, run.status, null, kind, run.triggered_by || "—", new Date(run.created_at).toLocaleString()];
  cells.forEach((content, i) => {
    const cell = row.insertCell();
    if (i === 1) cell.dataset.column = "status";
    if (i === 2) {
      cell.dataset.column = "progress";
      fillProgress(cell, run.progress);
    } else if (content instanceof Node) cell.append(content);
    else cell.textContent = content;
  });
  return row;
}

function fillProgress(cell, progress) {
  const bar = document.createElement("progress");
  bar.max = 1;
  bar.value = progress;
  cell.replaceChildren(bar, ` ${Math.round(progress * 100)}%`);
}

function updateRow(row, run) {
  row.dataset.status = run.status;
  row.querySelector('[data-column="status"]').textContent = run.status;
  fillProgress(row.querySelector('[data-column="progress"]'), run.progress);
}

async function refreshActive() {
  const rows = [...document.querySelectorAll("#runs tbody tr[data-run-id]")].filter((row) =>
    ACTIVE.has(row.dataset.status),
  );
  for (const row of rows) {
    try {
      const run = await apiRequest(`${root.dataset.runsUrl}${row.dataset.runId}/`);
      const finished = !ACTIVE.has(run.status);
      updateRow(row, run);
      if (finished && run.status === "succeeded") {
        statusLine.textContent = `Run ${run.id} succeeded; reload to see its model version.`;
      }
    } catch {
      // Try again at the next refresh.
    }
  }
  setTimeout(refreshActive, REFRESH_MS);
}

const form = document.getElementById("start-form");
if (form) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError("");
    const button = form.querySelector('button[type="submit"]');
    button.disabled = true;
    try {
      const run = await apiRequest(root.dataset.runsUrl, {
        method: "POST",
        body: { campaign: Number(root.dataset.campaignId), config: readConfig(form) },
      });
      const body = document.querySelector("#runs tbody");
      body.querySelector("tr.empty")?.remove();
      body.prepend(runRow(run));
      statusLine.textContent = `Run ${run.id} queued.`;
    } catch (error) {
      showError(describe(error));
    } finally {
      button.disabled = false;
    }
  });
}

// "Retrain after N new judgements": PUT the rule with the start form's reward settings.
const ruleForm = document.getElementById("rule-form");
if (ruleForm) {
  ruleForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError("");
    const data = new FormData(ruleForm);
    const body = {
      every_judgements: numberOrRaw(data.get("every_judgements")),
      enabled: data.get("enabled") === "on",
      config: form ? readConfig(form) : {},
    };
    try {
      const rule = await apiRequest(ruleForm.dataset.ruleUrl, { method: "PUT", body });
      document.getElementById("rule-state").textContent = rule.enabled
        ? `A reward-model run starts after every ${rule.every_judgements} new judgements.`
        : "Off.";
      statusLine.textContent = "Retrain rule saved.";
    } catch (error) {
      showError(describe(error));
    }
  });
}

// One loop iteration: reward model → policy → rollouts → pairs, as a "loop" run.
const loopForm = document.getElementById("loop-form");
if (loopForm) {
  loopForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError("");
    const button = loopForm.querySelector('button[type="submit"]');
    button.disabled = true;
    const data = new FormData(loopForm);
    const config = {
      finetune: { algo: String(data.get("algo")), total_steps: numberOrRaw(data.get("total_steps")) },
      loop: {
        episodes: numberOrRaw(data.get("episodes")),
        pairs: numberOrRaw(data.get("pairs")),
        selector: String(data.get("selector")),
        init: String(data.get("init")),
        reward: String(data.get("reward")),
      },
    };
    try {
      const run = await apiRequest(root.dataset.runsUrl, {
        method: "POST",
        body: { campaign: Number(root.dataset.campaignId), kind: "loop", config },
      });
      const body = document.querySelector("#runs tbody");
      body.querySelector("tr.empty")?.remove();
      body.prepend(runRow(run));
      statusLine.textContent = `Loop iteration ${run.id} queued.`;
    } catch (error) {
      showError(describe(error));
    } finally {
      button.disabled = false;
    }
  });
}

document.getElementById("versions").addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  showError("");
  button.disabled = true;
  const url = root.dataset.promoteUrl.replace(/\/0\/promote\/$/, `/${button.dataset.versionId}/promote/`);
  try {
    await apiRequest(url, { method: "POST" });
    window.location.reload();
  } catch (error) {
    showError(describe(error));
    button.disabled = false;
  }
});

setTimeout(refreshActive, REFRESH_MS);
