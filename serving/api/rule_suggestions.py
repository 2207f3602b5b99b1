"""Rule suggestions mined from verdicts: `GET /v1/rules/suggestions` (read scope).

The suggestions are computed by `decision.rule_mining.suggest_rules` on the serving bundle's labelled
history (`history.parquet`) against the policy in force, once per bundle and policy version, and kept
until either changes. Mining takes seconds to a minute (80k history rows: about a minute on two busy
cores), so it runs in a background thread: a request that finds no report for the bundle and policy in
force starts it and gets 202 with Retry-After; the next requests get the report. Nothing here changes
the policy: a suggestion is put in force by an admin through the policy endpoints, with a reason.
"""

from __future__ import annotations

import logging
import threading
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from bundle.load import Bundle
from decision.policy import Policy
from decision.rule_mining import SuggestionReport, suggest_rules
from serving.api.deps import EngineDep, ReadKey

MAX_SUGGESTIONS = 100  # computed once per bundle and policy version; a request takes the first `limit`
RETRY_AFTER_SECONDS = 5  # what a 202 asks the client to wait before asking again

log = logging.getLogger(__name__)

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
    """The last report, keyed by (bundle version, policy version), mined in one background thread at a
    time: `get` answers at once with the report, or None while it is being mined (started on the first
    call for a key). A mining error is kept for its key and raised to every caller."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[str, str] | None = None
        self._report: SuggestionReport | None = None
        self._error: Exception | None = None
        self._running: tuple[str, str] | None = None

    def get(self, bundle: Bundle, policy: Policy) -> SuggestionReport | None:
        key = (bundle.version, policy.version)
        with self._lock:
            if self._key == key:
                if self._error is not None:
                    raise self._error
                return self._report
            if self._running != key:
                self._running = key
                threading.Thread(target=self._mine, args=(key, bundle, policy), daemon=True).start()
            return None

    def _mine(self, key: tuple[str, str], bundle: Bundle, policy: Policy) -> None:
        report: SuggestionReport | None = None
        error: Exception | None = None
        try:
            history = bundle.history()
            if history is None:
                error = NoHistory(bundle.version)
            else:
                report = suggest_rules(history, policy, bundle.config, limit=MAX_SUGGESTIONS)
        except Exception as exc:  # kept and reported to callers; mining never takes the service down
            log.exception("mining rule suggestions failed for bundle %s, policy %s", *key)
            error = exc
        with self._lock:
            if self._running == key:
                self._key, self._report, self._error, self._running = key, report, error, None


class NoHistory(Exception):
    """The bundle ships no labelled history to mine."""


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
    query: Annotated[SuggestionQuery, Query()], _key: ReadKey, engine: EngineDep, request: Request, response: Response
) -> dict[str, Any]:
    """Candidate rules mined from the bundle's labelled history (terms, a term set, brand + price band,
    merchants, categories, shallow-tree paths), each certified on held-out rows (Clopper-Pearson at
    alpha/K: all bounds hold together), with the workload it would remove as a block rule, the violations
    it would add as a review rule, and its backtest. None is enabled: an admin adds one with
    PUT /v1/policy/rules/{name} and a reason. While they are being mined for the bundle and policy in
    force: 202 with Retry-After."""
    bundle, policy = engine.bundle, engine.policy
    if not engine.ready or bundle is None:
        raise HTTPException(status.HTTP_409_CONFLICT, "no model bundle is loaded")
    if not bundle.has_history:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"bundle {bundle.version} ships no labelled history (history.parquet): retrain to mine rule suggestions",
        )
    try:
        report = _cache(request).get(bundle, policy)
    except NoHistory as exc:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"bundle {exc} ships no labelled history (history.parquet): retrain to mine rule suggestions",
        ) from exc
    except Exception as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"mining rule suggestions failed: {type(exc).__name__}: {exc}"
        ) from exc
    if report is None:
        response.status_code = status.HTTP_202_ACCEPTED
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return {
            "bundle": bundle.version,
            "policy": policy.version,
            "status": "mining",
            "retry_after_seconds": RETRY_AFTER_SECONDS,
        }
    return {
        "bundle": bundle.version,
        "policy": policy.version,
        **report.view(query.limit, query.min_precision, query.sort).to_dict(),
    }
