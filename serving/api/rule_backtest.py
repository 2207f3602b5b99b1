"""Rule backtests on the serving bundle's labelled history, and the gate a block rule passes to act.

`POST /v1/rules/backtest` (read scope: it changes nothing, so whoever may read the policy may test a
rule before asking an admin to put it in force) runs `decision.backtest.backtest` on the bundle's
`history.parquet` with the policy in force. `gate_block_rules` is what the policy change path calls: a
rule that would go into force as an enforced block rule must have its precision certified on that
history at the policy's block-precision target (`decision.backtest.certify_rule_precision`), unless an
admin forces it; either way the audit row's reason records the certificate.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from bundle.load import Bundle
from decision.backtest import RuleCertificate, backtest, block_target, certify_rule_precision, new_block_rules
from decision.policy import Policy
from decision.rules import Rule
from serving.api.deps import EngineDep, ReadKey
from serving.api.errors import field_error

router = APIRouter(prefix="/v1", tags=["rules"])

RuleNameField = Annotated[str, Field(min_length=1, max_length=128)]
REQUEST_FIELDS = ("rule", "replace", "remove", "segment_by", "alpha")
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


@router.post(
    "/rules/backtest",
    responses={
        409: {"description": "No model loaded, or the bundle ships no labelled history"},
        422: {"description": "Invalid rule or request (field named)"},
    },
)
async def post_backtest(body: BacktestRequest, _key: ReadKey, engine: EngineDep) -> dict[str, Any]:
    """Backtest a candidate, changed or removed rule on the serving bundle's held-out labelled rows with
    the policy in force: routing split before/after, reviewer-hours, misses and wrongful blocks; the
    rule's hits, precision and recall with exact intervals; a block rule's certificate; per segment."""
    bundle, policy = engine.bundle, engine.policy
    if not engine.ready or bundle is None:
        raise HTTPException(status.HTTP_409_CONFLICT, "no model bundle is loaded")
    rule = _parse_rule(body.rule)
    history = await run_in_threadpool(bundle.history)
    if history is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"bundle {bundle.version} ships no labelled history (history.parquet): retrain to backtest rules",
        )
    try:
        return await run_in_threadpool(
            backtest, history, policy, rule, body.replace, body.remove, body.segment_by, body.alpha
        )
    except ValueError as exc:
        raise _request_error(str(exc)) from exc


def _parse_rule(raw: dict[str, Any] | None) -> Rule | None:
    if raw is None:
        return None
    try:
        return Rule.from_dict(raw, "rule")
    except ValueError as exc:
        raise _request_error(str(exc)) from exc


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
