"""Rule backtests on the serving bundle's labelled history, and the gate a block rule passes to act.

`POST /v1/rules/backtest` (read scope: it changes nothing, so whoever may read the policy may test a
rule before asking an admin to put it in force) runs `decision.backtest.backtest` with the policy in
force on the bundle's `history.parquet`, on the decision log's decisions with a verdict (`"source":
"log"`; only the serving model's: another model's risk is not on this policy's scale), or on both.
`gate_block_rules` is what the policy change path calls: a rule that would go into force as an enforced
block rule must have its precision certified on the bundle's history at the policy's block-precision
target (`decision.backtest.certify_rule_precision`), unless an admin forces it; either way the audit
row's reason records the certificate.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import pandas as pd
from fastapi import APIRouter, HTTPException, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from bundle.load import Bundle
from decision.backtest import (
    SOURCE_COLUMN,
    RuleCertificate,
    backtest,
    block_target,
    certify_rule_precision,
    mixed_history,
    new_block_rules,
)
from decision.policy import Policy
from decision.rules import Rule, check_new_rule
from serving.api.deps import EngineDep, ReadKey, StoreDep
from serving.api.errors import field_error
from serving.api.schemas import text_limits
from serving.store import Store

router = APIRouter(prefix="/v1", tags=["rules"])

RuleNameField = Annotated[str, Field(min_length=1, max_length=128)]
REQUEST_FIELDS = ("rule", "replace", "remove", "segment_by", "alpha", "source", "since", "until")
MAX_LOG_ROWS = 1_000_000  # the most recent logged decisions a backtest reads
GATE_FIELD = ("body", "rule", "action")  # a refused block rule: the action it asked for is what is refused


class BacktestRequest(BaseModel):
    """A rule change to test on the bundle's labelled history: `rule` to add (or to replace its namesake,
    or the rule named `replace`), and/or `remove` a rule by name; routing is also broken down by each
    `segment_by` column."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    rule: dict[str, Any] | None = Field(
        default=None, description="a rule as in GET /v1/policy: name, action, kind, terms/fields or column/values"
    )
    replace: RuleNameField | None = None
    remove: RuleNameField | None = None
    segment_by: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(default_factory=list, max_length=10)
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5, description="intervals are two-sided at 1 - alpha")
    source: Literal["history", "log", "both"] = Field(
        default="history",
        description="the bundle's labelled history, the decision log's decisions with a verdict (of the "
        "serving model), or both",
    )
    since: datetime | None = Field(default=None, description="log window start (ISO 8601; default: the first)")
    until: datetime | None = Field(default=None, description="log window end, exclusive (default: now)")

    def window(self) -> tuple[datetime | None, datetime]:
        """The log window, times without a zone read as UTC; ValueError naming since/until when unusable."""
        if self.source == "history" and (self.since or self.until):
            field = "since" if self.since else "until"
            raise ValueError(f"{field}: a window applies to the decision log: give source 'log' or 'both'")
        until = _aware(self.until) if self.until else datetime.now(UTC)
        since = _aware(self.since) if self.since else None
        if since is not None and since >= until:
            raise ValueError(f"since: {since.isoformat()} is not before until {until.isoformat()}")
        return since, until


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@router.post(
    "/rules/backtest",
    responses={
        409: {"description": "No model loaded, or the chosen source has no labelled rows"},
        422: {"description": "Invalid rule or request (field named)"},
    },
)
async def post_backtest(body: BacktestRequest, _key: ReadKey, engine: EngineDep, store: StoreDep) -> dict[str, Any]:
    """Backtest a candidate, changed or removed rule with the policy in force on labelled rows: the
    serving bundle's held-out history, the decision log's decisions with a verdict in a window (the
    serving model's; audited automated decisions weighted by 1 / inclusion probability), or both:
    routing split before/after, reviewer-hours, misses and wrongful blocks; the rule's hits, precision
    and recall with exact intervals; a block rule's certificate; per segment."""
    bundle, policy = engine.bundle, engine.policy
    if not engine.ready or bundle is None:
        raise HTTPException(status.HTTP_409_CONFLICT, "no model bundle is loaded")
    rule = _parse_rule(body.rule, bundle)
    try:
        since, until = body.window()
    except ValueError as exc:
        raise _request_error(str(exc)) from exc
    rows, sources = await run_in_threadpool(_labelled_rows, bundle, store, body.source, since, until)
    try:
        result = await run_in_threadpool(
            backtest, rows, policy, rule, body.replace, body.remove, body.segment_by, body.alpha
        )
    except ValueError as exc:
        raise _request_error(str(exc)) from exc
    return {**result, "source": body.source, "sources": sources}


def _labelled_rows(
    bundle: Bundle, store: Store, source: str, since: datetime | None, until: datetime
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The rows to backtest on and what they are; a 409 when the chosen source has none."""
    history = bundle.history() if source in ("history", "both") else None
    log, truncated = None, False
    if source in ("log", "both"):
        log, truncated = store.decision_history(bundle.version, since, until, MAX_LOG_ROWS)
    sources: dict[str, Any] = {"history_rows": None if history is None else len(history)}
    if log is not None:
        sources.update(
            log_rows=len(log),
            model_version=bundle.version,
            window={"since": since.isoformat() if since else None, "until": until.isoformat()},
            log_truncated=truncated,
        )
    no_history = f"bundle {bundle.version} ships no labelled history (history.parquet): retrain to backtest rules"
    no_log = (
        f"the decision log has no decision of model {bundle.version} with a verdict between "
        f"{since.isoformat() if since else 'its start'} and {until.isoformat()}"
    )
    if source == "history":
        if history is None:
            raise HTTPException(status.HTTP_409_CONFLICT, no_history)
        return history, sources
    assert log is not None
    if source == "log" or log.empty and (history is None or history.empty):
        if log.empty:
            raise HTTPException(status.HTTP_409_CONFLICT, no_log if source == "log" else f"{no_history}; {no_log}")
        return log, sources
    mixed = mixed_history(history, log, bundle.config.id)
    sources["log_rows_also_in_history"] = len(log) - int((mixed[SOURCE_COLUMN] == "log").sum())
    return mixed, sources


def _parse_rule(raw: dict[str, Any] | None, bundle: Bundle) -> Rule | None:
    """The rule to test, checked as a policy change checks it: one that could never match the bundle's
    listings (a range on text, a category on a number, a term longer than its fields) is refused."""
    if raw is None:
        return None
    try:
        rule = Rule.from_dict(raw, "rule")
        check_new_rule(rule, "rule", bundle.config.column_roles(), text_limits(bundle.config))
    except ValueError as exc:
        raise _request_error(str(exc)) from exc
    return rule


def _request_error(message: str) -> RequestValidationError | HTTPException:
    """A ValueError("<field>: <problem>") as a 422 naming the field; a problem with the history, a 409."""
    field, _, _ = message.partition(":")
    if field.split(".")[0].split("[")[0] not in REQUEST_FIELDS:
        return HTTPException(status.HTTP_409_CONFLICT, message)
    return field_error(("body", *field.split(".")), message)


# --- the gate --------------------------------------------------------------------------------------------


def gate_block_rules(bundle: Bundle, old: Policy, new: Policy, force: bool, reason: str) -> str:
    """Check every rule that `new` would put in force as an enforced block rule and `old` did not: each
    must be certified on the bundle's history (its precision's one-sided lower bound at least the
    policy's block-precision target, at the level the block threshold is certified at). Returns the
    reason to audit, with each certificate appended (and FORCED when an admin forced an uncertified
    rule); raises a 422 naming rule.action, with the certificate, when one is not certified and the
    change is not forced. A bundle without history certifies nothing."""
    rules = new_block_rules(old, new)
    if not rules:
        return reason
    target, alpha = block_target(new)
    history = bundle.history()
    notes: list[dict[str, Any]] = []
    for rule in rules:
        certificate = certify_rule_precision(history, rule, target, alpha) if history is not None else None
        if certificate is not None and certificate.certified:
            notes.append({"rule": rule.name, "certified": True, "certificate": certificate.to_dict()})
            continue
        why = _refusal(rule, certificate, target, bundle.version)
        if not force:
            raise field_error(GATE_FIELD, f'{why}; an admin can force it with "force": true and a reason')
        notes.append(
            {
                "rule": rule.name,
                "certified": False,
                "forced": True,
                "certificate": certificate.to_dict() if certificate else None,
                "why": why,
            }
        )
    forced = any(note.get("forced") for note in notes)
    return f"{reason}\n[rule gate{': FORCED' if forced else ''}] {json.dumps(notes, sort_keys=True)}"


def _refusal(rule: Rule, certificate: RuleCertificate | None, target: float, version: str) -> str:
    if certificate is None:
        return (
            f"rule.action: block rule {rule.name!r} cannot be certified: bundle {version} ships no labelled "
            f"history (history.parquet) to measure its precision against the block-precision target {target:g}"
        )
    precision = "n/a" if certificate.labelled_hits == 0 else f"{certificate.precision:.4f}"
    lower = "n/a" if certificate.labelled_hits == 0 else f"{certificate.lower:.4f}"
    return (
        f"rule.action: block rule {rule.name!r} is not certified to auto-block: {certificate.hits} hits on the "
        f"bundle's labelled history ({certificate.labelled_hits} labelled, {certificate.violations} violations), "
        f"precision {precision}, lower bound {lower} at {1 - certificate.alpha:.1%} confidence, below the "
        f"block-precision target {target:g} ({certificate.method})"
    )
