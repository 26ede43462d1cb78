// queuectl dashboard: the Overview (with its chart), Groups, Jobs, DLQ and Schedules pages.
"use strict";

(function () {
  const Q = window.queuectl;
  const { STATES, LIST_ORDER, PAGE, h, add, svg, clear, stateBadge, jobLink, fmt, shorten, nowSec, toSec, utc, span,
    ago, timeEl, probe, getJSON, flash, act, refresher, errorLine, state, view } = Q;

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

    const drawn = { minutes: "", groups: "" };
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
        h("span", null, "command policy ", h("b", null, ov.policy ? Q.visible(ov.policy.file) + " (" + ov.policy.patterns + " patterns)"
          : "none (every command allowed)")),
      ]);
      clear(paused);
      const names = ov.paused || [];
      add(paused, names.length
        ? ["Paused groups: ", names.map(function (n, i) { return [i ? ", " : "", h("b", null, n)]; })]
        : h("span", { class: "muted" }, "No group is paused."));
      // The chart's minutes change once a minute and the groups when a count does: redraw only then.
      const minutesKey = JSON.stringify(ov.minutes || []) + window.innerWidth;
      if (minutesKey !== drawn.minutes) {
        drawn.minutes = minutesKey;
        clear(chartBox);
        add(chartBox, chart(ov.minutes || []));
      }
      const groupsKey = JSON.stringify(ov.groups || []);
      if (groupsKey !== drawn.groups) {
        drawn.groups = groupsKey;
        clear(groupsBox);
        add(groupsBox, groupsTable(ov.groups || [], false));
      }
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
        h("td", { class: "cmd", title: Q.visible(j.command) }, shorten(j.command, 80)),
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
    fillGroups(state.overview);

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
      const where = function (n) {
        return (params.state ? params.state + " " : "") + (n === 1 ? "job" : "jobs") + (params.group ? " in group " + params.group : "");
      };
      total.textContent = typeof res.total === "number" ? fmt(res.total) + " " + where(res.total)
        : (params.q ? "Searching " + where(2) + " for “" + params.q + "”" : "");
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
      h("p", { class: "muted" }, "Each schedule enqueues its job at every slot of its cron expression. Add and remove them with ",
        h("code", null, "queuectl schedule"), "."),
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
          h("td", { class: "cmd", title: Q.visible(job.command || "") }, shorten(job.command || "", 60)),
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


  Object.assign(Q.pages, { overview: overviewPage, groups: groupsPage, jobs: jobsPage, dlq: dlqPage, schedules: schedulesPage });
})();
