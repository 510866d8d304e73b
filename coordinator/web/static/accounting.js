// The Accounting page: each plot is drawn from the JSON of its API URL (linked beside it).
"use strict";
(function () {
  const gp = window.gridpilot;
  const days = document.getElementById("days");
  const charts = {};
  const PALETTE = ["#1f5fbf", "#2e9e44", "#ef6c00", "#7b1fa2", "#c62828", "#00838f", "#6d4c41"];

  function draw(id, config) {
    if (charts[id]) charts[id].destroy();
    config.options = Object.assign({ animation: false, responsive: true }, config.options || {});
    charts[id] = new window.Chart(document.getElementById(id), config);
  }

  function url(api) {
    return api + (api.includes("?") ? "&" : "?") + "days=" + days.value;
  }

  function hourLabels(buckets) {
    return buckets.map((hour) => hour.slice(5).replace("T", " ") + "h");
  }

  async function load() {
    for (const link of document.querySelectorAll("a.json")) link.href = url(link.dataset.api);
    const [final, running, bySite, byOwner, failures] = await Promise.all([
      "/api/v1/accounting/final-statuses", "/api/v1/accounting/running-by-site",
      "/api/v1/accounting/cpu-efficiency?by=site", "/api/v1/accounting/cpu-efficiency?by=owner",
      "/api/v1/accounting/failures",
    ].map((api) => gp.api("GET", url(api)).then((reply) => reply.data)));
    draw("chart-final", {
      type: "bar",
      data: {
        labels: hourLabels(final.buckets),
        datasets: Object.entries(final.series).map(([status, counts]) => ({
          label: status, data: counts, backgroundColor: gp.STATUS_COLOURS[status],
        })),
      },
      options: { scales: { x: { stacked: true }, y: { stacked: true, title: { display: true, text: "jobs" } } } },
    });
    draw("chart-running", {
      type: "line",
      data: {
        labels: hourLabels(running.buckets),
        datasets: Object.entries(running.series).map(([site, counts], i) => ({
          label: site, data: counts, stepped: true, borderColor: PALETTE[i % PALETTE.length],
          backgroundColor: PALETTE[i % PALETTE.length],
        })),
      },
      options: { scales: { y: { beginAtZero: true, title: { display: true, text: "running jobs" } } } },
    });
    for (const [id, reply] of [["chart-eff-site", bySite], ["chart-eff-owner", byOwner]]) {
      draw(id, {
        type: "bar",
        data: {
          labels: reply.rows.map((row) => `${row.key} (${row.jobs} jobs)`),
          datasets: [{ label: "CPU efficiency %", data: reply.rows.map((row) => row.efficiency_percent),
            backgroundColor: "#2e9e44" }],
        },
        options: { scales: { y: { beginAtZero: true, title: { display: true, text: "%" } } } },
      });
    }
    const body = document.querySelector("#failures tbody");
    body.replaceChildren();
    for (const row of failures.rows) {
      const tr = document.createElement("tr");
      const link = document.createElement("a");
      link.href = "/web/jobs?" + new URLSearchParams(
        { status: "Failed", minor_status: row.minor_status, site: row.site });
      link.textContent = row.count;
      for (const value of [row.minor_status || "(none)", row.site, link]) {
        const td = document.createElement("td");
        td.append(value);
        tr.append(td);
      }
      body.append(tr);
    }
    if (!failures.rows.length) {
      const tr = document.createElement("tr");
      tr.innerHTML = '<td colspan="3">No failed job in this window.</td>';
      body.append(tr);
    }
    document.body.dataset.plotsDrawn = String(Object.keys(charts).length);
  }
  days.addEventListener("change", load);
  load();
})();
