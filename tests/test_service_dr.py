"""Demand response end to end: the daemon (default planners) as a subprocess; a grid cut posted over
HTTP is obeyed by the next adopted plan well within one tick."""
from __future__ import annotations

import json

import httpx

from test_service_crash import wait_for
from test_service_loop import small_site

TICK_S = 60.0


def test_posted_cut_is_obeyed_by_the_next_plan_within_one_tick(tmp_path, daemon):
    scenario = tmp_path / "site.json"
    scenario.write_text(json.dumps(small_site()))
    plan_file = tmp_path / "actuator" / "plan.json"
    with daemon(scenario, tmp_path / "dr.db", "--tick-s", str(TICK_S), "--plan-file", str(plan_file),
                "--milp-time-limit-s", "5") as (_, url):
        wait_for(lambda: httpx.get(f"{url}/readyz").status_code == 200, timeout_s=60, what="first plan")
        before = httpx.get(f"{url}/v1/plan").json()
        assert before["sites"][0]["site_kw"] > 120.0
        r = httpx.post(f"{url}/v1/signals", json={"site": "wa", "grid_limit_kw": 120.0})
        assert r.status_code == 201
        posted = r.json()

        def planned():
            st = httpx.get(f"{url}/v1/status").json()
            return st if st["plan_inputs_hash"] == posted["inputs_hash"] else None

        st = wait_for(planned, timeout_s=TICK_S / 4, what="a plan of the cut")
        row = httpx.get(f"{url}/v1/plans/{st['plan_seq']}").json()
        assert row["plan"]["sites"][0]["grid_limit_kw"] == 120.0
        assert row["plan"]["sites"][0]["site_kw"] <= 120.0 + 1e-6
        assert 0.0 <= row["adopted_at_s"] - posted["at_s"] < TICK_S
        # the file actuator holds an adopted plan that obeys the cut (the latest, or a better one after it)
        published = wait_for(lambda: plan_file.exists() and json.loads(plan_file.read_text()), what="plan file")
        assert published["seq"] >= row["seq"] and published["plan"]["sites"][0]["site_kw"] <= 120.0 + 1e-6
        assert "wattsched_verification_failures_total 0.0" in httpx.get(f"{url}/metrics").text
