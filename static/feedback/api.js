/**
 * A small client for PrefLab's annotation API (v1), for pages served by the same site.
 *
 * Session authentication: the browser's session cookie is sent with every request, and
 * POSTs carry Django's CSRF token in the X-CSRFToken header (DRF enforces CSRF for
 * session-authenticated writes). Every failure is raised as an ApiError whose `detail` is
 * the server's own message when it sent one.
 */

export class ApiError extends Error {
  /**
   * @param {number} status HTTP status, or 0 when the server could not be reached.
   * @param {string} detail A sentence to show the user.
   * @param {object|null} body The parsed error body, if any.
   */
  constructor(status, detail, body = null) {
    super(detail);
    this.name = "ApiError";
    this.status = status;
    this.detail = detail;
    this.body = body;
  }

  /** Worth retrying: the network failed or the server had a transient problem. */
  get transient() {
    return this.status === 0 || this.status === 502 || this.status === 503 || this.status === 504;
  }
}

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return "";
}

/** The CSRF token: the cookie if readable, else the one the template rendered. */
export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return cookie("csrftoken") || (meta ? meta.content : "");
}

/**
 * Send a request and return the parsed JSON body, or null for 204 No Content.
 * @param {string} url
 * @param {{method?: string, body?: object}} [options]
 */
export async function apiRequest(url, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    headers["X-CSRFToken"] = csrfToken();
  }
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "Could not reach the server. Check your connection; PrefLab will retry.");
  }
  if (response.status === 204) return null;
  let data = null;
  if ((response.headers.get("Content-Type") || "").includes("json")) {
    data = await response.json().catch(() => null);
  }
  if (!response.ok) {
    const detail =
      data && typeof data.detail === "string"
        ? data.detail
        : `The server answered ${response.status} ${response.statusText}.`;
    throw new ApiError(response.status, detail, data);
  }
  return data;
}

/**
 * Lease the next pair: the caller's open lease first, unless its id is in `exclude`.
 * Resolves to the lease, or null when nothing is left (204).
 */
export function leaseNext(nextUrl, exclude = []) {
  return apiRequest(nextUrl, { method: "POST", body: { exclude } });
}

/** Record an answer in screen terms (left/right); resolves to the stored judgement. */
export function submitJudgement(judgementUrl, answer) {
  return apiRequest(judgementUrl, { method: "POST", body: answer });
}

/** The campaign with progress counts (pair_count, labels_wanted, label_count, my_label_count). */
export function campaignProgress(progressUrl) {
  return apiRequest(progressUrl);
}
