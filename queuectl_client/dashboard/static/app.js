// queuectl dashboard: one page, routed by the URL hash, live over Server-Sent Events.
//
// Everything that comes from the queue (commands, output, names, messages) reaches the page
// through textContent, text nodes and attribute setters: never as HTML.
"use strict";

(function () {
  // --- the page's settings, from its meta tags -------------------------------------------

  function meta(name) {
    const m = document.querySelector('meta[name="' + name + '"]');
    return m ? m.getAttribute("content") || "" : "";
  }

  // BASE: "" or "/prefix" (no trailing slash).  A page served without the value filled in
  // falls back to its own path.
  let BASE = meta("base-path");
  if (BASE.startsWith("{{")) BASE = location.pathname;
  BASE = BASE.replace(/\/index\.html$/, "").replace(/\/+$/, "");
  const CSRF = meta("csrf-token");

  const STATES = ["pending", "processing", "completed", "failed", "dead"]; // counts, as `status` shows them
  const LIST_ORDER = ["processing", "pending", "failed", "dead", "completed"]; // as `list` shows them
  const FINAL = new Set(["completed", "dead"]);
  const PAGE = 50;

  function url(path, params) {
    let u = BASE + path;
    if (params) {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") q.set(k, String(v));
      const s = q.toString();
      if (s) u += "?" + s;
    }
    return u;
  }

  // --- DOM helpers: text only --------------------------------------------------------------

  function h(tag, attrs) {
    const e = document.createElement(tag);
    setAttrs(e, attrs);
    for (let i = 2; i < arguments.length; i++) add(e, arguments[i]);
    return e;
  }

  function setAttrs(e, attrs) {
    if (!attrs) return;
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.setAttribute("class", v);
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
  }

  function add(parent, kid) {
    if (kid === null || kid === undefined || kid === false) return;
    if (Array.isArray(kid)) { for (const k of kid) add(parent, k); return; }
    parent.appendChild(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }

  function svg(tag, attrs) {
    const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }

  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); return e; }

  function stateBadge(state) { return h("span", { class: "state state-" + state }, state); }

  function jobLink(id) { return h("a", { href: "#/job/" + encodeURIComponent(id), class: "mono" }, id); }

  function fmt(n) { return typeof n === "number" ? n.toLocaleString("en-US") : "—"; }

  function shorten(s, n) { s = String(s); return s.length > n ? s.slice(0, n - 1) + "…" : s; }

  // --- times: relative, with the UTC time on hover ------------------------------------------

  let skew = 0; // the daemon's clock minus this browser's, from the overview's `now`

  function nowSec() { return Date.now() / 1000 + skew; }

  function toSec(v) {
    if (v === null || v === undefined || v === "") return null;
    if (typeof v === "number") return v;
    const t = Date.parse(v);
    return isNaN(t) ? null : t / 1000;
  }

  function utc(sec) { return new Date(sec * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC"); }

  function span(seconds) {
    const a = Math.abs(seconds);
    if (a < 60) return Math.round(a) + " s";
    if (a < 3600) return Math.round(a / 60) + " min";
    if (a < 86400) return (a < 36000 ? (a / 3600).toFixed(1) : Math.round(a / 3600)) + " h";
    return (a < 864000 ? (a / 86400).toFixed(1) : Math.round(a / 86400)) + " d";
  }

  function ago(sec) {
    const d = nowSec() - sec;
    if (Math.abs(d) < 1) return "just now";
    return d > 0 ? span(d) + " ago" : "in " + span(d);
  }

  function timeEl(v) {
    const s = toSec(v);
    if (s === null) return h("span", { class: "muted" }, "—");
    return h("time", { datetime: new Date(s * 1000).toISOString(), title: utc(s), "data-t": s }, ago(s));
  }

  setInterval(function () {
    for (const t of document.querySelectorAll("time[data-t]")) t.textContent = ago(Number(t.getAttribute("data-t")));
  }, 5000);

  // --- talking to the dashboard ---------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  const banner = document.getElementById("banner");
  let unreachable = false;
  let probeTimer = null;

  function setUnreachable(message) {
    unreachable = true;
    banner.textContent = "daemon unreachable: " + String(message).replace(/^daemon unreachable:\s*/, "") + " (retrying)";
    banner.hidden = false;
    live.set("off", "daemon unreachable");
    if (!probeTimer) probeTimer = setTimeout(probe, 2000);
  }

  function setReachable() {
    if (!unreachable) return;
    unreachable = false;
    banner.hidden = true;
    banner.textContent = "";
    if (events && events.readyState === EventSource.OPEN) live.set("on", liveText);
    if (current && current.refresh) current.refresh();
  }

  function needToken() {
    banner.textContent = "This dashboard needs its token: open the URL that `queuectl dashboard` printed.";
    banner.hidden = false;
  }

  async function probe() {
    probeTimer = null;
    try { applyOverview(await getJSON("/api/overview")); } catch (e) { /* getJSON said what */ }
  }

  async function readReply(res) {
    let body = null;
    try { body = await res.json(); } catch (e) { body = null; }
    if (res.status === 502) {
      setUnreachable((body && body.error) || "no answer");
      throw new ApiError(502, (body && body.error) || "daemon unreachable");
    }
    if (res.status === 401) { needToken(); throw new ApiError(401, "this dashboard needs its token"); }
    if (!res.ok) throw new ApiError(res.status, (body && body.error) || res.status + " " + res.statusText);
    setReachable();
    return body;
  }

  async function getJSON(path, params) {
    let res;
    try {
      res = await fetch(url(path, params), { credentials: "same-origin", headers: { Accept: "application/json" } });
    } catch (e) {
      live.set("off", "dashboard unreachable");
      throw new ApiError(0, "the dashboard does not answer");
    }
    return readReply(res);
  }

  async function post(path, body) {
    const res = await fetch(url(path), {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF, Accept: "application/json" },
      body: JSON.stringify(body || {}),
    });
    return readReply(res);
  }

  const flashEl = document.getElementById("flash");
  let flashTimer = null;

  function flash(text, error) {
    flashEl.textContent = text;
    flashEl.className = "flash" + (error ? " error" : "");
    flashEl.hidden = false;
    clearTimeout(flashTimer);
    flashTimer = setTimeout(function () { flashEl.hidden = true; }, error ? 15000 : 6000);
  }

  // An action's button: disabled while its POST is in flight; the reply's message is shown.
  async function act(button, path, body, after) {
    button.disabled = true;
    try {
      const r = await post(path, body);
      flash((r && r.message) || "done");
      if (after) after(r);
    } catch (e) {
      flash(e.message, true);
    } finally {
      button.disabled = false;
    }
  }

  // --- live updates: one EventSource for the page, slower while the tab is hidden -------------

  const live = {
    el: document.getElementById("live"),
    set(cls, text) { this.el.className = "live " + cls; this.el.textContent = text; },
  };
  let overview = null;
  let events = null;
  let reopenTimer = null;
  let reopenDelay = 1000;
  let liveText = "live";

  function parse(data) { try { return JSON.parse(data); } catch (e) { return null; } }

  function openEvents() {
    if (events) events.close();
    clearTimeout(reopenTimer);
    const slow = document.visibilityState === "hidden";
    const es = new EventSource(url("/api/events", slow ? { slow: 1 } : null));
    events = es;
    es.addEventListener("open", function () {
      reopenDelay = 1000;
      liveText = slow ? "live (slow while hidden)" : "live";
      if (!unreachable) live.set("on", liveText);
    });
    es.addEventListener("overview", function (ev) { const ov = parse(ev.data); if (ov) applyOverview(ov); });
    es.addEventListener("jobs", function () { if (current && current.onJobs) current.onJobs(); });
    es.addEventListener("unreachable", function (ev) {
      const d = parse(ev.data);
      setUnreachable((d && d.error) || "no answer");
    });
    es.addEventListener("error", function (ev) {
      if (ev.data) { const d = parse(ev.data); setUnreachable((d && d.error) || "no answer"); return; }
      if (es !== events) return;
      live.set("off", "reconnecting…");
      if (es.readyState === EventSource.CLOSED) {
        // The stream was refused (a 401 or 502): ask once what is wrong, then try again later.
        probe();
        reopenTimer = setTimeout(openEvents, reopenDelay);
        reopenDelay = Math.min(reopenDelay * 2, 30000);
      }
    });
  }

  document.addEventListener("visibilitychange", function () {
    openEvents();
    if (document.visibilityState === "visible" && current && current.refresh) current.refresh();
  });

  function applyOverview(ov) {
    if (!ov || typeof ov !== "object") return;
    overview = ov;
    if (typeof ov.now === "number") skew = ov.now - Date.now() / 1000;
    setReachable();
    const dead = ov.jobs ? ov.jobs.dead : null;
    document.getElementById("nav-dead").textContent = dead ? fmt(dead) : "";
    if (current && current.onOverview) current.onOverview(ov);
  }

  // A table that refetches itself on a push: one request in flight, and one more if another
  // push came meanwhile.
  function refresher(load) {
    let busy = false;
    let again = false;
    return async function run() {
      if (busy) { again = true; return; }
      busy = true;
      try { await load(); } catch (e) { /* shown by the loader */ } finally {
        busy = false;
        if (again) { again = false; run(); }
      }
    };
  }

  // --- routing ----------------------------------------------------------------------------

  const view = document.getElementById("view");
  let current = null;

  function parseHash() {
    const raw = location.hash.replace(/^#/, "") || "/";
    const at = raw.indexOf("?");
    const path = at < 0 ? raw : raw.slice(0, at);
    const params = new URLSearchParams(at < 0 ? "" : raw.slice(at + 1));
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    return { parts: parts, params: params };
  }

  function route() {
    if (current && current.close) current.close();
    const r = parseHash();
    const page = r.parts[0] || "overview";
    for (const a of document.querySelectorAll("nav a")) {
      const on = a.getAttribute("data-route") === page || (page === "job" && a.getAttribute("data-route") === "jobs");
      if (on) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    }
    clear(view);
    const make = {
      overview: overviewPage, jobs: jobsPage, job: jobPage, dlq: dlqPage, schedules: schedulesPage, groups: groupsPage,
    }[page];
    current = make ? make(r) : notFound();
    document.title = (current.title || "queuectl") + " · queuectl";
    if (current.onOverview && overview) current.onOverview(overview);
  }

  function notFound() {
    add(view, [h("h1", null, "No such page"), h("p", null, h("a", { href: "#/" }, "Back to the overview"))]);
    return { title: "Not found" };
  }

  function errorLine(e) { return h("p", { class: "flash error" }, e.message); }

  // --- Overview ---------------------------------------------------------------------------

  function overviewPage() {
    const cards = {};
    const cardBox = h("div", { class: "cards" });
    for (const s of STATES) {
      cards[s] = h("div", { class: "num", id: "count-" + s }, "—");
      add(cardBox, h("a", { class: "card", href: "#/jobs?state=" + s, style: null },
        cards[s], h("div", { class: "label" }, stateBadge(s), " jobs")));
    }
    const busy = h("div", { class: "num", id: "workers" }, "—");
    add(cardBox, h("div", { class: "card" }, busy, h("div", { class: "label" }, "workers busy of the pool")));
    const facts = h("div", { class: "facts" });
    const paused = h("p", { id: "paused-groups" });
    const chartBox = h("div", { class: "panel" });
    const groupsBox = h("div", { class: "scroll" });

    const input = h("input", { type: "number", id: "pool-size", min: 0, max: 1024, step: 1, required: true });
    let edited = false;
    input.addEventListener("input", function () { edited = true; });
    const setBtn = h("button", { type: "submit" }, "Set");
    const form = h("form", { class: "row", id: "pool-form" },
      h("label", { for: "pool-size" }, "Workers in the pool (0 to 1024)", input), setBtn);
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      const n = Number(input.value);
      if (!Number.isInteger(n) || n < 0 || n > 1024) { flash("the pool size is a whole number from 0 to 1024", true); return; }
      act(setBtn, "/api/pool", { size: n }, function () { edited = false; probe(); });
    });

    add(view, [h("h1", null, "Overview"), cardBox, facts, paused,
      h("h2", null, "Runs ended per minute, last hour"), chartBox,
      h("h2", null, "Groups"), groupsBox, h("h2", null, "Pool"), form]);

    function update(ov) {
      for (const s of STATES) cards[s].textContent = fmt((ov.jobs || {})[s] || 0);
      const w = ov.workers || {};
      busy.textContent = fmt(w.busy) + " / " + fmt(w.configured);
      if (!edited && document.activeElement !== input && typeof w.configured === "number") input.value = w.configured;
      clear(facts);
      const started = toSec(ov.started_at);
      add(facts, [
        h("span", null, "daemon version ", h("b", null, ov.version || "?")),
        h("span", null, "pid ", h("b", null, String(ov.pid || "?"))),
        started === null ? null : h("span", null, "up ",
          h("b", { title: "started " + utc(started) }, span(nowSec() - started))),
        h("span", null, "command policy ", h("b", null, ov.policy || "none (every command allowed)")),
      ]);
      clear(paused);
      const names = ov.paused || [];
      add(paused, names.length
        ? ["Paused groups: ", names.map(function (n, i) { return [i ? ", " : "", h("b", null, n)]; })]
        : h("span", { class: "muted" }, "No group is paused."));
      clear(chartBox);
      add(chartBox, chart(ov.minutes || []));
      clear(groupsBox);
      add(groupsBox, groupsTable(ov.groups || [], false));
    }
    return { title: "Overview", onOverview: update, refresh: probe };
  }

  function minuteOf(m) {
    return Array.isArray(m) ? { t: m[0], completed: m[1], failed: m[2], dead: m[3] } : m;
  }

  // Completed runs (green) and failed or dead ones (red) per minute: inline SVG, drawn with DOM calls.
  function chart(raw) {
    const minutes = raw.map(minuteOf);
    // Drawn in about the pixels it will get, so that its labels stay legible on a phone.
    const narrow = window.innerWidth < 600;
    const W = narrow ? 360 : 720, H = narrow ? 150 : 180, L = 34, B = 22, T = 10, R = 8;
    const n = Math.max(minutes.length, 60);
    let max = 0, done = 0, bad = 0;
    for (const m of minutes) {
      max = Math.max(max, m.completed + m.failed + m.dead);
      done += m.completed; bad += m.failed + m.dead;
    }
    const top = max <= 4 ? 4 : Math.ceil(max / 4) * 4;
    const plotH = H - B - T, slot = (W - L - R) / n, bw = Math.max(1, slot - 1.5);
    const s = svg("svg", { viewBox: "0 0 " + W + " " + H, class: "chart", role: "img", id: "minutes-chart" });
    const title = svg("title");
    title.textContent = "Runs ended per minute over the last hour: " + done + " completed, " + bad + " failed or dead";
    s.appendChild(title);
    for (let i = 0; i <= 4; i++) {
      const y = T + plotH - (plotH * i) / 4;
      s.appendChild(svg("line", { x1: L, x2: W - R, y1: y, y2: y, class: "axis" }));
      const label = svg("text", { x: L - 6, y: y + 4, "text-anchor": "end" });
      label.textContent = String((top * i) / 4);
      s.appendChild(label);
    }
    minutes.forEach(function (m, i) {
      const x = L + (n - minutes.length + i) * slot;
      const g = svg("g");
      const tip = svg("title");
      const at = toSec(m.t);
      tip.textContent = (at === null ? "" : utc(at).slice(11, 16) + " UTC: ") +
        m.completed + " completed, " + m.failed + " failed, " + m.dead + " dead";
      g.appendChild(tip);
      const hOk = (plotH * m.completed) / top, hBad = (plotH * (m.failed + m.dead)) / top;
      g.appendChild(svg("rect", { x: x, y: T + plotH - hOk, width: bw, height: hOk, class: "ok" }));
      g.appendChild(svg("rect", { x: x, y: T + plotH - hOk - hBad, width: bw, height: hBad, class: "bad" }));
      // An invisible full-height target, so the tooltip is reachable on an empty minute too.
      g.appendChild(svg("rect", { x: x, y: T, width: slot, height: plotH, fill: "transparent" }));
      s.appendChild(g);
    });
    [[0, "60 min ago"], [0.5, "30 min ago"], [1, "now"]].forEach(function (p) {
      if (narrow && p[0] === 0.5) return;
      const t = svg("text", { x: L + p[0] * (W - L - R), y: H - 6, "text-anchor": p[0] === 0 ? "start" : p[0] === 1 ? "end" : "middle" });
      t.textContent = p[1];
      s.appendChild(t);
    });
    const legend = h("div", { class: "legend" },
      h("span", null, h("span", { class: "swatch ok" }), "completed: ", h("b", { id: "hour-completed" }, fmt(done)), " in the hour"),
      h("span", null, h("span", { class: "swatch bad" }), "failed or dead: ", h("b", { id: "hour-failed" }, fmt(bad)), " in the hour"),
      h("span", null, "scale: runs per minute"));
    return [s, legend];
  }

  // --- Groups (a table in the overview, and a page with pause and resume) ------------------

  function groupsTable(groups, actions, after) {
    if (!groups.length) return h("p", { class: "empty" }, "No groups.");
    const head = h("tr", null, h("th", null, "Group"), h("th", null, "Dispatch"), h("th", { class: "num" }, "Running"),
      h("th", { class: "num" }, "Cap (parallel)"), STATES.map(function (s) { return h("th", { class: "num" }, s); }),
      actions ? h("th", null, "Action") : null);
    const body = h("tbody");
    for (const g of groups) {
      const jobs = g.jobs || {};
      let button = null;
      if (actions) {
        const verb = g.paused ? "resume" : "pause";
        button = h("button", { type: "button", class: g.paused ? "" : "secondary", "data-group": g.name,
          "aria-label": (g.paused ? "Resume" : "Pause") + " group " + g.name }, g.paused ? "Resume" : "Pause");
        button.addEventListener("click", function () {
          act(button, "/api/groups/" + encodeURIComponent(g.name) + "/" + verb, {}, after);
        });
      }
      add(body, h("tr", { "data-group": g.name },
        h("td", null, h("a", { href: "#/jobs?group=" + encodeURIComponent(g.name) }, g.name)),
        h("td", null, g.paused ? h("span", { class: "state state-paused" }, "paused") : "running"),
        h("td", { class: "num" }, fmt(g.running || 0)),
        h("td", { class: "num" }, g.parallel ? fmt(g.parallel) : "no cap"),
        STATES.map(function (s) { return h("td", { class: "num", "data-state": s }, fmt(jobs[s] || 0)); }),
        actions ? h("td", null, button) : null));
    }
    return h("table", null, h("thead", null, head), body);
  }

  function groupsPage() {
    const box = h("div", { class: "scroll", id: "groups" });
    add(view, [h("h1", null, "Groups"),
      h("p", { class: "muted" }, "A paused group starts none of its jobs; the running ones go on. Counts are jobs per state."),
      box]);
    async function load() {
      try {
        const r = await getJSON("/api/groups");
        show(r.groups || []);
      } catch (e) { clear(box); add(box, errorLine(e)); }
    }
    function show(groups) { clear(box); add(box, groupsTable(groups, true, load)); }
    load();
    return { title: "Groups", refresh: load, onOverview: function (ov) { if (ov.groups) show(ov.groups); } };
  }

  // --- job tables (Jobs and DLQ) -------------------------------------------------------------

  function jobsTable(jobs, extra) {
    const head = h("tr", null, h("th", null, "ID"), h("th", null, "State"), h("th", null, "Group"),
      h("th", null, "Command"), h("th", { class: "num", title: "attempts made / attempts allowed" }, "Tries"),
      h("th", null, "Created"), h("th", null, "Finished"), extra ? extra.head : null);
    const body = h("tbody");
    for (const j of jobs) {
      add(body, h("tr", { "data-id": j.id },
        h("td", null, jobLink(j.id)),
        h("td", null, stateBadge(j.state)),
        h("td", null, j.group),
        h("td", { class: "cmd", title: j.command }, shorten(j.command, 80)),
        h("td", { class: "num" }, fmt(j.attempts) + " / " + fmt((j.max_retries || 0) + 1)),
        h("td", null, timeEl(j.created_at)),
        h("td", null, timeEl(j.finished_at)),
        extra ? extra.cell(j) : null));
    }
    return h("table", null, h("thead", null, head), body);
  }

  // Keyset paging: a stack of cursors, "Next" pushes the reply's, "Newest" goes back to none.
  function pager(onChange) {
    let stack = [null];
    const newest = h("button", { type: "button", class: "secondary", id: "newest" }, "Newest");
    const next = h("button", { type: "button", class: "secondary", id: "next" }, "Next");
    const note = h("span", { class: "muted", id: "page-note" });
    let nextCursor = null;
    newest.addEventListener("click", function () { stack = [null]; onChange(); });
    next.addEventListener("click", function () { if (nextCursor) { stack.push(nextCursor); onChange(); } });
    return {
      el: h("div", { class: "pager" }, newest, next, note),
      cursor: function () { return stack[stack.length - 1]; },
      set: function (cursor, text) {
        nextCursor = cursor;
        next.disabled = !cursor;
        newest.disabled = stack.length === 1;
        note.textContent = text;
      },
    };
  }

  function jobsPage(r) {
    const params = { state: r.params.get("state") || "", group: r.params.get("group") || "", q: r.params.get("q") || "" };
    const stateSel = h("select", { id: "f-state", name: "state" }, h("option", { value: "" }, "every state"),
      LIST_ORDER.map(function (s) { return h("option", { value: s, selected: s === params.state }, s); }));
    const groupSel = h("select", { id: "f-group", name: "group" });
    const search = h("input", { type: "search", id: "f-q", name: "q", value: params.q, placeholder: "job id or part of a command",
      autocomplete: "off" });
    const form = h("form", { class: "filters", role: "search" },
      h("label", { for: "f-state" }, "State", stateSel),
      h("label", { for: "f-group" }, "Group", groupSel),
      h("label", { for: "f-q", class: "grow" }, "Search", search),
      h("button", { type: "submit" }, "Search"));
    function go() {
      const q = new URLSearchParams();
      if (stateSel.value) q.set("state", stateSel.value);
      if (groupSel.value) q.set("group", groupSel.value);
      if (search.value.trim()) q.set("q", search.value.trim());
      const s = q.toString();
      location.hash = "#/jobs" + (s ? "?" + s : "");
    }
    form.addEventListener("submit", function (ev) { ev.preventDefault(); go(); });
    stateSel.addEventListener("change", go);
    groupSel.addEventListener("change", go);

    let groupNames = "";
    function fillGroups(ov) {
      const names = (ov && ov.groups ? ov.groups.map(function (g) { return g.name; }) : []);
      if (params.group && names.indexOf(params.group) < 0) names.push(params.group);
      const key = names.join("\n");
      if (key === groupNames || document.activeElement === groupSel) return;
      groupNames = key;
      clear(groupSel);
      add(groupSel, [h("option", { value: "" }, "every group"),
        names.map(function (n) { return h("option", { value: n, selected: n === params.group }, n); })]);
    }
    fillGroups(overview);

    const box = h("div", { class: "scroll", id: "jobs" });
    const total = h("p", { class: "muted", id: "jobs-total" });
    const pg = pager(function () { reload(); });
    add(view, [h("h1", null, "Jobs"), form, total, box, pg.el]);

    const reload = refresher(async function () {
      let res;
      try {
        res = await getJSON("/api/jobs", { state: params.state, group: params.group, q: params.q, cursor: pg.cursor(), limit: PAGE });
      } catch (e) { clear(box); add(box, errorLine(e)); return; }
      const jobs = res.jobs || [];
      clear(box);
      add(box, jobs.length ? jobsTable(jobs) : h("p", { class: "empty" }, params.q ? "No job matches on this page." : "No jobs."));
      const where = (params.state ? params.state + " " : "") + "jobs" + (params.group ? " in group " + params.group : "");
      total.textContent = typeof res.total === "number" ? fmt(res.total) + " " + where : (params.q ? "Searching " + where + " for “" + params.q + "”" : "");
      let note = jobs.length ? "showing " + fmt(jobs.length) : "";
      if (params.q && jobs.length < PAGE) {
        note = "searched " + fmt(res.scanned || 0) + " jobs" + (jobs.length ? ", " + fmt(jobs.length) + " matched" : "") +
          (res.next ? "; Next searches on" : "");
      }
      pg.set(res.next || null, note);
    });
    reload();
    return { title: "Jobs", onJobs: reload, refresh: reload, onOverview: fillGroups };
  }

  function dlqPage() {
    const box = h("div", { class: "scroll", id: "dlq" });
    const all = h("button", { type: "button", class: "danger", id: "retry-all" }, "Retry all");
    all.addEventListener("click", function () {
      if (!confirm("Send every dead job back to pending, with its attempts reset?")) return;
      act(all, "/api/dlq/retry", { all: true }, function () { reload(); });
    });
    const pg = pager(function () { reload(); });
    add(view, [h("h1", null, "Dead-letter queue"),
      h("p", { class: "muted" }, "Jobs whose retries ran out, or that were cancelled. Retry sends a job back to pending with its attempts reset."),
      h("div", { class: "row" }, all), box, pg.el]);
    const extra = {
      head: [h("th", null, "Error"), h("th", null, "Action")],
      cell: function (j) {
        const b = h("button", { type: "button", "aria-label": "Retry job " + j.id }, "Retry");
        b.addEventListener("click", function () { act(b, "/api/dlq/retry", { ids: [j.id] }, function () { reload(); }); });
        return [h("td", { title: j.error_message || "" }, shorten(j.error_message || "", 60)), h("td", null, b)];
      },
    };
    const reload = refresher(async function () {
      let res;
      try { res = await getJSON("/api/dlq", { cursor: pg.cursor() }); } catch (e) { clear(box); add(box, errorLine(e)); return; }
      const jobs = res.jobs || [];
      clear(box);
      add(box, jobs.length ? jobsTable(jobs, extra) : h("p", { class: "empty" }, "No dead jobs."));
      all.disabled = !jobs.length;
      pg.set(res.next || null, (typeof res.total === "number" ? fmt(res.total) + " dead jobs" : ""));
    });
    reload();
    return { title: "DLQ", onJobs: reload, refresh: reload };
  }

  // --- Schedules -------------------------------------------------------------------------------

  function schedulesPage() {
    const box = h("div", { class: "scroll", id: "schedules" });
    add(view, [h("h1", null, "Schedules"),
      h("p", { class: "muted" }, "Each schedule enqueues its job at every slot of its cron expression. Add and remove them with `queuectl schedule`."),
      box]);
    const reload = refresher(async function () {
      let res;
      try { res = await getJSON("/api/schedules"); } catch (e) { clear(box); add(box, errorLine(e)); return; }
      const list = res.schedules || [];
      clear(box);
      if (!list.length) { add(box, h("p", { class: "empty" }, "No schedules.")); return; }
      const head = h("tr", null, ["Name", "Cron", "Zone", "Status", "Command", "Next fire", "Last fire", "Last job"].map(function (t) {
        return h("th", null, t);
      }), h("th", { class: "num" }, "Fires"), h("th", { class: "num", title: "slots skipped while the previous fire's job ran" }, "Skipped"),
      h("th", { class: "num", title: "fires that made no job" }, "Failed"), h("th", null, "Last error"));
      const body = h("tbody");
      for (const s of list) {
        const job = s.job || {};
        add(body, h("tr", { "data-schedule": s.name },
          h("td", null, s.name), h("td", { class: "mono" }, s.cron), h("td", null, s.zone || ""),
          h("td", null, s.paused ? h("span", { class: "state state-paused" }, "paused") : "active"),
          h("td", { class: "cmd", title: job.command || "" }, shorten(job.command || "", 60)),
          h("td", null, timeEl(s.next_fire)), h("td", null, timeEl(s.last_at)),
          h("td", null, s.last_job ? jobLink(s.last_job) : "—"),
          h("td", { class: "num" }, fmt(s.fires)), h("td", { class: "num" }, fmt(s.skipped)), h("td", { class: "num" }, fmt(s.failed)),
          h("td", { title: s.last_error || "" }, shorten(s.last_error || "", 50))));
      }
      add(box, h("table", null, h("thead", null, head), body));
    });
    reload();
    return { title: "Schedules", onJobs: reload, refresh: reload };
  }

  // --- the job page -------------------------------------------------------------------------------

  const LABELS = {
    id: "ID", command: "Command", state: "State", attempts: "Attempts made", max_retries: "Retries allowed",
    priority: "Priority", timeout: "Timeout (s)", run_at: "Due at", created_at: "Created", updated_at: "Updated",
    started_at: "Started", finished_at: "Finished", next_retry_at: "Next retry", exit_code: "Exit code",
    error_message: "Error", worker: "Worker", cwd: "Directory", locked_by: "Locked by", locked_at: "Locked at",
    group: "Group", after: "After (completed)", after_any: "After (final)", blocked_by: "Waiting for",
    unique_key: "Unique key", retry_on: "Retried on", no_retry_on: "Not retried on", idle_timeout: "Idle timeout (s)",
    env: "Environment", schedule: "Schedule", slot: "Schedule slot", late: "Fired late",
  };
  const TIME_FIELDS = new Set(["run_at", "created_at", "updated_at", "started_at", "finished_at", "next_retry_at", "locked_at", "slot"]);
  const ID_LISTS = new Set(["after", "after_any", "blocked_by"]);
  const CHUNK_LIMIT = 1 << 20; // characters of live output kept in a pane; older ones leave the view

  function fieldValue(key, v) {
    if (v === null || v === undefined || (Array.isArray(v) && !v.length)) return h("span", { class: "muted" }, "—");
    if (key === "state") return stateBadge(v);
    if (TIME_FIELDS.has(key)) return timeEl(v);
    if (ID_LISTS.has(key) && Array.isArray(v)) return v.map(function (id, i) { return [i ? ", " : "", jobLink(String(id))]; });
    if (key === "env" && typeof v === "object") {
      const names = Object.keys(v);
      return h("details", null, h("summary", null, names.length + " variables"),
        h("pre", { class: "mono" }, names.map(function (n) { return n + "=" + v[n]; }).join("\n")));
    }
    if (typeof v === "boolean") return v ? "yes" : "no";
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  function jobPage(r) {
    const id = r.parts.slice(1).join("/");
    const head = h("h1", null, "Job ", h("span", { class: "mono" }, id), " ");
    const stateEl = h("span", { id: "job-state" });
    add(head, stateEl);
    const whyEl = h("p", { class: "why", id: "job-why", hidden: true });
    const fields = h("dl", { class: "fields", id: "job-fields" });
    const buttons = {};
    const actions = h("div", { class: "row", id: "job-actions" });
    for (const verb of ["cancel", "retry", "rerun", "delete"]) {
      const b = h("button", { type: "button", class: verb === "delete" || verb === "cancel" ? "danger" : "", id: "job-" + verb },
        verb[0].toUpperCase() + verb.slice(1));
      b.addEventListener("click", function () {
        if (verb === "delete" && !confirm("Delete job " + id + " and its output? This cannot be undone.")) return;
        act(b, "/api/jobs/" + encodeURIComponent(id) + "/" + verb, {}, function () {
          if (verb === "delete") { location.hash = "#/jobs"; return; }
          load();
        });
      });
      buttons[verb] = b;
      add(actions, b);
    }
    const panes = { stdout: outputPane("stdout"), stderr: outputPane("stderr") };
    const liveNote = h("p", { class: "note", id: "job-live" });
    add(view, [head, actions, whyEl, h("div", { class: "panel" }, fields),
      h("h2", null, "Output"), liveNote, h("div", { class: "outputs" }, panes.stdout.el, panes.stderr.el)]);

    let stream = null;
    let closed = false;
    let outputStarted = false;

    function showJob(job) {
      clear(stateEl); add(stateEl, stateBadge(job.state));
      clear(fields);
      for (const key of Object.keys(job)) {
        const dd = h("dd", { "data-field": key, class: key === "command" || key === "cwd" ? "mono" : null }, fieldValue(key, job[key]));
        add(fields, [h("dt", null, LABELS[key] || key), dd]);
      }
      const s = job.state;
      buttons.cancel.disabled = FINAL.has(s);
      buttons.retry.disabled = !(s === "failed" || s === "dead");
      buttons.delete.disabled = s === "processing";
    }

    function showWhy(why) {
      whyEl.textContent = why || "";
      whyEl.hidden = !why;
    }

    async function load() {
      let res;
      try { res = await getJSON("/api/jobs/" + encodeURIComponent(id)); } catch (e) {
        if (e.status === 404) {
          closeStream();
          clear(view);
          add(view, [h("h1", null, "No job " + id), h("p", null, e.message), h("p", null, h("a", { href: "#/jobs" }, "Back to the jobs"))]);
        } else flash(e.message, true);
        return null;
      }
      if (closed) return null;
      showJob(res.job);
      showWhy(res.why);
      if (!outputStarted) {
        outputStarted = true;
        await Promise.all([panes.stdout.first(), panes.stderr.first()]);
        if (!FINAL.has(res.job.state)) follow();
        else liveNote.textContent = "The job is " + res.job.state + ": its output is complete.";
      } else if (!FINAL.has(res.job.state) && !stream) follow();
      return res.job;
    }

    function follow() {
      if (closed) return;
      closeStream();
      const es = new EventSource(url("/api/jobs/" + encodeURIComponent(id) + "/events",
        { stdout: panes.stdout.liveFrom(), stderr: panes.stderr.liveFrom() }));
      stream = es;
      liveNote.textContent = "Following the output live.";
      es.addEventListener("job", function (ev) { const j = parse(ev.data); if (j) showJob(j.job || j); });
      es.addEventListener("output", function (ev) {
        const d = parse(ev.data);
        if (d && panes[d.stream]) panes[d.stream].live(d.data || "", d.offset);
      });
      es.addEventListener("end", function () {
        closeStream();
        liveNote.textContent = "The job ended: its output is complete.";
        load();
      });
      es.addEventListener("error", function () {
        if (es.readyState === EventSource.CLOSED && es === stream) {
          stream = null;
          liveNote.textContent = "Live output interrupted; retrying…";
          setTimeout(function () { if (!closed && !stream) load(); }, 2000);
        }
      });
    }

    function closeStream() { if (stream) { stream.close(); stream = null; } }

    function outputPane(name) {
      const head = h("pre", { id: name + "-head" });
      const tail = h("pre", { id: name + "-tail" });
      const more = h("button", { type: "button", class: "secondary more", id: name + "-more", hidden: true }, "Load more");
      const dropped = h("p", { class: "note", hidden: true }, "Earlier live output left the view (reload the page to read it from the start).");
      const sizeEl = h("small", { id: name + "-size" });
      const body = h("div", { class: "body", id: name, tabindex: 0, "aria-label": name });
      add(body, [head, more, dropped, tail]);
      const el = h("section", { class: "pane" }, h("h2", null, name, sizeEl), body);
      let loaded = 0; // bytes read into `head`, from the start of the file
      let size = 0;
      let liveStart = null; // the offset the live stream began at (the gap before it: Load more)
      let tailChars = 0;

      function atBottom() { return body.scrollTop + body.clientHeight >= body.scrollHeight - 4; }

      function showSize() {
        sizeEl.textContent = size ? fmt(size) + " bytes" + (loaded < size && more.hidden === false ? ", " + fmt(loaded) + " shown" : "") : "empty";
      }

      async function fetchFrom(offset) {
        const r = await getJSON("/api/jobs/" + encodeURIComponent(id) + "/output", { stream: name, offset: offset });
        let text = r.data || "";
        const end = typeof r.offset === "number" ? r.offset : offset;
        if (liveStart !== null && end > liveStart) {
          // The live stream already holds the bytes past liveStart: keep only those before it.
          const bytes = new TextEncoder().encode(text).slice(0, Math.max(0, liveStart - offset));
          text = new TextDecoder().decode(bytes);
        }
        head.appendChild(document.createTextNode(text));
        loaded = liveStart !== null ? Math.min(end, liveStart) : end;
        size = Math.max(size, r.size || 0);
        more.hidden = !(r.more && (liveStart === null || loaded < liveStart));
        if (!more.hidden) more.textContent = "Load more (" + fmt(Math.round(((liveStart !== null ? liveStart : size) - loaded) / 1024)) + " KiB not shown)";
        showSize();
      }

      more.addEventListener("click", async function () {
        more.disabled = true;
        try { await fetchFrom(loaded); } catch (e) { flash(e.message, true); } finally { more.disabled = false; }
      });

      return {
        el: el,
        first: async function () { try { await fetchFrom(0); } catch (e) { if (e.status !== 404) flash(e.message, true); } },
        liveFrom: function () {
          if (liveStart === null) liveStart = more.hidden ? loaded : size;
          return liveStart;
        },
        live: function (text, offset) {
          const stick = atBottom();
          tail.appendChild(document.createTextNode(text));
          tailChars += text.length;
          while (tailChars > CHUNK_LIMIT && tail.firstChild) {
            tailChars -= tail.firstChild.textContent.length;
            tail.removeChild(tail.firstChild);
            dropped.hidden = false;
          }
          if (typeof offset === "number") size = Math.max(size, offset);
          showSize();
          if (stick) body.scrollTop = body.scrollHeight;
        },
      };
    }

    load();
    return {
      title: "Job " + id,
      refresh: load,
      close: function () { closed = true; closeStream(); },
    };
  }

  // --- start ---------------------------------------------------------------------------------

  window.addEventListener("hashchange", route);
  route();
  probe();
  openEvents();
})();
