"""What-if simulation for PMs: `/v1/simulate` (same JSON as `triage simulate --json`), its curve, and the
`/simulator` web page (static shell; the page calls the API with the key the user enters)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from decision.policy import Policy
from decision.simulate import parse_tier_values, policy_tier_targets
from decision.thresholds import ThresholdResult
from serving.api.deps import EngineDep, ReadKey
from serving.api.errors import field_error
from serving.api.pages import page_router
from serving.engine import DecisionEngine
from serving.simulation import ReferenceSet, ScenarioError, bundle_reference, curve, records, run, what_if_policy

Target = Annotated[float, Field(ge=0.5, le=0.99999, allow_inf_nan=False)]
TIER_PASS_HELP = (
    "per-tier auto-pass thresholds of a tiered bundle, each 'tier:threshold' (threshold in [0, 1)); "
    "the tiers not named keep the thresholds in force"
)


class Scenario(BaseModel):
    """A what-if: thresholds (or targets), volume, productivity, prevalence shift, and an optional segment.

    No thresholds and no targets: the policy in force. One threshold: the other one stays as in force.
    In a tiered policy, t_pass / t_block are the overall pair (the tier thresholds stay in force) and
    `tier_pass` replaces the thresholds of the tiers it names (e.g. `tier_pass=severe:0.004`).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    t_pass: float | None = Field(default=None, ge=0, lt=1, description="auto-pass below this risk")
    t_block: float | None = Field(default=None, gt=0, le=1, description="auto-block at or above this risk")
    recall: Target | None = Field(default=None, description="target mode: thresholds chosen for this recall")
    block_precision: Target | None = Field(default=None, description="target mode: and this block precision")
    daily_volume: float = Field(default=100_000, ge=1, le=1e10, description="listings per day (marketplace)")
    productive_hours_per_fte: float = Field(default=6.5, ge=0.1, le=24)
    prevalence_multiplier: float = Field(default=1.0, ge=0.01, le=100, description="2 = violations double")
    segment_by: str | None = Field(default=None, min_length=1, max_length=64, description="segment column")
    segment: str | None = Field(
        default=None, min_length=1, max_length=200, description="replay only this value of segment_by"
    )
    breakdown_by: str | None = Field(default=None, min_length=1, max_length=64, description="per-segment rows")
    tier_pass: list[str] | None = Field(default=None, max_length=32, description=TIER_PASS_HELP)

    @field_validator("t_block")
    @classmethod
    def _above_t_pass(cls, t_block: float | None, info: ValidationInfo) -> float | None:
        t_pass = info.data.get("t_pass")
        if t_block is not None and t_pass is not None and not t_pass < t_block:
            raise ValueError(f"t_block ({t_block:g}) must be greater than t_pass ({t_pass:g})")
        return t_block

    @field_validator("recall", "block_precision")
    @classmethod
    def _targets_or_thresholds(cls, target: float | None, info: ValidationInfo) -> float | None:
        if target is not None and (info.data.get("t_pass") is not None or info.data.get("t_block") is not None):
            raise ValueError("give thresholds (t_pass, t_block) or targets (recall, block_precision), not both")
        return target

    @field_validator("tier_pass")
    @classmethod
    def _tier_thresholds(cls, items: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if not items:
            return None
        if info.data.get("recall") is not None or info.data.get("block_precision") is not None:
            raise ValueError("give thresholds (t_pass, t_block, tier_pass) or targets, not both")
        parse_tier_values(items)  # each 'tier:threshold' well formed, no tier named twice
        return items

    def tier_thresholds(self) -> dict[str, float] | None:
        """`tier_pass` as tier -> threshold (None: none given)."""
        return parse_tier_values(self.tier_pass) if self.tier_pass else None

    def workload(self) -> dict[str, Any]:
        """The volume, productivity, prevalence and segment arguments of `run` and `curve`."""
        return {
            "daily_volume": self.daily_volume,
            "productive_hours_per_fte": self.productive_hours_per_fte,
            "prevalence_multiplier": self.prevalence_multiplier,
            "segment_by": self.segment_by,
            "segment": self.segment,
        }


class CurveScenario(Scenario):
    n_points: int = Field(default=400, ge=10, le=2000, description="t_pass values swept")


def _reference(engine: DecisionEngine) -> ReferenceSet:
    bundle = engine.bundle
    if bundle is None:
        raise HTTPException(status.HTTP_409_CONFLICT, "no model bundle is loaded; nothing to simulate")
    try:
        return bundle_reference(bundle)
    except FileNotFoundError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc


def _what_if(
    scenario: Scenario, engine: DecisionEngine, reference: ReferenceSet
) -> tuple[Policy, ThresholdResult | None]:
    return what_if_policy(
        engine.policy,
        reference,
        scenario.t_pass,
        scenario.t_block,
        scenario.recall,
        scenario.block_precision,
        scenario.tier_thresholds(),
    )


def _simulate(scenario: Scenario, engine: DecisionEngine, where: Literal["query", "body"]) -> dict[str, Any]:
    reference = _reference(engine)
    try:
        policy, chosen = _what_if(scenario, engine, reference)
        result = run(reference, policy, breakdown_by=scenario.breakdown_by, **scenario.workload())
    except ScenarioError as exc:
        raise field_error((where, exc.field), str(exc)) from exc
    out: dict[str, Any] = {"bundle": str(reference.path), "policy": policy.version, **result.to_dict()}
    if chosen is not None:
        out["chosen"] = chosen.to_dict()
    if scenario.segment is not None:
        out["segment"] = {"column": scenario.segment_by, "value": scenario.segment}
    return out


def _curve(scenario: CurveScenario, engine: DecisionEngine, where: Literal["query", "body"]) -> dict[str, Any]:
    reference = _reference(engine)
    try:
        policy, _ = _what_if(scenario, engine, reference)
        points = curve(reference, policy, n_points=scenario.n_points, **scenario.workload())
    except ScenarioError as exc:
        raise field_error((where, exc.field), str(exc)) from exc
    return {
        "bundle": str(reference.path),
        "policy": policy.version,
        "t_block": policy.t_block,
        "points": records(points),
    }


api = APIRouter(prefix="/v1/simulate", tags=["simulate"])
_responses: dict[int | str, dict[str, Any]] = {
    409: {"description": "No model bundle loaded, or it has no reference set"},
    422: {"description": "Invalid scenario (field named), e.g. t_pass >= t_block"},
}


@api.get("", responses=_responses)
def simulate_get(scenario: Annotated[Scenario, Query()], _key: ReadKey, engine: EngineDep) -> dict[str, Any]:
    """Replay the bundle's reference set through a what-if policy: a headline (share decided automatically,
    reviewer FTE saved against reviewing everything), routing split, queue, reviewer-hours, FTE, missed
    violations and wrongful blocks per day with intervals, and per tier its target, recall and misses per
    day (the JSON of `triage simulate`)."""
    return _simulate(scenario, engine, "query")


@api.post("", responses=_responses)
def simulate_post(scenario: Scenario, _key: ReadKey, engine: EngineDep) -> dict[str, Any]:
    """`GET /v1/simulate` with the scenario as a JSON body."""
    return _simulate(scenario, engine, "body")


@api.get("/curve", responses=_responses)
def simulate_curve(scenario: Annotated[CurveScenario, Query()], _key: ReadKey, engine: EngineDep) -> dict[str, Any]:
    """The workload-recall curve: t_pass swept from 0 to the scenario's t_block (rules left out)."""
    return _curve(scenario, engine, "query")


@api.get("/context", responses={409: _responses[409]})
def simulate_context(_key: ReadKey, engine: EngineDep) -> dict[str, Any]:
    """What the simulator page needs to set itself up: the policy in force, segment columns and values,
    and for a tiered bundle its tiers (target and threshold in force, violations in the reference)."""
    reference = _reference(engine)
    policy = engine.policy
    targets = policy_tier_targets(policy)
    violations = reference.tier_violations()
    return {
        "bundle": str(reference.path),
        "model_version": engine.model_version,
        "policy": {
            "version": policy.version,
            "t_pass": policy.t_pass,
            "t_block": policy.t_block,
            "segment_by": policy.segment_by,
            "segments": len(policy.segments),
            "qa_sample_rate": policy.qa_sample_rate,
            "tier_pass": dict(policy.tier_pass),
        },
        "tiers": [
            {
                "name": name,
                "recall_target": targets.get(name),
                "t_pass": policy.tier_pass.get(name, 0.0)
                if policy.tier_pass and name in reference.routed_tiers
                else None,
                "n_violations": violations[name],
            }
            for name in reference.tiers
        ],
        "n_reference": len(reference.frame),
        "prevalence": reference.prevalence,
        "segments": reference.segment_values(),
        "defaults": Scenario().model_dump(
            include={"daily_volume", "productive_hours_per_fte", "prevalence_multiplier"}
        ),
    }


page = page_router("simulator", "simulator")


router = APIRouter()
router.include_router(api)
router.include_router(page)
