"""The HTTP API through FastAPI's test client: every endpoint, bad input of every kind, auth."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from scheduler.model import parse_scenario
from scheduler.service.api import create_app
from scheduler.service.loop import ServiceLoop
from scheduler.service.metrics import make_registry
from scheduler.service.planning import GreedyPlanner
from scheduler.service.store import SqliteStore
from scheduler.verify import verify_plan

from test_service_loop import FakeClock, small_site

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JOB = {"id": "ft-b", "gpus": 8, "value_per_gpu_h": {"H100": 3.0}, "move_cost_usd": 5}
SVC = {"id": "embed", "gpus_per_replica": 1, "replica_rps": {"H100": 100.0}, "demand_rps": 150.0,
       "value_per_1k": 0.2}


def make_client(tmp_path, token=None):
    loop = ServiceLoop(parse_scenario(small_site()), SqliteStore(tmp_path / "api.db"), FakeClock(),
                       GreedyPlanner(), verifier=verify_plan)
    loop.start()
    registry, api_metrics = make_registry(loop)
    app = create_app(loop, registry, api_metrics, token=token, notify=lambda: loop.replan("change"))
    return TestClient(app), loop


@pytest.fixture
def client(tmp_path):
    c, loop = make_client(tmp_path)
    c.loop = loop
    return c


def test_no_plan_yet_then_ready(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 503 and "no plan" in r.json()["detail"]
    assert client.get("/v1/plan").status_code == 503
    client.loop.replan()
    assert client.get("/readyz").status_code == 200


def test_submit_list_get_cancel_training_and_inference(client):
    r = client.post("/v1/training", json=JOB)
    assert r.status_code == 201, r.text
    assert r.json()["id"] == "ft-b" and r.json()["spec"]["gpus"] == 8
    assert r.json()["status"] == "pending"  # planned after the answer; notify re-planned at once here
    got = client.get("/v1/training/ft-b").json()
    assert got["status"] == "running" and got["plan"]["scheduled"] is True
    assert {w["id"] for w in client.get("/v1/training").json()["training"]} == {"ft-a", "ft-b"}
    assert client.post("/v1/inference", json=SVC).status_code == 201
    assert client.get("/v1/inference/embed").json()["status"] == "serving"
    r = client.delete("/v1/training/ft-b")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert client.get("/v1/training/ft-b").status_code == 404
    assert client.delete("/v1/training/ft-b").status_code == 404
    plan = client.get("/v1/plan").json()
    assert {t["id"] for t in plan["training"]} == {"ft-a"}
    assert {s["id"] for s in plan["inference"]} == {"chat", "embed"}


def test_plan_history_scenario_events_status(client):
    client.loop.replan()
    client.post("/v1/signals", json={"grid_limit_kw": 150})
    r = client.get("/v1/plan")
    seq = int(r.headers["X-Wattsched-Plan-Seq"])
    assert seq == 2 and r.json()["sites"][0]["site_kw"] <= 150.0
    hist = client.get("/v1/plans").json()["plans"]
    assert [p["seq"] for p in hist] == [2, 1] and "plan" not in hist[0]
    assert client.get("/v1/plans?limit=1&before=2").json()["plans"][0]["seq"] == 1
    one = client.get("/v1/plans/2").json()
    assert one["plan"] == r.json() and one["inputs_hash"] == r.headers["X-Wattsched-Inputs-Hash"]
    # the effective scenario is the one the plan verifies against
    sc = parse_scenario(client.get("/v1/scenario").json())
    assert sc.sites[0].grid_limit_kw == 150.0 and verify_plan(sc, r.json()) == []
    kinds = [e["kind"] for e in client.get("/v1/events").json()["events"]]
    assert kinds == ["plan_adopted", "signal", "plan_adopted"]
    st = client.get("/v1/status").json()
    assert st["plan_seq"] == 2 and st["plan_up_to_date"] and st["verification_failures"] == 0
    assert st["fast_planner_warm"] is True
    assert client.get("/v1/signals").json()["sites"] == {"wa": {"grid_limit_kw": 150.0}}


def test_openapi_document_lists_the_endpoints(client):
    doc = client.get("/v1/openapi.json").json()
    paths = set(doc["paths"])
    assert {"/v1/training", "/v1/training/{wid}", "/v1/inference", "/v1/inference/{wid}", "/v1/signals",
            "/v1/plan", "/v1/plans", "/v1/plans/{seq}", "/healthz", "/readyz", "/metrics"} <= paths
    assert "TrainingJob" in doc["components"]["schemas"]


BAD_REQUESTS = [
    # (method, path, body or raw text, status, detail starts with)
    ("post", "/v1/training", "{not json", 422, "body: not valid JSON"),
    ("post", "/v1/training", [1, 2], 422, "body: input should be a valid dictionary"),
    ("post", "/v1/training", {"id": "x", "gpus": "8", "value_per_gpu_h": {"H100": 1}}, 422, "gpus: input should be a valid integer"),
    ("post", "/v1/training", {"id": "x", "gpus": 8}, 422, "value_per_gpu_h: required field is missing"),
    ("post", "/v1/training", {"id": "x", "gpus": 8, "value_per_gpu_h": {"H100": 1}, "x": 1}, 422, "x: unknown key"),
    ("post", "/v1/training", {"id": "", "gpus": 8, "value_per_gpu_h": {"H100": 1}}, 422, "id: string should have at least 1 character"),
    ("post", "/v1/training", {"id": "x", "gpus": 8, "value_per_gpu_h": {"A100": 1}}, 422, "value_per_gpu_h: unknown GPU model 'A100'"),
    ("post", "/v1/training", {"id": "x", "gpus": 9999, "value_per_gpu_h": {"H100": 1}, "required": True}, None, None),
    ("post", "/v1/training", {"id": "x", "gpus": 8, "value_per_gpu_h": {"H100": -1}}, 422, "value_per_gpu_h.H100: input should be greater than or equal to 0"),
    ("post", "/v1/training", {"id": "ft-a", "gpus": 8, "value_per_gpu_h": {"H100": 1}}, 409, "id: a training workload 'ft-a' already exists"),
    ("post", "/v1/inference", {"id": "y", "gpus_per_replica": 1, "replica_rps": {"H100": 0}, "demand_rps": 1, "value_per_1k": 1}, 422, "replica_rps.H100: input should be greater than 0"),
    ("post", "/v1/inference", {"id": "y", "gpus_per_replica": 1, "replica_rps": {"H100": 1}, "demand_rps": 1, "value_per_1k": 1, "running": {"M0": 1}}, 422, "running"),
    ("post", "/v1/signals", {"site": "tx", "grid_limit_kw": 1}, 422, "site: unknown site 'tx'"),
    ("post", "/v1/signals", {"grid_limit_kw": -1}, 422, "grid_limit_kw: input should be greater than or equal to 0"),
    ("post", "/v1/signals", {"grid_limit_kw": True}, 422, "grid_limit_kw: input should be a valid number"),
    ("post", "/v1/signals", {"demand_rps": {"nope": 1}}, 422, "demand_rps.nope: unknown inference service 'nope'"),
    ("post", "/v1/signals", {"demand_rps": {"chat": -3}}, 422, "demand_rps.chat: input should be greater than or equal to 0"),
    ("post", "/v1/signals", {"spot": 1}, 422, "spot: unknown key"),
    ("post", "/v1/signals", {}, 422, "body: no signal given"),
    ("get", "/v1/plans?limit=0", None, 422, "limit: input should be greater than or equal to 1"),
    ("get", "/v1/plans?limit=abc", None, 422, "limit: input should be a valid integer"),
    ("get", "/v1/plans/abc", None, 422, "seq: input should be a valid integer"),
    ("get", "/v1/plans/99", None, 404, "seq: no plan 99"),
    ("get", "/v1/training/nope", None, 404, "id: no active training workload 'nope'"),
    ("get", "/v1/nothing", None, 404, "Not Found"),
    ("put", "/v1/training", {}, 405, "Method Not Allowed"),
]


@pytest.mark.parametrize("method,path,body,status,detail", BAD_REQUESTS)
def test_bad_requests_get_4xx_naming_the_field_and_store_nothing(client, method, path, body, status, detail):
    client.loop.replan()
    before = (client.loop.store.workloads(), client.loop.store.signals(), client.loop.version())
    kwargs = {}
    if isinstance(body, str):
        kwargs["content"] = body
    elif body is not None:
        kwargs["json"] = body
    r = getattr(client, method)(path, **kwargs)
    if status is None:  # a required job bigger than the site: the scenario would be infeasible, not invalid
        assert r.status_code in (201, 422)
        return
    assert r.status_code == status, r.text
    assert r.json()["detail"].startswith(detail), r.json()
    assert "Traceback" not in r.text
    assert (client.loop.store.workloads(), client.loop.store.signals(), client.loop.version()) == before


def test_bearer_token_guards_writes_only(tmp_path):
    client, loop = make_client(tmp_path, token=TOKEN)
    loop.replan()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        r = client.post("/v1/signals", json={"ambient_c": 30}, headers=headers)
        assert r.status_code == 401 and r.json()["detail"] == "authorization: missing or wrong bearer token"
        assert r.headers["WWW-Authenticate"] == "Bearer"
        assert client.delete("/v1/training/ft-a", headers=headers).status_code == 401
    assert loop.store.signals() == [] and loop.store.workloads() == []
    assert client.get("/v1/plan").status_code == 200 and client.get("/metrics").status_code == 200
    assert client.post("/v1/signals", json={"ambient_c": 30}, headers=AUTH).status_code == 201
    assert client.post("/v1/training", json=JOB, headers=AUTH).status_code == 201


def test_form_content_type_is_read_as_json(client):
    # `curl -d '{...}'` sends application/x-www-form-urlencoded
    r = client.post("/v1/signals", content='{"ambient_c": 25}',
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 201 and r.json()["signal"] == {"ambient_c": 25.0, "site": "wa"}


def test_api_requests_are_counted(client):
    client.get("/healthz")
    client.post("/v1/signals", json={"spot": 1})
    text = client.get("/metrics").text
    assert 'wattsched_http_requests_total{code="200",method="GET",route="/healthz"} 1.0' in text
    assert 'wattsched_http_requests_total{code="422",method="POST",route="/v1/signals"} 1.0' in text
    assert "wattsched_http_request_duration_seconds_bucket" in text
