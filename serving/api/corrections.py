"""Corrections of verdicts: `POST /v1/reviews/{decision_id}/corrections`.

A reviewer (`review` scope) may amend their own verdict; a review lead (`supervise`, or `admin`) anyone's.
The first verdict is kept: the correction is added after it, with who amended it, why, and the new
verdict's statement of reasons (a restriction, or the lifting of one). The latest verdict is the one in
force for labels, merchant history and the decision audit.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, status
from starlette.concurrency import run_in_threadpool

from serving.api.deps import EngineDep, MetricsDep, ReviewTextsDep, StoreDep, require_scope
from serving.api.errors import field_error
from serving.api.schemas import CorrectionRequest, CorrectionResponse
from serving.engine import correction_statement
from serving.store import ApiKey, ConflictError, NotFoundError

router = APIRouter(prefix="/v1", tags=["review queue"])

CorrectKey = Annotated[ApiKey, Depends(require_scope("review", "supervise"))]


@router.post(
    "/reviews/{decision_id}/corrections",
    response_model=CorrectionResponse,
    status_code=status.HTTP_201_CREATED,
    responses={
        403: {"description": "A review key amending another reviewer's verdict (that needs the supervise scope)"},
        404: {"description": "Unknown decision"},
        409: {"description": "No verdict yet, nothing to amend, or amended meanwhile"},
        422: {"description": "Invalid body (field named): a reject needs its violation_reason, an approval has none"},
    },
)
async def correct_verdict(
    decision_id: Annotated[str, Path(min_length=1, max_length=64)],
    body: CorrectionRequest,
    key: CorrectKey,
    store: StoreDep,
    metrics: MetricsDep,
    engine: EngineDep,
    texts: ReviewTextsDep,
) -> CorrectionResponse:
    """Amend the verdict in force. The `reviews` row and earlier corrections stay in the audit trail.
    A reject needs one of the violation reasons a reviewer can choose, as a first verdict does."""
    problem = texts.rejection_problem(engine.config, body.verdict, body.violation_reason)
    if problem is not None:
        raise field_error(("body", "violation_reason"), f"violation_reason: {problem}")
    record = await run_in_threadpool(store.get_decision, decision_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown decision {decision_id}")
    previous = await run_in_threadpool(store.verdict_in_force, decision_id)
    if previous is None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"decision {decision_id} has no verdict yet: nothing to amend")
    supervisor = key.allows("supervise")
    if not supervisor and previous.reviewer != key.name:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"decision {decision_id} was reviewed by {previous.reviewer!r}: a review key amends only its own "
            "verdicts; amending another reviewer's needs the 'supervise' scope",
        )
    statement = correction_statement(
        record, previous.verdict, previous.statement_of_reasons, body.verdict, body.violation_reason
    )
    try:
        correction = await run_in_threadpool(
            store.record_correction,
            previous,
            key.name,
            body.verdict,
            body.violation_reason,
            body.reason,
            body.note,
            statement,
        )
    except NotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except ConflictError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    metrics.observe_correction(correction.verdict, "own" if previous.reviewer == key.name else "supervisor")
    return CorrectionResponse.model_validate(correction, from_attributes=True)
