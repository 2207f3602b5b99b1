"""Production monitoring: `GET /v1/monitor`, estimates from the decision log and the drift checks (the JSON
of `triage monitor --json`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from serving.api.deps import EngineDep, ReadKey, StoreDep
from serving.api.errors import field_error
from serving.monitor import DEFAULT_LIMIT, MonitorError, MonitorRequest, report

MAX_HOURS = 24 * 92  # a quarter: longer windows are for offline analysis of exported labels


class MonitorQuery(BaseModel):
    """The window (the last `hours` before `until`, or `since`..`until`) and how to break results down."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    since: datetime | None = Field(default=None, description="window start (ISO 8601 with zone); default until - hours")
    until: datetime | None = Field(default=None, description="window end (exclusive; default now)")
    hours: float = Field(default=24.0, gt=0, le=MAX_HOURS, description="window length when `since` is not given")
    group_by: list[Literal["day", "tier", "segment"]] = Field(
        default_factory=list, max_length=3, description="break estimates down per day, violation tier, segment"
    )
    segment: str | None = Field(
        default=None, min_length=1, max_length=64, description="listing field of group_by=segment (default: the first)"
    )
    confidence: float = Field(default=0.95, ge=0.5, le=0.999, description="confidence of every interval")
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=1_000_000, description="most recent decisions read")

    def request(self) -> MonitorRequest:
        until = self.until or datetime.now(UTC)
        since = self.since or until - timedelta(hours=self.hours)
        return MonitorRequest(
            since=since,
            until=until,
            group_by=tuple(dict.fromkeys(self.group_by)),
            segment=self.segment,
            confidence=self.confidence,
            limit=self.limit,
        )


router = APIRouter(prefix="/v1/monitor", tags=["monitor"])


@router.get("", responses={422: {"description": "Invalid window or grouping (parameter named)"}})
def monitor(
    query: Annotated[MonitorQuery, Query()], _key: ReadKey, store: StoreDep, engine: EngineDep
) -> dict[str, Any]:
    """Production estimates from the decision log with intervals (miss rate among auto-passed, recall,
    block precision, queue share, violation rate; inverse-probability weighted by each decision's logged
    audit probability), optionally per day / violation tier / segment; the simulator's expectation for
    the policy in force; and the drift checks (risk and feature PSI, routing mix, recall against target)
    with their status ok / warn / alarm."""
    try:
        return report(store, engine.bundle, engine.policy if engine.bundle is not None else None, query.request())
    except MonitorError as exc:
        raise field_error(("query", exc.field), str(exc)) from exc
