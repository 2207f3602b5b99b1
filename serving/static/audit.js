// Decision audit page: reads GET /v1/decisions/{id} or GET /v1/listings/{id}/history and shows, for each
// decision, the why first, then its facts, verdicts, statements of reasons and timeline. A link may name
// the decision or listing in the query string (?decision=... or ?listing=...).
// Plain JS, no library. The API key lives in sessionStorage and travels only in the Authorization header.
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const dash = "\u2013";
  const num = (v) => TriageFormat.risk(v, dash);
  const text = (v) => (v === null || v === undefined || v === "" ? dash : String(v));
  // as `triage decisions show` says it: a tiered policy passes on each tier's own threshold (its overall
  // t_pass passes nothing on its own)
  function thresholds(d) {
    const t = d.thresholds;
    if (!t.tiers_decide) return "t_pass " + num(t.t_pass) + ", t_block " + num(t.t_block);
    const each = t.tier_pass
      ? Object.entries(t.tier_pass).map(([name, v]) => name + " " + num(v)).join(", ")
      : "those of the bundle's own policy (model " + text(d.model_version) + ")";
    return "t_block " + num(t.t_block) + "; pass thresholds per tier: " + each;
  }

  function apiKey() { return TriageKey.get(); }

  function chosen() {
    return { by: $("by-listing").checked ? "listing" : "decision", id: $("lookup-id").value.trim() };
  }

  async function lookUp() {
    const { by, id } = chosen();
    if (!id) return;
    if (!apiKey()) {
      $("key-status").textContent = "Enter an API key with the audit scope to look this up.";
      return;
    }
    $("error").hidden = true;
    $("results").replaceChildren();
    $("summary").textContent = "";
    document.body.dataset.state = "loading";
    const path = by === "listing"
      ? "/v1/listings/" + encodeURIComponent(id) + "/history"
      : "/v1/decisions/" + encodeURIComponent(id);
    history.replaceState(null, "", "?" + new URLSearchParams({ [by]: id }));
    const response = await fetch(path, {
      headers: { Authorization: "Bearer " + apiKey(), Accept: "application/json" },
      cache: "no-store",
    });
    const body = await response.json().catch(() => ({ detail: response.statusText }));
    if (!response.ok) {
      showError(response.status, body);
      return;
    }
    const decisions = by === "listing" ? body.decisions : [body];
    $("summary").textContent = by === "listing"
      ? decisions.length + " decisions of listing " + id + ", oldest first" +
        (body.truncated ? " (only the first ones: the listing has more)" : "") + "."
      : "";
    for (const decision of decisions) $("results").appendChild(drawDecision(decision));
    document.body.dataset.state = "ready";
  }

  function showError(status, body) {
    const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
    let message = status + ": " + detail;
    if (status === 401) message = "The key was refused (" + detail + "): enter a valid key.";
    if (status === 403) message = "This key may not read the decision audit: it needs the audit scope (" + detail + ").";
    if (status === 404) message = "Not found: " + detail + ".";
    $("error").textContent = message;
    $("error").hidden = false;
    document.body.dataset.state = "error";
    document.body.dataset.status = String(status);
  }

  function element(tag, content, className) {
    const node = document.createElement(tag);
    if (content !== undefined) node.textContent = content;
    if (className) node.className = className;
    return node;
  }

  function drawDecision(d) {
    const section = element("section", undefined, "decision");
    section.dataset.decisionId = d.decision_id;
    const headingId = "decision-" + d.decision_id;
    section.setAttribute("aria-labelledby", headingId);
    const heading = element("h2", d.decision + " \u2014 decision " + d.decision_id);
    heading.id = headingId;
    section.append(heading, element("p", d.why, "why"));
    section.append(element("h3", "Facts"), facts(d));
    section.append(element("h3", "Verdicts"), verdicts(d));
    section.append(element("h3", "Statements of reasons"), statements(d));
    section.append(element("h3", "Timeline"), timeline(d));
    const details = element("details");
    details.append(element("summary", "The listing as received"), element("pre", JSON.stringify(d.listing, null, 2)));
    section.append(details);
    return section;
  }

  function facts(d) {
    const rules = (list) => list.length
      ? list.map((r) => r.name + (r.action ? " (" + r.action + ", since policy " + r.in_force_since + ")" : "")).join("; ")
      : dash;
    const tiers = d.tier_risk
      ? Object.entries(d.tier_risk).map(([k, v]) => k + " " + num(v)).join(", ") : dash;
    const rows = [
      ["Listing", d.listing_id],
      ["Received", d.received_at],
      ["Decided", d.decided_at],
      ["Decision", d.decision + (d.automated ? " (automated)" : " (a person decides)")],
      ["Model alone", text(d.model_decision)],
      ["Risk", num(d.risk)],
      ["Tier risks", tiers + (d.decision_tier ? "; deciding tier " + d.decision_tier : "")],
      ["Thresholds", thresholds(d)],
      ["Model", text(d.model_version) + ": " + d.model_in_force.note],
      ["Policy", d.policy_version + ": " + d.policy_in_force.note +
        (d.policy_in_force.guarantee_state ? " (" + d.policy_in_force.guarantee_state + ")" : "")],
      ["Rules matched", rules(d.rules_matched)],
      ["Shadow rules matched", rules(d.rules_shadow)],
      ["Fail-safe reason", text(d.fallback_reason)],
      ["Audit draw", (d.qa_sample ? "drawn for audit" : "not drawn") + ", inclusion probability " + num(d.inclusion_prob)],
      ["Queue", d.queue ? d.queue.lane + " lane, " + d.queue.status : "not queued"],
      ["Overturn", d.overturn === null ? dash : d.overturn ? "yes: the verdict in force overturns it" : "no"],
      ["Shadow model", d.shadow ? d.shadow.model_version + " would have decided " + d.shadow.decision +
        " (risk " + num(d.shadow.risk) + ")" : dash],
    ];
    const list = element("dl", undefined, "facts");
    for (const [name, value] of rows) list.append(element("dt", name), element("dd", String(value)));
    return list;
  }

  function table(caption, headers, rows, empty) {
    if (!rows.length) return element("p", empty, "muted");
    const wrap = element("div", undefined, "scroll");
    const t = element("table");
    t.createCaption().textContent = caption;
    const head = t.createTHead().insertRow();
    for (const h of headers) {
      const th = element("th", h);
      th.scope = "col";
      head.appendChild(th);
    }
    const body = t.createTBody();
    for (const row of rows) {
      const tr = body.insertRow();
      for (const value of row) tr.appendChild(element("td", text(value)));
    }
    wrap.appendChild(t);
    return wrap;
  }

  function verdicts(d) {
    return table("Verdicts: the review, then corrections, then second reviews",
      ["When", "Kind", "By", "Verdict", "Violation", "Why amended", "Note"],
      d.verdicts.map((v) => [v.at, v.kind.replace("_", " "), v.by, v.verdict, v.violation_reason, v.reason, v.note]),
      d.queue && d.queue.status !== "done" ? "No verdict yet: waiting in the queue." : "No verdict.");
  }

  function statements(d) {
    return table("Statements of reasons in order", ["When", "From", "Restriction", "Automated decision", "Facts"],
      d.statements_of_reasons.map((s) => [s.at, s.source, s.statement.restriction,
        s.statement.automated_decision ? "yes" : "no", s.statement.facts_and_circumstances]),
      "No statement of reasons: nothing was restricted.");
  }

  function timeline(d) {
    const list = element("ol", undefined, "timeline");
    for (const e of d.timeline) {
      const item = element("li");
      item.dataset.event = e.event;
      const time = element("time", e.at);
      time.dateTime = e.at;
      item.append(time, " \u2014 " + e.event + ": " + e.text);
      list.appendChild(item);
    }
    return list;
  }

  document.addEventListener("DOMContentLoaded", () => {
    TriageKey.wire({ use: lookUp });
    $("lookup").addEventListener("submit", (event) => { event.preventDefault(); lookUp(); });
    const query = new URLSearchParams(location.search);
    const listing = query.get("listing");
    const decision = query.get("decision");
    if (listing || decision) {
      $(listing ? "by-listing" : "by-decision").checked = true;
      $("lookup-id").value = listing || decision;
    }
    if (apiKey()) {
      $("key-status").textContent = "Key in use.";
      lookUp();
    } else {
      $("key-status").textContent = "No key yet.";
    }
  });
})();
