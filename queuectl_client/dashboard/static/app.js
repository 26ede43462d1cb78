// queuectl dashboard: the live stream and the routes (the URL hash); started once the other scripts ran.
"use strict";

(function () {
  const Q = window.queuectl;
  const { url, h, add, clear, fmt, unreachableNow, setUnreachable, setReachable, probe, live, parse, state, view } =
    Q;

  // --- live updates: one EventSource for the page, slower while the tab is hidden -------------

  let reopenTimer = null;
  let reopenDelay = 1000;

  function openEvents() {
    if (state.events) state.events.close();
    clearTimeout(reopenTimer);
    const slow = document.visibilityState === "hidden";
    const es = new EventSource(url("/api/events", slow ? { slow: 1 } : null));
    state.events = es;
    es.addEventListener("open", function () {
      reopenDelay = 1000;
      state.liveText = slow ? "live (slow while hidden)" : "live";
      if (!unreachableNow()) live.set("on", state.liveText);
    });
    es.addEventListener("overview", function (ev) { const ov = parse(ev.data); if (ov) applyOverview(ov); });
    es.addEventListener("jobs", function () { if (state.current && state.current.onJobs) state.current.onJobs(); });
    es.addEventListener("unreachable", function (ev) {
      const d = parse(ev.data);
      setUnreachable((d && d.error) || "no answer");
    });
    es.addEventListener("error", function (ev) {
      if (ev.data) { const d = parse(ev.data); setUnreachable((d && d.error) || "no answer"); return; }
      if (es !== state.events) return;
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
    if (document.visibilityState === "visible" && state.current && state.current.refresh) state.current.refresh();
  });

  function applyOverview(ov) {
    if (!ov || typeof ov !== "object") return;
    state.overview = ov;
    if (typeof ov.now === "number") state.skew = ov.now - Date.now() / 1000;
    setReachable();
    const dead = ov.jobs ? ov.jobs.dead : null;
    document.getElementById("nav-dead").textContent = dead ? fmt(dead) : "";
    if (state.current && state.current.onOverview) state.current.onOverview(ov);
  }
  Q.applyOverview = applyOverview;

  // --- routing ----------------------------------------------------------------------------


  function parseHash() {
    const raw = location.hash.replace(/^#/, "") || "/";
    const at = raw.indexOf("?");
    const path = at < 0 ? raw : raw.slice(0, at);
    const params = new URLSearchParams(at < 0 ? "" : raw.slice(at + 1));
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    return { parts: parts, params: params };
  }

  function route() {
    if (state.current && state.current.close) state.current.close();
    const r = parseHash();
    const page = r.parts[0] || "overview";
    for (const a of document.querySelectorAll("nav a")) {
      const on = a.getAttribute("data-route") === page || (page === "job" && a.getAttribute("data-route") === "jobs");
      if (on) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    }
    clear(view);
    const make = Object.prototype.hasOwnProperty.call(Q.pages, page) ? Q.pages[page] : null;
    const current = state.current = make ? make(r) : notFound();
    document.title = (current.title || "queuectl") + " · queuectl";
    if (current.onOverview && state.overview) current.onOverview(state.overview);
  }

  function notFound() {
    add(view, [h("h1", null, "No such page"), h("p", null, h("a", { href: "#/" }, "Back to the overview"))]);
    return { title: "Not found" };
  }

  // --- start ---------------------------------------------------------------------------------

  window.addEventListener("hashchange", route);
  route();
  probe();
  openEvents();
})();

