// rallypoint dashboard: polls the read-only JSON API and redraws. No libraries, no build step.
//
// Everything shown comes from agents, payloads and error messages, so the DOM is built from
// text nodes only (never innerHTML); links are built here from ids, not taken from the data.
"use strict";

(() => {
  const SVG = "http://www.w3.org/2000/svg";
  const TERMINAL = new Set(["succeeded", "cancelled", "dead"]);
  const CHART_W = 600;
  const CHART_H = 120;

  let refreshMs = 1000;
  let stateFilter = null; // a task state picked from the chips, or null for all
  let panel = null; // {kind: "task" | "deadletter", id, shown: number of timeline entries}

  const $ = (id) => document.getElementById(id);

  // el("td", {class: "num"}, "3"): an element with attributes and text or element children
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      node.setAttribute(key, String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    return node;
  }

  function clockTime(iso) {
    if (!iso) return "";
    const when = new Date(iso);
    return Number.isNaN(when.getTime()) ? String(iso) : when.toLocaleTimeString();
  }

  function ago(seconds) {
    if (seconds === null || seconds === undefined) return "never heard";
    if (seconds < 60) return `${seconds.toFixed(1)} s ago`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
    return `${Math.floor(seconds / 3600)} h ago`;
  }

  function showBanner(node, text) {
    node.textContent = text || "";
    node.hidden = !text;
  }

  async function getJSON(path) {
    const response = await fetch(path, { cache: "no-store", headers: { Accept: "application/json" } });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    return body;
  }

  // ---- agents ----
  function renderAgents(agents) {
    const counts = Object.entries(agents.by_status).map(([s, n]) => `${n} ${s}`).join(", ");
    $("agent-counts").textContent = counts ? `(${counts})` : "";
    const rows = agents.list.map((a) => {
      const late =
        a.status === "live" &&
        a.last_heartbeat_age_s !== null &&
        a.last_heartbeat_age_s > 3 * a.heartbeat_interval_s;
      const load = el("td", { class: "num" }, `${a.load}/${a.capacity} `,
        el("progress", { value: Math.min(a.load, a.capacity), max: Math.max(a.capacity, 1) }));
      return el("tr", { "data-agent-id": a.agent_id, class: `status-${a.status}` },
        el("td", { class: "id" }, a.agent_id),
        el("td", { class: "status" }, a.status),
        el("td", null, a.capabilities.join(", ")),
        load,
        el("td", { class: late ? "late" : null, title: a.last_heartbeat_at || "" },
          ago(a.last_heartbeat_age_s),
          a.reported_load !== null ? el("span", { class: "muted" }, ` · reports ${a.reported_load}`) : null));
    });
    $("agents").tBodies[0].replaceChildren(...rows);
    $("agents-empty").hidden = rows.length > 0;
  }

  // ---- tasks ----
  function renderCounts(tasks) {
    $("task-total").textContent = `(${tasks.total} total, ${tasks.open} open)`;
    const chips = Object.entries(tasks.by_state).map(([state, count]) => {
      const button = el("button", {
        type: "button",
        "data-state": state,
        class: `state-${state}${stateFilter === state ? " selected" : ""}`,
        "aria-pressed": stateFilter === state ? "true" : "false",
      }, el("span", { class: "count" }, count), " ", el("span", { class: "label" }, state));
      button.addEventListener("click", () => {
        stateFilter = stateFilter === state ? null : state;
        tick(false);
      });
      return el("li", null, button);
    });
    $("task-counts").replaceChildren(...chips);
  }

  function renderTasks(list) {
    $("task-filter").textContent = stateFilter ? `(${stateFilter} only: click it again for all)` : "";
    const rows = list.map((t) => {
      const row = el("tr", {
        "data-task-id": t.task_id,
        "data-state": t.state,
        tabindex: 0,
        class: panel && panel.kind === "task" && panel.id === t.task_id ? "selected" : null,
      },
        el("td", { class: "id", title: t.task_id }, t.task_id.slice(0, 8)),
        el("td", { class: `state state-${t.state}` }, t.state,
          t.progress !== null && !TERMINAL.has(t.state) ? ` ${Math.round(t.progress * 100)}%` : ""),
        el("td", null, t.capability),
        el("td", { class: "id" }, t.agent_id || ""),
        el("td", { class: "num" }, t.attempt),
        el("td", { title: t.changed_at }, clockTime(t.changed_at)),
        el("td", { class: "error", title: t.error || "" }, t.error || ""));
      row.addEventListener("click", () => openTask(t.task_id));
      row.addEventListener("keydown", (event) => {
        if (event.key === "Enter") openTask(t.task_id);
      });
      return row;
    });
    $("tasks").tBodies[0].replaceChildren(...rows);
    $("tasks-empty").hidden = rows.length > 0;
  }

  function renderThroughput(throughput) {
    const counts = throughput.finished;
    const chart = $("throughput-chart");
    const top = Math.max(1, ...counts);
    const step = counts.length > 1 ? CHART_W / (counts.length - 1) : CHART_W;
    const y = (c) => (CHART_H - 4 - (c / top) * (CHART_H - 20)).toFixed(1);
    const points = counts.map((c, i) => `${(i * step).toFixed(1)},${y(c)}`).join(" ");
    const area = svg("polygon", {
      class: "area",
      points: `0,${CHART_H - 4} ${points} ${CHART_W},${CHART_H - 4}`,
    });
    const line = svg("polyline", { class: "line", points });
    const base = svg("line", { class: "axis", x1: 0, y1: CHART_H - 4, x2: CHART_W, y2: CHART_H - 4 });
    const label = (text, x, y, anchor) => {
      const node = svg("text", { class: "label", x, y, "text-anchor": anchor });
      node.textContent = text;
      return node;
    };
    chart.replaceChildren(
      area,
      line,
      base,
      label(`${top}/s`, 4, 12, "start"),
      label(`−${Math.round(counts.length / 60)} min`, 4, CHART_H - 8, "start"),
      label("now", CHART_W - 4, CHART_H - 8, "end"),
    );
    $("throughput-window").textContent = `${Math.round(throughput.window_s / 60)} min`;
    $("throughput-rate").textContent = String(throughput.rate_per_s);
  }

  // ---- queues ----
  function renderQueues(queues) {
    showBanner($("queues-error"), queues.error ? `queue stats: ${queues.error}` : "");
    const rows = queues.list.map((q) =>
      el("tr", {
        "data-queue": q.queue,
        class: `kind-${q.kind}${q.kind === "dlq" && q.messages > 0 ? " attention" : ""}`,
      },
        el("td", { class: "id" }, q.queue),
        el("td", null, q.kind),
        el("td", { class: "num" }, q.messages),
        el("td", { class: "num" }, q.consumers)));
    $("queues").tBodies[0].replaceChildren(...rows);
  }

  // ---- dead letters ----
  function letterLink(letter) {
    const href = `/api/deadletters/${encodeURIComponent(letter.id)}`;
    const link = el("a", { href, "data-letter-id": letter.id }, letter.id);
    link.addEventListener("click", (event) => {
      if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
      event.preventDefault();
      openDeadLetter(letter.id);
    });
    return link;
  }

  function renderDeadLetters(dead) {
    $("deadletter-total").textContent = `(${dead.total} waiting)`;
    showBanner($("deadletters-error"), dead.error ? `archive: ${dead.error}` : "");
    const waiting = $("deadletters-waiting");
    waiting.hidden = !dead.waiting_in_queues;
    waiting.textContent = dead.waiting_in_queues
      ? `${dead.waiting_in_queues} more in dead-letter queues, not archived yet ` +
        "(`rally dlq list` moves them into the archive)"
      : "";
    const blocks = dead.by_reason.map((entry) => {
      const queues = Object.entries(entry.queues).map(([q, n]) => `${q} ${n}`).join(", ");
      const items = entry.letters.map((letter) =>
        el("li", null, letterLink(letter), " ",
          el("span", null, letter.type || "(no type)"), " ",
          el("span", { class: "muted" }, `${letter.queue} · ${clockTime(letter.last_death_at)}`),
          letter.error ? el("div", { class: "error" }, letter.error) : null));
      if (entry.letters.length < entry.count) {
        items.push(el("li", { class: "muted" },
          `${entry.count - entry.letters.length} older: rally dlq list --reason ${entry.reason}`));
      }
      return el("div", { class: "reason", "data-reason": entry.reason },
        el("h3", null, entry.reason, " ", el("span", { class: "count" }, entry.count),
          " ", el("span", { class: "muted" }, queues)),
        el("ul", null, ...items));
    });
    if (!blocks.length) blocks.push(el("p", { class: "empty" }, "none waiting in the archive"));
    $("deadletters").replaceChildren(...blocks);
  }

  // ---- the side panel ----
  function openPanel(kind, id, title) {
    panel = { kind, id, shown: -1 };
    $("panel-title").textContent = title;
    $("panel-subtitle").textContent = "loading…";
    $("timeline").replaceChildren();
    $("panel-json").hidden = true;
    $("panel").hidden = false;
    document.body.classList.add("with-panel");
  }

  function closePanel() {
    panel = null;
    $("panel").hidden = true;
    document.body.classList.remove("with-panel");
  }

  async function openTask(taskId) {
    openPanel("task", taskId, `task ${taskId}`);
    for (const row of document.querySelectorAll("#tasks tr.selected")) row.classList.remove("selected");
    await loadTask(taskId);
  }

  async function loadTask(taskId) {
    let task;
    try {
      task = await getJSON(`/api/tasks/${encodeURIComponent(taskId)}`);
    } catch (error) {
      if (panel && panel.id === taskId) $("panel-subtitle").textContent = `cannot load: ${error.message}`;
      return;
    }
    if (!panel || panel.kind !== "task" || panel.id !== taskId) return; // closed or replaced meanwhile
    panel.terminal = TERMINAL.has(task.state);
    $("panel-subtitle").textContent =
      `${task.state} · ${task.capability} · attempt ${task.attempt}` +
      (task.agent_id ? ` · on ${task.agent_id}` : "") + (task.error ? ` · ${task.error}` : "");
    if (task.timeline.length === panel.shown) return; // unchanged: keep opened details open
    panel.shown = task.timeline.length;
    const items = task.timeline.map((entry) =>
      el("li", { "data-type": entry.type },
        el("time", { datetime: entry.at, title: entry.at }, clockTime(entry.at)), " ",
        el("strong", null, entry.type), " ",
        el("span", { class: "summary" }, entry.summary),
        el("details", null, el("summary", null, "data"),
          el("pre", null, JSON.stringify(entry.data, null, 2)))));
    $("timeline").replaceChildren(...items);
  }

  async function openDeadLetter(letterId) {
    openPanel("deadletter", letterId, `dead letter ${letterId}`);
    let letter;
    try {
      letter = await getJSON(`/api/deadletters/${encodeURIComponent(letterId)}`);
    } catch (error) {
      $("panel-subtitle").textContent = `cannot load: ${error.message}`;
      return;
    }
    if (!panel || panel.id !== letterId) return;
    $("panel-subtitle").textContent = `${letter.reason} · ${letter.queue} · ${letter.type || "(no type)"}`;
    const why = letter.explanation || {};
    $("timeline").replaceChildren(
      el("li", null, el("strong", null, "why "), why.summary || ""),
      ...(why.details || []).map((d) => el("li", null, d)),
      why.hint ? el("li", null, el("strong", null, "fix "), why.hint) : null,
      el("li", null, el("a", { href: `/api/deadletters/${encodeURIComponent(letterId)}` }, "the whole record as JSON")),
    );
    const json = $("panel-json");
    json.textContent = JSON.stringify(letter, null, 2);
    json.hidden = false;
  }

  // ---- the loop ----
  function render(overview) {
    refreshMs = Math.max(250, (overview.refresh_s || 1) * 1000);
    $("namespace").textContent = overview.namespace;
    const store = overview.store;
    $("status").textContent =
      `updated ${clockTime(overview.generated_at)} · history position ${store.position}` +
      (store.behind ? " (catching up)" : "") + ` · ${store.url} · every ${overview.refresh_s} s`;
    const problems = [];
    if (store.error) problems.push(`store: ${store.error}`);
    if (store.unreadable_events) {
      problems.push(`${store.unreadable_events} events could not be read (latest: ${store.last_unreadable})`);
    }
    showBanner($("banner"), problems.join(" · "));
    renderAgents(overview.agents);
    renderCounts(overview.tasks);
    renderThroughput(overview.throughput);
    renderQueues(overview.queues);
    renderDeadLetters(overview.dead_letters);
  }

  let timer = null;

  async function tick(schedule = true) {
    try {
      const overview = await getJSON("/api/overview");
      render(overview);
      const list = stateFilter
        ? (await getJSON(`/api/tasks?state=${encodeURIComponent(stateFilter)}&limit=25`)).tasks
        : overview.tasks.recent;
      renderTasks(list);
      if (panel && panel.kind === "task" && !panel.terminal) await loadTask(panel.id);
    } catch (error) {
      showBanner($("banner"), `cannot reach the dashboard (${error.message}); retrying`);
    }
    if (schedule) timer = setTimeout(tick, refreshMs);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("panel-close").addEventListener("click", closePanel);
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape") closePanel();
    });
    tick();
  });

  // for tests and the curious: stop polling from the console
  window.rallyDashboard = { stop: () => clearTimeout(timer) };
})();
