"""Policy administration: read, change (validated, versioned, audited, swapped atomically), reload
(only the promoted champion, unless forced with a reason; audited).

Changes: `PUT /v1/policy` sets top-level fields (fields left out keep their value; `rules` is refused
unless `replace_rules` is true, then it replaces the whole list); `PUT|PATCH|DELETE /v1/policy/rules/{name}`
add or replace, change some fields of (its `mode` and `enabled` too), or remove one rule, and
`POST /v1/policy/rules/{name}/disable|enable` switch one off or on. Each rule carries a version the
server bumps on every change of that rule (PATCH refuses one). Every change needs a `reason`
(body; a query parameter for DELETE); one that changes nothing makes no version (`changed: false`).
The new policy and its audit row are written in one transaction of the store, which holds the policy in
force; the bundle's policy.json is only the default for a bundle the store holds no policy for.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from bundle.manifest import BundleError
from decision.policy import Policy, versioned_rules
from serving.api.deps import AdminKey, EngineDep, ReadKey, SettingsDep, StoreDep
from serving.api.errors import field_error
from serving.api.rule_backtest import gate_block_rules
from serving.api.schemas import (
    ChangeReason,
    PolicyChangeOut,
    PolicyOut,
    PolicyUpdate,
    ReloadRequest,
    ReloadResponse,
    RulePatch,
    RulePut,
    RuleToggle,
    TierOut,
)
from serving.engine import DecisionEngine
from serving.lifecycle import NotPromoted, check_promoted
from serving.models import (
    bundle_under,
    load_engine,
    new_policy_version,
    refreeze_after_swap,
    rules_with_change,
    updated_policy,
)
from serving.store import ApiKey, Store
from serving.store.model_audit import ModelEvent

router = APIRouter(prefix="/v1", tags=["policy"])

# A rule's name in the path: not blank (a name of only whitespace is refused, as `Rule.validate` does).
RuleName = Annotated[str, PathParam(min_length=1, max_length=128, pattern=r"\S")]
_CHANGE_ERRORS: dict[int | str, dict[str, Any]] = {
    409: {"description": "No model loaded, or a concurrent change took the version"},
    422: {"description": "Invalid policy or missing reason (field named)"},
}


def _admin_lock(request: Request) -> asyncio.Lock:
    return request.app.state.admin_lock


def _policy_out(engine: DecisionEngine, policy: Policy, changed: bool | None = None) -> PolicyOut:
    return PolicyOut(
        model_version=engine.model_version,
        ready=engine.ready,
        policy=policy.to_dict(),
        guarantee_state=policy.guarantee_state,
        tiers=_tiers_out(engine, policy),
        changed=changed,
    )


def _tiers_out(engine: DecisionEngine, policy: Policy) -> list[TierOut]:
    """Each tier of the bundle: the policy's t_pass, its certified recall target (else the data config's)."""
    if engine.bundle is None:
        return []
    configured = {t.name: t.recall for t in engine.bundle.config.tiers}
    targets = policy.targets.get("recall")
    certified_targets = targets if isinstance(targets, dict) else {}
    certificates = {t.get("name"): t for t in policy.guarantee.get("tiers") or [] if isinstance(t, dict)}
    return [
        TierOut(
            name=name,
            t_pass=policy.tier_pass.get(name),
            recall_target=certified_targets.get(name, configured.get(name)),
            certified=bool(certificates.get(name, {}).get("certified")),  # hand-set: no certificates
        )
        for name in engine.tier_names
    ]


@router.get("/policy", response_model=PolicyOut)
async def get_policy(_key: ReadKey, engine: EngineDep) -> PolicyOut:
    """The policy in force (thresholds, rules, audit rates, version, guarantee) and the model it applies to."""
    return _policy_out(engine, engine.policy)


@router.put("/policy", response_model=PolicyOut, responses=_CHANGE_ERRORS)
async def put_policy(body: PolicyUpdate, key: AdminKey, request: Request, store: StoreDep) -> PolicyOut:
    """Put a new policy in force. Fields left out keep their current value; `rules` is refused unless
    `replace_rules` is true, and then replaces the whole list (audited as a replacement; use
    /v1/policy/rules/{name} for one rule); the version is assigned here. Thresholds set here are
    'hand_set, not certified': the certified targets and guarantee are cleared. `tier_pass` sets the
    auto-pass threshold of the tiers it names (unknown tier names are refused, naming the field). `audit`
    sets the audit rates and age limit it names and keeps the others; `quality` likewise the rates of
    blind second review and gold items."""
    changes = body.model_dump(exclude_unset=True, exclude={"reason", "replace_rules", "force"})
    reason = body.reason
    if "rules" in changes:
        if not body.replace_rules:
            raise field_error(
                ("body", "rules"),
                "rules: sending the rule list replaces every rule in force; send replace_rules: true to mean it, "
                "or change one rule through /v1/policy/rules/{name}",
            )
        reason = f"[replace_rules] {reason}"
    return await _change(request, store, key, reason, lambda p: _with_plans(p, changes), body.force)


def _with_plans(policy: Policy, changes: dict[str, Any]) -> dict[str, Any]:
    """`changes` with a partial `audit` or `quality` plan completed from the policy in force (fields left
    out keep theirs)."""
    in_force = {"audit": policy.audit.to_dict(), "quality": policy.quality.to_dict()}
    completed = {k: v for k, v in changes.items() if k not in in_force}
    for name, current in in_force.items():
        sent = changes.get(name)
        if sent is not None:
            completed[name] = {**current, **{k: v for k, v in sent.items() if v is not None}}
    return completed


@router.put("/policy/rules/{name}", response_model=PolicyOut, responses=_CHANGE_ERRORS)
async def put_rule(name: RuleName, body: RulePut, key: AdminKey, request: Request, store: StoreDep) -> PolicyOut:
    """Add the rule `name`, or replace it whole where it stands; other rules are kept."""
    if body.rule.get("name", name) != name:
        raise field_error(("body", "rule", "name"), f"rule.name: {body.rule['name']!r} is not the {name!r} in the path")
    return await _change(
        request,
        store,
        key,
        body.reason,
        lambda p: {"rules": rules_with_change(p, name, body.rule)},
        body.force,
        one_rule=(name, "rule"),
    )


@router.patch("/policy/rules/{name}", response_model=PolicyOut, responses={**_CHANGE_ERRORS, 404: {}})
async def patch_rule(name: RuleName, body: RulePatch, key: AdminKey, request: Request, store: StoreDep) -> PolicyOut:
    """Change some fields of the existing rule `name` (e.g. its action or terms, `mode` or `enabled`:
    {"enabled": false} disables it, {"mode": "shadow"} demotes it to shadow); 404 if there is none.
    Its `version` is refused (422): it is the server's, and the API has no version check (no If-Match)
    that a sent version could stand for; ignoring it would let a client believe it set one."""
    if body.changes.get("name", name) != name:
        raise field_error(("body", "changes", "name"), "changes.name: a rule is renamed by removing and adding it")
    if "version" in body.changes:
        raise field_error(
            ("body", "changes", "version"),
            "changes.version: a rule's version is the server's (it counts the rule's changes) and cannot be "
            "changed; leave it out",
        )
    changes = body.rule_changes()
    if not changes:
        raise field_error(("body", "changes"), "changes: nothing to change (send changes, mode or enabled)")
    return await _change(
        request,
        store,
        key,
        body.reason,
        lambda p: {"rules": rules_with_change(p, name, changes, merge=True)},
        body.force,
        one_rule=(name, "changes"),
    )


@router.post("/policy/rules/{name}/disable", response_model=PolicyOut, responses={**_CHANGE_ERRORS, 404: {}})
async def disable_rule(name: RuleName, body: RuleToggle, key: AdminKey, request: Request, store: StoreDep) -> PolicyOut:
    """Switch the rule `name` off: it stays in the policy, unmatched, until enabled again; 404 if none."""
    return await _change(request, store, key, body.reason, lambda p: _toggled(p, name, enabled=False), body.force)


@router.post("/policy/rules/{name}/enable", response_model=PolicyOut, responses={**_CHANGE_ERRORS, 404: {}})
async def enable_rule(name: RuleName, body: RuleToggle, key: AdminKey, request: Request, store: StoreDep) -> PolicyOut:
    """Switch the rule `name` back on, in the mode it has; 404 if none."""
    return await _change(request, store, key, body.reason, lambda p: _toggled(p, name, enabled=True), body.force)


def _toggled(policy: Policy, name: str, enabled: bool) -> dict[str, Any]:
    return {"rules": rules_with_change(policy, name, {"enabled": enabled}, merge=True)}


@router.delete("/policy/rules/{name}", response_model=PolicyOut, responses={**_CHANGE_ERRORS, 404: {}})
async def delete_rule(
    name: RuleName, reason: Annotated[ChangeReason, Query()], key: AdminKey, request: Request, store: StoreDep
) -> PolicyOut:
    """Remove the rule `name` (the reason is a query parameter: a DELETE carries no body); 404 if none."""
    return await _change(request, store, key, reason, lambda p: {"rules": rules_with_change(p, name, None)})


async def _change(
    request: Request,
    store: Store,
    key: ApiKey,
    reason: str,
    changes_of: Callable[[Policy], dict[str, Any]],
    force: bool = False,
    one_rule: tuple[str, str] | None = None,
) -> PolicyOut:
    """Apply `changes_of(policy in force)` under the admin lock: validate, check that every new block rule
    earned it (`gate_block_rules`; `force` overrides, audited), store with its audit row in one
    transaction, then swap the engine in one assignment (each request sees the old policy or the new).
    A change that leaves the policy as it is (the same rule put again, a rule enabled that is enabled)
    makes no version and no audit row: the policy in force comes back with `changed: false`.

    `one_rule` (rule name, body field) is for the one-rule endpoints: an error in that rule names the
    body field the client sent it in (`rule.terms`, `changes.action`), not its place in the policy's list."""
    async with _admin_lock(request):
        engine: DecisionEngine = request.app.state.engine
        if not engine.ready or engine.bundle is None:
            raise HTTPException(status.HTTP_409_CONFLICT, "no model bundle is loaded; reload one first")
        try:
            changes = changes_of(engine.policy)
        except LookupError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc).strip("'\"")) from exc
        if changes.get("rules") is not None:
            changes = {**changes, "rules": versioned_rules(engine.policy.rules, changes["rules"])}
        try:
            version = await run_in_threadpool(new_policy_version, store, engine.bundle)
            policy = updated_policy(engine.policy, changes, engine.bundle, version)
        except ValueError as exc:
            raise _policy_error(str(exc), changes.get("rules"), one_rule) from exc
        if _content(policy) == _content(engine.policy):
            return _policy_out(engine, engine.policy, changed=False)
        reason = await run_in_threadpool(gate_block_rules, engine.bundle, engine.policy, policy, force, reason)
        try:
            await run_in_threadpool(
                store.put_policy_in_force,
                engine.bundle.version,
                key.name,
                reason,
                engine.policy.to_dict(),
                policy.to_dict(),
            )
        except IntegrityError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, f"policy {version} was taken meanwhile; retry") from exc
        request.app.state.engine = engine.with_policy(policy)  # one assignment: the atomic swap
    return _policy_out(engine, policy, changed=True)


def _content(policy: Policy) -> dict[str, Any]:
    """What a policy decides and promises: everything but its version and creation time."""
    return {k: v for k, v in policy.to_dict().items() if k not in ("version", "created_at")}


def _policy_error(
    message: str, rules: list[dict[str, Any]] | None, one_rule: tuple[str, str] | None
) -> RequestValidationError:
    """The 422 of an invalid policy ("<field>: <problem>"): it names the top-level field, except for an
    error in the one rule a one-rule endpoint changed, which names that rule's own field under the body
    field it came in ("rules[3].all[0].column" -> loc body.rule.all.0.column, message "rule.all[0].column:
    ...")."""
    field, _, _ = message.partition(":")
    if one_rule is not None and rules is not None:
        name, body_field = one_rule
        index = next((i for i, rule in enumerate(rules) if rule.get("name") == name), None)
        prefix = f"rules[{index}]"
        if index is not None and (field == prefix or field.startswith((f"{prefix}.", f"{prefix}["))):
            path = body_field + field[len(prefix) :]
            return field_error(("body", *_path_parts(path)), path + message[len(field) :])
    return field_error(("body", field.split("[")[0].split(".")[0]), message)


def _path_parts(path: str) -> list[str | int]:
    """A field path as a loc: "rule.all[0].column" -> ["rule", "all", 0, "column"]."""
    return [int(part) if part.isdigit() else part for part in re.split(r"[.\[\]]+", path) if part]


@router.get("/policy/history", response_model=list[PolicyChangeOut])
async def policy_history(
    _key: ReadKey, store: StoreDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[PolicyChangeOut]:
    """Audited policy changes, newest first: who, when, why, old and new policy."""
    changes = await run_in_threadpool(store.policy_history, limit)
    return [PolicyChangeOut.model_validate(c, from_attributes=True) for c in changes]


@router.post(
    "/admin/reload",
    response_model=ReloadResponse,
    responses={
        400: {"description": "Bundle path outside the models directory"},
        409: {"description": "Bundle refused: not the promoted champion (unless forced), or failing its checks"},
        422: {"description": "force without a reason"},
    },
)
async def reload_bundle(
    key: AdminKey, request: Request, settings: SettingsDep, store: StoreDep, body: ReloadRequest | None = None
) -> ReloadResponse:
    """Load the bundle again (or another one, under the models directory) with the policy in force for
    it. A bundle that would change the model serving must be the promoted champion (`triage promote`),
    unless `force` is set with a `reason`; every reload is audited (GET /v1/models/history). A bundle
    failing its checks (manifest sums; its signature when a signing key is configured) is refused; the
    current one keeps serving."""
    body = body or ReloadRequest()
    if body.force and not body.reason:
        raise field_error(("body", "reason"), "reason: a forced reload needs a reason (kept in the audit trail)")
    path: str | Path = settings.bundle
    if body.bundle:
        try:
            path = bundle_under(settings.models_root, body.bundle)
        except ValueError as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    async with _admin_lock(request):
        # the version only: a reference to the engine being replaced would keep it (and its cycles) alive
        current_version: str | None = request.app.state.engine.model_version
        old_policy = request.app.state.engine.policy.to_dict()
        try:
            engine = await run_in_threadpool(load_engine, path, settings.reasons, store, settings.signing_key)
        except BundleError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, f"bundle refused: {exc}") from exc
        event = await _reload_event(store, engine.model_version, current_version, body.force)
        assert engine.bundle is not None
        await run_in_threadpool(
            partial(
                store.record_model_change,
                event,
                key.name,
                old_model=current_version,
                new_model=engine.model_version,
                bundle=str(engine.bundle.path),
                policy_version=engine.policy.version,
                reason=body.reason,
                policies=(old_policy, engine.policy.to_dict()),
            )
        )
        request.app.state.engine = engine
        refreeze_after_swap()  # the replaced engine is freed, cycles included
    return ReloadResponse(
        model_version=engine.model_version,
        policy_version=engine.policy.version,
        bundle=str(engine.bundle.path),
        event=event,
    )


async def _reload_event(store: Store, new_version: str | None, current_version: str | None, force: bool) -> ModelEvent:
    """`reload` for the model serving or the promoted champion, `forced_reload` for another one when
    forced; a 409 naming the champion when not forced."""
    try:
        await run_in_threadpool(check_promoted, store, new_version, current_version)
    except NotPromoted as exc:
        if not force:
            raise HTTPException(status.HTTP_409_CONFLICT, f"bundle refused: {exc}") from exc
        return "forced_reload"
    return "reload"
