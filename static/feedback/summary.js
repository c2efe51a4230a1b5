/**
 * "Done for today": what this visit achieved, shown in the page's #summary section.
 *
 * A visit (`newSession`) begins when the page opens or with "Keep labelling", and keeps every
 * answer stored during it; the summary counts those answers, the time spent and the median
 * time per pair, and shows the latest campaign counts. Only answers the server stored count.
 */

/** Each preference in words, for the status line; its keys name the summary's counters. */
export const PREFERENCE_WORDS = {
  left: "left is better",
  right: "right is better",
  equal: "equally good",
  cant_tell: "can’t tell",
};

/** A fresh visit: when it began and every answer stored during it. */
export function newSession() {
  return { startedAt: performance.now(), answers: [], endedAt: null };
}

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

/**
 * Fill the summary section's `data-summary` fields.
 * @param {HTMLElement} section The #summary section.
 * @param {{startedAt: number, answers: object[], endedAt: number|null}} session This visit.
 * @param {{label_count: number, labels_wanted: number, my_label_count: number}} progress
 */
export function renderSummary(section, session, progress) {
  const answers = session.answers;
  const set = (key, text) => {
    const el = section.querySelector(`[data-summary="${key}"]`);
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
  set("campaign", `${progress.label_count} / ${progress.labels_wanted}`);
  set("mine", String(progress.my_label_count));
}
