"""Prometheus metrics: a custom Collector that builds every family from the latest adopted plan and
the loop's counters at scrape time, plus the API's request counters. Base units: watts, seconds,
hashes per second; money in USD (per hour for rates, the planner's unit)."""
from __future__ import annotations

from typing import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from ..assignment import evaluate
from .loop import Histogram as LoopHistogram
from .loop import ServiceLoop

W_PER_KW = 1000.0
HS_PER_THS = 1e12


def _hist(name: str, doc: str, label: str, series: dict) -> HistogramMetricFamily:
    fam = HistogramMetricFamily(name, doc, labels=[label])
    for key, h in sorted(series.items()):
        h: LoopHistogram
        buckets = [(repr(float(b)), float(c)) for b, c in zip(h.buckets, h.counts)]
        buckets.append(("+Inf", float(h.count)))
        fam.add_metric([key], buckets, sum_value=h.sum)
    return fam


class PlanCollector:
    """Reads `loop.current()` and `loop.stats` at every scrape; nothing is cached between scrapes."""

    def __init__(self, loop: ServiceLoop):
        self.loop = loop

    def describe(self) -> Iterable[Metric]:
        return []  # families depend on the plan; registering without describe() skips a first collect

    def collect(self) -> Iterable[Metric]:
        loop = self.loop
        cur = loop.current()
        yield from self._stats()
        age = GaugeMetricFamily("wattsched_plan_age_seconds", "Seconds since the current plan was adopted.")
        if cur is None:
            return
        age.add_metric([], max(0.0, loop.clock() - cur.row.adopted_at_s))
        yield age
        confirmed = loop.confirmed_at_s if loop.confirmed_at_s is not None else cur.row.adopted_at_s
        yield GaugeMetricFamily("wattsched_plan_confirmed_age_seconds",
                                "Seconds since a re-plan last adopted or re-confirmed the current plan.",
                                value=max(0.0, loop.clock() - confirmed))
        yield GaugeMetricFamily("wattsched_plan_up_to_date",
                                "1 when the current plan was made from the latest inputs, else 0.",
                                value=1.0 if cur.row.inputs_hash == loop.inputs_hash() else 0.0)
        yield GaugeMetricFamily("wattsched_plan_adopted_timestamp_seconds",
                                "Unix time at which the current plan was adopted.", value=cur.row.adopted_at_s)
        yield GaugeMetricFamily("wattsched_plan_sequence", "Sequence number of the current plan in the store.",
                                value=cur.row.seq)
        info = GaugeMetricFamily("wattsched_plan_info", "The current plan's solver (value 1).",
                                 labels=["method", "status"])  # no per-plan label: one series per solver
        info.add_metric([cur.row.method, cur.row.status], 1.0)
        yield info
        plan = cur.row.plan
        if plan.get("objective_usd") is None:
            return
        interval_h = float(plan.get("interval_h") or 1.0)
        yield GaugeMetricFamily("wattsched_plan_objective_usd", "Objective of the current plan over its interval (USD).",
                                value=float(plan["objective_usd"]))
        yield GaugeMetricFamily("wattsched_profit_rate_usd_per_hour",
                                "Profit rate of the current plan before move costs (USD per hour).",
                                value=self._rate(cur, plan, interval_h))
        site_fams = {
            "site_kw": ("wattsched_site_power_watts", "Planned site power at the point of interconnection."),
            "grid_limit_kw": ("wattsched_site_grid_limit_watts", "Grid limit the plan obeys."),
            "it_kw": ("wattsched_site_it_power_watts", "Planned IT power of the site."),
            "cooling_kw": ("wattsched_site_cooling_power_watts", "Planned cooling power of the site."),
        }
        fams = {k: GaugeMetricFamily(n, d, labels=["site"]) for k, (n, d) in site_fams.items()}
        headroom = GaugeMetricFamily("wattsched_site_grid_headroom_watts", "Grid limit minus planned site power.",
                                     labels=["site"])
        hashrate = GaugeMetricFamily("wattsched_site_hashrate_hashes_per_second", "Planned mining hashrate.",
                                     labels=["site"])
        for s in plan["sites"]:
            for k, fam in fams.items():
                fam.add_metric([s["id"]], float(s[k]) * W_PER_KW)
            headroom.add_metric([s["id"]], (float(s["grid_limit_kw"]) - float(s["site_kw"])) * W_PER_KW)
            hashrate.add_metric([s["id"]], float(s["hashrate_th_s"]) * HS_PER_THS)
        yield from fams.values()
        yield headroom
        yield hashrate
        yield from self._equipment(cur, plan)

    @staticmethod
    def _rate(cur, plan: dict, interval_h: float) -> float:
        """SPEC 4 `rate`: recomputed from the plan's assignment (moves excluded) when it is in memory."""
        if cur.problem is not None and cur.assignment is not None:
            return float(evaluate(cur.problem, cur.assignment).rate_usd_per_h)
        return float(plan["objective_usd"]) / interval_h

    def _equipment(self, cur, plan: dict) -> Iterable[Metric]:
        scenario = cur.scenario
        rack_site, rack_limit, rack_gpu = {}, {}, {}
        if scenario is not None:
            for s in scenario.sites:
                for r in s.racks:
                    rack_site[r.id], rack_limit[r.id] = s.id, r.limit_kw
                    if r.gpus is not None:
                        rack_gpu[r.id] = (r.gpus.model, r.gpus.count)
        rack_kw = GaugeMetricFamily("wattsched_rack_power_watts", "Planned rack power.", labels=["site", "rack"])
        rack_lim = GaugeMetricFamily("wattsched_rack_limit_watts", "Rack power limit.", labels=["site", "rack"])
        gpus: dict[tuple[str, str, str], float] = {}
        for r in plan["racks"]:
            site = rack_site.get(r["id"], "")
            rack_kw.add_metric([site, r["id"]], float(r["kw"]) * W_PER_KW)
            if r["id"] in rack_limit:
                rack_lim.add_metric([site, r["id"]], float(rack_limit[r["id"]]) * W_PER_KW)
            if r["id"] in rack_gpu and "gpus_busy" in r:
                model, count = rack_gpu[r["id"]]
                busy = int(r["gpus_busy"])
                gpus[(site, model, "busy")] = gpus.get((site, model, "busy"), 0) + busy
                gpus[(site, model, "idle")] = gpus.get((site, model, "idle"), 0) + count - busy
        yield rack_kw
        yield rack_lim
        g = GaugeMetricFamily("wattsched_gpus", "GPUs by model and state in the current plan.",
                              labels=["site", "model", "state"])
        for key, n in sorted(gpus.items()):
            g.add_metric(list(key), float(n))
        yield g
        heat = GaugeMetricFamily("wattsched_loop_heat_watts", "Planned heat load of a cooling loop.",
                                 labels=["site", "loop"])
        cap = GaugeMetricFamily("wattsched_loop_capacity_watts", "Cooling loop capacity derated for ambient.",
                                labels=["site", "loop"])
        for lp in plan["loops"]:
            heat.add_metric([lp.get("site", ""), lp["id"]], float(lp["heat_kw"]) * W_PER_KW)
            cap.add_metric([lp.get("site", ""), lp["id"]], float(lp["capacity_kw"]) * W_PER_KW)
        yield heat
        yield cap
        fkw = GaugeMetricFamily("wattsched_feed_power_watts", "Planned power on an electrical feed.",
                                labels=["site", "feed"])
        flim = GaugeMetricFamily("wattsched_feed_limit_watts", "Electrical feed limit.", labels=["site", "feed"])
        for f in plan["feeds"]:
            fkw.add_metric([f.get("site", ""), f["id"]], float(f["kw"]) * W_PER_KW)
            flim.add_metric([f.get("site", ""), f["id"]], float(f["limit_kw"]) * W_PER_KW)
        yield fkw
        yield flim
        jobs = GaugeMetricFamily("wattsched_training_jobs", "Training jobs by state in the current plan.",
                                 labels=["state"])
        running = sum(1 for t in plan["training"] if t["scheduled"])
        jobs.add_metric(["running"], float(running))
        jobs.add_metric(["queued"], float(len(plan["training"]) - running))
        yield jobs
        svc_rep = GaugeMetricFamily("wattsched_inference_replicas", "Planned replicas per inference service.",
                                    labels=["service"])
        served = GaugeMetricFamily("wattsched_inference_served_requests_per_second",
                                   "Planned served load per inference service.", labels=["service"])
        demand = GaugeMetricFamily("wattsched_inference_demand_requests_per_second",
                                   "Demand per inference service.", labels=["service"])
        for s in plan["inference"]:
            svc_rep.add_metric([s["id"]], float(sum(e["replicas"] for e in s["placement"])))
            served.add_metric([s["id"]], float(s["served_rps"]))
            if "demand_rps" in s:
                demand.add_metric([s["id"]], float(s["demand_rps"]))
        yield svc_rep
        yield served
        yield demand

    def _stats(self) -> Iterable[Metric]:
        st = self.loop.stats
        yield CounterMetricFamily("wattsched_verification_failures", "Plans rejected by the verifier (must stay 0).",
                                  value=st.verification_failures)
        runs = CounterMetricFamily("wattsched_solver_runs", "Solver runs by method and result status.",
                                   labels=["method", "status"])
        for (method, status), n in sorted(st.solver_runs.items()):
            runs.add_metric([method, status], n)
        yield runs
        last = GaugeMetricFamily("wattsched_solver_last_status", "1 for the last status of each solver method.",
                                 labels=["method", "status"])
        for method, status in sorted(st.solver_last_status.items()):
            for s in ("optimal", "feasible", "infeasible", "error"):
                last.add_metric([method, s], 1.0 if s == status else 0.0)
        yield last
        adopted = CounterMetricFamily("wattsched_plans_adopted", "Plans adopted by method.", labels=["method"])
        for method, n in sorted(st.adoptions.items()):
            adopted.add_metric([method], n)
        yield adopted
        yield CounterMetricFamily("wattsched_plans_not_better", "Candidate plans not adopted for not being better.",
                                  value=st.rejected_not_better)
        yield _hist("wattsched_solver_duration_seconds", "Solver wall time.", "method", st.solver_seconds)
        yield _hist("wattsched_replan_duration_seconds",
                    "Whole re-plan time: build, solve, verify, store and publish.", "path", st.replan_seconds)
        yield GaugeMetricFamily("wattsched_inputs_version", "Number of input changes applied since start.",
                                value=self.loop.version())


class ApiMetrics:
    """Request counts and latencies of the HTTP API, in the app's own registry."""

    def __init__(self, registry: CollectorRegistry):
        self.requests = Counter("wattsched_http_requests", "HTTP requests by method, route and status code.",
                                ["method", "route", "code"], registry=registry)
        self.latency = Histogram("wattsched_http_request_duration_seconds", "HTTP request latency.",
                                 ["method", "route"], registry=registry,
                                 buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))

    def observe(self, method: str, route: str, code: int, seconds: float) -> None:
        self.requests.labels(method, route, str(code)).inc()
        self.latency.labels(method, route).observe(seconds)


def make_registry(loop: ServiceLoop) -> tuple[CollectorRegistry, ApiMetrics]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PlanCollector(loop))
    return registry, ApiMetrics(registry)
