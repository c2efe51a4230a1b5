/**
 * The pair player: two <video> elements shown as one, driven by one clock counted in steps.
 *
 * The clock. Both clips are read on a shared axis of timesteps: step k of the left clip is
 * always shown with step k of the right clip. One clip is the leader — the one with more
 * steps (the left one on a tie) — and the clock is its media clock: it plays natively at
 * `speed` and its position, in steps, is `currentTime × its fps`. So the clock runs in steps
 * at the leader's fps; a follower recorded at another fps is played at
 * `speed × leader fps / follower fps` and is sought to step k at its own fps
 * (`(k + ¼) / follower fps`). Chromium accepts playback rates in 1/16…16×; beyond that the
 * rate is clamped and the lock is held by seeking, which looks jerky but stays on the step.
 *
 * Following. On every animation frame the follower's position (in steps) is compared with
 * the clock's: a drift under one step is trimmed by nudging its playbackRate, a larger one
 * (a loop restart, a stall, a seek) by seeking it to the clock's position. Native playback
 * keeps motion smooth — a JS clock that seeked both videos every frame would decode each
 * frame again from the last keyframe — while the two clips stay within about a step of each
 * other (a re-seek is decoded while the clock moves on, so it lands a frame or two late).
 *
 * Different lengths. The follower does not loop: once the clock passes its last step it
 * holds its last frame (an ended video keeps showing it) until the leader wraps, and then
 * restarts with it. With looping off the clock stops on the leader's last step.
 *
 * Paused, scrubbed and stepped positions are exact: every seek puts each clip a quarter of
 * a frame into step k (`(k + ¼) / fps`), inside frame k whatever the container's rounding
 * of timestamps, so both clips show step k and `round(currentTime × fps)` reads k on both.
 * Pausing snaps both clips onto the step the leader was showing.
 */

const NUDGE_GAIN = 4; // playbackRate change per second of drift: 25 ms of drift → 0.9×
const MAX_NUDGE = 0.25;
const SEEK_OFFSET = 0.25; // in frames: where a seek to step k lands inside frame k
// Chromium's accepted playbackRate range; outside it, setting the rate throws.
const MIN_RATE = 0.0625;
const MAX_RATE = 16;

/** Playback speeds offered, slowest first. */
export const SPEEDS = [0.25, 0.5, 1, 2, 4];

/** A load that was superseded by another; never shown to the user. */
export class StaleLoad extends Error {}

export function clamp(value, low, high) {
  return Math.min(high, Math.max(low, value));
}

/** Resolves once the video has its first frame (readyState ≥ HAVE_CURRENT_DATA). */
function whenLoaded(video, segmentId, signal) {
  return new Promise((resolve, reject) => {
    if (video.readyState >= HTMLMediaElement.HAVE_CURRENT_DATA) {
      resolve();
      return;
    }
    const options = { once: true, signal };
    video.addEventListener("loadeddata", () => resolve(), options);
    video.addEventListener(
      "error",
      () => {
        const code = video.error ? ` (media error ${video.error.code})` : "";
        const message = `The clip of segment ${segmentId} could not be loaded${code}.`;
        reject(new Error(`${message} Reload the page to try again.`));
      },
      options,
    );
    signal.addEventListener("abort", () => reject(new StaleLoad()), { once: true });
  });
}

/** Two videos shown as one: loads a lease's clips and keeps them on the same timestep. */
export class ClipPair {
  constructor(left, right) {
    this.left = left;
    this.right = right;
    this.lease = null;
    this.ready = Promise.resolve();
    this.loaded = false;
    this.playing = false;
    this.speed = 1;
    this.looping = true;
    /** The clock: the leader's fps and number of steps. */
    this.fps = 30;
    this.steps = 1;
    /** video → {fps, steps} of the clip it holds. */
    this.clips = new Map();
    this.leader = left;
    this.follower = right;
    this.raf = 0;
    this.abort = null;
    this.shownStep = -1;
    /** video → the time (s) it goes to once the seek in flight lands; see `seekVideo`. */
    this.pendingSeeks = new Map();
    for (const video of this.videos) {
      video.addEventListener("seeked", () => this.flushSeek(video));
    }
    /** Called with the clock's step whenever it changes (playing, seeking or stepping). */
    this.onStep = null;
    /** Called when the clock stops on the last step because looping is off. */
    this.onEnd = null;
    this.tick = this.tick.bind(this);
  }

  get videos() {
    return [this.left, this.right];
  }

  /** Start loading a lease's clips; `ready` resolves when both show their first frame. */
  load(lease) {
    this.stop();
    this.abort?.abort();
    this.abort = new AbortController();
    this.lease = lease;
    this.loaded = false;
    this.shownStep = -1;
    this.pendingSeeks.clear(); // a new source drops any seek in flight
    const waits = [];
    for (const [video, clip] of [[this.left, lease.left], [this.right, lease.right]]) {
      this.clips.set(video, { fps: clip.fps || 30, steps: clip.length || 0 });
      video.dataset.segmentId = String(clip.segment_id);
      video.dataset.assignmentId = String(lease.assignment_id);
      video.playbackRate = 1;
      video.loop = false;
      video.src = clip.clip_url;
      video.load();
      waits.push(whenLoaded(video, clip.segment_id, this.abort.signal));
    }
    this.ready = Promise.all(waits).then(() => {
      this.loaded = true;
      this.arrange();
    });
    this.ready.catch(() => {}); // failures are reported by whoever presents the pair
    return this.ready;
  }

  clear() {
    this.stop();
    this.abort?.abort();
    this.lease = null;
    this.loaded = false;
    this.pendingSeeks.clear();
    for (const video of this.videos) {
      video.removeAttribute("src");
      video.load();
      delete video.dataset.segmentId;
      delete video.dataset.assignmentId;
    }
  }

  /** {fps, steps} of the clip in `video`. */
  clip(video) {
    return this.clips.get(video) || { fps: 30, steps: 1 };
  }

  /** The clip with more steps leads and loops; the other follows and holds its end. */
  arrange() {
    for (const video of this.videos) {
      const clip = this.clip(video);
      // The lease says how many steps a clip has; the video's duration is the fallback.
      if (!clip.steps && Number.isFinite(video.duration)) {
        clip.steps = Math.round(video.duration * clip.fps);
      }
      clip.steps = Math.max(1, clip.steps);
    }
    const leftLeads = this.clip(this.left).steps >= this.clip(this.right).steps;
    [this.leader, this.follower] = leftLeads ? [this.left, this.right] : [this.right, this.left];
    this.fps = this.clip(this.leader).fps;
    this.steps = this.clip(this.leader).steps;
    this.leader.loop = this.looping;
    this.follower.loop = false;
    this.applyRates();
  }

  /** The clock's step: the frame the leader shows (or goes to, once its seek lands). */
  get step() {
    if (!this.loaded) return 0;
    return clamp(Math.floor(this.timeOf(this.leader) * this.fps + 1e-6), 0, this.steps - 1);
  }

  /** Where `video` is, or is going: a seek waiting for the one in flight counts as done. */
  timeOf(video) {
    return this.pendingSeeks.get(video) ?? video.currentTime;
  }

  /**
   * Seek `video` to `t` seconds. While a seek is in flight the new one waits for it to land
   * and only the latest waits: a burst of frame steps or a drag costs at most two decodes, and
   * no seek interrupts another — Chromium can leave a paused video `seeking` for good when a
   * seek lands on the position of the one it interrupted.
   */
  seekVideo(video, t) {
    if (video.seeking) {
      this.pendingSeeks.set(video, t);
      return;
    }
    this.pendingSeeks.delete(video);
    if (video.currentTime !== t) video.currentTime = t;
  }

  flushSeek(video) {
    if (!this.pendingSeeks.has(video)) return;
    const t = this.pendingSeeks.get(video);
    this.pendingSeeks.delete(video);
    if (video.currentTime !== t) video.currentTime = t;
    this.report();
  }

  /** The step `video` shows at clock step k: a shorter clip holds its last one. */
  stepOf(video, k) {
    return Math.min(k, this.clip(video).steps - 1);
  }

  /** Where the follower should be, in seconds of its own clip, for the clock's position. */
  followerTime() {
    const clip = this.clip(this.follower);
    const position = this.timeOf(this.leader) * this.fps; // the clock, in (fractional) steps
    return Math.min(position, clip.steps - 1 + SEEK_OFFSET) / clip.fps;
  }

  followerRate() {
    return clamp((this.speed * this.fps) / this.clip(this.follower).fps, MIN_RATE, MAX_RATE);
  }

  applyRates() {
    this.leader.playbackRate = clamp(this.speed, MIN_RATE, MAX_RATE);
    this.follower.playbackRate = this.followerRate();
  }

  setSpeed(speed) {
    this.speed = speed;
    if (this.loaded) this.applyRates();
  }

  setLooping(looping) {
    this.looping = looping;
    if (this.loaded) this.leader.loop = looping;
  }

  /** Show step k on both clips (clamped to the clock's range); playing goes on from there. */
  seekStep(k) {
    if (!this.loaded) return;
    const step = clamp(Math.round(k), 0, this.steps - 1);
    for (const video of this.videos) {
      const clip = this.clip(video);
      this.seekVideo(video, (this.stepOf(video, step) + SEEK_OFFSET) / clip.fps);
    }
    this.report();
  }

  rewind() {
    this.shownStep = -1;
    for (const video of this.videos) {
      // A seek drops readyState until it completes: `seekVideo` skips it when already there.
      if (video.readyState >= HTMLMediaElement.HAVE_METADATA) this.seekVideo(video, 0);
    }
  }

  /** Start both clips together; rejects if the browser refuses to autoplay. */
  play() {
    this.playing = true;
    if (this.loaded) {
      // With looping off, play from the last step starts over.
      if (!this.looping && (this.leader.ended || this.step >= this.steps - 1)) this.seekStep(0);
      this.align();
      this.applyRates();
    }
    const started = [this.leader.play()];
    if (!this.followerHolds()) started.push(this.follower.play());
    if (!this.raf) this.raf = requestAnimationFrame(this.tick);
    return Promise.all(started);
  }

  /** Pause both clips on the step the leader shows. */
  pause() {
    this.playing = false;
    for (const video of this.videos) video.pause();
    if (this.loaded) this.seekStep(this.step);
  }

  stop() {
    this.playing = false;
    for (const video of this.videos) video.pause();
    if (this.raf) cancelAnimationFrame(this.raf);
    this.raf = 0;
  }

  /** True once the clock is past the follower's last step: the follower shows its last frame. */
  followerHolds() {
    if (!this.loaded) return false;
    return this.leader.currentTime * this.fps >= this.clip(this.follower).steps - 0.5;
  }

  /** Put the follower exactly on the clock's position (or on its own last frame). */
  align() {
    if (this.leader.readyState < HTMLMediaElement.HAVE_METADATA) return;
    if (this.follower.readyState < HTMLMediaElement.HAVE_METADATA) return;
    this.seekVideo(this.follower, this.followerTime());
  }

  /** Tell the page when the clock's step changes. */
  report() {
    const step = this.step;
    if (step === this.shownStep) return;
    this.shownStep = step;
    this.onStep?.(step);
  }

  tick() {
    this.raf = requestAnimationFrame(this.tick);
    if (!this.loaded) return;
    this.report();
    if (!this.playing) return;
    const leader = this.leader;
    const follower = this.follower;
    const { HAVE_METADATA } = HTMLMediaElement;
    if (leader.readyState < HAVE_METADATA || follower.readyState < HAVE_METADATA) return;
    if (leader.ended && !leader.loop) {
      // Looping is off and the clock reached the end: stop both on the last step.
      this.pause();
      this.onEnd?.();
      return;
    }
    const followerFps = this.clip(follower).fps;
    if (this.followerHolds()) {
      // The clock is past the follower's end: the follower shows its last frame.
      follower.playbackRate = this.followerRate();
      const behind = (follower.duration - follower.currentTime) * followerFps; // in steps
      if (!follower.ended && !follower.seeking && behind > 1) {
        follower.currentTime = follower.duration;
      }
      return;
    }
    if (follower.seeking) return;
    if (follower.ended || follower.paused) {
      // The leader looped (or the follower stopped): restart the follower on its timestep.
      follower.currentTime = this.followerTime();
      follower.playbackRate = this.followerRate();
      follower.play().catch(() => {});
      return;
    }
    const drift = follower.currentTime * followerFps - leader.currentTime * this.fps; // steps
    if (Math.abs(drift) > 1) {
      follower.playbackRate = this.followerRate();
      follower.currentTime = this.followerTime();
      return;
    }
    const driftSeconds = drift / this.fps;
    const nudge = clamp(1 - NUDGE_GAIN * driftSeconds, 1 - MAX_NUDGE, 1 + MAX_NUDGE);
    follower.playbackRate = clamp(this.followerRate() * nudge, MIN_RATE, MAX_RATE);
  }
}
