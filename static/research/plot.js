/**
 * A tiny plotting module: plain SVG (and one HTML table), no library, no build step.
 *
 * Every chart replaces the contents of its container and draws at the container's current
 * width in CSS pixels (so text keeps its size; redraw on resize), takes its colours from
 * the page's CSS (classes, not inline
 * colours, so dark mode follows), labels itself for screen readers (role="img" plus an
 * aria-label summary) and puts a <title> tooltip on each mark. Marks carry `data-key` and
 * `data-value`, which is what the browser tests count and read.
 *
 *   lineChart(container, points, options)  one series over time, as an area under a line
 *   barChart(container, bars, options)     horizontal bars, one per category
 *   splitBar(container, parts, options)    one bar split into shares, with a reference line
 *   heatMap(container, matrix, options)    a table whose cells are shaded by their value
 */

const SVG_NS = "http://www.w3.org/2000/svg";

/** An SVG element with attributes and optional text. */
export function svgElement(name, attrs = {}, text = null) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) node.setAttribute(key, String(value));
  }
  if (text !== null) node.textContent = String(text);
  return node;
}

function titled(node, title) {
  if (title) node.append(svgElement("title", {}, title));
  return node;
}

/** The container's drawable width in CSS pixels (a default while it is not laid out). */
function widthOf(container, fallback = 480) {
  const width = Math.floor(container.clientWidth);
  return width > 80 ? width : fallback;
}

function frame(container, { width, height, label, className }) {
  const svg = svgElement("svg", {
    class: `chart ${className}`,
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "img",
    "aria-label": label,
    preserveAspectRatio: "xMinYMin meet",
  });
  container.replaceChildren(svg);
  return svg;
}

function empty(container, message) {
  const note = document.createElement("p");
  note.className = "chart-empty";
  note.textContent = message;
  container.replaceChildren(note);
}

/** "Nice" round tick values covering [0, max]: 1, 2 or 5 times a power of ten apart. */
export function niceTicks(max, count = 4) {
  if (!(max > 0)) return [0, 1];
  const rough = max / count;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough) || rough;
  const ticks = [];
  for (let value = 0; value < max + step * 0.999; value += step)
    ticks.push(Number(value.toPrecision(12)));
  return ticks;
}

const defaultFormat = (value) =>
  value === null || value === undefined
    ? "—"
    : Number.isInteger(value)
      ? String(value)
      : value.toFixed(2);

/**
 * One series over time: an area under a line, with a dot per point.
 * @param {Element} container
 * @param {{t: Date, value: number, label?: string}[]} points in time order
 * @param {object} options
 * @param {string} options.label what the chart shows, for screen readers
 * @param {(v: number) => string} [options.format] values on the axis and in tooltips
 * @param {(t: Date) => string} [options.formatTime] times on the axis and in tooltips
 * @param {string} [options.empty] what to say when there is no point
 */
export function lineChart(
  container,
  points,
  { label, format = defaultFormat, formatTime, empty: none } = {},
) {
  if (!points.length) {
    empty(container, none || "Nothing to plot yet.");
    return;
  }
  const width = widthOf(container);
  const height = 200;
  const m = { top: 12, right: 16, bottom: 28, left: 44 };
  const svg = frame(container, { width, height, label, className: "line-chart" });
  const times = points.map((p) => p.t.getTime());
  let t0 = Math.min(...times);
  let t1 = Math.max(...times);
  if (t1 === t0) {
    // One point: centre it in a window of an hour each side.
    t0 -= 3_600_000;
    t1 += 3_600_000;
  }
  const ticks = niceTicks(Math.max(...points.map((p) => p.value)));
  const yMax = ticks[ticks.length - 1];
  const x = (t) => m.left + ((t - t0) / (t1 - t0)) * (width - m.left - m.right);
  const y = (v) => height - m.bottom - (v / yMax) * (height - m.top - m.bottom);

  const axis = svg.appendChild(svgElement("g", { class: "axis" }));
  for (const tick of ticks) {
    axis.append(
      svgElement("line", {
        class: "grid",
        x1: m.left,
        x2: width - m.right,
        y1: y(tick),
        y2: y(tick),
      }),
      svgElement(
        "text",
        { x: m.left - 6, y: y(tick), dy: "0.32em", "text-anchor": "end" },
        format(tick),
      ),
    );
  }
  const timeText = formatTime || ((t) => t.toLocaleString());
  const first = points[0].t;
  const last = points[points.length - 1].t;
  axis.append(
    svgElement(
      "text",
      {
        x: x(first.getTime()),
        y: height - 8,
        "text-anchor": points.length > 1 ? "start" : "middle",
      },
      timeText(first),
    ),
  );
  if (points.length > 1) {
    axis.append(
      svgElement(
        "text",
        { x: x(last.getTime()), y: height - 8, "text-anchor": "end" },
        timeText(last),
      ),
    );
  }

  const coords = points.map((p) => [x(p.t.getTime()), y(p.value)]);
  const line = coords
    .map(([px, py], i) => `${i ? "L" : "M"}${px.toFixed(1)},${py.toFixed(1)}`)
    .join("");
  const base = y(0).toFixed(1);
  const [firstX, lastX] = [coords[0][0].toFixed(1), coords[coords.length - 1][0].toFixed(1)];
  const area = `${line}L${lastX},${base}L${firstX},${base}Z`;
  svg.append(
    svgElement("path", { class: "area", d: area }),
    svgElement("path", { class: "line", d: line }),
  );
  const dots = svg.appendChild(svgElement("g", { class: "points" }));
  points.forEach((point, i) => {
    dots.append(
      titled(
        svgElement("circle", {
          class: "point",
          cx: coords[i][0].toFixed(1),
          cy: coords[i][1].toFixed(1),
          r: points.length > 60 ? 2 : 3.5,
          "data-key": point.t.toISOString(),
          "data-value": point.value,
        }),
        point.label || `${timeText(point.t)}: ${format(point.value)}`,
      ),
    );
  });
}

/**
 * Horizontal bars, one per category, scaled to `max` (or to the largest value).
 * A bar whose value is null is drawn as an empty track with "—".
 * @param {Element} container
 * @param {{key: string, label: string, value: number|null, title?: string, tone?: string}[]} bars
 * @param {object} options
 * @param {string} options.label what the chart shows, for screen readers
 * @param {number} [options.max] the value of a full bar (default: a round number above the largest)
 * @param {(v: number) => string} [options.format] values beside the bars and in tooltips
 * @param {string} [options.empty] what to say when there is no bar
 * @param {number} [options.reference] a value marked by a dashed line (e.g. chance level)
 */
export function barChart(
  container,
  bars,
  { label, max, format = defaultFormat, empty: none, reference } = {},
) {
  if (!bars.length) {
    empty(container, none || "Nothing to plot yet.");
    return;
  }
  const width = widthOf(container);
  const row = 24;
  // Room for the longest category name (about 6.5 px a character), within a third of the width.
  const longest = Math.max(...bars.map((b) => Math.min(String(b.label).length, 20)));
  const m = {
    top: 4,
    right: 52,
    bottom: 4,
    left: Math.min(Math.max(48, longest * 6.5 + 12), width / 3),
  };
  const height = m.top + m.bottom + row * bars.length;
  const svg = frame(container, { width, height, label, className: "bar-chart" });
  const values = bars.map((b) => b.value).filter((v) => v !== null && v !== undefined);
  const top = max ?? niceTicks(Math.max(0, ...values)).at(-1);
  const scale = (v) => (Math.max(0, v) / (top || 1)) * (width - m.left - m.right);
  bars.forEach((bar, i) => {
    const yTop = m.top + i * row;
    const g = svg.appendChild(svgElement("g", { class: "bar-row" }));
    g.append(
      svgElement(
        "text",
        {
          class: "bar-label",
          x: m.left - 8,
          y: yTop + row / 2,
          dy: "0.32em",
          "text-anchor": "end",
        },
        truncate(bar.label, Math.floor((m.left - 12) / 6.5)),
      ),
      svgElement("rect", {
        class: "track",
        x: m.left,
        y: yTop + 4,
        width: width - m.left - m.right,
        height: row - 8,
      }),
    );
    const missing = bar.value === null || bar.value === undefined;
    g.append(
      titled(
        svgElement("rect", {
          class: `bar${bar.tone ? ` bar-${bar.tone}` : ""}${missing ? " bar-missing" : ""}`,
          x: m.left,
          y: yTop + 4,
          width: missing ? 0 : scale(bar.value).toFixed(1),
          height: row - 8,
          "data-key": bar.key,
          "data-value": missing ? "" : bar.value,
        }),
        bar.title || `${bar.label}: ${format(bar.value)}`,
      ),
      svgElement(
        "text",
        {
          class: "bar-value",
          x: m.left + (missing ? 0 : scale(bar.value)) + 6,
          y: yTop + row / 2,
          dy: "0.32em",
        },
        missing ? "—" : format(bar.value),
      ),
    );
  });
  if (reference !== undefined && reference !== null) {
    const rx = m.left + scale(reference);
    svg.append(svgElement("line", { class: "reference", x1: rx, x2: rx, y1: 0, y2: height }));
  }
}

function truncate(text, length) {
  const value = String(text);
  return value.length > length ? `${value.slice(0, length - 1)}…` : value;
}

/**
 * One bar split into parts that add up to the whole, with an optional reference share
 * (a dashed line, e.g. 0.5 for "no position bias").
 * @param {{key: string, label: string, value: number}[]} parts
 */
export function splitBar(container, parts, { label, reference, empty: none } = {}) {
  const total = parts.reduce((sum, p) => sum + p.value, 0);
  if (!total) {
    empty(container, none || "Nothing to plot yet.");
    return;
  }
  const width = widthOf(container);
  const height = 64;
  const m = { left: 4, right: 4 };
  const span = width - m.left - m.right;
  const svg = frame(container, { width, height, label, className: "split-bar" });
  let x = m.left;
  parts.forEach((part, i) => {
    const w = (part.value / total) * span;
    const share = part.value / total;
    svg.append(
      titled(
        svgElement("rect", {
          class: `part part-${i}`,
          x: x.toFixed(1),
          y: 8,
          width: w.toFixed(1),
          height: 28,
          "data-key": part.key,
          "data-value": part.value,
        }),
        `${part.label}: ${part.value} (${(share * 100).toFixed(0)}%)`,
      ),
    );
    if (w > 60) {
      svg.append(
        svgElement(
          "text",
          { class: "part-label", x: x + w / 2, y: 22, dy: "0.32em", "text-anchor": "middle" },
          `${part.label} ${(share * 100).toFixed(0)}%`,
        ),
      );
    }
    x += w;
  });
  if (reference !== undefined && reference !== null) {
    const rx = m.left + reference * span;
    svg.append(
      svgElement("line", { class: "reference", x1: rx, x2: rx, y1: 2, y2: 42 }),
      svgElement(
        "text",
        { class: "reference-label", x: rx, y: 56, "text-anchor": "middle" },
        `${(reference * 100).toFixed(0)}%`,
      ),
    );
  }
}

/**
 * A square table of values in [0, 1], each cell shaded by its value (CSS reads `--v`).
 * @param {string[]} names row and column headers, in order
 * @param {(i: number, j: number) => {value: number|null, title: string}|null} cell
 *   null for a cell with nothing to show (the diagonal, a pair with nothing in common)
 */
export function heatMap(
  container,
  names,
  cell,
  { caption, format = (v) => v.toFixed(2), empty: none } = {},
) {
  if (names.length < 2) {
    empty(container, none || "Nothing to compare yet.");
    return;
  }
  const table = document.createElement("table");
  table.className = "heatmap";
  if (caption) table.createCaption().textContent = caption;
  const head = table.createTHead().insertRow();
  head.append(document.createElement("td"));
  for (const name of names) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = name;
    head.append(th);
  }
  const body = table.createTBody();
  names.forEach((name, i) => {
    const tr = body.insertRow();
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = name;
    tr.append(th);
    names.forEach((_, j) => {
      const td = tr.insertCell();
      const content = i === j ? null : cell(i, j);
      if (!content || content.value === null || content.value === undefined) {
        td.className = "blank";
        td.textContent = i === j ? "" : "—";
        if (content && content.title) td.title = content.title;
        return;
      }
      td.className = "shaded";
      td.dataset.value = String(content.value);
      td.style.setProperty("--v", String(Math.max(0, Math.min(1, content.value))));
      td.textContent = format(content.value);
      td.title = content.title;
    });
  });
  container.replaceChildren(table);
}
