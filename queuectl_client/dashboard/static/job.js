// queuectl dashboard: a job's page, with its fields, its actions and its output, followed live.
"use strict";

(function () {
  const Q = window.queuectl;
  const { FINAL, url, h, add, clear, stateBadge, jobLink, fmt, span, timeEl, getJSON, flash, act, live, parse,
    state, view, visible } = Q;

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
    if (typeof v === "object") return visible(JSON.stringify(v));
    return key === "command" || key === "cwd" || key === "error_message" ? visible(v) : String(v);
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
    add(view, [head, actions, whyEl,
      h("h2", null, "Output"), liveNote, h("div", { class: "outputs" }, panes.stdout.el, panes.stderr.el),
      h("h2", null, "Fields"), h("div", { class: "panel" }, fields)]);

    let stream = null;
    let closed = false;
    let shownRun = null; // the run (its start) whose output the panes hold

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

    let loading = false;

    async function load() {
      loading = true;
      try { return await loadJob(); } finally { loading = false; }
    }

    async function loadJob() {
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
      const run = String(res.job.started_at);
      if (run !== shownRun) {
        // The first look, or a new run (a retry): its output from the start, then followed.
        shownRun = run;
        closeStream();
        panes.stdout.reset();
        panes.stderr.reset();
        await Promise.all([panes.stdout.first(), panes.stderr.first()]);
        if (closed) return null;
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
      es.addEventListener("job", function (ev) {
        const j = parse(ev.data);
        if (!j) return;
        const job = j.job || j;
        showJob(job);
        if (String(job.started_at) !== shownRun && !loading) load(); // a new run: its output starts over
      });
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
        reset: function () {
          clear(head); clear(tail);
          loaded = 0; size = 0; liveStart = null; tailChars = 0;
          more.hidden = true; dropped.hidden = true;
        },
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
      // A final job's page has no stream of its own: a push that states changed may be its retry.
      onJobs: function () { if (!stream && !closed && !loading) load(); },
      close: function () { closed = true; closeStream(); },
    };
  }


  Q.pages.job = jobPage;
})();
