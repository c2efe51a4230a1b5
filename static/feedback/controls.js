/**
 * The labelling page's player controls and input: play/pause, frame step, scrub slider,
 * per-step timelines, speed and loop, and the wiring of keys, clicks and form controls.
 *
 * The controls act on the pair on screen (`state.current`) and keep the player settings in
 * `state.player`, so speed and loop carry over from pair to pair. Keys and buttons are turned
 * into actions ("prefer", "step", …) and handed to the page's `perform`, which decides what
 * each means in the current phase (labelling, practice, summary).
 */

import { SPEEDS } from "./player.js";

/** Key → [action, ...arguments] for the page's `perform`. */
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

/** Text entry keeps its keys; a focused slider, select or button does not take ours. */
function typingInto(target) {
  if (!(target instanceof HTMLElement)) return false;
  if (target.isContentEditable || target.tagName === "TEXTAREA") return true;
  const nonText = ["range", "checkbox", "radio", "button", "submit", "reset"];
  return target.tagName === "INPUT" && !nonText.includes(target.type);
}

/**
 * @param {object} page What the page shares:
 *   root (#labeller); els (its elements: scrub, speed, stepReadout, timelines); state (the
 *   page state: current, paused, player); pairs (both ClipPair buffers); render() redraw.
 */
export function createPlayerControls({ root, els, state, pairs, render }) {
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

  /** Wire keys, clicks, the slider and the speed select; `perform(action, ...args)` acts. */
  function listen(perform) {
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
  }

  return {
    buildTimelines,
    clearTimelines,
    showStep,
    togglePlay,
    stepBy,
    speedStep,
    toggleLoop,
    listen,
  };
}
