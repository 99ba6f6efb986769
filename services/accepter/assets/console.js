// The Sprayer operator console: asks for the admin token (kept in this tab's sessionStorage
// only), reads GET /admin/v1/stats and draws it: queue depths, dead letters, and per app the
// messages accepted and the deliveries by status over the chosen window. Plain DOM and SVG; all
// text from the server goes in through textContent, never as markup.
"use strict";

(() => {
  const TOKEN_KEY = "sprayer.console.token";
  const REFRESH_MS = 15000;
  const MOST_APPS = 24;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const STATUS_COLORS = {
    delivered: "#16a34a", read: "#0d9488", sent: "#3b82f6", queued: "#9aa5b1",
    unregistered: "#8b5cf6", expired: "#f59e0b", failed: "#dc2626", cancelled: "#64748b",
  };
  const STATUS_ORDER = Object.keys(STATUS_COLORS);
  const ACCEPTED_COLOR = "#2563eb";

  const byId = (id) => document.getElementById(id);
  let timer = null;

  function html(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props)) {
      if (name.startsWith("data-")) node.setAttribute(name, value);
      else node[name] = value;
    }
    node.append(...children);
    return node;
  }

  function svg(tag, attributes = {}, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
    node.append(...children);
    return node;
  }

  function setStatus(state, text) {
    const status = byId("status");
    status.dataset.state = state;
    status.textContent = text;
  }

  function clock(ms, seconds = false) {
    const date = new Date(ms);
    const two = (n) => String(n).padStart(2, "0");
    const time = `${two(date.getHours())}:${two(date.getMinutes())}`;
    return seconds ? `${time}:${two(date.getSeconds())}` : time;
  }

  const sum = (values) => values.reduce((total, value) => total + value, 0);

  // 0, 1, 2, 5, 10, 20, 50...: a round upper bound for an axis.
  function roundUp(value) {
    if (value <= 1) return 1;
    const power = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
    return 10 * power;
  }

  // ---- charts -----------------------------------------------------------------------------------

  const WIDTH = 520, HEIGHT = 170, LEFT = 36, RIGHT = 8, TOP = 8, BOTTOM = 20;

  // A time chart: `series` is [{ label, color, values }], stacked bars or one area line.
  function timeChart(times, series, kind, bucketSeconds) {
    const plotWidth = WIDTH - LEFT - RIGHT, plotHeight = HEIGHT - TOP - BOTTOM;
    const count = times.length;
    const totals = times.map((_, i) => sum(series.map((one) => one.values[i] || 0)));
    const top = roundUp(Math.max(0, ...totals));
    const x = (i) => LEFT + (plotWidth * i) / count;
    const y = (value) => TOP + plotHeight - (plotHeight * value) / top;
    const chart = svg("svg", {
      class: "chart", "data-kind": kind, viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img",
    });
    for (const value of Number.isInteger(top / 2) ? [0, top / 2, top] : [0, top]) {
      chart.append(svg("line", { x1: LEFT, x2: WIDTH - RIGHT, y1: y(value), y2: y(value), stroke: "#e1e5ea" }));
      const label = svg("text", { x: LEFT - 4, y: y(value) + 3, "text-anchor": "end" });
      label.textContent = value;
      chart.append(label);
    }
    const ticks = [[0, "start", x(0)], [Math.floor(count / 2), "middle", x(Math.floor(count / 2))],
      [count - 1, "end", WIDTH - RIGHT]];
    for (const [i, anchor, at] of ticks) {
      const label = svg("text", { x: at, y: HEIGHT - 5, "text-anchor": anchor });
      label.textContent = clock(times[i]);
      chart.append(label);
    }
    const per = bucketSeconds === 60 ? "minute" : `${bucketSeconds / 60} minutes`;
    if (kind === "bars") {
      const barWidth = Math.max(1, plotWidth / count - 1);
      times.forEach((time, i) => {
        let base = 0;
        for (const one of series) {
          const value = one.values[i] || 0;
          if (value === 0) continue;
          const bar = svg("rect", {
            x: x(i), width: barWidth, y: y(base + value), height: y(base) - y(base + value), fill: one.color,
          });
          const title = svg("title");
          title.textContent = `${clock(time)} (${per}): ${value} ${one.label}`;
          bar.append(title);
          chart.append(bar);
          base += value;
        }
      });
    } else {
      for (const one of series) {
        const points = one.values.map((value, i) => [x(i) + plotWidth / count / 2, y(value)]);
        const line = points.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`).join(" ");
        const first = points[0][0].toFixed(1), last = points[points.length - 1][0].toFixed(1);
        chart.append(svg("polygon", {
          points: `${first},${y(0)} ${line} ${last},${y(0)}`, fill: one.color, "fill-opacity": 0.18,
        }));
        chart.append(svg("polyline", { points: line, fill: "none", stroke: one.color, "stroke-width": 2 }));
        points.forEach(([px, py], i) => {
          if (!one.values[i]) return;
          const dot = svg("circle", { cx: px, cy: py, r: 2.5, fill: one.color });
          const title = svg("title");
          title.textContent = `${clock(times[i])} (${per}): ${one.values[i]} ${one.label}`;
          dot.append(title);
          chart.append(dot);
        });
      }
    }
    chart.append(svg("line", { x1: LEFT, x2: WIDTH - RIGHT, y1: y(0), y2: y(0), stroke: "#9aa5b1" }));
    return chart;
  }

  function legend(series) {
    return html("div", { className: "legend" }, ...series.map((one) => html("span", {},
      svg("svg", { width: 10, height: 10 }, svg("rect", { width: 10, height: 10, rx: 2, fill: one.color })),
      `${one.label} ${sum(one.values)}`)));
  }

  // Horizontal bars, one per queue.
  function queueChart(queues) {
    const row = 20, labelWidth = 190, valueWidth = 110;
    const height = queues.length * row + 4;
    const top = roundUp(Math.max(0, ...queues.map((queue) => queue.messages)));
    const barSpace = WIDTH - labelWidth - valueWidth;
    const chart = svg("svg", { class: "chart", "data-kind": "queues", viewBox: `0 0 ${WIDTH} ${height}`, role: "img" });
    queues.forEach((queue, i) => {
      const middle = i * row + row / 2 + 2;
      const name = svg("text", { x: 0, y: middle + 3 });
      name.textContent = queue.queue;
      const color = queue.queue.endsWith(".dead") ? "#dc2626"
        : queue.queue.includes(".retry.") ? "#f59e0b" : queue.queue === "status" ? "#0d9488" : "#2563eb";
      const width = queue.messages ? Math.max(2, (barSpace * queue.messages) / top) : 0;
      const bar = svg("rect", { x: labelWidth, y: middle - 6, width, height: 12, rx: 2, fill: color });
      const track = svg("rect", { x: labelWidth, y: middle - 6, width: barSpace, height: 12, rx: 2, fill: "#f0f2f5" });
      const value = svg("text", { x: labelWidth + barSpace + 6, y: middle + 3 });
      const consumers = queue.consumers === 1 ? "1 consumer" : `${queue.consumers} consumers`;
      value.textContent = `${queue.messages} · ${consumers}`;
      chart.append(track, bar, name, value);
    });
    return chart;
  }

  // ---- the board ------------------------------------------------------------------------------

  function renderQueues(stats) {
    byId("polled").textContent = stats.queues_polled_at
      ? `as of ${clock(Date.parse(stats.queues_polled_at), true)}`
      : "no answer from RabbitMQ yet";
    const box = byId("queues");
    box.replaceChildren(stats.queues.length
      ? queueChart(stats.queues)
      : html("p", { className: "note" }, "no queue known yet"));
    const dead = byId("dead");
    dead.replaceChildren(stats.dead_letters.length
      ? html("div", { className: "tiles" }, ...stats.dead_letters.map((queue) => html("div",
        { className: "tile", "data-queue": queue.queue, "data-nonzero": String(queue.messages > 0) },
        html("div", { className: "count" }, String(queue.messages)),
        html("div", { className: "name" }, queue.queue))))
      : html("p", { className: "note" }, "no dead-letter queue known yet"));
  }

  function renderEndpoints(endpoints) {
    const box = byId("event-endpoints");
    if (!endpoints.length) {
      box.replaceChildren(html("p", { className: "note" }, "no event endpoint yet"));
      return;
    }
    const state = (endpoint) => !endpoint.enabled ? "disabled"
      : endpoint.failing_since ? "failing" : "ok";
    const when = (at) => at ? clock(Date.parse(at), true) : "—";
    box.replaceChildren(html("table", { className: "endpoints" },
      html("thead", {}, html("tr", {}, ...["app", "endpoint", "URL", "state", "lag", "last taken", "last error"]
        .map((title) => html("th", {}, title)))),
      html("tbody", {}, ...endpoints.map((endpoint) => html("tr",
        { "data-state": state(endpoint), "data-endpoint": endpoint.id },
        html("td", {}, html("code", {}, endpoint.app)),
        html("td", {}, html("code", {}, endpoint.id)),
        html("td", { className: "url" }, endpoint.url),
        html("td", { className: "state" }, state(endpoint) === "failing"
          ? `failing since ${when(endpoint.failing_since)}` : state(endpoint)),
        html("td", { className: "lag" }, String(endpoint.lag)),
        html("td", {}, when(endpoint.last_success)),
        html("td", { className: "error" }, endpoint.disabled_reason || endpoint.last_error || ""))))));
  }

  function renderTimers(timers) {
    const box = byId("timers");
    const overdue = timers.overdue > 0;
    box.replaceChildren(html("p", { className: overdue ? "timers overdue" : "timers",
      "data-pending": String(timers.pending), "data-overdue": String(timers.overdue) },
      `${timers.pending} pending (scheduled sends, step deadlines, steps starting)`,
      overdue ? `, ${timers.overdue} overdue by more than a second: is a scheduler running?` : ", none overdue"));
  }

  function renderApp(app, times, bucketSeconds) {
    const statuses = Object.keys(app.deliveries)
      .sort((a, b) => (STATUS_ORDER.indexOf(a) + 1 || 99) - (STATUS_ORDER.indexOf(b) + 1 || 99));
    const deliveries = statuses.map((status) => ({
      label: status, color: STATUS_COLORS[status] || "#51606f", values: app.deliveries[status],
    }));
    const accepted = [{ label: "accepted", color: ACCEPTED_COLOR, values: app.accepted }];
    const totals = [`${sum(app.accepted)} accepted`,
      ...deliveries.map((one) => `${sum(one.values)} ${one.label}`)].join(" · ");
    return html("article", { "data-app": app.id },
      html("h3", {}, app.name, html("code", {}, app.id)),
      html("p", { className: "totals" }, totals),
      html("div", { className: "charts" },
        html("figure", {},
          html("figcaption", {}, "Messages accepted"),
          timeChart(times, accepted, "area", bucketSeconds),
          legend(accepted)),
        html("figure", {},
          html("figcaption", {}, "Deliveries by status reached"),
          timeChart(times, deliveries, "bars", bucketSeconds),
          deliveries.length ? legend(deliveries) : html("div", { className: "legend" }, "no feedback yet"))));
  }

  function render(stats) {
    const start = Date.parse(stats.start);
    const step = stats.bucket_seconds * 1000;
    const times = Array.from({ length: stats.buckets }, (_, i) => start + i * step);
    renderQueues(stats);
    renderEndpoints(stats.event_endpoints || []);
    renderTimers(stats.timers || { pending: 0, overdue: 0 });
    const per = stats.bucket_seconds === 60 ? "per minute" : `per ${stats.bucket_seconds / 60} minutes`;
    byId("bucket").textContent = `${per}, last ${stats.window}`;
    const shown = stats.apps.slice(0, MOST_APPS).map((app) => renderApp(app, times, stats.bucket_seconds));
    if (!shown.length) shown.push(html("p", { className: "note" }, "no traffic in this window"));
    if (stats.apps.length > MOST_APPS) {
      shown.push(html("p", { className: "note" }, `and ${stats.apps.length - MOST_APPS} quieter apps`));
    }
    byId("apps").replaceChildren(...shown);
    const board = byId("board");
    board.dataset.apps = String(stats.apps.length);
    board.hidden = false;
  }

  // ---- token and refresh ----------------------------------------------------------------------

  function signedIn(on) {
    byId("login").hidden = on;
    byId("controls").hidden = !on;
    if (!on) {
      byId("board").hidden = true;
      clearInterval(timer);
      timer = null;
    } else if (!timer) {
      timer = setInterval(load, REFRESH_MS);
    }
  }

  async function load() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) return;
    setStatus("loading", "loading…");
    let response, body;
    try {
      response = await fetch(`admin/v1/stats?window=${encodeURIComponent(byId("window").value)}`, {
        headers: { Authorization: `Bearer ${token}` }, cache: "no-store",
      });
      body = await response.json().catch(() => null);
    } catch (error) {
      setStatus("error", `cannot reach the admin API: ${error.message}`);
      return;
    }
    if (response.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      signedIn(false);
      setStatus("error", (body && body.detail) || "the admin token is not valid");
      return;
    }
    if (!response.ok) {
      setStatus("error", `the admin API answered ${response.status}${body && body.detail ? `: ${body.detail}` : ""}`);
      return;
    }
    render(body);
    byId("updated").textContent = `updated ${clock(Date.now(), true)}, every ${REFRESH_MS / 1000} s`;
    setStatus("ready", "live");
  }

  byId("login").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = byId("token").value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    byId("token").value = "";
    signedIn(true);
    load();
  });
  byId("signout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    signedIn(false);
    setStatus("signed-out", "enter the admin token");
  });
  byId("refresh").addEventListener("click", load);
  byId("window").addEventListener("change", load);

  if (sessionStorage.getItem(TOKEN_KEY)) {
    signedIn(true);
    load();
  }
})();
