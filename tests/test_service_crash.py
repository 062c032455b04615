"""Crash recovery: the daemon as a subprocess, a stream of submissions and signals, `kill -9` in the
middle, a restart on the same database; every acknowledged write is still there and the daemon
resumes from the last adopted plan."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from test_service_loop import small_site


def wait_for(predicate, timeout_s: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def plan_is_current(url: str) -> bool:
    try:
        st = httpx.get(f"{url}/v1/status", timeout=2.0).json()
    except httpx.TransportError:
        return False
    return st["plan_up_to_date"]


@pytest.fixture
def scenario_file(tmp_path) -> Path:
    path = tmp_path / "site.json"
    path.write_text(json.dumps(small_site()))
    return path


def test_kill_9_mid_stream_loses_no_acknowledged_write(tmp_path, scenario_file, daemon):
    db = tmp_path / "state.db"
    acked_jobs: list[str] = []
    acked_signals: list[int] = []
    stop = threading.Event()

    def stream(url: str) -> None:
        with httpx.Client(base_url=url, timeout=5.0) as c:
            n = 0
            while not stop.is_set() and n < 2000:
                n += 1
                try:
                    if n % 3:
                        r = c.post("/v1/training", json={"id": f"job-{n}", "gpus": 1 + n % 8,
                                                         "value_per_gpu_h": {"H100": 1.0 + n % 5}})
                        if r.status_code == 201:
                            acked_jobs.append(f"job-{n}")
                    else:
                        r = c.post("/v1/signals", json={"grid_limit_kw": 150.0 + n % 50})
                        if r.status_code == 201:
                            acked_signals.append(r.json()["seq"])
                except httpx.TransportError:
                    return

    with daemon(scenario_file, db, "--fast-method", "greedy", "--no-milp") as (proc, url):
        wait_for(lambda: plan_is_current(url), what="first plan")
        writer = threading.Thread(target=stream, args=(url,))
        writer.start()
        wait_for(lambda: len(acked_jobs) >= 25 and len(acked_signals) >= 10, what="acknowledged writes")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        stop.set()
        writer.join(10)
    assert acked_jobs and acked_signals

    with sqlite3.connect(db) as con:  # what the killed daemon left behind
        last_seq, last_hash = con.execute("SELECT seq, inputs_hash FROM plans ORDER BY seq DESC LIMIT 1").fetchone()
        stored_signals = {s for (s,) in con.execute("SELECT seq FROM signals")}
    assert set(acked_signals) <= stored_signals

    with daemon(scenario_file, db, "--fast-method", "greedy", "--no-milp") as (proc, url):
        status = httpx.get(f"{url}/v1/status").json()
        assert status["resumed_from_plan"] == last_seq
        resumed = httpx.get(f"{url}/v1/plans/{last_seq}").json()
        assert resumed["inputs_hash"] == last_hash
        events = httpx.get(f"{url}/v1/events", params={"limit": 1000, "after": 0}).json()["events"]
        assert any(e["kind"] == "resumed" and e["body"]["plan_seq"] == last_seq for e in events)
        listed = {w["id"] for w in httpx.get(f"{url}/v1/training").json()["training"]}
        missing = set(acked_jobs) - listed
        assert not missing, f"acknowledged but lost after kill -9: {sorted(missing)[:10]}"
        # the daemon re-plans from the resumed plan and covers every workload it has
        wait_for(lambda: plan_is_current(url), what="re-plan after restart")
        plan = httpx.get(f"{url}/v1/plan").json()
        assert set(acked_jobs) <= {t["id"] for t in plan["training"]}
        history = httpx.get(f"{url}/v1/plans", params={"limit": 2}).json()["plans"]
        assert history[0]["seq"] >= last_seq  # the resumed plan, or one made after it


def test_bad_scenario_file_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nsites: []\n")
    r = subprocess.run([sys.executable, "-m", "scheduler.service", str(bad), "--db", str(tmp_path / "x.db")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.startswith("wattsched serve: sites:") and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "scheduler.service", str(bad), "--port", "99999"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "port (WATTSCHED_PORT)" in r.stderr
