"""SQLite store round trips and the actuators (file: atomic; webhook: retries against a loopback server)."""
from __future__ import annotations

import http.server
import json
import threading

import pytest

from scheduler.service.actuators import FanOut, FileActuator, RecordingActuator, WebhookActuator
from scheduler.service.store import PlanRow, SqliteStore


def test_store_round_trips_and_survives_reopen(tmp_path):
    path = tmp_path / "s.db"
    st = SqliteStore(path)
    st.add_workload("training", "a", {"id": "a", "gpus": 8}, 1.0)
    st.add_workload("inference", "b", {"id": "b"}, 2.0)
    st.cancel_workload("training", "a", "api", 3.0)
    st.cancel_workload("inference", "chat", "scenario", 4.0)
    assert st.add_signal({"site": "wa", "grid_limit_kw": 10.0}, 5.0) == 1
    seq = st.add_plan(PlanRow(0, 6.0, "h1", "milp", "optimal", 0.5, 12.5, "fast:change", {"x": 1}))
    st.add_workload("training", "a", {"id": "a", "gpus": 16}, 7.0)  # an id may be submitted again once cancelled
    st.close()

    st = SqliteStore(path)
    assert st._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    rows = {(r.kind, r.id): r for r in st.workloads()}
    assert rows[("training", "a")].state == "active" and rows[("training", "a")].body["gpus"] == 16
    assert rows[("inference", "b")].state == "active"
    assert rows[("inference", "chat")].state == "cancelled" and rows[("inference", "chat")].source == "scenario"
    assert st.signals() == [(1, 5.0, {"site": "wa", "grid_limit_kw": 10.0})]
    last = st.last_plan()
    assert last.seq == seq and last.plan == {"x": 1} and last.inputs_hash == "h1" and last.objective_usd == 12.5
    assert st.plan(seq) == last and st.plan(99) is None and st.plans(10) == [last]
    kinds = [e["kind"] for e in st.events()]
    assert kinds == ["workload_submitted", "workload_submitted", "workload_cancelled", "workload_cancelled",
                     "signal", "plan_adopted", "workload_submitted"]
    assert [e["seq"] for e in st.events(after=5, limit=1)] == [6]


def test_retention_keeps_the_newest_plans_and_events_only(tmp_path):
    st = SqliteStore(tmp_path / "s.db", keep_plans=3, keep_events=5)
    st.add_workload("training", "a", {"id": "a", "gpus": 8}, 0.5)
    st.add_signal({"site": "wa", "grid_limit_kw": 10.0}, 0.6)
    seqs = [st.add_plan(PlanRow(0, float(n), f"h{n}", "heuristic", "feasible", 0.001, float(n), "tick", {"n": n}))
            for n in range(1, 7)]
    assert [r.seq for r in st.plans(10)] == seqs[::-1][:3]          # the three newest, newest first
    assert st.last_plan().plan == {"n": 6} and st.plan(seqs[0]) is None
    events = st.events(limit=100)
    assert len(events) == 5 and [e["kind"] for e in events] == ["plan_adopted"] * 5
    assert events[-1]["body"]["inputs_hash"] == "h6"
    # workloads and signals are state, never pruned
    assert [w.id for w in st.workloads()] == ["a"] and len(st.signals()) == 1
    st.add_event("note", {"x": 1}, 7.0)
    assert [e["kind"] for e in st.events(limit=100)][-1] == "note" and len(st.events(limit=100)) == 5
    for n in range(6):  # every write that logs an event keeps the log to its newest `keep_events`
        st.add_signal({"site": "wa", "grid_limit_kw": 20.0 + n}, 8.0 + n)
    events = st.events(limit=100)
    assert len(events) == 5 and [e["body"]["grid_limit_kw"] for e in events] == [21.0, 22.0, 23.0, 24.0, 25.0]


def test_a_failed_transaction_leaves_nothing(tmp_path):
    st = SqliteStore(tmp_path / "s.db")
    with pytest.raises(ValueError):
        st.add_signal({"bad": float("nan")}, 1.0)  # not JSON: refused before anything is written
    assert st.signals() == [] and st.events() == []


def test_file_actuator_replaces_atomically(tmp_path):
    target = tmp_path / "out" / "plan.json"
    act = FileActuator(target)
    act.publish({"seq": 1, "plan": {"a": 1}})
    act.publish({"seq": 2, "plan": {"a": 2}})
    assert json.loads(target.read_text()) == {"seq": 2, "plan": {"a": 2}}
    assert [p.name for p in target.parent.iterdir()] == ["plan.json"]  # no temp files left


class _Hook(http.server.BaseHTTPRequestHandler):
    fail_first = 0
    received: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if type(self).fail_first > 0:
            type(self).fail_first -= 1
            self.send_response(503)
        else:
            type(self).received.append(body)
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def hook_server():
    _Hook.fail_first, _Hook.received = 2, []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_webhook_retries_until_delivered(hook_server):
    url = f"http://127.0.0.1:{hook_server.server_address[1]}/plan"
    sleeps = []
    act = WebhookActuator(url, retries=3, backoff_s=0.01, sleep=sleeps.append)
    assert act.deliver({"seq": 7}) is True
    assert _Hook.received == [{"seq": 7}] and sleeps == [0.01, 0.02]


def test_webhook_gives_up_after_retries(hook_server):
    _Hook.fail_first = 10
    url = f"http://127.0.0.1:{hook_server.server_address[1]}/plan"
    act = WebhookActuator(url, retries=2, backoff_s=0.0, sleep=lambda s: None)
    assert act.deliver({"seq": 1}) is False and _Hook.received == []


def test_webhook_thread_delivers_published_plans(hook_server):
    _Hook.fail_first = 0
    url = f"http://127.0.0.1:{hook_server.server_address[1]}/plan"
    act = WebhookActuator(url, retries=1, backoff_s=0.0)
    act.publish({"seq": 1})
    act.close()
    assert _Hook.received == [{"seq": 1}] and act.delivered == 1


def test_webhook_url_must_be_http():
    with pytest.raises(ValueError, match="webhook_url"):
        WebhookActuator("ftp://x")


def test_fan_out_keeps_going_when_one_actuator_fails(tmp_path):
    class Broken:
        def publish(self, document):
            raise OSError("disk full")

    rec = RecordingActuator()
    FanOut([Broken(), rec]).publish({"seq": 1})
    assert rec.published == [{"seq": 1}]
