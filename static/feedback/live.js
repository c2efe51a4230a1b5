/**
 * Live campaign updates: a WebSocket to `ws/campaigns/<id>/`, with polling as the fallback.
 *
 * The server sends `{"event": "progress", campaign_id, pair_count, labels_wanted, label_count}`
 * on connect and pushes events such as `{"event": "pairs_added", added, ...counts}` later.
 * While the socket is down (it dropped, it never connected, or the server has no WebSocket
 * route) the feed polls the campaign's REST endpoint every `pollMs` and reports each answer
 * as a `progress` event with `polled: true`, so the page treats both paths alike; it keeps
 * reconnecting with exponential backoff and stops polling once a socket is open again.
 *
 * With the in-memory channel layer only events raised inside the web process arrive, so a
 * page may see progress change only through polling; that is expected, not a fault.
 */

import { campaignProgress } from "./api.js";

const BACKOFF_START_MS = 1000;
const BACKOFF_MAX_MS = 30_000;
const PING_MS = 25_000; // below the usual 30–60 s idle timeout of proxies

export class CampaignFeed {
  /**
   * @param {object} options
   * @param {string} options.socketPath Path of the campaign's WebSocket, e.g. "/ws/campaigns/3/".
   * @param {string} options.pollUrl The campaign's REST URL, read while the socket is down.
   * @param {number} options.pollMs Poll interval while the socket is down.
   * @param {(message: object) => void} options.onEvent Every event, pushed or polled.
   * @param {(mode: string) => void} [options.onMode] "connecting" | "live" | "polling".
   */
  constructor({ socketPath, pollUrl, pollMs, onEvent, onMode = () => {} }) {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    this.socketUrl = `${scheme}//${window.location.host}${socketPath}`;
    this.pollUrl = pollUrl;
    this.pollMs = pollMs;
    this.onEvent = onEvent;
    this.onMode = onMode;
    this.mode = "connecting";
    this.socket = null;
    this.backoffMs = BACKOFF_START_MS;
    this.reconnectTimer = 0;
    this.pollTimer = 0;
    this.pingTimer = 0;
    this.polls = 0; // how many polls were answered: lets tests and debugging see the fallback
  }

  start() {
    this.connect();
  }

  connect() {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = 0;
    let socket;
    try {
      socket = new WebSocket(this.socketUrl);
    } catch {
      this.socketLost();
      return;
    }
    this.socket = socket;
    socket.addEventListener("open", () => {
      if (this.socket !== socket) return;
      this.backoffMs = BACKOFF_START_MS;
      this.stopPolling();
      this.setMode("live");
      this.pingTimer = setInterval(() => this.send({ type: "ping" }), PING_MS);
    });
    socket.addEventListener("message", (event) => {
      if (this.socket !== socket) return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return; // not ours to interpret
      }
      if (message && typeof message.event === "string" && message.event !== "pong") {
        this.onEvent(message);
      }
    });
    // A socket that fails to connect fires "error" then "close"; one that drops fires "close".
    socket.addEventListener("close", () => {
      if (this.socket !== socket) return;
      this.socketLost();
    });
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
    }
  }

  socketLost() {
    this.socket = null;
    clearInterval(this.pingTimer);
    this.pingTimer = 0;
    this.setMode("polling");
    this.startPolling();
    // Backoff with jitter, so a restarted server is not hit by every page at the same instant.
    const delay = this.backoffMs * (0.75 + Math.random() * 0.5);
    this.backoffMs = Math.min(BACKOFF_MAX_MS, this.backoffMs * 2);
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  startPolling() {
    if (this.pollTimer) return;
    this.pollTimer = setTimeout(() => this.poll(), this.pollMs);
  }

  stopPolling() {
    clearTimeout(this.pollTimer);
    this.pollTimer = 0;
  }

  async poll() {
    this.pollTimer = 0;
    if (this.mode !== "polling") return;
    try {
      const campaign = await campaignProgress(this.pollUrl);
      this.polls += 1;
      if (this.mode === "polling") {
        this.onEvent({
          event: "progress",
          polled: true,
          campaign_id: campaign.id,
          pair_count: campaign.pair_count,
          labels_wanted: campaign.labels_wanted,
          label_count: campaign.label_count,
          my_label_count: campaign.my_label_count,
        });
      }
    } catch {
      // Offline or a server error: try again at the next interval.
    }
    if (this.mode === "polling") this.startPolling();
  }

  setMode(mode) {
    if (this.mode === mode) return;
    this.mode = mode;
    this.onMode(mode);
  }
}
