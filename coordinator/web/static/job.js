// The job page: status, logging info and stdout/stderr follow the live event stream; the
// output sandbox appears when the job ends; the "why it waits" panel asks the matcher.
"use strict";
(function () {
  const gp = window.gridpilot;
  const article = document.getElementById("job");
  const jobId = article.dataset.jobId;
  const FINAL = ["Done", "Failed", "Killed", "Completed", "Deleted"];

  const results = document.getElementById("action-results");
  for (const button of document.querySelectorAll(".actions button[data-action]")) {
    button.addEventListener("click", () => gp.act(button.dataset.action, [jobId], results));
  }

  function follows(pre) {
    return pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40;
  }

  async function catchUp(pre) {
    // Read what the page has not shown yet straight from the logs API.
    const end = Number(pre.dataset.end);
    const reply = await fetch(`/api/v1/jobs/${jobId}/logs/${pre.dataset.stream}?offset=${end}`,
      { credentials: "same-origin" });
    if (!reply.ok) return;
    const text = await reply.text();
    const next = Number(reply.headers.get("X-Log-Next-Offset"));
    if (next > end) {
      const stick = follows(pre);
      pre.append(text);
      pre.dataset.end = String(next);
      if (stick) pre.scrollTop = pre.scrollHeight;
    }
  }

  function onLog(event) {
    const pre = document.getElementById("log-" + event.stream);
    if (!pre) return;
    const end = Number(pre.dataset.end);
    if (event.offset === end && !event.truncated) {
      const stick = follows(pre);
      pre.append(event.text);
      pre.dataset.end = String(end + event.size_bytes);
      if (stick) pre.scrollTop = pre.scrollHeight;
    } else if (event.offset + event.size_bytes > end) {
      catchUp(pre);
    }
  }

  function addHistoryRow(event) {
    const row = document.createElement("tr");
    const status = document.createElement("span");
    gp.setStatus(status, event.status);
    const cells = [status, event.minor_status, event.application_status,
      (event.at || "").slice(0, 23).replace("T", " "), "live"];
    for (const value of cells) {
      const td = document.createElement("td");
      td.append(value);
      row.append(td);
    }
    document.querySelector("#history tbody").append(row);
  }

  async function showOutput() {
    const reply = await gp.api("GET", `/api/v1/jobs/${jobId}/output/files`);
    if (!reply.ok) return;
    const section = document.getElementById("output-title").parentElement;
    const list = document.createElement("ul");
    list.id = "output-files";
    for (const file of reply.data.files) {
      const li = document.createElement("li");
      const link = document.createElement("a");
      link.href = `/api/v1/jobs/${jobId}/output/files/${encodeURIComponent(file.name)}`;
      link.setAttribute("download", "");
      link.textContent = file.name;
      li.append(link, ` ${file.size_bytes} bytes`);
      list.append(li);
    }
    const whole = document.createElement("p");
    const archive = document.createElement("a");
    archive.id = "output-archive";
    archive.href = `/api/v1/jobs/${jobId}/output`;
    archive.setAttribute("download", "");
    archive.textContent = "Download the whole archive";
    whole.append(archive);
    section.querySelector("#output-none")?.remove();
    section.querySelector("#output-files")?.remove();
    section.append(whole, list);
  }

  function onStatus(event) {
    gp.setStatus(document.getElementById("job-status"), event.status);
    document.getElementById("job-minor").textContent = event.minor_status;
    addHistoryRow(event);
    if (event.status === "Rescheduled") {
      for (const pre of document.querySelectorAll("pre.log")) {
        pre.textContent = "";
        pre.dataset.end = "0";
      }
    }
    if (FINAL.includes(event.status) && !document.getElementById("output-archive")) {
      // The pilot uploads the output before its final report: ask for it once.
      setTimeout(showOutput, 200);
    }
    explainIfWaiting(event.status);
  }

  // "Why it waits": GET /api/v1/jobs/{id}/explain while the job is Waiting, asked again
  // every EXPLAIN_EVERY_MS (pilots come and go) and at each status change.
  const EXPLAIN_EVERY_MS = 30000;
  let explainTimer = null;

  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  function requirementsTable(found) {
    const table = element("table", undefined, "why-requirements");
    table.id = "why-requirements";
    const caption = element("caption",
      `Pilots seen in the last ${found.interval_s / 60} minutes: ${found.pilots_seen}; ` +
      `meeting every requirement: ${found.pilots_meeting_all}`);
    const head = element("tr");
    for (const name of ["Requirement", "Job asks", "Pilots meeting it"]) {
      const th = element("th", name);
      th.scope = "col";
      head.append(th);
    }
    table.append(caption, head);
    for (const check of found.requirements) {
      const row = element("tr", undefined, check.excludes_all ? "excludes-all" : "");
      row.dataset.requirement = check.name;
      const name = element("th", check.name);
      name.scope = "row";
      const count = element("td", `${check.pilots_meeting} of ${found.pilots_seen}`);
      if (check.excludes_all) count.append(element("strong", " excludes every pilot"));
      row.append(name, element("td", check.wanted || "—"), count);
      table.append(row);
    }
    return table;
  }

  function standing(found) {
    const lines = [];
    if (found.task_queue_id !== null) {
      const limit = found.queue_count_limit || 0;
      const past = limit && found.queue_position > limit ? "+" : "";
      lines.push(`Task queue ${found.task_queue_id}: number ${found.queue_position}${past} ` +
        `of ${found.queue_waiting}${limit ? "+" : ""} waiting.`);
    }
    const share = found.fair_share;
    if (share) {
      lines.push(`Fair share: ${share.owner}${share.group ? " (" + share.group + ")" : ""} ` +
        `is ${share.position} of ${share.owners} owner(s) with jobs waiting ` +
        `(recent usage ${share.usage} cores, weight ${share.weight}).`);
    }
    const when = (found.last_pilot_at || "").slice(0, 19).replace("T", " ");
    lines.push(when ? `A pilot of its VO was last heard from at ${when} UTC.`
      : "No pilot of its VO has been heard from.");
    return lines.map((line) => element("p", line, "muted"));
  }

  function showExplanation(found) {
    const body = document.getElementById("why-it-waits-body");
    const summary = element("p", found.summary);
    summary.id = "why-summary";
    const parts = [summary];
    if (found.requirements.length) parts.push(requirementsTable(found));
    body.replaceChildren(...parts, ...standing(found));
  }

  async function explainIfWaiting(status) {
    const panel = document.getElementById("why-it-waits");
    clearTimeout(explainTimer);
    if (status !== "Waiting") { panel.hidden = true; return; }
    const reply = await gp.api("GET", panel.dataset.explainUrl);
    if (!reply.ok || !reply.data) { panel.hidden = true; return; }
    showExplanation(reply.data);
    panel.hidden = false;
    explainTimer = setTimeout(() => explainIfWaiting(
      document.getElementById("job-status").textContent.trim()), EXPLAIN_EVERY_MS);
  }

  explainIfWaiting(document.getElementById("job-status").textContent.trim());
  for (const pre of document.querySelectorAll("pre.log")) pre.scrollTop = pre.scrollHeight;
  gp.follow(`job_id=${jobId}`, { status: onStatus, log: onLog },
    document.getElementById("live-state"));
})();
