// queuectl dashboard, the shared part: settings, DOM helpers that only make text, times, and the
// requests to the dashboard.  The page's scripts, in order: core.js, pages.js, job.js, app.js.
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

  // Control characters and the marks that reorder text (U+202E shows "abc" as "cba") are shown as
  // escapes: a command or a name reads as it is.
  const INVISIBLE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
  function visible(s) {
    return String(s).replace(INVISIBLE, function (c) {
      const code = c.charCodeAt(0);
      return code < 0x100 ? "\\x" + code.toString(16).padStart(2, "0") : "\\u" + code.toString(16).padStart(4, "0");
    });
  }

  function shorten(s, n) { s = visible(s); return s.length > n ? s.slice(0, n - 1) + "…" : s; }

  // --- times: relative, with the UTC time on hover ------------------------------------------

  // What the files of the page share: the page shown, the latest overview, the live stream.
  const state = { current: null, overview: null, events: null, liveText: "live",
    skew: 0 }; // skew: the daemon's clock minus this browser's, from the overview's `now`

  function nowSec() { return Date.now() / 1000 + state.skew; }

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
  const live = {
    el: document.getElementById("live"),
    set(cls, text) { this.el.className = "live " + cls; this.el.textContent = text; },
  };
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
    if (state.events && state.events.readyState === EventSource.OPEN) live.set("on", state.liveText);
    if (state.current && state.current.refresh) state.current.refresh();
  }

  function needToken() {
    banner.textContent = "This dashboard needs its token: open the URL that queuectl dashboard printed.";
    banner.hidden = false;
  }

  async function probe() {
    probeTimer = null;
    try { Q.applyOverview(await getJSON("/api/overview")); } catch (e) { /* getJSON said what */ }
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


  function parse(data) { try { return JSON.parse(data); } catch (e) { return null; } }

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

  function errorLine(e) { return h("p", { class: "flash error" }, e.message); }

  function unreachableNow() { return unreachable; }

  const view = document.getElementById("view");

  // The shared names; pages.js and job.js add their pages to `pages`, app.js `applyOverview`.
  const Q = window.queuectl = {
    BASE, CSRF, STATES, LIST_ORDER, FINAL, PAGE, url, h, add, svg, clear, stateBadge, jobLink, fmt, shorten, visible, nowSec, toSec, utc, span, ago, timeEl, ApiError, unreachableNow, setUnreachable, setReachable, probe, getJSON, post, flash, act, live, parse, refresher, errorLine, state, view,
    pages: {}, applyOverview: null,
  };
})();
