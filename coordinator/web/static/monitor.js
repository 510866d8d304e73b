// The Job Monitor: charts of the counts (a click filters), hideable columns, actions on
// the selected jobs, and rows that follow the live event stream without a reload.
"use strict";
(function () {
  const gp = window.gridpilot;
  const data = JSON.parse(document.getElementById("monitor-data").textContent);
  const table = document.getElementById("jobs");

  function barChart(canvasId, rows, key, urlTemplate, colours) {
    const canvas = document.getElementById(canvasId);
    if (!canvas || !window.Chart || !rows.length) return;
    const labels = rows.map((row) => row[key]);
    new window.Chart(canvas, {
      type: "bar",
      data: {
        labels,
        datasets: [{
          label: "jobs", data: rows.map((row) => row.count),
          backgroundColor: labels.map((label) => (colours && colours[label]) || "#5c7cfa"),
        }],
      },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false,
        plugins: { legend: { display: false } },
        onClick: (_event, elements) => {
          if (elements.length) {
            const value = labels[elements[0].index];
            window.location.href = urlTemplate.replace("__VALUE__", encodeURIComponent(value));
          }
        },
      },
    });
  }
  barChart("status-chart", data.by_status, "Status", data.status_url, gp.STATUS_COLOURS);
  barChart("site-chart", data.by_site, "Site", data.site_url, null);

  // Hidden columns are remembered in this browser.
  const storageKey = "gridpilot.monitor.hidden";
  const hidden = new Set(JSON.parse(localStorage.getItem(storageKey) || "[]"));
  for (const toggle of document.querySelectorAll(".column-toggle")) {
    const apply = () => {
      table.classList.toggle("hide-" + toggle.value, !toggle.checked);
      if (toggle.checked) hidden.delete(toggle.value); else hidden.add(toggle.value);
      localStorage.setItem(storageKey, JSON.stringify([...hidden]));
    };
    toggle.checked = !hidden.has(toggle.value);
    apply();
    toggle.addEventListener("change", apply);
  }

  const selectAll = document.getElementById("select-all");
  selectAll.addEventListener("change", () => {
    for (const box of document.querySelectorAll(".select-job")) box.checked = selectAll.checked;
  });
  const results = document.getElementById("action-results");
  for (const button of document.querySelectorAll(".actions button[data-action]")) {
    button.addEventListener("click", () => {
      const ids = [...document.querySelectorAll(".select-job:checked")].map((box) => box.value);
      gp.act(button.dataset.action, ids, results);
    });
  }

  const news = document.getElementById("news");
  gp.follow("logs=false", {
    status: (event) => {
      const row = table.querySelector(`tr[data-job-id="${event.job_id}"]`);
      if (!row) { news.hidden = false; return; }
      const cell = (name) => row.querySelector(".c-" + name);
      gp.setStatus(cell("Status").firstElementChild, event.status);
      cell("MinorStatus").textContent = event.minor_status;
      cell("ApplicationStatus").textContent = event.application_status;
      cell("LastUpdateTime").textContent = gp.shortTime(event.at);
      row.classList.remove("changed");
      void row.offsetWidth; // restart the highlight
      row.classList.add("changed");
    },
  }, document.getElementById("live-state"));
})();
