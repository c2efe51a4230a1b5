/**
 * Leasing and answering on the labelling page: which pair is on screen, which is prefetched,
 * and how an answer is saved.
 *
 * Prefetch. Two buffers of two <video> elements each: one shows the current pair, the other
 * (hidden) holds the next lease with its clips already loaded. Answering swaps the buffers
 * at once, then saves the answer, and the same request asks for the following lease
 * (`next` in the judgement body, excluding the pair now on screen): the server stores the
 * answer first, so the answered pair is no longer the caller's open lease and cannot come
 * straight back. One request per label; if the answer could not be saved, or nothing was
 * prefetched, the page asks `next` on its own as before.
 *
 * Stopped. While the page shows the day's summary or runs the practice round (phases
 * "summary" and "practice") nothing is leased or shown; work in flight checks `stopped()`
 * after every wait and gives up quietly.
 */

import { ApiError, leaseNext, submitJudgement } from "./api.js";
import { StaleLoad } from "./player.js";
import { PREFERENCE_WORDS } from "./summary.js";

const SAVE_RETRIES = 3;

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * @param {object} page What the page shares:
 *   state (the page state); pairs (both ClipPair buffers); urls ({next, judgement(id)});
 *   view ({render, setPhase, showStatus, showError, clearError, describe, showSection});
 *   controls (the player controls: buildTimelines, clearTimelines, showStep);
 *   refreshProgress() re-read the campaign's counts.
 */
export function createLeasing({ state, pairs, urls, view, controls, refreshProgress }) {
  const { render, setPhase, showStatus, showError, clearError, describe, showSection } = view;
  const { buildTimelines, clearTimelines, showStep } = controls;

  function otherPair(pair) {
    return pair === pairs[0] ? pairs[1] : pairs[0];
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

  /**
   * Lease the pair after the current one and load it into the hidden buffer. `leased`: a
   * lease (or null, none left) the answer's save already brought; otherwise ask `next`.
   */
  function prefetchNext(leased) {
    if (state.prefetch) state.prefetch.cancelled = true;
    const current = state.current;
    const pair = otherPair(current.pair);
    const entry = { lease: null, pair, ready: false, settled: false, error: null, done: null };
    entry.cancelled = false; // replaced by a newer prefetch, or the page stopped leasing
    state.prefetch = entry;
    render();
    const leasing =
      leased === undefined ? leaseNext(urls.next, [current.lease.assignment_id]) : Promise.resolve(leased);
    // An answer given before this settles takes the entry (and awaits `done`): still load it.
    entry.done = leasing.then(
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

  /**
   * Save an answer, retrying transient failures; reports whether it was stored. With
   * `nextExclude` the same request leases the following pair: resolves to
   * `{saved, next}` where `next` is that lease, null (none left) or undefined (not leased).
   */
  async function save(assignmentId, answer, nextExclude) {
    const record = { assignmentId, answer, ok: false, status: null, detail: "" };
    const body = nextExclude ? { ...answer, next: { exclude: nextExclude } } : answer;
    for (let attempt = 0; ; attempt += 1) {
      try {
        const stored = await submitJudgement(urls.judgement(assignmentId), body);
        record.ok = true;
        state.saved += 1;
        state.session.answers.push(answer);
        state.lastSave = record;
        // A campaign closed meanwhile says so in next_detail: the page's own `next` reports it.
        const leased = stored && "next" in stored && !stored.next_detail ? stored.next : undefined;
        return { saved: true, next: leased };
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
        return { saved: false, next: undefined };
      }
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
    // With the prefetched pair on screen, the save also leases the one after it.
    const onScreen = shown ? [prefetched.lease.assignment_id] : undefined;
    let saveResult = { saved: false, next: undefined };
    const saving = save(answered.lease.assignment_id, body, onScreen).then((result) => {
      saveResult = result;
      return result.saved;
    });
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
    const stillOnScreen = onScreen && state.current && state.current.lease === prefetched.lease;
    prefetchNext(stillOnScreen ? saveResult.next : undefined);
    refreshProgress();
  }

  function setDesirability(side, value) {
    if (!state.current) return;
    state.desirability[side] = value;
    render();
  }

  return { present, dropPairs, stopped, start, lookAgain, answer, setDesirability };
}
