// Review console: claim an item (GET /v1/review/next), read its context, record a verdict
// (POST /v1/reviews/{id}), skip or release it. Plain JS, no library. The API key lives in sessionStorage
// and travels only in the Authorization header; a held item is given back when the page is left.
// Performance marks "review-next" (the action) and "review-rendered" (the item on screen) measure
// "review-claim-to-render" (bench/bench_review.py reads it).
(() => {
  "use strict";
  const HELD_STORAGE = "triage.review.held";
  const $ = (id) => document.getElementById(id);
  const state = { item: null, context: null, shownAt: 0, leaseTimer: 0 };

  function apiKey() { return TriageKey.get(); }
  function authHeaders() { return { Authorization: "Bearer " + apiKey(), Accept: "application/json" }; }

  async function call(path, options = {}) {
    const response = await fetch(path, { cache: "no-store", ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
    const body = await response.json().catch(() => ({ detail: response.statusText }));
    return { ok: response.ok, status: response.status, body };
  }

  function detailOf(body) {
    if (Array.isArray(body.detail)) return body.detail.map((d) => (d.field ? d.field + ": " : "") + d.msg).join("; ");
    return body.detail || "";
  }

  function say(text) { $("status").textContent = text; }

  function fail(result) {
    let text = result.status + ": " + detailOf(result.body);
    if (result.status === 401) text = "401: the key was refused; sign in with a valid review key.";
    if (result.status === 403) text = "403: this key cannot use the review console (it lacks the review scope). " + detailOf(result.body);
    $("error").textContent = text;
    $("error").hidden = false;
    document.body.dataset.state = "error";
  }

  function clearError() { $("error").hidden = true; $("error").textContent = ""; }

  // --- claiming ------------------------------------------------------------------------------------
  async function next(skip = []) {
    if (!apiKey()) { say("Sign in with a review key first."); $("api-key").focus(); return; }
    clearError();
    performance.clearMarks("review-next");
    performance.mark("review-next");
    document.body.dataset.state = "loading";
    const query = skip.map((id) => "skip=" + encodeURIComponent(id)).join("&");
    const result = await call("/v1/review/next" + (query ? "?" + query : ""));
    if (!result.ok) { fail(result); return; }
    show(result.body, skip.length ? "Skipped. " : "");
  }

  async function reopen(decisionId) {
    const result = await call("/v1/review/items/" + encodeURIComponent(decisionId));
    if (result.ok) show(result.body, "Back to the item you held. ");
    else { forget(); say("Press N to claim the next item."); }
  }

  function show(result, prefix) {
    if (!result.item) {
      forget();
      say(prefix + "The queue is empty: nothing to review now.");
      document.body.dataset.state = "empty";
      return;
    }
    state.item = result.item;
    state.context = result.context;
    sessionStorage.setItem(HELD_STORAGE, result.item.decision_id);
    draw(result.item, result.context);
    $("item").hidden = false;
    setHeld(true);
    void document.body.offsetHeight; // layout done: the item is on screen
    performance.mark("review-rendered");
    if (performance.getEntriesByName("review-next", "mark").length) {
      performance.measure("review-claim-to-render", "review-next", "review-rendered");
      performance.clearMarks("review-next");
    }
    state.shownAt = performance.now();
    document.body.dataset.decision = result.item.decision_id;
    document.body.dataset.state = "shown";
    say(prefix + "Item " + result.item.decision_id + " claimed: " + (titleOf(result.context) || "untitled") + ".");
    $("item-title").focus();
  }

  function forget() {
    state.item = null;
    state.context = null;
    sessionStorage.removeItem(HELD_STORAGE);
    $("item").hidden = true;
    setHeld(false);
    delete document.body.dataset.decision;
  }

  function setHeld(held) {
    $("skip").disabled = !held;
    $("release").disabled = !held;
    clearInterval(state.leaseTimer);
    $("lease").textContent = "";
    if (held && state.item.lease_expires_at) {
      tickLease();
      state.leaseTimer = setInterval(tickLease, 1000);
    }
  }

  function tickLease() {
    const left = Math.round((Date.parse(state.item.lease_expires_at) - Date.now()) / 1000);
    if (left <= 0) {
      $("lease").textContent = "Lease expired: another reviewer may claim this item.";
      $("lease").className = "lease expired";
      clearInterval(state.leaseTimer);
      return;
    }
    const minutes = Math.floor(left / 60);
    const seconds = String(left % 60).padStart(2, "0");
    $("lease").textContent = "Lease: " + minutes + ":" + seconds + " left";
    $("lease").className = left < 60 ? "lease ending" : "lease";
  }

  // --- drawing -------------------------------------------------------------------------------------
  const fixed = (v, digits = 2) => (v === null || v === undefined ? "unknown" : Number(v).toFixed(digits));
  const risk = (v) => TriageFormat.risk(v);
  const pct = (v) => (v === null || v === undefined ? "unknown" : Math.round(100 * v) + "%");
  const words = { auto_pass: "auto-pass", auto_block: "auto-block", human_review: "human review" };

  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  function facts(list, pairs) {
    const nodes = [];
    for (const [term, value] of pairs) {
      if (value === null || value === undefined || value === "") continue;
      nodes.push(element("dt", term), element("dd", String(value)));
    }
    list.replaceChildren(...nodes);
  }

  function items(list, texts, empty) {
    list.replaceChildren(...(texts.length ? texts : [empty]).map((t) => element("li", t)));
  }

  // the built-in marketplace's columns get their words; any other column shows under its own name
  const COLUMN_LABELS = { brand: "Brand", category: "Category", market: "Market" };

  function titleOf(c) {
    return c.title_column ? c.listing[c.title_column] : "";
  }

  function draw(item, c) {
    $("lane").textContent = c.lane === "review" ? "Review: the listing waits for your decision." : c.lane_words;
    $("lane").className = "lane " + c.lane;
    $("item-title").textContent = titleOf(c) || "(no title)";
    const p = c.price;
    const price = p.price === null ? null : fixed(p.price) + (p.words ? " (" + p.words + " of " + fixed(p.category_median_price) + ")" : "");
    // every other text and category column of the bundle's data config, under its own name
    const others = Object.keys(c.listing).filter((k) => k !== c.title_column && k !== c.description_column);
    facts($("listing"), [
      ["Price", price], ...others.map((k) => [COLUMN_LABELS[k] || k, c.listing[k]]), ["Listing id", c.listing_id],
    ]);
    $("description").textContent = (c.description_column && c.listing[c.description_column]) || "";
    drawRisk(c.risk);
    items($("reasons"), c.reasons.map((r) => r.words), "No signal raised the risk.");
    items($("rules"), c.rules.map((r) => r.name + " (" + (r.mode === "shadow" ? "shadow, not acted on" : r.action) + "): " + r.checks), "None.");
    items($("matches"), c.product_matches.map((m) => m.words), "No re-post or catalogue product found.");
    const m = c.merchant;
    // a data config without a merchant column has no merchant history to show
    $("merchant-heading").parentElement.hidden = m.merchant_id === null || m.merchant_id === undefined;
    facts($("merchant"), [
      ["Merchant", m.merchant_id], ["Earlier reviewed listings", m.prior_reviews], ["Rejected", m.prior_rejects],
      ["Reject rate", m.prior_reviews ? pct(m.reject_rate) : null],
      ["Days since last reject", m.days_since_last_reject === null ? null : Math.round(m.days_since_last_reject)],
    ]);
    drawSimilar(c);
    drawReasons(c.violation_reasons);
    $("note").value = "";
  }

  function drawRisk(r) {
    if (r.risk === null) {
      $("risk").textContent = "Not scored by the model (" + (r.fallback_reason || "unknown") + "): a person decides.";
    } else {
      const pass = r.tiers.length ? "auto-pass only when every tier's risk is below its threshold (table)"
        : "auto-pass below " + risk(r.t_pass);
      $("risk").textContent = "Risk " + risk(r.risk) + ": " + pass + ", auto-block from " + risk(r.t_block) +
        ". Decision: " + (words[r.decision] || r.decision) + (r.decision_tier ? " (tier " + r.decision_tier + ")" : "") + ".";
    }
    const body = $("tiers").querySelector("tbody");
    body.replaceChildren(...r.tiers.map((t) => {
      const tr = element("tr");
      tr.append(element("td", t.name + (t.name === r.decision_tier ? " (deciding)" : "")), element("td", risk(t.risk)),
        element("td", t.t_pass === null ? "not set" : risk(t.t_pass)));
      return tr;
    }));
    $("tiers").hidden = !r.tiers.length;
  }

  function drawSimilar(c) {
    const body = $("similar").querySelector("tbody");
    const rows = c.similar_cases.map((s) => {
      const tr = element("tr");
      tr.append(element("td", s.listing_id), element("td", s.verdict || "unknown"),
        element("td", s.violation_reason || "\u2013"), element("td", pct(s.similarity)));
      return tr;
    });
    if (!rows.length) {
      const tr = element("tr");
      const td = element("td", c.similar_available ? "No similar reviewed listing." : "This model bundle has no index of past cases.");
      td.colSpan = 4;
      tr.append(td);
      rows.push(tr);
    }
    body.replaceChildren(...rows);
  }

  function drawReasons(options) {
    const select = $("reason");
    select.replaceChildren(element("option", "Choose a reason"), ...options.map((o) => {
      const option = element("option", o.title);
      option.value = o.reason;
      return option;
    }));
    select.firstChild.value = "";
    showExcerpt();
  }

  function showExcerpt() {
    const chosen = (state.context ? state.context.violation_reasons : []).find((o) => o.reason === $("reason").value);
    const box = $("excerpt");
    if (!chosen) { box.replaceChildren(); return; }
    box.replaceChildren(element("strong", chosen.title), element("span", chosen.section ? " \u2013 " + chosen.section : "", "muted"),
      element("p", chosen.excerpt || "No policy excerpt is configured for this reason."));
  }

  // --- verdicts, skip, release ---------------------------------------------------------------------
  async function verdict(kind) {
    if (!state.item) { say("No item: press N to claim one."); return; }
    const reason = $("reason").value;
    if (kind === "reject" && !reason) {
      say("Choose the violation reason, then reject again.");
      $("reason").focus();
      return;
    }
    const body = { verdict: kind, review_seconds: Math.round((performance.now() - state.shownAt) / 100) / 10 };
    if (kind === "reject") body.violation_reason = reason;
    if ($("note").value.trim()) body.note = $("note").value.trim();
    const id = state.item.decision_id;
    const result = await call("/v1/reviews/" + encodeURIComponent(id), {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    if (!result.ok) { fail(result); return; }
    clearError();
    forget();
    document.body.dataset.state = "recorded";
    say((kind === "reject" ? "Rejected (" + reason + ")" : "Approved") + ": " + id + ". Press N for the next item.");
    $("next").focus();
  }

  async function release() {
    if (!state.item) return;
    const id = state.item.decision_id;
    const result = await call("/v1/queue/" + encodeURIComponent(id) + "/release", { method: "POST" });
    forget();
    if (!result.ok && result.status !== 409) { fail(result); return; }
    document.body.dataset.state = "released";
    say("Released " + id + ": it is back in the queue. Press N for the next item.");
    $("next").focus();
  }

  function releaseOnLeave() {
    if (!state.item || !apiKey()) return;
    fetch("/v1/queue/" + encodeURIComponent(state.item.decision_id) + "/release", {
      method: "POST", keepalive: true, headers: authHeaders(),
    });
  }

  // --- keys and sign-in ----------------------------------------------------------------------------
  const SHORTCUTS = {
    n: () => next(), a: () => verdict("approve"), r: () => verdict("reject"),
    s: () => state.item && next([state.item.decision_id]), l: () => release(),
    "?": () => { $("help").open = !$("help").open; },
  };

  function onKey(event) {
    const typing = event.target.closest && event.target.closest("input, textarea, select");
    if (typing) {
      if (event.key === "Escape" && state.item) $("item-title").focus();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const action = SHORTCUTS[event.key.toLowerCase()];
    if (action) { event.preventDefault(); action(); }
  }

  async function signIn() {
    const result = await call("/v1/keys/me");
    if (!result.ok) { $("key-status").textContent = "The key was refused (" + result.status + "): enter a valid key."; return; }
    const scopes = result.body.scopes;
    if (!scopes.includes("review") && !scopes.includes("admin")) {
      $("key-status").textContent = "Signed in as " + result.body.name + ", but this key lacks the review scope: the console needs a review key.";
      return;
    }
    $("key-status").textContent = "Signed in as " + result.body.name + ". Press N to claim an item.";
    const held = sessionStorage.getItem(HELD_STORAGE);
    if (held) reopen(held);
  }

  document.addEventListener("DOMContentLoaded", () => {
    TriageKey.wire({
      use: signIn,
      forget: () => { releaseOnLeave(); forget(); },
      inUse: null,
    });
    $("next").addEventListener("click", () => next());
    $("skip").addEventListener("click", () => state.item && next([state.item.decision_id]));
    $("release").addEventListener("click", release);
    $("approve").addEventListener("click", () => verdict("approve"));
    $("reject").addEventListener("click", () => verdict("reject"));
    $("reason").addEventListener("change", showExcerpt);
    document.addEventListener("keydown", onKey);
    window.addEventListener("pagehide", releaseOnLeave);
    document.body.dataset.state = "idle";
    if (apiKey()) signIn();
    else $("key-status").textContent = "Not signed in.";
  });
})();
