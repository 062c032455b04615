"""The HTTP API (FastAPI), versioned under /v1, plus /healthz, /readyz and /metrics.

Handlers parse, call the service loop and shape the answer; every 4xx carries `detail`, one line
naming the field (and `errors`, all of them). Writes are stored before they are acknowledged.
"""

import hmac
import time
from typing import Any, Callable, Optional

from fastapi import Body, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..model.scenario import InferenceService, TrainingJob
from .inputs import InputError, Signal
from .loop import ServiceLoop
from .metrics import ApiMetrics

API_VERSION = "v1"


def _error(status: int, problems: list[str], headers: Optional[dict] = None) -> JSONResponse:
    return JSONResponse({"detail": problems[0] if len(problems) == 1 else "; ".join(problems),
                         "errors": problems}, status_code=status, headers=headers)


def _validation_lines(err: RequestValidationError) -> list[str]:
    lines = []
    for e in err.errors():
        loc = [p for p in e.get("loc", ()) if not (isinstance(p, str) and p.startswith("function-"))]
        where = loc[0] if loc else "body"
        parts = loc[1:] if where in ("body", "query", "path", "header") else loc
        if e.get("type") == "json_invalid":
            ctx = e.get("ctx") or {}
            lines.append(f"body: not valid JSON ({ctx.get('error', 'decode error')})")
            continue
        name = ""
        for p in parts:
            name += f"[{p}]" if isinstance(p, int) else ("." if name else "") + str(p)
        kind = e.get("type")
        msg = {"extra_forbidden": "unknown key", "missing": "required field is missing"}.get(kind, e.get("msg", ""))
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        msg = msg[:1].lower() + msg[1:]
        inp = e.get("input")
        if kind not in ("extra_forbidden", "missing", "value_error") and not isinstance(inp, (dict, list)):
            msg += f" (got {inp!r})"
        lines.append(f"{name or where}: {msg}")
    return lines or ["body: invalid request"]


class _Edge:
    """Plain ASGI middleware (cheaper than Starlette's BaseHTTPMiddleware): reads every request body
    as JSON whatever its content type (`curl -d` sends a form type) and counts requests and latency
    by route template."""

    def __init__(self, app, api_metrics: ApiMetrics):
        self.app, self.api_metrics = app, api_metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        if scope["method"] in ("POST", "PUT", "PATCH"):
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"content-type"] + [
                (b"content-type", b"application/json")]
        status = [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            self.api_metrics.observe(scope["method"], getattr(route, "path", "unmatched"), status[0],
                                     time.perf_counter() - t0)


def create_app(loop: ServiceLoop, registry, api_metrics: ApiMetrics, token: Optional[str] = None,
               notify: Callable[[], None] = lambda: None, ready: Callable[[], bool] = lambda: True,
               planners: Optional[dict] = None) -> FastAPI:
    """The daemon's app. `notify` wakes the planner after a stored change; `ready` backs /readyz."""
    app = FastAPI(title="wattsched", version="1", description=(
        "Site daemon of wattsched: submit workloads and grid signals, read the adopted plan "
        "(SPEC section 5) and its history. Write endpoints need `Authorization: Bearer <token>` "
        "when the daemon is started with a token."), openapi_url="/v1/openapi.json", docs_url="/v1/docs",
        redoc_url=None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, err: RequestValidationError):
        return _error(422, _validation_lines(err))

    @app.exception_handler(InputError)
    async def _input_error(_: Request, err: InputError):
        return _error(err.status, err.problems, {"WWW-Authenticate": "Bearer"} if err.status == 401 else None)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, err: StarletteHTTPException):
        return _error(err.status_code, [str(err.detail)], getattr(err, "headers", None))

    app.add_middleware(_Edge, api_metrics=api_metrics)

    def authorised(request: Request) -> None:
        if token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise InputError(["authorization: missing or wrong bearer token"], 401)

    write = [Depends(authorised)]

    def _kind_routes(kind: str, model) -> None:
        @app.post(f"/v1/{kind}", status_code=201, dependencies=write, tags=[kind],
                  summary=f"Submit a {kind} workload (SPEC section 1 item)")
        def submit(body: model = Body(...)) -> dict:  # type: ignore[valid-type]
            view = loop.submit(kind, body.model_dump(mode="json", exclude_none=True))
            notify()
            return {**view, "inputs_hash": loop.inputs_hash()}

        @app.get(f"/v1/{kind}", tags=[kind], summary=f"List active {kind} workloads")
        def list_all() -> dict:
            return {kind: loop.workloads(kind)}

        @app.get(f"/v1/{kind}/{{wid}}", tags=[kind], summary=f"One {kind} workload and its place in the plan")
        def get_one(wid: str) -> dict:
            view = loop.workload(kind, wid)
            if view is None:
                raise InputError([f"id: no active {kind} workload '{wid}'"], 404)
            return view

        @app.delete(f"/v1/{kind}/{{wid}}", dependencies=write, tags=[kind], summary=f"Cancel a {kind} workload")
        def cancel(wid: str) -> dict:
            view = loop.cancel(kind, wid)
            notify()
            return {**view, "inputs_hash": loop.inputs_hash()}

    _kind_routes("training", TrainingJob)
    _kind_routes("inference", InferenceService)

    @app.post("/v1/signals", status_code=201, dependencies=write, tags=["signals"],
              summary="Post grid limit, energy price, ambient, hashprice or inference demand")
    def post_signal(body: Signal = Body(...)) -> dict:
        out = loop.post_signal(body.model_dump(exclude_none=True))
        notify()
        return {**out, "inputs_hash": loop.inputs_hash()}

    @app.get("/v1/signals", tags=["signals"], summary="The latest value of every signal posted")
    def get_signals() -> dict:
        return loop.signals()

    @app.get("/v1/plan", tags=["plans"], summary="The current adopted plan (SPEC section 5)")
    def get_plan() -> Response:
        cur = loop.current()
        if cur is None:
            return _error(503, ["plan: no plan adopted yet"])
        headers = {"X-Wattsched-Plan-Seq": str(cur.row.seq), "X-Wattsched-Inputs-Hash": cur.row.inputs_hash,
                   "X-Wattsched-Plan-Age-Seconds": f"{max(0.0, loop.clock() - cur.row.adopted_at_s):.3f}"}
        return JSONResponse(cur.row.plan, headers=headers)

    def _row(row, with_plan: bool) -> dict:
        out = {"seq": row.seq, "adopted_at_s": row.adopted_at_s, "inputs_hash": row.inputs_hash,
               "method": row.method, "status": row.status, "solver_seconds": row.solver_seconds,
               "objective_usd": row.objective_usd, "reason": row.reason,
               "site_kw": {s["id"]: s["site_kw"] for s in row.plan.get("sites", [])}}
        if with_plan:
            out["plan"] = row.plan
        return out

    @app.get("/v1/plans", tags=["plans"], summary="History of adopted plans, newest first")
    def list_plans(limit: int = Query(20, ge=1, le=1000), before: Optional[int] = Query(None, ge=1)) -> dict:
        return {"plans": [_row(r, False) for r in loop.store.plans(limit, before)]}

    @app.get("/v1/plans/{seq}", tags=["plans"], summary="One adopted plan with its inputs' hash and solver figures")
    def get_plan_seq(seq: int) -> dict:
        row = loop.store.plan(seq)
        if row is None:
            raise InputError([f"seq: no plan {seq}"], 404)
        return _row(row, True)

    @app.get("/v1/scenario", tags=["plans"], summary="The scenario the current plan is a plan of")
    def get_scenario() -> dict:
        return loop.effective_scenario()

    @app.get("/v1/events", tags=["status"], summary="The append-only event log")
    def get_events(after: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=1000)) -> dict:
        return {"events": loop.store.events(after, limit)}

    @app.get("/v1/status", tags=["status"], summary="Daemon status")
    def status() -> dict:
        cur = loop.current()
        inputs = loop.inputs_hash()
        return {"scenario": loop.site_name, "inputs_hash": inputs, "inputs_version": loop.version(),
                "plan_seq": cur.row.seq if cur else None,
                "plan_inputs_hash": cur.row.inputs_hash if cur else None,
                "plan_up_to_date": bool(cur and cur.row.inputs_hash == inputs),
                "plan_age_s": (loop.clock() - cur.row.adopted_at_s) if cur else None,
                "resumed_from_plan": loop.resumed_from, "planners": planners or {},
                "fast_planner_warm": bool(getattr(loop.fast, "warm", True)),
                "verification_failures": loop.stats.verification_failures}

    @app.get("/healthz", tags=["status"], summary="Liveness")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", tags=["status"], summary="Readiness: a plan is adopted and the planner runs")
    def readyz() -> Response:
        if loop.current() is None or not ready():
            return _error(503, ["ready: no plan adopted yet or planner not running"])
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", tags=["status"], summary="Prometheus metrics", response_class=Response)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    def root() -> dict[str, Any]:
        return {"service": "wattsched", "api": "/v1", "openapi": "/v1/openapi.json", "docs": "/v1/docs"}

    return app
