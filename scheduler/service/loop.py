"""The service loop: the site's live inputs (base scenario, workloads, signals) and the adopted plan.

Every change is stored first, then applied; `replan()` runs the fast planner at once, `improve()`
runs the full planner (MILP) and adopts its plan only when it verifies and beats the current one.
Clock, store, planners, verifier and actuator are injected ports, so tests drive it in simulated
time without threads; `scheduler.service.daemon` adds the threads.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

from ..assignment import Assignment, evaluate
from ..model.load import ScenarioError, parse_scenario
from ..model.running import with_running_from_plan
from ..model.scenario import Scenario
from ..problem import Problem, compile_problem
from ..solve import plan_of
from . import inputs as I
from .actuators import Actuator, NullActuator
from .planning import (Planner, Verifier, assignment_from_plan, default_verifier, same_indexing,
                       scenario_with_running)
from .store import PlanRow, Store

log = logging.getLogger("wattsched.loop")

Clock = Callable[[], float]

DURATION_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Histogram:
    """Cumulative bucket counts, read by the metrics collector (no Prometheus types in the core)."""

    def __init__(self, buckets=DURATION_BUCKETS_S):
        self.buckets = tuple(buckets)
        self.counts = [0] * len(self.buckets)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.sum += value
        for n, b in enumerate(self.buckets):
            if value <= b:
                self.counts[n] += 1


@dataclass
class LoopStats:
    solver_seconds: dict = field(default_factory=dict)   # method -> Histogram
    replan_seconds: dict = field(default_factory=dict)   # path (fast|full) -> Histogram
    solver_runs: dict = field(default_factory=dict)      # (method, status) -> count
    solver_last_status: dict = field(default_factory=dict)  # method -> status
    adoptions: dict = field(default_factory=dict)        # method -> count
    verification_failures: int = 0
    rejected_not_better: int = 0

    def solved(self, method: str, status: str, seconds: float) -> None:
        self.solver_seconds.setdefault(method, Histogram()).observe(seconds)
        self.solver_runs[(method, status)] = self.solver_runs.get((method, status), 0) + 1
        self.solver_last_status[method] = status


@dataclass
class Adopted:
    row: PlanRow
    inputs_id: int                           # the `_Snapshot.id` it was planned from (-1: resumed)
    scenario: Optional[Scenario] = None      # the scenario the plan is a plan of (running included)
    problem: Optional[Problem] = None
    assignment: Optional[Assignment] = None


@dataclass
class Outcome:
    """What one re-plan did."""
    path: str                  # fast | full | resume
    adopted: bool
    why: str
    method: str = ""
    status: str = ""
    seconds: float = 0.0       # the whole re-plan: build, solve, verify, store, publish
    objective_usd: Optional[float] = None
    seq: Optional[int] = None
    problems: list = field(default_factory=list)


@dataclass
class _Snapshot:
    version: int
    data: dict
    inputs_hash: str
    events: tuple = ()   # demand-response events in force when it was built
    id: int = 0          # increases with every new set of inputs (a change, or an event ending)


@dataclass
class _Entry:
    body: dict
    source: str
    submitted_at_s: float


def _with_running(scenario: Scenario, data: dict, plan: dict) -> Scenario:
    """`running` from the plan in force for the workloads it covers; a workload the plan does not
    know (submitted since) keeps the `running` it was submitted with; cancelled ones are ignored."""
    jobs = {j.id for j in scenario.training}
    svcs = {s.id for s in scenario.inference}
    known = {**plan, "training": [t for t in plan.get("training", []) if t.get("id") in jobs],
             "inference": [s for s in plan.get("inference", []) if s.get("id") in svcs]}
    try:
        return with_running_from_plan(scenario, known, keep_unlisted=True)
    except ScenarioError:  # e.g. a job re-submitted with another size: keep what still fits
        return parse_scenario(scenario_with_running(data, plan))


class ServiceLoop:
    def __init__(self, scenario: Scenario, store: Store, clock: Clock, fast: Planner,
                 full: Optional[Planner] = None, actuator: Optional[Actuator] = None,
                 verifier: Optional[Verifier] = None, tick_s: float = 60.0, polish: Optional[Planner] = None):
        """`fast` plans every change at once; `polish` (e.g. the full heuristic) and `full` (the MILP)
        run from `improve()`, each adopted only when it verifies and beats the plan in force."""
        self.store, self.clock, self.fast, self.full, self.polish = store, clock, fast, full, polish
        self.actuator = actuator or NullActuator()
        self.verifier = verifier or default_verifier()
        self.tick_s = tick_s
        self.stats = LoopStats()
        data = I.scenario_base_dict(scenario)
        self.site_name = data.get("name") or "scenario"
        self._base = {k: v for k, v in data.items() if k not in ("periods", "training", "inference")}
        self._scenario_items = {k: {w["id"]: w for w in data.get(k, [])} for k in I.KINDS}
        self._workloads: dict[str, dict[str, _Entry]] = {k: {} for k in I.KINDS}
        self._signals = I.SignalState()
        self._version = 0
        self._current: Optional[Adopted] = None
        self._snap: Optional[_Snapshot] = None
        self._snap_ids = 0
        self._parsed: Optional[tuple] = None  # (version, active events, validated scenario of them)
        self._last_replan_at_s: Optional[float] = None
        self.confirmed_at_s: Optional[float] = None   # last time a re-plan adopted or re-confirmed the plan
        self._lock = threading.RLock()        # inputs and the adopted plan
        self._write_lock = threading.Lock()   # one input change at a time
        self.urgent = False                   # a change that tightens limits awaits a re-plan
        self._plan_lock = threading.Lock()    # one fast re-plan at a time
        self._publish_lock = threading.Lock()
        self._published_seq = 0
        self.resumed_from: Optional[int] = None
        self.started_at_s = clock()

    # ---- start-up ------------------------------------------------------------------------
    def start(self) -> bool:
        """Load workloads, signals and the last adopted plan from the store.

        Returns True when the inputs differ from those of the resumed plan (a re-plan is due).
        """
        with self._lock:
            wl = {k: {wid: _Entry(body, "scenario", self.started_at_s) for wid, body in items.items()}
                  for k, items in self._scenario_items.items()}
            for row in self.store.workloads():
                if row.state == "active":
                    wl[row.kind][row.id] = _Entry(row.body, row.source, row.submitted_at_s)
                else:
                    wl[row.kind].pop(row.id, None)
            sig = I.SignalState()
            for _, _, body in self.store.signals():
                sig = I.fold_signal(sig, body)
            self._workloads, self._signals = wl, sig
            self._snap = None
            snap = self._snapshot()
            try:
                parse_scenario(snap.data)
            except ScenarioError as err:
                raise ScenarioError(["stored state no longer fits the scenario file:", *err.problems]) from None
            last = self.store.last_plan()
            if last is not None:
                self._current = Adopted(last, -1)
                self.resumed_from = last.seq
                self.store.add_event("resumed", {"plan_seq": last.seq, "inputs_hash": last.inputs_hash},
                                     self.clock())
                self._publish(last)
            return last is None or last.inputs_hash != snap.inputs_hash

    # ---- inputs --------------------------------------------------------------------------
    def _active(self) -> dict:
        return {k: {wid: e.body for wid, e in items.items()} for k, items in self._workloads.items()}

    def _snapshot(self) -> _Snapshot:
        """The inputs as scenario data and their hash; built once per input version."""
        now = self.clock()
        events = self._signals.active_events(now)
        if self._snap is None or self._snap.version != self._version or self._snap.events != events:
            data = I.build_scenario_dict(self._base, self._active(), self._signals.effective(now))
            self._snap_ids += 1
            self._snap = _Snapshot(self._version, data, I.inputs_hash(data), events, self._snap_ids)
        return self._snap

    def _changed(self, parsed: Optional[Scenario] = None) -> None:
        """After a stored change; `parsed` is the validated scenario of the new inputs, if known."""
        self._version += 1
        events = self._signals.active_events(self.clock())
        self._parsed = (self._version, events, parsed) if parsed is not None else None

    # Writers are serialised by `_write_lock` (inputs change only under it, so they may be read
    # under it without `_lock`); `_lock` is held only to apply a change, never across the fsync.
    def submit(self, kind: str, body) -> dict:
        """Validate, store, then apply a new workload; raises InputError (422, 409) and stores nothing."""
        wid = I.workload_id(kind, body)
        with self._write_lock:
            for k in I.KINDS:
                if wid in self._workloads[k]:
                    raise I.InputError([f"id: a {k} workload '{wid}' already exists"], 409)
            active = self._active()
            active[kind][wid] = body
            parsed = I.validate_candidate(self._base, active, self._signals.effective(self.clock()), kind,
                                          len(active[kind]) - 1)
            now = self.clock()
            self.store.add_workload(kind, wid, body, now)
            with self._lock:
                self._workloads[kind][wid] = _Entry(body, "api", now)
                self._changed(parsed)
                return self._workload_view(kind, wid)

    def cancel(self, kind: str, wid: str) -> dict:
        with self._write_lock:
            entry = self._workloads.get(kind, {}).get(wid)
            if entry is None:
                raise I.InputError([f"id: no active {kind} workload '{wid}'"], 404)
            with self._lock:
                view = self._workload_view(kind, wid)
            self.store.cancel_workload(kind, wid, entry.source, self.clock())
            with self._lock:
                del self._workloads[kind][wid]
                self._changed()
            return {**view, "state": "cancelled"}

    def post_signal(self, body) -> dict:
        with self._write_lock:
            now = self.clock()
            data = I.normalise_signal(body, self._scenario_base(), set(self._workloads["inference"]), now)
            folded = I.fold_signal(self._signals, data)
            parsed = I.validate_candidate(self._base, self._active(), folded.effective(now))
            seq = self.store.add_signal(data, now)
            tighter = I.tightens(self._base, self._signals, data, now)
            with self._lock:
                self.urgent = self.urgent or tighter
                self._signals = folded
                self._changed(parsed)
            return {"seq": seq, "at_s": now, "signal": data}

    def _scenario_base(self) -> Scenario:
        # only ids are read from it (sites), so the structure-only parse is cached
        if not hasattr(self, "_base_scenario"):
            self._base_scenario = parse_scenario({**self._base, "training": [], "inference": []})
        return self._base_scenario

    # ---- planning ------------------------------------------------------------------------
    def due(self) -> bool:
        """Has a tick passed since the last re-plan (or has there never been one)?"""
        last = self._last_replan_at_s
        return last is None or self.clock() - last >= self.tick_s

    def tick(self) -> Outcome:
        return self.replan("tick")

    def _prepare(self, snap: _Snapshot, base_plan: Optional[dict]) -> tuple[Scenario, Problem]:
        """The validated scenario of the inputs, `running` = the plan in force, and its Problem."""
        parsed = self._parsed
        fresh = parsed is not None and parsed[:2] == (snap.version, snap.events)
        scenario = parsed[2] if fresh else parse_scenario(snap.data)
        if base_plan is not None and base_plan.get("objective_usd") is not None:
            scenario = _with_running(scenario, snap.data, base_plan)
        return scenario, compile_problem(scenario)

    def replan(self, reason: str = "change") -> Outcome:
        """The fast path: plan the latest inputs now and adopt the plan when it verifies."""
        with self._plan_lock:
            t0 = time.perf_counter()
            with self._lock:
                snap = self._snapshot()
                current = self._current
                self._last_replan_at_s = self.clock()
                self.urgent = False
            base_plan = current.row.plan if current is not None else None
            out = self._attempt(self.fast, snap, base_plan, current, "fast", reason, t0)
            self.stats.replan_seconds.setdefault("fast", Histogram()).observe(out.seconds)
            return out

    def improve(self, paths: tuple[str, ...] = ("polish", "full")) -> list[Outcome]:
        """The background path: `polish` then `full` on the latest inputs, each adopted only if better."""
        outcomes = []
        for path, planner in (("polish", self.polish), ("full", self.full)):
            if planner is None or path not in paths:
                continue
            t0 = time.perf_counter()
            with self._lock:
                snap = self._snapshot()
                current = self._current
            base_plan = current.row.plan if current is not None else None
            out = self._attempt(planner, snap, base_plan, current, path, "improve", t0)
            self.stats.replan_seconds.setdefault(path, Histogram()).observe(out.seconds)
            outcomes.append(out)
        return outcomes

    def _attempt(self, planner: Planner, snap: _Snapshot, base_plan, current, path: str, reason: str,
                 t0: float) -> Outcome:
        try:
            scenario, problem = self._prepare(snap, base_plan)
        except ScenarioError as err:  # cannot happen for validated inputs; never crash the loop
            log.error("inputs do not form a valid scenario: %s", err)
            return Outcome(path, False, "invalid inputs", problems=err.problems, seconds=time.perf_counter() - t0)
        start = None
        if current is not None:  # the plan in force, as an assignment of `problem`
            in_memory = current.assignment is not None and (current.row.inputs_hash == snap.inputs_hash
                                                            or same_indexing(current.problem, problem))
            start = current.assignment if in_memory else assignment_from_plan(problem, current.row.plan)
        try:
            result = planner.plan(problem, start)
        except Exception as err:  # noqa: BLE001 - a solver crash is reported, the old plan stays
            log.exception("%s planner failed", planner.name)
            self.stats.solved(planner.name, "error", time.perf_counter() - t0)
            self.store.add_event("solver_error", {"method": planner.name, "error": str(err)[:500]}, self.clock())
            return Outcome(path, False, "solver error", method=planner.name, status="error",
                           problems=[str(err)], seconds=time.perf_counter() - t0)
        self.stats.solved(result.method, result.status, result.seconds)
        if result.assignment is None:
            self.store.add_event("plan_infeasible", {"method": result.method, "limits": result.infeasible[:50]},
                                 self.clock())
            return Outcome(path, False, "infeasible", method=result.method, status=result.status,
                           problems=list(result.infeasible), seconds=time.perf_counter() - t0)
        try:
            plan = plan_of(problem, result)
            problems = list(self.verifier(scenario, plan))
        except Exception as err:  # noqa: BLE001 - a plan that cannot be checked is a failed plan
            problems = [f"{type(err).__name__}: {err}"]
            plan = None
        if problems:
            self.stats.verification_failures += 1
            log.error("%s plan failed verification: %s", result.method, "; ".join(problems[:5]))
            self.store.add_event("verification_failed", {"method": result.method, "problems": problems[:50]},
                                 self.clock())
            return Outcome(path, False, "verification failed", method=result.method, status=result.status,
                           problems=problems, seconds=time.perf_counter() - t0)
        return self._consider(snap, scenario, problem, result, plan, path, reason, t0)

    def _consider(self, snap, scenario, problem, result, plan, path, reason, t0) -> Outcome:
        objective = float(plan["objective_usd"])
        with self._lock:
            cur = self._current
            if cur is not None and snap.id < cur.inputs_id:  # the plan in force is of newer inputs
                return Outcome(path, False, "stale inputs", result.method, result.status,
                               time.perf_counter() - t0, objective)
            if cur is not None and cur.row.inputs_hash == snap.inputs_hash:
                baseline = self._objective_of(cur, problem)
                if baseline is not None and objective <= baseline + 1e-6 * max(1.0, abs(baseline)):
                    self.stats.rejected_not_better += 1
                    self.confirmed_at_s = self.clock()
                    return Outcome(path, False, "not better", result.method, result.status,
                                   time.perf_counter() - t0, objective)
            now = self.clock()
            row = PlanRow(0, now, snap.inputs_hash, result.method, result.status, float(result.seconds),
                          objective, f"{path}:{reason}", plan)
            seq = self.store.add_plan(row)
            row = replace(row, seq=seq)
            self._current = Adopted(row, snap.id, scenario, problem, result.assignment)
            self.confirmed_at_s = now
            self.stats.adoptions[result.method] = self.stats.adoptions.get(result.method, 0) + 1
        self._publish(row)
        return Outcome(path, True, "adopted", result.method, result.status, time.perf_counter() - t0,
                       objective, seq)

    @staticmethod
    def _objective_of(cur: Adopted, problem: Problem) -> Optional[float]:
        """The current plan's objective judged on `problem` (same inputs, running = current plan)."""
        a = cur.assignment if cur.assignment is not None else assignment_from_plan(problem, cur.row.plan)
        if a is None:
            return None
        try:
            return float(evaluate(problem, a).objective_usd)
        except (IndexError, KeyError, ValueError):
            return None

    def _publish(self, row: PlanRow) -> None:
        """Hand a stored plan to the actuator outside the state lock (a file actuator fsyncs), in
        order: a plan older than one already published is skipped."""
        with self._publish_lock:
            if row.seq <= self._published_seq:
                return
            self._published_seq = row.seq
            try:
                self.actuator.publish(self._document(row))
            except Exception:  # noqa: BLE001 - the plan is adopted and stored; actuation is retried next plan
                log.exception("actuator failed for plan %d", row.seq)

    @staticmethod
    def _document(row: PlanRow) -> dict:
        return {"seq": row.seq, "adopted_at_s": row.adopted_at_s, "inputs_hash": row.inputs_hash,
                "plan": row.plan}

    # ---- reading -------------------------------------------------------------------------
    def current(self) -> Optional[Adopted]:
        with self._lock:
            return self._current

    def version(self) -> int:
        with self._lock:
            return self._version

    def inputs_hash(self) -> str:
        with self._lock:
            return self._snapshot().inputs_hash

    def signals(self) -> dict:
        with self._lock:
            return self._signals.as_dict()

    def next_signal_change_s(self) -> Optional[float]:
        """When a demand-response event ends next (the inputs change then without a post)."""
        with self._lock:
            return self._signals.next_change_s(self.clock())

    def effective_scenario(self) -> dict:
        """The scenario the current plan is a plan of (running carried over), or the next one to plan."""
        with self._lock:
            cur = self._current
            if cur is not None and cur.scenario is not None:
                return I.scenario_base_dict(cur.scenario)
            return scenario_with_running(self._snapshot().data, cur.row.plan if cur else None)

    def _workload_view(self, kind: str, wid: str) -> dict:
        e = self._workloads[kind][wid]
        view = {"kind": kind, "id": wid, "state": "active", "source": e.source,
                "submitted_at_s": e.submitted_at_s, "spec": e.body}
        cur = self._current
        if cur is not None:
            for item in cur.row.plan.get(kind, []):
                if item["id"] == wid:
                    view["plan"] = item
                    if kind == "training":
                        view["status"] = "running" if item["scheduled"] else "queued"
                    else:
                        view["status"] = "serving" if item["placement"] else "queued"
                    break
            else:
                view["status"] = "pending"
        else:
            view["status"] = "pending"
        return view

    def workloads(self, kind: str) -> list[dict]:
        with self._lock:
            return [self._workload_view(kind, wid) for wid in self._workloads[kind]]

    def workload(self, kind: str, wid: str) -> Optional[dict]:
        with self._lock:
            return self._workload_view(kind, wid) if wid in self._workloads.get(kind, {}) else None
