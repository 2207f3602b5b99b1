// Rule analytics page: reads GET /v1/rules/stats and draws the per-rule table and the co-occurrence.
// Plain JS, no library. The API key lives in sessionStorage and travels only in the Authorization header.
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const pct = (v) => (v === null || v === undefined ? "\u2013" : (100 * v).toFixed(1) + "%");
  const num = (v, digits = 0) => (v === null || v === undefined ? "\u2013" : Number(v).toFixed(digits));

  function apiKey() { return TriageKey.get(); }

  async function load() {
    $("error").hidden = true;
    document.body.dataset.state = "loading";
    const params = new URLSearchParams({ period: $("period").value, days: $("days").value });
    const response = await fetch("/v1/rules/stats?" + params, {
      headers: { Authorization: "Bearer " + apiKey(), Accept: "application/json" },
      cache: "no-store",
    });
    const body = await response.json().catch(() => ({ detail: response.statusText }));
    if (!response.ok) {
      const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
      $("error").textContent = response.status + ": " + detail;
      $("error").hidden = false;
      if (response.status === 401) $("key-status").textContent = "The key was refused: enter a valid key.";
      document.body.dataset.state = "error";
      return;
    }
    draw(body);
  }

  function cell(row, text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    row.appendChild(td);
  }

  function draw(result) {
    $("summary").textContent = result.decisions + " decisions from " + result.window.since + " to " +
      result.window.until + (result.truncated ? " (truncated to the most recent)" : "") + "; " +
      Math.round(100 * result.confidence) + "% " + result.interval + " intervals.";
    const body = $("stats").querySelector("tbody");
    body.replaceChildren();
    let note = "";
    for (const r of result.rules) {
      const tr = document.createElement("tr");
      tr.dataset.rule = r.rule;
      tr.dataset.mode = r.mode;
      tr.dataset.hits = r.hits;
      cell(tr, r.period);
      cell(tr, r.rule);
      cell(tr, r.mode + (r.action ? " " + r.action : ""));
      cell(tr, r.hits);
      cell(tr, pct(r.share));
      cell(tr, r.reviewed);
      cell(tr, r.rejects);
      cell(tr, pct(r.precision) + (r.representative ? "" : " *"), r.representative ? "" : "flag");
      cell(tr, r.precision_low === null ? "\u2013" : "[" + pct(r.precision_low) + ", " + pct(r.precision_high) + "]");
      cell(tr, pct(r.precision_weighted));
      cell(tr, r.model_pass + " / " + r.model_review + " / " + r.model_block);
      cell(tr, num(r.added_reviews));
      cell(tr, num(r.added_reviewer_hours, 2));
      body.appendChild(tr);
      if (!r.representative) note = "* " + r.note;
    }
    if (!result.rules.length) {
      const tr = document.createElement("tr");
      cell(tr, "No rule hit a decision in this window.");
      tr.firstChild.colSpan = 13;
      body.appendChild(tr);
    }
    $("note").textContent = note;
    drawMatrix(result.co_occurrence);
    document.body.dataset.period = result.period;
    document.body.dataset.state = "ready";
  }

  function drawMatrix(matrix) {
    const table = $("co");
    table.querySelectorAll("thead, tbody").forEach((part) => part.remove());
    if (!matrix.rules.length) return;
    const head = table.createTHead().insertRow();
    head.appendChild(document.createElement("th"));
    for (const name of matrix.rules) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = name;
      head.appendChild(th);
    }
    const body = table.createTBody();
    matrix.rules.forEach((name, i) => {
      const tr = body.insertRow();
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = name;
      tr.appendChild(th);
      for (const count of matrix.counts[i]) cell(tr, count);
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    TriageKey.wire({ use: load });
    $("controls").addEventListener("submit", (event) => { event.preventDefault(); load(); });
    $("period").addEventListener("change", load);
    if (apiKey()) load();
    else $("key-status").textContent = "No key yet.";
  });
})();
