/**
 * The practice round: a few gold pairs whose better clip is known, answered with the
 * labelling page's own player and keys (← → ↑ ↓); each answer is checked at once and shown
 * (right or not, and which clip was better), then Next (Enter). At the end, a score
 * ("3 of 5 right") and Start labelling (Enter). Nothing is stored: the check endpoint only
 * compares the answer with the known one.
 *
 * When. Before an annotator's first label in a campaign that keeps practice pairs (the page
 * decides: see label.js), and on demand with "Practice again". Finishing or skipping is
 * remembered for the tab (sessionStorage), so a reload before the first label does not
 * offer the round again.
 *
 * Left/right. The server draws each pair's order per fetch, so every round is fetched anew;
 * an answer is checked against the segment shown on the left.
 *
 * The page lends its player through `host` (see the constructor); this module keeps the
 * round's own state and its panel (#practice), and exposes that state on the page root as
 * `data-practice` (the step) and `data-practice-better` (the better side, once answered).
 */

import { apiRequest } from "./api.js";

const STORAGE_PREFIX = "preflab:practice-done:";

/** Whether Enter belongs to the focused element (a link, a field, or a button of its own). */
function enterIsTaken(target, playerControls) {
  if (!(target instanceof HTMLElement)) return false;
  const control = target.closest("a, input, select, textarea, button");
  // The player's own buttons take Space and their keys, not Enter: Enter goes on with the round.
  return Boolean(control) && !control.closest(playerControls);
}

export class PracticeRound {
  /**
   * @param {object} options
   * @param {HTMLElement} options.root The labelling page's root (#labeller).
   * @param {string} options.listUrl GET: `{items: [{pair_id, left, right}]}`.
   * @param {(pairId: number) => string} options.checkUrl POST an answer for one practice pair.
   * @param {string} options.campaignKey Names the campaign in sessionStorage.
   * @param {object} options.host What the page lends:
   *   enter() stop labelling and hand the player over; load(item, index) start loading an item
   *   into the player's buffer for `index`; present(index) show that buffer; hide() put the
   *   clips away; error(text) show an error ("" clears it); leave() start (or go back to)
   *   labelling;
   *   render() redraw the page (its answer buttons follow `answering`).
   */
  constructor({ root, listUrl, checkUrl, campaignKey, host }) {
    this.root = root;
    this.listUrl = listUrl;
    this.checkUrl = checkUrl;
    this.storageKey = STORAGE_PREFIX + campaignKey;
    this.host = host;
    this.panel = root.querySelector("#practice");
    this.items = [];
    /** The campaign keeps practice pairs (as of the last fetch): "Practice again" is offered. */
    this.available = false;
    this.index = 0;
    this.right = 0;
    /** "" (not practising) | "pair" (awaiting an answer) | "checking" | "verdict" | "summary" */
    this.step = "";
    /** The server's verdict on the pair on screen: {correct, better, message}. */
    this.verdict = null;
    /** The round being fetched by `begin`, so that a second press does not start another. */
    this.starting = null;
    document.addEventListener("keydown", (event) => this.onKey(event));
  }

  get active() {
    return this.step !== "";
  }

  /** True while the pair on screen waits for an answer. */
  get answering() {
    return this.step === "pair";
  }

  /** Finished or skipped in this tab already. */
  get seen() {
    try {
      return window.sessionStorage.getItem(this.storageKey) === "1";
    } catch {
      return false; // storage disabled: offer the round again, which is harmless
    }
  }

  /**
   * Fetch the round and offer "Practice again" when there is one. Resolves to the number of
   * pairs; a failure counts as none (the round is optional; labelling must not wait on it).
   */
  async fetch() {
    let items = [];
    try {
      items = (await apiRequest(this.listUrl)).items;
    } catch {
      items = [];
    }
    if (!this.active) this.items = items;
    this.available = items.length > 0;
    this.render();
    return items.length;
  }

  /** Start a round (fetched anew, so left and right are drawn again); false if there is none. */
  begin() {
    if (this.active && this.step !== "summary") return Promise.resolve(true);
    if (!this.starting) {
      this.starting = this.start().finally(() => {
        this.starting = null;
      });
    }
    return this.starting;
  }

  async start() {
    this.step = "";
    if (!(await this.fetch())) return false;
    this.index = 0;
    this.right = 0;
    this.host.enter();
    this.host.load(this.items[0], 0);
    this.showPair();
    return true;
  }

  showPair() {
    this.step = "pair";
    this.verdict = null;
    this.host.present(this.index);
    // The next pair loads in the hidden buffer while this one is watched.
    const following = this.index + 1;
    if (following < this.items.length) this.host.load(this.items[following], following);
    this.render();
  }

  /** Check an answer ("left" | "right" | "equal" | "cant_tell") and show the verdict. */
  async answer(preference) {
    if (this.step !== "pair") return;
    const item = this.items[this.index];
    this.step = "checking";
    this.host.error("");
    this.render();
    let verdict;
    try {
      verdict = await apiRequest(this.checkUrl(item.pair_id), {
        method: "POST",
        body: { preference, left_segment_id: item.left.segment_id },
      });
    } catch (err) {
      if (this.step !== "checking" || this.items[this.index] !== item) return;
      this.step = "pair";
      this.host.error(`Your practice answer could not be checked (${err.message}). Answer again.`);
      this.render();
      return;
    }
    if (this.step !== "checking" || this.items[this.index] !== item) return; // skipped meanwhile
    this.verdict = verdict;
    if (verdict.correct) this.right += 1;
    this.step = "verdict";
    this.render();
  }

  /** From a verdict: the next pair, or the score after the last one. */
  next() {
    if (this.step !== "verdict") return;
    this.index += 1;
    if (this.index < this.items.length) {
      this.showPair();
      return;
    }
    this.step = "summary";
    this.verdict = null;
    this.host.hide();
    this.render();
  }

  /** Leave the round (finished or skipped) for labelling. */
  finish() {
    if (!this.active) return;
    try {
      window.sessionStorage.setItem(this.storageKey, "1");
    } catch {
      // Storage disabled: the round may be offered again on reload.
    }
    this.step = "";
    this.verdict = null;
    this.render();
    this.host.leave();
  }

  /** A button of the round was pressed (its data-action). */
  act(action) {
    if (action === "practice-next") this.next();
    else if (action === "practice-finish" || action === "practice-skip") this.finish();
    else if (action === "practice-again") this.begin();
  }

  /** The button Enter presses now, if any. */
  primaryButton() {
    const action = { verdict: "practice-next", summary: "practice-finish" }[this.step];
    return action ? this.panel.querySelector(`[data-action="${action}"]`) : null;
  }

  onKey(event) {
    if (event.key !== "Enter" || event.ctrlKey || event.metaKey || event.altKey) return;
    const primary = this.primaryButton();
    if (!primary || enterIsTaken(event.target, ".transport, .choice-group, .preference")) return;
    event.preventDefault();
    if (!event.repeat) primary.click();
  }

  render() {
    const step = this.step;
    const total = this.items.length;
    this.root.dataset.practice = step;
    this.root.dataset.practiceBetter = this.verdict ? this.verdict.better : "";
    this.panel.hidden = !step;
    this.panel.dataset.step = step;
    const part = (name) => this.panel.querySelector(`[data-practice-part="${name}"]`);
    part("count").textContent = String(total);
    part("position").textContent =
      step === "summary" ? "" : `Pair ${Math.min(this.index + 1, total)} of ${total}`;
    part("intro").hidden = !(this.index === 0 && (step === "pair" || step === "checking"));
    part("verdict").hidden = step !== "verdict";
    if (this.verdict) {
      part("verdict").dataset.correct = String(this.verdict.correct);
      part("message").textContent = this.verdict.message;
      part("next-label").textContent = this.index + 1 < total ? "Next" : "See your score";
    }
    part("summary").hidden = step !== "summary";
    part("score").textContent = `${this.right} of ${total} right.`;
    this.panel.querySelector('[data-action="practice-skip"]').hidden = step === "summary";
    for (const button of this.root.querySelectorAll('[data-action="practice-again"]')) {
      // The page head's button is for later; during a round only the score offers it.
      button.hidden = !this.available || (this.active && !this.panel.contains(button));
    }
    this.host.render();
  }
}
