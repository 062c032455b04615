"""deploy/: promtool accepts the scrape config and the alert rules (and their unit tests); the rules
and the dashboard only use metrics the daemon exports; the env file only sets real settings."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest

from scheduler.model import parse_scenario
from scheduler.service.api import create_app
from scheduler.service.loop import ServiceLoop
from scheduler.service.metrics import make_registry
from scheduler.service.planning import GreedyPlanner
from scheduler.service.settings import ServiceSettings
from scheduler.service.store import SqliteStore

from test_service_loop import FakeClock, small_site

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (run `make system-deps`)")


@needs_promtool
@pytest.mark.parametrize("args", [["check", "config", "prometheus.yml"],
                                  ["check", "rules", "wattsched-alerts.yml"],
                                  ["test", "rules", "wattsched-alerts.test.yml"]])
def test_promtool_accepts(args):
    r = subprocess.run([PROMTOOL, *args], cwd=DEPLOY, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def exported_names(tmp_path) -> set[str]:
    loop = ServiceLoop(parse_scenario(small_site()), SqliteStore(tmp_path / "d.db"), FakeClock(), GreedyPlanner())
    loop.start()
    loop.replan()
    registry, api = make_registry(loop)
    TestClient(create_app(loop, registry, api)).get("/healthz")
    names = set()
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return names


def used_names(text: str) -> set[str]:
    return set(re.findall(r"\bwattsched_[a-z_]+\b", text)) - {"wattsched_site"}


def test_rules_and_dashboard_use_only_exported_metrics(tmp_path):
    names = exported_names(tmp_path)
    rules = used_names((DEPLOY / "wattsched-alerts.yml").read_text())
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    assert rules and used_names(exprs)
    assert rules - names == set()
    assert used_names(exprs) - names == set()


def test_required_alerts_exist():
    text = (DEPLOY / "wattsched-alerts.yml").read_text()
    alerts = set(re.findall(r"alert: (\w+)", text))
    assert {"WattschedGridHeadroomLow", "WattschedPlanStale", "WattschedVerificationFailure",
            "WattschedSolverFailing", "WattschedLoopNearCapacity"} <= alerts


def test_env_file_sets_only_real_settings():
    fields = set(ServiceSettings.model_fields)
    keys = re.findall(r"^#?WATTSCHED_([A-Z_]+)=", (DEPLOY / "wattsched.env").read_text(), re.M)
    assert keys and {k.lower() for k in keys} - fields == set()
    assert fields - {k.lower() for k in keys} == set()  # every setting is documented there


def test_systemd_unit_is_hardened():
    unit = (DEPLOY / "wattsched.service").read_text()
    for line in ("EnvironmentFile=/etc/wattsched/wattsched.env", "DynamicUser=yes", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "CapabilityBoundingSet=\n", "PrivateDevices=yes", "StateDirectory=wattsched",
                 "SystemCallFilter=@system-service", "Restart=on-failure"):
        assert line in unit, line
    assert re.search(r"^ExecStart=\S+/wattsched serve", unit, re.M)
    container = (DEPLOY / "Containerfile").read_text()
    assert 'ENTRYPOINT ["wattsched", "serve"]' in container and "USER 10001" in container
