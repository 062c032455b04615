"""Small horizon scenarios whose optimum is known by construction (shared by the horizon tests).

One site, one 8-GPU rack (one cap level: 1 kW per busy GPU, nothing else draws power) and one
rack of 10 miners (1 kW and 100 TH/s each; at hashprice 24 USD/PH/day a miner earns 0.10 USD/h,
so it breaks even at 100 USD/MWh). No cooling overhead, no base load.
"""
from __future__ import annotations

from scheduler.model import parse_scenario


def tiny(prices: list[float], *, job: dict | None = None, grid: list[float] | None = None,
         ramp: float | None = None, hours: float = 1.0, grid_kw: float = 100.0):
    site = {"id": "wa", "grid_limit_kw": grid_kw, "energy_price_usd_per_mwh": 40, "ambient_c": 20,
            "feeds": [{"id": "F1", "limit_kw": 1000}],
            "loops": [{"id": "L1", "kind": "liquid", "capacity_kw": 1000, "design_ambient_c": 35,
                       "derate_per_c": 0.0, "kw_per_kw_heat": 0.0}],
            "racks": [{"id": "G1", "feed": "F1", "loop": "L1", "limit_kw": 100, "domain": "d1",
                       "gpus": {"model": "GPU", "count": 8}},
                      {"id": "M1", "feed": "F1", "loop": "L1", "limit_kw": 100,
                       "miners": {"model": "ASIC", "count": 10}}]}
    if ramp is not None:
        site["max_ramp_kw_per_h"] = ramp
    periods = []
    for n, price in enumerate(prices):
        per = {"hours": hours, "energy_price_usd_per_mwh": {"wa": price}}
        if grid is not None:
            per["grid_limit_kw"] = {"wa": grid[n]}
        periods.append(per)
    data = {"version": 1, "name": "tiny", "hashprice_usd_per_ph_day": 24.0,
            "gpu_models": {"GPU": {"idle_w": 0, "host_w": 0, "cap_levels": [{"cap_w": 1000, "perf": 1.0}]}},
            "miner_models": {"ASIC": {"modes": {"on": {"th_s": 100, "kw": 1.0}}}},
            "sites": [site], "training": [], "periods": periods}
    if job is not None:
        data["training"] = [{"id": "ft", "gpus": 8, "value_per_gpu_h": {"GPU": 10.0}, **job}]
    return parse_scenario(data)
