// Review supervision page: GET /v1/queue/stats (depth and age per lane) and GET /v1/reviewers/stats
// (throughput over the last hour and day, quality over the chosen window). Plain JS, no library. The API
// key lives in sessionStorage and travels only in the Authorization header.
(() => {
  "use strict";
  const HOUR = 3600 * 1000;
  const $ = (id) => document.getElementById(id);
  const dash = "\u2013";
  const pct = (v) => (v === null || v === undefined ? dash : (100 * v).toFixed(1) + "%");
  const num = (v, digits = 1) => (v === null || v === undefined ? dash : Number(v).toFixed(digits));
  const interval = (v, low, high) => (v === null || v === undefined ? dash : pct(v) + " [" + pct(low) + ", " + pct(high) + "]");

  function apiKey() { return TriageKey.get(); }

  function age(seconds) {
    if (seconds === null || seconds === undefined) return dash;
    if (seconds < 120) return Math.round(seconds) + " s";
    if (seconds < 7200) return Math.round(seconds / 60) + " min";
    return (seconds / 3600).toFixed(1) + " h";
  }

  async function get(path) {
    const response = await fetch(path, {
      headers: { Authorization: "Bearer " + apiKey(), Accept: "application/json" },
      cache: "no-store",
    });
    const body = await response.json().catch(() => ({ detail: response.statusText }));
    if (!response.ok) {
      const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
      if (response.status === 401) $("key-status").textContent = "The key was refused: enter a valid key.";
      throw new Error(response.status + ": " + detail);
    }
    return body;
  }

  function stats(since, until) {
    const params = new URLSearchParams({ since: since.toISOString(), until: until.toISOString() });
    return get("/v1/reviewers/stats?" + params);
  }

  async function load() {
    $("error").hidden = true;
    document.body.dataset.state = "loading";
    const now = new Date();
    const days = Math.max(1, Number($("days").value) || 30);
    try {
      const [queue, hour, day, window] = await Promise.all([
        get("/v1/queue/stats"),
        stats(new Date(now - HOUR), now),
        stats(new Date(now - 24 * HOUR), now),
        stats(new Date(now - days * 24 * HOUR), now),
      ]);
      drawLanes(queue);
      drawQuality(window, counts(hour), counts(day));
      document.body.dataset.state = "ready";
    } catch (error) {
      $("error").textContent = error.message;
      $("error").hidden = false;
      document.body.dataset.state = "error";
    }
  }

  function counts(report) {
    const byName = new Map(report.reviewers.map((r) => [r.reviewer, r.verdicts]));
    for (const t of report.teams) byName.set("team:" + t.team, t.verdicts);
    return byName;
  }

  function cell(row, text, header) {
    const td = document.createElement(header ? "th" : "td");
    if (header) td.scope = "row";
    td.textContent = text;
    row.appendChild(td);
  }

  function drawLanes(queue) {
    const body = $("lanes").querySelector("tbody");
    body.replaceChildren();
    for (const [lane, c] of Object.entries(queue.lanes)) {
      const tr = body.insertRow();
      tr.dataset.lane = lane;
      tr.dataset.pending = c.pending;
      cell(tr, lane, true);
      cell(tr, c.pending);
      cell(tr, c.claimed);
      cell(tr, c.done);
      cell(tr, age(c.oldest_pending_age_seconds));
    }
  }

  function drawQuality(report, lastHour, lastDay) {
    $("summary").textContent = "Verdicts from " + report.window.since + " to " + report.window.until +
      "; all blind second reviews: " + report.agreement.items + " items, agreement " +
      interval(report.agreement.raw, report.agreement.raw_low, report.agreement.raw_high) + ".";
    const body = $("quality").querySelector("tbody");
    body.replaceChildren();
    const rows = report.reviewers.map((r) => ({ name: r.reviewer, team: r.team || dash, key: r.reviewer, r }))
      .concat(report.teams.map((t) => ({ name: "team " + t.team, team: t.reviewers + " people", key: "team:" + t.team, r: t })));
    for (const { name, team, key, r } of rows) {
      const tr = body.insertRow();
      tr.dataset.reviewer = name;
      cell(tr, name, true);
      cell(tr, team);
      cell(tr, lastHour.get(key) || 0);
      cell(tr, lastDay.get(key) || 0);
      cell(tr, r.verdicts);
      cell(tr, pct(r.reject_rate));
      cell(tr, num(r.handling_seconds_median));
      cell(tr, num(r.handling_seconds_p90));
      cell(tr, num(r.verdicts_per_active_hour));
      cell(tr, interval(r.agreement.raw, r.agreement.raw_low, r.agreement.raw_high) + " of " + r.agreement.items);
      cell(tr, num(r.agreement.kappa, 2));
      cell(tr, num(r.agreement.ac1, 2));
      cell(tr, r.gold.n ? interval(r.gold.accuracy, r.gold.low, r.gold.high) + " of " + r.gold.n : dash);
      const amended = r.amended_by_others;
      cell(tr, amended.n ? interval(amended.rate, amended.low, amended.high) + " of " + amended.n : dash);
    }
    if (!rows.length) {
      const tr = body.insertRow();
      cell(tr, "No verdicts in this window.");
      tr.firstChild.colSpan = 14;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    TriageKey.wire({ use: load });
    $("controls").addEventListener("submit", (event) => { event.preventDefault(); load(); });
    if (apiKey()) load();
    else $("key-status").textContent = "No key yet.";
  });
})();
