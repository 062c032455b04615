"""The scenario a user writes (SPEC section 1 and 6): strict, frozen pydantic types.

Field-level rules (types, signs, finiteness, unknown keys) live on the types; rules that
relate one part of the scenario to another (references, domains, placements) live in
`scheduler.model.checks`, which reports each problem with its path.
"""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

# Every float is finite; ints may stand where floats go, strings never do.
Float = Annotated[float, Field(strict=True, allow_inf_nan=False)]
NonNeg = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0)]
Positive = Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0)]
Count = Annotated[int, Field(strict=True, ge=0)]
PosCount = Annotated[int, Field(strict=True, ge=1)]
Id = Annotated[str, Field(strict=True, min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CapLevel(_Strict):
    cap_w: NonNeg
    perf: Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0, le=1)]


class GpuModel(_Strict):
    idle_w: NonNeg
    host_w: NonNeg
    cap_levels: Annotated[list[CapLevel], Field(min_length=1)]

    @field_validator("cap_levels")
    @classmethod
    def _levels_ordered(cls, levels: list[CapLevel]) -> list[CapLevel]:
        for a, b in zip(levels, levels[1:]):
            if not b.cap_w > a.cap_w:
                raise ValueError(f"cap_w must be strictly increasing ({a.cap_w:g} then {b.cap_w:g})")
            if b.perf < a.perf:
                raise ValueError(f"perf must be non-decreasing ({a.perf:g} then {b.perf:g})")
        if levels[-1].perf != 1.0:
            raise ValueError(f"the highest cap level must have perf 1.0 (got {levels[-1].perf:g})")
        return levels


class MinerMode(_Strict):
    th_s: NonNeg
    kw: NonNeg


class MinerModel(_Strict):
    modes: Annotated[dict[Id, MinerMode], Field(min_length=1)]


class Feed(_Strict):
    id: Id
    limit_kw: NonNeg


class Loop(_Strict):
    id: Id
    kind: Literal["air", "liquid"]
    capacity_kw: NonNeg
    design_ambient_c: Float
    derate_per_c: NonNeg
    kw_per_kw_heat: NonNeg


class GpuSlots(_Strict):
    model: Id
    count: PosCount


class MinerSlots(_Strict):
    model: Id
    count: PosCount


class Rack(_Strict):
    id: Id
    feed: Id
    loop: Id
    limit_kw: NonNeg
    idle_kw: NonNeg = 0.0
    domain: Optional[Id] = None
    gpus: Optional[GpuSlots] = None
    miners: Optional[MinerSlots] = None

    @model_validator(mode="after")
    def _one_kind(self) -> "Rack":
        if self.gpus is not None and self.miners is not None:
            raise ValueError("a rack holds gpus or miners, not both")
        if self.gpus is None and self.miners is None:
            raise ValueError("a rack needs 'gpus' or 'miners' (it has neither)")
        if self.miners is not None and self.domain is not None:
            raise ValueError("a miner rack cannot belong to a domain")
        return self


class Site(_Strict):
    id: Id
    grid_limit_kw: NonNeg
    energy_price_usd_per_mwh: Float
    ambient_c: Float
    base_kw: NonNeg = 0.0
    max_ramp_kw_per_h: Optional[NonNeg] = None
    feeds: Annotated[list[Feed], Field(min_length=1)]
    loops: Annotated[list[Loop], Field(min_length=1)]
    racks: list[Rack] = []


class TrainingJob(_Strict):
    id: Id
    gpus: PosCount
    value_per_gpu_h: Annotated[dict[Id, NonNeg], Field(min_length=1)]
    min_cap_w: Optional[NonNeg] = None
    required: StrictBool = False
    sites: Optional[Annotated[list[Id], Field(min_length=1)]] = None
    running: Optional[dict[Id, PosCount]] = None
    move_cost_usd: NonNeg = 0.0
    remaining_gpu_h: Optional[NonNeg] = None
    deadline_h: Optional[NonNeg] = None
    late_penalty_usd_per_h: NonNeg = 0.0


class InferenceService(_Strict):
    id: Id
    gpus_per_replica: PosCount
    replica_rps: Annotated[dict[Id, Positive], Field(min_length=1)]
    demand_rps: NonNeg
    value_per_1k: NonNeg
    unserved_penalty_per_1k: NonNeg = 0.0
    min_cap_w: Optional[NonNeg] = None
    sites: Optional[Annotated[list[Id], Field(min_length=1)]] = None
    running: Optional[dict[Id, Count]] = None
    move_cost_usd: NonNeg = 0.0


class Period(_Strict):
    hours: Positive
    energy_price_usd_per_mwh: dict[Id, Float] = {}
    grid_limit_kw: dict[Id, NonNeg] = {}
    ambient_c: dict[Id, Float] = {}
    demand_rps: dict[Id, NonNeg] = {}
    hashprice_usd_per_ph_day: Optional[NonNeg] = None


class Scenario(_Strict):
    version: Literal[1]
    name: Optional[Id] = None
    interval_h: Positive = 1.0
    hashprice_usd_per_ph_day: NonNeg = 0.0
    gpu_models: dict[Id, GpuModel] = {}
    miner_models: dict[Id, MinerModel] = {}
    sites: Annotated[list[Site], Field(min_length=1)]
    training: list[TrainingJob] = []
    inference: list[InferenceService] = []
    periods: Optional[Annotated[list[Period], Field(min_length=1)]] = None

    @field_validator("version", mode="before")
    @classmethod
    def _known_version(cls, version: object) -> object:
        # strict: `true` and `1.0` are not the integer 1
        if type(version) is not int or version != 1:
            raise ValueError(f"unsupported scenario version {version!r}; this wattsched reads version 1")
        return version
