"""The service loop in simulated time: injected clock, SQLite store in a temp dir, explicit ticks."""
from __future__ import annotations

import copy

import pytest

from scheduler.model import parse_scenario
from scheduler.service.actuators import RecordingActuator
from scheduler.service.inputs import InputError
from scheduler.service.loop import ServiceLoop
from scheduler.service.planning import GreedyPlanner, basic_verify, default_fast_planner
from scheduler.service.store import SqliteStore
from scheduler.verify import verify_plan


def small_site(grid_limit_kw: float = 400.0) -> dict:
    """One site: 4 GPU racks of 8 GPUs in one domain, 4 miner racks; cheap power, decent hashprice."""
    racks = [{"id": f"G{n}", "feed": "F1", "loop": "dlc", "limit_kw": 12.0, "idle_kw": 0.3, "domain": "pod",
              "gpus": {"model": "H100", "count": 8}} for n in range(4)]
    racks += [{"id": f"M{n}", "feed": "F2", "loop": "air", "limit_kw": 45.0, "idle_kw": 0.2,
               "miners": {"model": "S21", "count": 12}} for n in range(4)]
    return {
        "version": 1, "name": "small", "hashprice_usd_per_ph_day": 50.0,
        "gpu_models": {"H100": {"idle_w": 90, "host_w": 560, "cap_levels": [
            {"cap_w": 350, "perf": 0.62}, {"cap_w": 500, "perf": 0.86}, {"cap_w": 700, "perf": 1.0}]}},
        "miner_models": {"S21": {"modes": {"eco": {"th_s": 170, "kw": 2.8}, "normal": {"th_s": 200, "kw": 3.5}}}},
        "sites": [{"id": "wa", "grid_limit_kw": grid_limit_kw, "energy_price_usd_per_mwh": 30.0, "ambient_c": 20.0,
                   "base_kw": 10.0,
                   "feeds": [{"id": "F1", "limit_kw": 200.0}, {"id": "F2", "limit_kw": 200.0}],
                   "loops": [{"id": "air", "kind": "air", "capacity_kw": 250.0, "design_ambient_c": 30.0,
                              "derate_per_c": 0.02, "kw_per_kw_heat": 0.06},
                             {"id": "dlc", "kind": "liquid", "capacity_kw": 200.0, "design_ambient_c": 35.0,
                              "derate_per_c": 0.01, "kw_per_kw_heat": 0.1}],
                   "racks": racks}],
        "training": [{"id": "ft-a", "gpus": 8, "value_per_gpu_h": {"H100": 2.0}}],
        "inference": [{"id": "chat", "gpus_per_replica": 1, "replica_rps": {"H100": 40.0}, "demand_rps": 200.0,
                       "value_per_1k": 0.4, "unserved_penalty_per_1k": 1.0}],
    }


class FakeClock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


def make_loop(tmp_path, data=None, fast=None, full=None, verifier=None, name="state.db", clock=None):
    sc = parse_scenario(data or small_site())
    act = RecordingActuator()
    loop = ServiceLoop(sc, SqliteStore(tmp_path / name), clock or FakeClock(), fast or GreedyPlanner(),
                       full=full, actuator=act, verifier=verifier or verify_plan, tick_s=60.0)
    return loop, act


def test_first_replan_adopts_a_verified_plan(tmp_path):
    loop, act = make_loop(tmp_path)
    assert loop.start() is True
    out = loop.replan("start")
    assert out.adopted, out
    cur = loop.current()
    assert cur.row.seq == out.seq == act.published[-1]["seq"]
    assert verify_plan(cur.scenario, cur.row.plan) == []
    assert loop.workload("training", "ft-a")["status"] in ("running", "queued")
