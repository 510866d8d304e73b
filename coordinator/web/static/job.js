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

  // Issue 17's GET /api/v1/jobs/{id}/explain fills this panel once it exists; until then
  // the request answers 404 and the panel stays hidden.
  async function explainIfWaiting(status) {
    const panel = document.getElementById("why-it-waits");
    if (status !== "Waiting") { panel.hidden = true; return; }
    const reply = await gp.api("GET", panel.dataset.explainUrl);
    if (!reply.ok || !reply.data) { panel.hidden = true; return; }
    const body = document.getElementById("why-it-waits-body");
    const pre = document.createElement("pre");
    pre.textContent = JSON.stringify(reply.data, null, 2);
    body.replaceChildren(pre);
    panel.hidden = false;
  }

  explainIfWaiting(document.getElementById("job-status").textContent.trim());
  for (const pre of document.querySelectorAll("pre.log")) pre.scrollTop = pre.scrollHeight;
  gp.follow(`job_id=${jobId}`, { status: onStatus, log: onLog },
    document.getElementById("live-state"));
})();
