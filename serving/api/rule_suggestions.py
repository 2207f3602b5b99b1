"""Rule suggestions mined from verdicts: `GET /v1/rules/suggestions` (read scope).

The suggestions are computed by `decision.rule_mining.suggest_rules` on the serving bundle's labelled
history (`history.parquet`) against the policy in force, once per bundle and policy version (mining takes
seconds), and kept until either changes. Nothing here changes the policy: a suggestion is put in force
by an admin through the policy endpoints, with a reason.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from bundle.load import Bundle
from decision.policy import Policy
from decision.rule_mining import SuggestionReport, suggest_rules
from serving.api.deps import EngineDep, ReadKey

MAX_SUGGESTIONS = 100  # computed once per bundle and policy version; a request takes the first `limit`

router = APIRouter(prefix="/v1/rules", tags=["rules"])


class SuggestionQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    limit: int = Field(default=20, ge=1, le=MAX_SUGGESTIONS, description="most suggestions returned")
    min_precision: float = Field(
        default=0.0, ge=0.0, le=1.0, description="least certified precision (the lower confidence bound)"
    )
    sort: Literal["precision", "workload"] = Field(
        default="precision", description="by certified precision, or certified block rules by reviewer-hours removed"
    )


class SuggestionCache:
    """The last report, keyed by (bundle version, policy version); computed once even under concurrent
    requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[str, str] | None = None
        self._report: SuggestionReport | None = None

    def get(self, bundle: Bundle, policy: Policy) -> SuggestionReport | None:
        key = (bundle.version, policy.version)
        with self._lock:
            if self._key != key or self._report is None:
                history = bundle.history()
                if history is None:
                    return None
                self._report = suggest_rules(history, policy, bundle.config, limit=MAX_SUGGESTIONS)
                self._key = key
            return self._report


def _cache(request: Request) -> SuggestionCache:
    state = request.app.state
    if getattr(state, "rule_suggestions", None) is None:
        state.rule_suggestions = SuggestionCache()
    cache: SuggestionCache = state.rule_suggestions
    return cache


@router.get(
    "/suggestions",
    responses={
        409: {"description": "No model loaded, or the bundle ships no labelled history"},
        422: {"description": "Invalid parameter (named)"},
    },
)
async def get_suggestions(
    query: Annotated[SuggestionQuery, Query()], _key: ReadKey, engine: EngineDep, request: Request
) -> dict[str, Any]:
    """Candidate rules mined from the bundle's labelled history (terms, a term set, brand + price band,
    merchants, categories, shallow-tree paths), each certified on held-out rows (Clopper-Pearson at
    alpha/K: all bounds hold together), with the workload it would remove as a block rule, the violations
    it would add as a review rule, and its backtest. None is enabled: an admin adds one with
    PUT /v1/policy/rules/{name} and a reason."""
    bundle, policy = engine.bundle, engine.policy
    if not engine.ready or bundle is None:
        raise HTTPException(status.HTTP_409_CONFLICT, "no model bundle is loaded")
    report = await run_in_threadpool(_cache(request).get, bundle, policy)
    if report is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"bundle {bundle.version} ships no labelled history (history.parquet): retrain to mine rule suggestions",
        )
    return {
        "bundle": bundle.version,
        "policy": policy.version,
        **report.view(query.limit, query.min_precision, query.sort).to_dict(),
    }
