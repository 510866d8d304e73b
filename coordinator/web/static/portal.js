// What every page of the portal shares: API calls with the session's CSRF token, the live
// event stream, actions on jobs, status colours. Plain JavaScript, no build step.
"use strict";
window.gridpilot = (function () {
  const STATUS_COLOURS = {
    Submitting: "#bdbdbd", Received: "#bdbdbd", Checking: "#bdbdbd", Staging: "#bdbdbd",
    Waiting: "#e6b800", Matched: "#8fd18f", Running: "#2e9e44", Completing: "#1f7a33",
    Completed: "#5aa0d8", Done: "#1f5fbf", Failed: "#c62828", Killed: "#424242",
    Stalled: "#ef6c00", Rescheduled: "#7b1fa2", Deleted: "#9e9e9e",
  };

  function csrf() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  async function api(method, path, body) {
    const init = { method, credentials: "same-origin", headers: { "X-CSRF-Token": csrf() } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const reply = await fetch(path, init);
    let data = null;
    try { data = await reply.json(); } catch (e) { data = null; }
    return { ok: reply.ok, status: reply.status, data };
  }

  // The browser's EventSource reconnects by itself and sends Last-Event-ID: the
  // coordinator replays what was missed (or says "reset": then the page reloads).
  function follow(query, handlers, stateElement) {
    const source = new EventSource("/api/v1/events?" + query);
    const say = (text) => { if (stateElement) stateElement.textContent = text; };
    source.onopen = () => say("live updates: on");
    source.onerror = () => say("live updates: reconnecting…");
    for (const kind of ["status", "log"]) {
      source.addEventListener(kind, (event) => {
        if (handlers[kind]) handlers[kind](JSON.parse(event.data));
      });
    }
    source.addEventListener("reset", () => window.location.reload());
    return source;
  }

  function setStatus(element, status) {
    element.className = "status st-" + status;
    element.textContent = status;
  }

  const ACTIONS = {
    kill: { method: "POST", path: (id) => `/api/v1/jobs/${id}/kill`, done: "kill asked" },
    reschedule: { method: "POST", path: (id) => `/api/v1/jobs/${id}/reschedule`, done: "rescheduled" },
    delete: { method: "DELETE", path: (id) => `/api/v1/jobs/${id}`, done: "deleted" },
  };

  // One result line per job: what happened, or the coordinator's error message.
  async function act(action, ids, resultsList) {
    const spec = ACTIONS[action];
    resultsList.replaceChildren();
    if (!ids.length) {
      const li = document.createElement("li");
      li.textContent = "Select at least one job first.";
      resultsList.append(li);
      return;
    }
    for (const id of ids) {
      const reply = await api(spec.method, spec.path(id));
      const li = document.createElement("li");
      li.dataset.jobId = id;
      if (reply.ok) {
        li.className = "ok";
        li.textContent = `Job ${id}: ${spec.done}, now ${reply.data.status}` +
          (reply.data.minor_status ? ` (${reply.data.minor_status})` : "");
      } else {
        li.className = "failed";
        li.textContent = `Job ${id}: ${reply.data ? reply.data.message : "error " + reply.status}`;
      }
      resultsList.append(li);
    }
  }

  function shortTime(iso) {
    return (iso || "").slice(0, 19).replace("T", " ");
  }

  return { api, follow, act, setStatus, shortTime, STATUS_COLOURS };
})();
