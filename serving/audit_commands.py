"""`triage decisions show`: the decision audit on the command line (the document of
`GET /v1/decisions/{id}`, read straight from the decision log): the why first, then the timeline."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from decision.policy import threshold_in_words, thresholds_in_words
from serving.commands import _open_store, _settings_with_db


def decisions_show(
    decision_id: Annotated[str | None, typer.Argument(help="the decision to explain")] = None,
    listing: Annotated[str | None, typer.Option(help="explain every decision of this listing id instead")] = None,
    db: Annotated[str | None, typer.Option(help="decision log URL (default: TRIAGE_DATABASE_URL)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON of the audit API")] = False,
) -> None:
    """Why a decision was made (model, policy, rules, thresholds) and what people did with it, in time order."""
    from serving.audit_trail import audit_document, with_bundle_policy

    if (decision_id is None) == (listing is None):
        raise typer.BadParameter("give a DECISION_ID or --listing ID (one of them)", param_hint="DECISION_ID")
    settings = _settings_with_db(db)
    with _open_store(settings, read_only=True) as store:
        if decision_id is not None:
            trail = store.decision_trail(decision_id)
            trails = [] if trail is None else [trail]
        else:
            trails, _ = store.listing_trails(str(listing))
    if not trails:
        what = f"decision {decision_id}" if decision_id is not None else f"listing {listing}"
        typer.echo(f"error: no {what} in the decision log", err=True)
        raise typer.Exit(1)
    documents = [audit_document(with_bundle_policy(trail, settings.models_root)) for trail in trails]
    if as_json:
        payload: Any = documents[0] if decision_id is not None else {"listing_id": listing, "decisions": documents}
        typer.echo(json.dumps(payload, indent=2, default=str))
        return
    for i, document in enumerate(documents):
        if i:
            typer.echo("")
        for line in audit_text(document):
            typer.echo(line)


def audit_text(document: dict[str, Any]) -> list[str]:
    """A decision's audit as readable lines: the why, then the timeline, then the facts behind it."""
    lines = [f"decision {document['decision_id']} (listing {document['listing_id']}): {document['decision']}"]
    lines += [document["why"], "", "timeline:"]
    lines += [
        f"  {event['at']:%Y-%m-%d %H:%M:%S}  {event['event']:<14}{event['text']}" for event in document["timeline"]
    ]
    lines += [
        "",
        f"model {document['model_version'] or 'none'}: {document['model_in_force']['note']}",
        f"policy {document['policy_version']}: {document['policy_in_force']['note']}",
        thresholds_line(document),
    ]
    if document["rules_matched"]:
        lines.append("rules matched: " + ", ".join(rule["name"] for rule in document["rules_matched"]))
    if document["rules_shadow"]:
        lines.append("shadow rules matched (not acted on): " + ", ".join(r["name"] for r in document["rules_shadow"]))
    for statement in document["statements_of_reasons"]:
        facts = statement["statement"].get("facts_and_circumstances", "")
        lines.append(f"statement of reasons ({statement['source']}): {facts}")
    return lines


def thresholds_line(document: dict[str, Any]) -> str:
    """The thresholds that decided: t_pass and t_block, or on a tiered policy t_block and each tier's own
    pass threshold (its overall t_pass sits just below 1 and passes nothing on its own)."""
    thresholds = document["thresholds"]
    if thresholds.get("tiers_decide") and not thresholds["tier_pass"]:
        return (
            f"thresholds: t_block {threshold_in_words(thresholds['t_block'])}  pass thresholds per tier: those of "
            f"the bundle's own policy (policy.json of model {document['model_version']}; the log names that "
            "policy by version only)"
        )
    return "thresholds: " + thresholds_in_words(thresholds["t_pass"], thresholds["t_block"], thresholds["tier_pass"])
