// The Job Launchpad: presets, line numbers, parametric fields written into the text, and
// errors shown at their line and column.
"use strict";
(function () {
  const form = document.getElementById("launchpad");
  const editor = document.getElementById("description");
  const gutter = document.getElementById("gutter");
  const error = document.getElementById("description-error");
  const presets = JSON.parse(document.getElementById("presets").textContent);

  function numberLines(badLine) {
    const count = editor.value.split("\n").length;
    gutter.replaceChildren();
    for (let n = 1; n <= count; n++) {
      const line = document.createElement("span");
      line.textContent = n + "\n";
      if (n === badLine) line.className = "error-line";
      gutter.append(line);
    }
    gutter.scrollTop = editor.scrollTop;
  }
  editor.addEventListener("input", () => numberLines());
  editor.addEventListener("scroll", () => { gutter.scrollTop = editor.scrollTop; });
  numberLines();

  for (const button of document.querySelectorAll("button.preset")) {
    button.addEventListener("click", () => {
      editor.value = presets[button.dataset.preset];
      document.getElementById("format").value = "jdl";
      clearError();
      numberLines();
      editor.focus();
    });
  }

  // Filled parametric fields replace the same attributes in the JDL text (JDL only).
  function applyParametricFields() {
    if (document.getElementById("format").value !== "jdl") return;
    let text = editor.value;
    for (const input of document.querySelectorAll(".parametric input")) {
      const value = input.value.trim();
      if (!value) continue;
      const name = input.dataset.attribute;
      const line = new RegExp("^\\s*" + name + "\\s*=.*$\\n?", "gim");
      text = text.replace(line, "");
      const isNumber = /^-?[0-9.]+$/.test(value);
      const rendered = name === "Parameters" && !isNumber
        ? "{" + value.split(",").map((v) => JSON.stringify(v.trim())).join(", ") + "}"
        : value;
      const entry = `    ${name} = ${rendered};\n`;
      const close = text.lastIndexOf("]");
      text = close >= 0 ? text.slice(0, close) + entry + text.slice(close) : text + entry;
    }
    editor.value = text;
    numberLines();
  }

  function clearError() {
    error.hidden = true;
    error.textContent = "";
    editor.removeAttribute("aria-invalid");
  }

  function showError(body) {
    const details = (body && body.details) || {};
    error.textContent = body ? body.message : "the coordinator did not answer";
    error.hidden = false;
    editor.setAttribute("aria-invalid", "true");
    if (details.line) {
      // Put the cursor on the offending character.
      const lines = editor.value.split("\n");
      let position = 0;
      for (let n = 0; n < details.line - 1 && n < lines.length; n++) position += lines[n].length + 1;
      position += Math.max((details.column || 1) - 1, 0);
      editor.focus();
      editor.setSelectionRange(position, position + 1);
      numberLines(details.line);
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    applyParametricFields();
    const button = document.getElementById("submit");
    button.disabled = true;
    try {
      const reply = await fetch("/web/launchpad", {
        method: "POST", body: new FormData(form), credentials: "same-origin",
      });
      let body = null;
      try { body = await reply.json(); } catch (e) { body = null; }
      if (reply.status === 201) showSubmitted(body.job_ids); else showError(body);
    } finally {
      button.disabled = false;
    }
  });

  function showSubmitted(ids) {
    const section = document.getElementById("submitted");
    const list = document.getElementById("submitted-ids");
    list.replaceChildren();
    for (const id of ids) {
      const li = document.createElement("li");
      const link = document.createElement("a");
      link.href = `/web/jobs/${id}`;
      link.textContent = `Job ${id}`;
      li.append(link);
      list.append(li);
    }
    const summary = document.getElementById("submitted-summary");
    const all = document.createElement("a");
    all.href = "/web/jobs?ids=" + ids.join(",");
    all.id = "submitted-monitor";
    all.textContent = `the ${ids.length} new job${ids.length === 1 ? "" : "s"} in the Job Monitor`;
    summary.replaceChildren("Submitted: see ", all, ".");
    section.hidden = false;
    section.focus?.();
  }
})();
