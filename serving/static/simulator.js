// Threshold simulator page: controls -> GET /v1/simulate (+ the policy in force, + the curve) -> numbers;
// and the production panel: GET /v1/monitor (estimates from the decision log) beside the simulation.
// Plain JS, no library. The API key lives in sessionStorage and travels only in the Authorization header.
"use strict";

(function () {
  const DEBOUNCE_MS = 100;
  const SLIDER_MAX = 1000;
  const LOG10_MIN = -4; // slider positions 1..1000 span risk 1e-4..1 on a log scale; position 0 is risk 0
  const NUMERIC = ["t_pass", "t_block", "recall", "block_precision", "daily_volume",
    "productive_hours_per_fte", "prevalence_multiplier"];
  const BASE_PARAMS = ["daily_volume", "productive_hours_per_fte", "prevalence_multiplier", "segment_by", "segment"];

  // Rows of the numbers table: result key, label, format.
  const ROWS = [
    ["daily_volume", "Listings per day", "int"],
    ["auto_pass_share", "Auto-pass share", "pct"],
    ["queue_share", "Human review share", "pct"],
    ["auto_block_share", "Auto-block share", "pct"],
    ["queue_per_day", "Listings to review per day", "int"],
    ["reviewer_hours_per_day", "Reviewer-hours per day", "1dp"],
    ["fte", "Reviewers (FTE)", "1dp"],
    ["missed_violations_per_day", "Missed violations per day (auto-passed)", "1dp"],
    ["wrongful_blocks_per_day", "Wrongful blocks per day", "1dp"],
    ["recall", "Recall", "4dp"],
    ["block_precision", "Block precision", "4dp"],
    ["qa_per_day", "QA sample reviews per day", "int"],
  ];
  const BLOCK_ROWS = ["auto_block_share", "wrongful_blocks_per_day"];
  const DIFF_ROWS = ["queue_per_day", "reviewer_hours_per_day", "fte", "missed_violations_per_day",
    "wrongful_blocks_per_day", "auto_pass_share", "auto_block_share"];

  const $ = (id) => document.getElementById(id);
  const state = { context: null, key: null, scenario: null, production: null, curve: null, baseKey: null,
    curveKey: null, seq: 0, timer: null, controller: null };

  // ---- formatting ----------------------------------------------------------------------------------
  function fmt(value, kind) {
    if (value === null || value === undefined || Number.isNaN(value)) return "n/a";
    switch (kind) {
      case "int": return Math.round(value).toLocaleString("en-US");
      case "pct": return (100 * value).toFixed(2) + "%";
      case "1dp": return value.toLocaleString("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 });
      case "4dp": return value.toFixed(4);
      default: return String(Number(value.toPrecision(4)));
    }
  }
  const valueOf = (x) => (x !== null && typeof x === "object" ? x.value : x);
  const roundRisk = (r) => (r <= 0 ? 0 : Number(r.toPrecision(3)));
  const riskFromPosition = (p) => (p <= 0 ? 0 : roundRisk(Math.pow(10, LOG10_MIN * (1 - p / SLIDER_MAX))));
  function positionFromRisk(r) {
    if (!(r > 0)) return 0;
    const p = Math.round(SLIDER_MAX * (1 - Math.log10(r) / LOG10_MIN));
    return Math.min(SLIDER_MAX, Math.max(1, p));
  }

  // ---- scenario <-> controls <-> URL ----------------------------------------------------------------
  function mode() { return $("mode-targets").checked ? "targets" : "thresholds"; }

  function readControls() {
    const s = { mode: mode() };
    for (const name of NUMERIC) s[name] = $(name).value === "" ? null : Number($(name).value);
    s.tier_pass = {};
    for (const input of $("tier-inputs").querySelectorAll("input")) {
      s.tier_pass[input.dataset.tier] = input.value === "" ? null : Number(input.value);
    }
    const option = $("segment").selectedOptions[0];
    s.segment_by = option && option.dataset.column ? option.dataset.column : null;
    s.segment = option && option.dataset.column ? option.dataset.value : null;
    return s;
  }

  function writeControls(s) {
    if (s.mode) $(s.mode === "targets" ? "mode-targets" : "mode-thresholds").checked = true;
    for (const name of NUMERIC) if (s[name] !== undefined && s[name] !== null) $(name).value = s[name];
    for (const [tier, value] of Object.entries(s.tier_pass || {})) {
      const input = tierInput(tier);
      if (input && value !== null) input.value = value;
    }
    syncSliders();
    showMode();
    if (s.segment_by && s.segment) selectSegment(s.segment_by, s.segment);
  }

  function selectSegment(column, value) {
    for (const option of $("segment").options) {
      if (option.dataset.column === column && option.dataset.value === value) option.selected = true;
    }
    state.pendingSegment = $("segment").value ? null : [column, value]; // options may not be loaded yet
  }

  function scenarioParams(s) {
    const p = { daily_volume: s.daily_volume, productive_hours_per_fte: s.productive_hours_per_fte,
      prevalence_multiplier: s.prevalence_multiplier };
    if (s.mode === "targets") Object.assign(p, { recall: s.recall, block_precision: s.block_precision });
    else {
      Object.assign(p, { t_pass: s.t_pass, t_block: s.t_block });
      const tiers = Object.entries(s.tier_pass || {});
      if (tiers.length) p.tier_pass = tiers.map(([tier, value]) => `${tier}:${value}`);
    }
    if (s.segment) Object.assign(p, { segment_by: s.segment_by, segment: s.segment });
    return p;
  }

  function toQuery(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
      if (Array.isArray(v)) v.forEach((item) => q.append(k, String(item)));
      else if (v !== null && v !== undefined) q.set(k, String(v));
    }
    return q.toString();
  }

  function writeHash(s) {
    const hash = "#" + toQuery({ mode: s.mode, ...scenarioParams(s) });
    history.replaceState(null, "", hash);
    $("share-link").href = location.href;
  }

  function readHash() {
    const q = new URLSearchParams(location.hash.slice(1));
    const s = {};
    for (const name of NUMERIC) if (q.has(name) && q.get(name) !== "") s[name] = Number(q.get(name));
    if (q.has("mode")) s.mode = q.get("mode") === "targets" ? "targets" : "thresholds";
    if (q.has("segment_by") && q.has("segment")) { s.segment_by = q.get("segment_by"); s.segment = q.get("segment"); }
    if (q.has("tier_pass")) {
      s.tier_pass = {};
      for (const item of q.getAll("tier_pass")) {
        const [tier, value] = item.split(":");
        if (tier && value !== undefined && value !== "") s.tier_pass[tier] = Number(value);
      }
    }
    return s;
  }

  function syncSliders() {
    for (const name of ["t_pass", "t_block"]) {
      const v = Number($(name).value);
      if ($(name).value !== "" && Number.isFinite(v)) $(name + "_slider").value = positionFromRisk(v);
    }
  }

  function showMode() {
    const targets = mode() === "targets";
    $("threshold-controls").hidden = targets;
    $("target-controls").hidden = !targets;
  }

  // ---- validation (the API checks the same; this just says so before asking) ----------------------
  function pairProblem(s) {
    if (s.mode === "targets") {
      for (const name of ["recall", "block_precision"]) {
        const v = s[name];
        if (v === null || !Number.isFinite(v) || v < 0.5 || v > 0.99999) return [name, `${name} must be between 0.5 and 0.99999`];
      }
      return null;
    }
    for (const name of ["t_pass", "t_block"]) {
      const v = s[name];
      if (v === null || !Number.isFinite(v) || v < 0 || v > 1) return [name, `${name} must be a number between 0 and 1`];
    }
    if (!(s.t_pass < s.t_block)) return ["t_pass", `t_pass (${s.t_pass}) must be below t_block (${s.t_block})`];
    for (const [tier, v] of Object.entries(s.tier_pass || {})) {
      if (v === null || !Number.isFinite(v) || v < 0 || v >= 1) {
        return [tierInput(tier).id, `the ${tier} tier's threshold must be a number from 0 up to (not including) 1`];
      }
    }
    return null;
  }

  function showPairProblem(problem) {
    for (const name of ["t_pass", "t_block", "recall", "block_precision"]) $(name).removeAttribute("aria-invalid");
    for (const input of $("tier-inputs").querySelectorAll("input")) input.removeAttribute("aria-invalid");
    const target = mode() === "targets" ? $("chosen") : $("pair-error");
    $("pair-error").hidden = true;
    if (!problem) return;
    $(problem[0]).setAttribute("aria-invalid", "true");
    if (target === $("pair-error")) { $("pair-error").textContent = problem[1]; $("pair-error").hidden = false; }
    else $("chosen").textContent = problem[1];
  }

  // ---- API -----------------------------------------------------------------------------------------
  function apiKey() { return TriageKey.get(); }

  async function api(path, options = {}) {
    const headers = { Authorization: "Bearer " + apiKey(), Accept: "application/json", ...(options.headers || {}) };
    const response = await fetch(path, { ...options, headers, cache: "no-store" });
    const body = await response.json().catch(() => ({ detail: response.statusText }));
    if (!response.ok) {
      const error = new Error(describeError(response.status, body));
      error.status = response.status;
      throw error;
    }
    return body;
  }

  function describeError(status, body) {
    const detail = body && body.detail;
    const text = Array.isArray(detail)
      ? detail.map((d) => (d.field ? d.field + ": " : "") + d.msg).join("; ")
      : String(detail || "request failed");
    return `${status}: ${text}`;
  }

  function showApiError(message) {
    $("api-error").textContent = message || "";
    $("api-error").hidden = !message;
  }

  async function loadContext() {
    const context = await api("/v1/simulate/context");
    state.context = context;
    const p = context.policy;
    $("context").textContent = `Model ${context.model_version || "?"}, policy in force ${p.version}: ` +
      `t_pass ${fmt(p.t_pass)}, t_block ${fmt(p.t_block)}` +
      (p.segments ? ` (+${p.segments} per-segment pairs by ${p.segment_by})` : "") +
      (Object.keys(p.tier_pass || {}).length
        ? `; per-tier auto-pass below ${Object.entries(p.tier_pass).map(([t, v]) => `${t} ${fmt(v)}`).join(", ")}` : "") +
      `. Reference set: ${context.n_reference.toLocaleString("en-US")} listings, ` +
      `${fmt(context.prevalence, "pct")} violating.`;
    fillSegments(context.segments);
    fillTierInputs(context.tiers || []);
    return context;
  }

  const tierInput = (tier) => $("tier-inputs").querySelector(`input[data-tier="${CSS.escape(tier)}"]`);

  // One number input per tier the policy routes on; the values in force fill them.
  function fillTierInputs(tiers) {
    const routed = tiers.filter((t) => t.t_pass !== null);
    $("tier-controls").hidden = routed.length === 0;
    $("tier-inputs").replaceChildren(...routed.map((t, i) => {
      const wrap = document.createElement("div");
      wrap.className = "tier-input";
      const label = document.createElement("label");
      label.htmlFor = `tier_pass_${i}`;
      label.textContent = `${t.name}: auto-pass below` +
        (t.recall_target === null ? "" : ` (recall target ${fmt(t.recall_target)})`);
      const input = document.createElement("input");
      Object.assign(input, { type: "number", id: `tier_pass_${i}`, min: 0, max: 1, step: "any", value: t.t_pass });
      input.inputMode = "decimal";
      input.dataset.tier = t.name;
      input.addEventListener("input", schedule);
      wrap.append(label, input);
      return wrap;
    }));
  }

  function fillSegments(segments) {
    const select = $("segment");
    const chosen = select.selectedOptions[0];
    const keep = state.pendingSegment || (chosen && chosen.dataset.column ? [chosen.dataset.column, chosen.dataset.value] : null);
    select.replaceChildren(new Option("All listings", ""));
    for (const [column, values] of Object.entries(segments)) {
      const group = document.createElement("optgroup");
      group.label = column;
      values.forEach((value, i) => {
        const option = new Option(`${column} = ${value}`, `${column}:${i}`);
        option.dataset.column = column;
        option.dataset.value = value;
        group.appendChild(option);
      });
      select.appendChild(group);
    }
    state.pendingSegment = null;
    if (keep) selectSegment(keep[0], keep[1]);
  }

  // ---- the update cycle ----------------------------------------------------------------------------
  function schedule() {
    clearTimeout(state.timer);
    state.timer = setTimeout(update, DEBOUNCE_MS);
  }

  async function update() {
    const s = readControls();
    const problem = pairProblem(s);
    showPairProblem(problem);
    if (problem) {
      $("timing").textContent = "Not updated: fix the highlighted value.";
      document.body.dataset.state = "invalid";
      return;
    }
    writeHash(s);
    if (!apiKey()) return;
    document.body.dataset.state = "updating";
    const started = performance.now();
    const seq = ++state.seq;
    if (state.controller) state.controller.abort();
    state.controller = new AbortController();
    const signal = state.controller.signal;
    const params = scenarioParams(s);
    const base = Object.fromEntries(BASE_PARAMS.map((k) => [k, params[k] ?? null]));
    const baseKey = toQuery(base);
    const curveKey = toQuery({ ...base, t_block: params.t_block, recall: params.recall, block_precision: params.block_precision });
    try {
      const [scenario, production, curve] = await Promise.all([
        api("/v1/simulate?" + toQuery(params), { signal }),
        baseKey === state.baseKey ? state.production : api("/v1/simulate?" + toQuery(base), { signal }),
        curveKey === state.curveKey ? state.curve : api("/v1/simulate/curve?" + curveKey, { signal }),
      ]);
      if (seq !== state.seq) return; // a newer update is on its way
      Object.assign(state, { scenario, production, curve, baseKey, curveKey, scenarioState: s });
      showApiError(null);
      render(s);
      const ms = performance.now() - started;
      $("timing").textContent = `Updated in ${ms.toFixed(0)} ms.`;
      $("timing").dataset.ms = ms.toFixed(1);
      document.body.dataset.scenario = toQuery(params); // what the numbers on screen are for
      document.body.dataset.state = "ready";
    } catch (error) {
      if (error.name === "AbortError") return;
      document.body.dataset.state = "error";
      showApiError(error.message);
      if (error.status === 401) $("key-status").textContent = "The key was refused: enter a valid key.";
    }
  }

  // ---- rendering -----------------------------------------------------------------------------------
  function render(s) {
    const r = state.scenario;
    const p = state.production;
    if (s.mode === "targets" && r.chosen) $("chosen").textContent = chosenText(r.chosen, r);
    $("summary").textContent =
      `Pair ${fmt(r.t_pass)} / ${fmt(r.t_block)}: ${fmt(r.queue_share.value, "pct")} of listings to review, ` +
      `${fmt(r.queue_per_day.value, "int")} a day, ${fmt(r.reviewer_hours_per_day.value, "1dp")} reviewer-hours ` +
      `(${fmt(r.fte.value, "1dp")} FTE). Expected ${fmt(r.missed_violations_per_day.value, "1dp")} missed ` +
      `violations a day (95%: ${fmt(r.missed_violations_per_day.low, "1dp")} to ` +
      `${fmt(r.missed_violations_per_day.high, "1dp")}) and ${fmt(r.wrongful_blocks_per_day.value, "1dp")} ` +
      `wrongful blocks a day (${fmt(r.wrongful_blocks_per_day.low, "1dp")} to ` +
      `${fmt(r.wrongful_blocks_per_day.high, "1dp")}).`;
    renderHeadline(r);
    renderTable(r, p);
    renderTiers(r.tiers || []);
    renderBar(r);
    renderCurve(state.curve, r, p);
  }

  // The chosen pair is certified on the whole calibration set; the numbers beside it are the scenario's
  // (the selected segment's, with rules and the QA sample), formatted as in the table: one source.
  function chosenText(c, r) {
    const where = r.segment ? `in segment ${r.segment.column} = ${r.segment.value}` : "over all listings";
    const targets = c.targets || {};
    const outcome = `With it, ${where}: ${fmt(r.queue_share.value, "pct")} to review, recall ` +
      `${fmt(r.recall.value, "4dp")}, block precision ${fmt(r.block_precision.value, "4dp")}.`;
    const verdict = c.feasible
      ? `Targets (recall ${fmt(targets.recall)}, block precision ${fmt(targets.block_precision)}) certified ` +
        "on the calibration data of all listings."
      : `Targets not met: recall ${fmt(targets.recall)} cannot be certified with this calibration data, so ` +
        "these fail-safe thresholds auto-pass nothing.";
    return `Chosen pair: t_pass ${fmt(c.t_pass)}, t_block ${fmt(c.t_block)}. ${verdict} ${outcome}`;
  }

  function cell(text, value) {
    const td = document.createElement("td");
    td.textContent = text;
    if (value !== undefined && value !== null) td.dataset.value = String(value);
    return td;
  }

  // What a PM reads first: the share decided without a person, and the reviewers that frees.
  function renderHeadline(r) {
    const h = r.headline;
    const auto = h.auto_decided_share;
    const saved = h.fte_saved;
    $("auto-decided").textContent = fmt(auto.value, "pct");
    $("auto-decided").dataset.value = String(auto.value);
    $("auto-decided-interval").textContent = `(${fmt(auto.low, "pct")} to ${fmt(auto.high, "pct")})`;
    $("fte-saved").textContent = fmt(saved.value, "1dp");
    $("fte-saved").dataset.value = String(saved.value);
    $("fte-saved-interval").textContent = `(${fmt(saved.low, "1dp")} to ${fmt(saved.high, "1dp")})`;
    // an audited automated decision is a review all the same: the saving shown is net of the audits
    $("fte-saved-parts").textContent = `${fmt(h.fte_saved_gross.value, "1dp")} saved before audits, ` +
      `${fmt(h.audit_fte.value, "1dp")} spent on audits of automated decisions; ` +
      `${fmt(h.fte_review_all.value, "1dp")} FTE to review everything, ${fmt(r.fte.value, "1dp")} in the queue ` +
      "with this scenario" +
      (r.rules_not_applied && r.rules_not_applied.length
        ? `. Rules in force not applied (they read text or product matches the reference set does not keep): ` +
          `${r.rules_not_applied.join(", ")}; the rules page backtests them`
        : "");
  }

  function renderTiers(tiers) {
    $("tiers-block").hidden = tiers.length === 0;
    $("tiers").tBodies[0].replaceChildren(...tiers.map((t) => {
      const tr = document.createElement("tr");
      tr.dataset.tier = t.name;
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = t.name;
      const interval = (e, kind) => `${fmt(e.low, kind)} to ${fmt(e.high, kind)}`;
      tr.append(th,
        cell(t.recall_target === null ? "none" : fmt(t.recall_target), t.recall_target),
        cell(t.t_pass === null ? "not used" : fmt(t.t_pass), t.t_pass),
        cell(fmt(t.recall.value, "4dp"), t.recall.value),
        cell(interval(t.recall, "4dp")),
        cell(fmt(t.missed_violations_per_day.value, "1dp"), t.missed_violations_per_day.value),
        cell(interval(t.missed_violations_per_day, "1dp")),
        cell(fmt(t.n_violations, "int"), t.n_violations));
      return tr;
    }));
  }

  function renderTable(r, p) {
    const body = $("numbers").tBodies[0];
    const rows = [["thresholds", "t_pass / t_block", null]].concat(ROWS);
    body.replaceChildren(...rows.map(([key, label, kind]) => {
      const tr = document.createElement("tr");
      tr.dataset.key = key;
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = label;
      tr.appendChild(th);
      if (key === "thresholds") {
        tr.append(cell(`${fmt(r.t_pass)} / ${fmt(r.t_block)}`), cell(""),
          cell(p.t_pass === null ? "per segment" : `${fmt(p.t_pass)} / ${fmt(p.t_block)}`));
        return tr;
      }
      const est = r[key];
      const exact = r.can_block === false && BLOCK_ROWS.includes(key);  // zero by construction, not estimated
      const interval = exact ? "none: nothing can be blocked"
        : est !== null && typeof est === "object" ? `${fmt(est.low, kind)} to ${fmt(est.high, kind)}` : "";
      tr.append(cell(fmt(valueOf(est), kind), valueOf(est)), cell(interval), cell(fmt(valueOf(p[key]), kind), valueOf(p[key])));
      return tr;
    }));
  }

  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    if (text !== undefined) el.textContent = text;
    return el;
  }

  // Labels go in an HTML legend under the bar: text inside the stretched SVG was cut or squeezed.
  function renderBar(r) {
    const parts = [["auto-pass", r.auto_pass_share.value, "seg-pass"], ["review", r.queue_share.value, "seg-queue"],
      ["auto-block", r.auto_block_share.value, "seg-block"]];
    const bar = $("split-bar");
    bar.replaceChildren();
    let x = 0;
    for (const [name, share, cls] of parts) {
      const width = 600 * (share || 0);
      const rect = svg("rect", { x, y: 0, width, height: 60, class: cls });
      rect.appendChild(svg("title", {}, `${name}: ${fmt(share, "pct")}`));
      bar.appendChild(rect);
      x += width;
    }
    $("split-legend").replaceChildren(...parts.map(([name, share, cls]) => {
      const item = document.createElement("li");
      item.dataset.part = name;
      const swatch = document.createElement("span");
      swatch.className = "swatch " + cls;
      swatch.setAttribute("aria-hidden", "true");
      item.append(swatch, `${name} ${fmt(share, "pct")}`);
      return item;
    }));
  }

  function renderCurve(curve, r, p) {
    const plot = $("curve");
    plot.replaceChildren();
    const points = curve.points.filter((d) => d.recall !== null);
    const marks = [[r, "point-scenario", "scenario"], [p, "point-production", "policy in force"]];
    const hours = points.map((d) => d.reviewer_hours_per_day).concat(marks.map(([m]) => m.reviewer_hours_per_day.value));
    const recalls = points.map((d) => d.recall).concat(marks.map(([m]) => m.recall.value)).filter((v) => v !== null);
    const [x0, x1] = [0, Math.max(...hours, 1e-9)];
    const [y0, y1] = [Math.min(...recalls, 0.999), 1];
    const box = { left: 60, right: 580, top: 15, bottom: 280 };
    const sx = (v) => box.left + (box.right - box.left) * (v - x0) / (x1 - x0);
    const sy = (v) => box.bottom - (box.bottom - box.top) * (v - y0) / (y1 - y0 || 1);
    for (let i = 0; i <= 4; i++) {
      const yv = y0 + (y1 - y0) * i / 4;
      const xv = x0 + (x1 - x0) * i / 4;
      plot.append(svg("line", { x1: box.left, x2: box.right, y1: sy(yv), y2: sy(yv), class: "grid" }),
        svg("text", { x: 4, y: sy(yv) + 4 }, yv.toFixed(4)),
        svg("text", { x: sx(xv) - 12, y: box.bottom + 16 }, fmt(xv, "int")));
    }
    plot.append(svg("line", { x1: box.left, x2: box.left, y1: box.top, y2: box.bottom, class: "axis" }),
      svg("line", { x1: box.left, x2: box.right, y1: box.bottom, y2: box.bottom, class: "axis" }),
      svg("text", { x: 250, y: 315 }, "reviewer-hours per day"),
      svg("polyline", { class: "curve-line",
        points: points.map((d) => `${sx(d.reviewer_hours_per_day).toFixed(1)},${sy(d.recall).toFixed(1)}`).join(" ") }));
    for (const [m, cls, name] of marks) {
      const cx = sx(m.reviewer_hours_per_day.value);
      const cy = sy(m.recall.value ?? 1);
      const mark = cls === "point-scenario"
        ? svg("circle", { cx, cy, r: 6, class: cls })
        : svg("rect", { x: cx - 5, y: cy - 5, width: 10, height: 10, class: cls });
      mark.appendChild(svg("title", {}, `${name}: recall ${fmt(m.recall.value, "4dp")} at ` +
        `${fmt(m.reviewer_hours_per_day.value, "1dp")} reviewer-hours/day`));
      plot.appendChild(mark);
    }
  }

  // ---- downloads -----------------------------------------------------------------------------------
  function download(name, type, text) {
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([text], { type }));
    link.download = name;
    document.body.appendChild(link);
    link.click();
    setTimeout(() => { URL.revokeObjectURL(link.href); link.remove(); }, 0);
  }

  function csvText() {
    const r = state.scenario;
    const p = state.production;
    const lines = [["quantity", "scenario", "scenario_low", "scenario_high", "in_force", "in_force_low", "in_force_high"]];
    const s = state.scenarioState;
    for (const [k, v] of Object.entries({ mode: s.mode, ...scenarioParams(s), t_pass_used: r.t_pass, t_block_used: r.t_block })) {
      lines.push([k, v ?? "", "", "", "", "", ""]);
    }
    for (const [key] of ROWS) {
      const e = r[key];
      const f = p[key];
      const obj = e !== null && typeof e === "object";
      lines.push([key, valueOf(e) ?? "", obj ? e.low ?? "" : "", obj ? e.high ?? "" : "",
        valueOf(f) ?? "", obj ? f.low ?? "" : "", obj ? f.high ?? "" : ""]);
    }
    for (const [key, e] of Object.entries(r.headline)) lines.push([key, e.value ?? "", e.low ?? "", e.high ?? "", "", "", ""]);
    for (const t of r.tiers || []) {
      for (const key of ["recall", "missed_violations_per_day"]) {
        const e = t[key];
        lines.push([`tier ${t.name} ${key}`, e.value ?? "", e.low ?? "", e.high ?? "", "", "", ""]);
      }
    }
    const quote = (v) => (/[",\n]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : String(v));
    return lines.map((row) => row.map(quote).join(",")).join("\n") + "\n";
  }

  function jsonText() {
    return JSON.stringify({ scenario: { mode: state.scenarioState.mode, ...scenarioParams(state.scenarioState) },
      link: location.href, result: state.scenario, policy_in_force: state.production }, null, 2);
  }

  // ---- apply as production policy ------------------------------------------------------------------
  // null: not known (an older service without /v1/keys/me); the API still refuses a key without admin.
  async function loadKeyScopes() {
    try {
      state.key = await api("/v1/keys/me");
    } catch (error) {
      state.key = null;
      if (error.status === 401) throw error;
    }
  }

  function keyMayApply() {
    return !state.key || state.key.scopes.includes("admin");
  }

  function openApply() {
    if (!state.scenario) { $("apply-status").textContent = "Run a scenario first."; return; }
    if (!keyMayApply()) {
      $("apply-status").textContent = `This key (${state.key.name}) has the scopes ${state.key.scopes.join(", ")}: ` +
        "applying a policy needs a key with the admin scope. Enter an admin key above, or send the link to this " +
        "scenario to someone who has one.";
      $("apply-status").classList.add("error");
      return;
    }
    $("apply-status").textContent = "";
    $("apply-status").classList.remove("error");
    const r = state.scenario;
    const p = state.production;
    const tiered = (t) => (t.tiers || []).some((tier) => tier.t_pass !== null);
    if (tiered(p) && !tiered(r)) {
      // a target-mode scenario certifies one overall target with no tier thresholds; the policy API keeps the
      // tier thresholds in force, so applying would put a policy in force that this scenario did not show
      $("apply-status").textContent = "This scenario decides on the overall risk alone, but the policy in force " +
        "also has per-tier thresholds, which applying would keep: what would be in force is not what this " +
        "scenario shows. Switch to thresholds mode to try a pair with the tier thresholds in force, or certify " +
        "new per-tier targets with `triage thresholds --tier-recall`.";
      $("apply-status").classList.add("error");
      return;
    }
    $("apply-pair").textContent = `New thresholds: t_pass ${fmt(r.t_pass)}, t_block ${fmt(r.t_block)} ` +
      `(in force: ${p.t_pass === null ? "per segment" : fmt(p.t_pass) + ", " + fmt(p.t_block)}). ` +
      (r.chosen && !r.chosen.feasible ? "Warning: the targets are not met by this pair. " : "") +
      "Per-segment thresholds, if any, are replaced by this one pair; rules and QA rate stay." +
      ((r.tiers || []).some((t) => t.t_pass !== null)
        ? " Per-tier thresholds stay as in force: applying sets the overall pair only." : "");
    const kinds = Object.fromEntries(ROWS.map(([k, , kind]) => [k, kind]));
    $("apply-diff").tBodies[0].replaceChildren(...DIFF_ROWS.map((key) => {
      const tr = document.createElement("tr");
      tr.dataset.key = key;
      const before = p[key].value;
      const after = r[key].value;
      const delta = after - before;
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = ROWS.find(([k]) => k === key)[1];
      tr.append(th, cell(fmt(before, kinds[key]), before), cell(fmt(after, kinds[key]), after),
        cell((delta > 0 ? "+" : "") + fmt(delta, kinds[key]), delta));
      return tr;
    }));
    $("apply-error").hidden = true;
    $("apply-dialog").showModal();
  }

  async function confirmApply() {
    const r = state.scenario;
    const body = { t_pass: r.t_pass, t_block: r.t_block, segment_by: null, segments: {},
      reason: `simulator page: scenario t_pass ${r.t_pass}, t_block ${r.t_block} applied` };
    try {
      const out = await api("/v1/policy", { method: "PUT", body: JSON.stringify(body),
        headers: { "Content-Type": "application/json" } });
      $("apply-dialog").close();
      $("apply-status").textContent = `Policy ${out.policy.version} is now in force.`;
      state.baseKey = null;
      await loadContext();
      schedule();
    } catch (error) {
      $("apply-error").textContent = error.status === 403
        ? `Refused (${error.message}). Applying needs an admin key.` : `Refused (${error.message}).`;
      $("apply-error").hidden = false;
    }
  }

  // ---- production monitor: GET /v1/monitor beside the simulated expectation --------------------------
  const MONITOR_ROWS = [
    ["miss_rate", "Miss rate (violations among auto-passed)", "pct"],
    ["recall", "Recall", "4dp"],
    ["block_precision", "Block precision", "4dp"],
    ["queue_share", "Human review share", "pct"],
    ["violation_rate", "Violation rate", "pct"],
  ];

  function simulatedValue(expected, key) {
    if (!expected) return null;
    if (key === "miss_rate") return expected.miss_rate;
    return expected[key] ? expected[key].value : null;
  }

  async function loadMonitor() {
    if (!apiKey()) return;
    const hours = $("monitor-hours").value;
    document.body.dataset.monitor = "loading";
    try {
      const m = await api("/v1/monitor?hours=" + encodeURIComponent(hours));
      renderMonitor(m);
      $("monitor-error").hidden = true;
      document.body.dataset.monitor = "ready";
    } catch (error) {
      $("monitor-error").textContent = error.message;
      $("monitor-error").hidden = false;
      document.body.dataset.monitor = "error";
    }
  }

  function renderMonitor(m) {
    const l = m.labels;
    $("monitor-summary").textContent = `${fmt(l.decisions, "int")} decisions in the window, ` +
      `${fmt(l.with_verdict, "int")} with a verdict; ${fmt(l.pending_review, "int")} reviews and ` +
      `${fmt(l.pending_audit, "int")} audits still pending` +
      (l.skipped_automated ? `; ${fmt(l.skipped_automated, "int")} automated decisions without a logged audit ` +
        "probability left out" : "") + (m.truncated ? " (only the most recent read)." : ".") +
      MONITOR_ROWS.filter(([key]) => m.estimates[key].why)
        .map(([key, label]) => ` ${label}: no estimate, ${m.estimates[key].why}.`).join("");
    $("monitor-table").tBodies[0].replaceChildren(...MONITOR_ROWS.map(([key, label, kind]) => {
      const e = m.estimates[key];
      const tr = document.createElement("tr");
      tr.dataset.key = key;
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = label;
      const simulated = simulatedValue(m.expected, key);
      const value = cell(fmt(e.estimate, kind), e.estimate);
      if (e.why) value.title = `no estimate: ${e.why}`;
      tr.append(th, value,
        cell(e.low === null ? "" : `${fmt(e.low, kind)} to ${fmt(e.high, kind)}`),
        cell(fmt(e.n_labelled, "int"), e.n_labelled), cell(fmt(simulated, kind), simulated));
      return tr;
    }));
    const d = m.drift;
    $("monitor-status").textContent = d.status.toUpperCase();
    $("monitor-status").dataset.status = d.status;
    const items = [`Reference: ${d.reference}.`];
    const STATUS_TEXT = { insufficient_data: "too few decisions to judge", no_reference: "no target to compare" };
    const said = (status) => STATUS_TEXT[status] || status;
    const psi = (name, c) =>
      `${name}: ${c.psi === null ? "no PSI" : `PSI ${c.psi.toFixed(3)}`} on ${fmt(c.n, "int")} decisions, ${said(c.status)}`;
    if (d.risk) items.push(psi("Risk distribution", d.risk));
    if (d.routing) items.push(psi("Routing mix against the expected split", d.routing));
    for (const [name, c] of Object.entries(d.features || {})) items.push(psi(`Feature ${name}`, c));
    const recall = (name, c) => `${name}: ${fmt(c.estimate, "4dp")} against target ` +
      `${c.target === null ? "none" : fmt(c.target, "4dp")}, ${said(c.status)}`;
    if (d.recall) items.push(recall("Recall", d.recall));  // a tiered policy has its tiers' targets only
    for (const [name, c] of Object.entries(d.tier_recall || {})) items.push(recall(`Recall of tier ${name}`, c));
    $("monitor-drift").replaceChildren(...items.map((text) => {
      const li = document.createElement("li");
      li.textContent = text;
      return li;
    }));
  }

  // ---- wiring --------------------------------------------------------------------------------------
  async function start() {
    state.context = null;
    $("apply-status").textContent = "";
    $("apply-status").classList.remove("error");
    state.baseKey = state.curveKey = null;
    try {
      const [context] = await Promise.all([loadContext(), loadKeyScopes()]);
      const fromLink = readHash();
      writeControls({ t_pass: context.policy.t_pass, t_block: context.policy.t_block, ...context.defaults, ...fromLink });
      $("key-status").textContent = "Key accepted.";
      update();
      loadMonitor();
    } catch (error) {
      showApiError(error.message);
      $("key-status").textContent = error.status === 401 ? "The key was refused: enter a valid key." : "";
    }
  }

  function wire() {
    TriageKey.wire({ use: start, inUse: null });
    $("controls").addEventListener("submit", (event) => event.preventDefault());
    for (const name of ["t_pass", "t_block"]) {
      $(name + "_slider").addEventListener("input", () => {
        let risk = riskFromPosition(Number($(name + "_slider").value));
        const other = Number($(name === "t_pass" ? "t_block" : "t_pass").value);
        // keep t_pass below t_block while dragging: stop one step short of the other threshold
        if (name === "t_pass" && risk >= other) risk = riskFromPosition(positionFromRisk(other) - 1);
        if (name === "t_block" && risk <= other) risk = riskFromPosition(positionFromRisk(other) + 1);
        if ((name === "t_pass" && risk >= other) || (name === "t_block" && risk <= other)) return;
        $(name).value = risk;
        $(name + "_slider").value = positionFromRisk(risk);
        schedule();
      });
      $(name).addEventListener("input", () => { syncSliders(); schedule(); });
    }
    for (const name of ["recall", "block_precision", "daily_volume", "productive_hours_per_fte", "prevalence_multiplier"]) {
      $(name).addEventListener("input", schedule);
    }
    $("segment").addEventListener("change", schedule);
    for (const id of ["mode-thresholds", "mode-targets"]) $(id).addEventListener("change", () => { showMode(); schedule(); });
    $("download-csv").addEventListener("click", () => state.scenario && download("simulation.csv", "text/csv", csvText()));
    $("download-json").addEventListener("click", () => state.scenario && download("simulation.json", "application/json", jsonText()));
    $("apply").addEventListener("click", openApply);
    $("monitor-hours").addEventListener("change", loadMonitor);
    $("monitor-refresh").addEventListener("click", loadMonitor);
    $("apply-confirm").addEventListener("click", confirmApply);
    $("apply-cancel").addEventListener("click", () => $("apply-dialog").close());
    window.addEventListener("hashchange", () => { writeControls(readHash()); schedule(); });
  }

  document.addEventListener("DOMContentLoaded", () => {
    wire();
    writeControls(readHash());
    if (apiKey()) start();
    else $("key-status").textContent = "No key yet.";
  });
})();
