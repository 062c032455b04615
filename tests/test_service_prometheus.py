"""A real Prometheus server (Debian package `prometheus`, installed by `make system-deps`) scrapes the
daemon over loopback, and a PromQL query returns the site's planned power."""
from __future__ import annotations

import json
import shutil

import httpx
import pytest

from test_service_crash import wait_for
from test_service_loop import small_site

PROMETHEUS = shutil.which("prometheus")

pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed (run `make system-deps`)")


def test_prometheus_scrapes_the_daemon_and_promql_returns_site_power(tmp_path, daemon, spawn, free_port):
    scenario = tmp_path / "site.json"
    scenario.write_text(json.dumps(small_site()))
    with daemon(scenario, tmp_path / "state.db", "--fast-method", "greedy", "--no-milp") as (_, url):
        wait_for(lambda: httpx.get(f"{url}/readyz").status_code == 200, what="daemon ready")
        plan = httpx.get(f"{url}/v1/plan").json()
        target = url.removeprefix("http://")
        (tmp_path / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: wattsched\n"
            f"    static_configs:\n      - targets: ['{target}']\n")
        prom_port = free_port()
        with spawn([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                   tmp_path / "prometheus.log"):
            api = f"http://127.0.0.1:{prom_port}/api/v1/query"

            def query(q: str):
                try:
                    r = httpx.get(api, params={"query": q}, timeout=2.0)
                except httpx.TransportError:
                    return None
                if r.status_code != 200:
                    return None
                return r.json()["data"]["result"] or None

            result = wait_for(lambda: query('wattsched_site_power_watts{site="wa"}'), timeout_s=30.0,
                              what="Prometheus to scrape the daemon")
            assert float(result[0]["value"][1]) == pytest.approx(plan["sites"][0]["site_kw"] * 1000, rel=1e-9)
            assert result[0]["metric"]["job"] == "wattsched"
            up = query('up{job="wattsched"}')
            assert up and up[0]["value"][1] == "1"
            headroom = query('wattsched_site_grid_headroom_watts{site="wa"} / wattsched_site_grid_limit_watts')
            assert 0.0 <= float(headroom[0]["value"][1]) <= 1.0
            assert query("wattsched_verification_failures_total")[0]["value"][1] == "0"
