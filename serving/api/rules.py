"""Rule analytics: `GET /v1/rules/stats` (the JSON of `triage rules stats --json`) and the `/rules` page
(static shell: it asks for an API key and calls the API)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from serving.api.deps import EngineDep, ReadKey, StoreDep
from serving.api.errors import field_error
from serving.api.pages import page_router
from serving.rule_analytics import DEFAULT_LIMIT, RuleStatsRequest, report

MAX_DAYS = 366


class RuleStatsQuery(BaseModel):
    """The window (the last `days` before `until`, or `since`..`until`), the period and the confidence."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    period: Literal["day", "week", "all"] = Field(default="day", description="figures per day, week or window")
    since: datetime | None = Field(default=None, description="window start (ISO 8601 with zone); default until - days")
    until: datetime | None = Field(default=None, description="window end (exclusive; default now)")
    days: float = Field(default=7.0, gt=0, le=MAX_DAYS, description="window length when `since` is not given")
    confidence: float = Field(default=0.95, ge=0.5, le=0.999, description="confidence of the precision intervals")
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=5_000_000, description="most recent decisions read")

    def request(self) -> RuleStatsRequest:
        until = _aware(self.until) if self.until else datetime.now(UTC)
        since = _aware(self.since) if self.since else until - timedelta(days=self.days)
        return RuleStatsRequest(since, until, self.period, self.confidence, self.limit)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


api = APIRouter(prefix="/v1/rules", tags=["rules"])


@api.get("/stats", responses={422: {"description": "Invalid window or period (parameter named)"}})
async def rule_stats(
    query: Annotated[RuleStatsQuery, Query()], _key: ReadKey, store: StoreDep, engine: EngineDep
) -> dict[str, Any]:
    """Per rule (enforce and shadow) and per period: hits, share of traffic, reviewed hits, rejects,
    precision among reviewed hits with an exact Clopper-Pearson interval (and, where the reviewed hits
    are not all the hits, the Hajek estimate weighted by inclusion probability), what the model alone
    would have decided for the hits, the reviews and reviewer-hours a review rule adds, and the rules'
    co-occurrence over the window."""
    request = query.request()
    try:
        return await run_in_threadpool(report, store, engine.policy, request)
    except ValueError as exc:
        field, _, _ = str(exc).partition(":")
        raise field_error(("query", field), str(exc)) from exc


page = page_router("rules", "rules")


router = APIRouter()
router.include_router(api)
router.include_router(page)
