"""Wires the daemon together: settings -> store, planners, actuators, loop, metrics, API, and the
two planning threads (fast re-plan on every change or tick; the MILP in the background)."""
from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import threading
import time
from typing import Optional

from ..model.scenario import Scenario
from ..problem import Problem
from ..solve import SolveOptions, SolveResult, solve
from .actuators import FanOut, FileActuator, WebhookActuator
from .api import create_app
from .loop import ServiceLoop
from .metrics import make_registry
from .planning import GreedyPlanner, SolverPlanner, default_fast_planner, default_verifier, milp_available
from .settings import ServiceSettings
from .store import SqliteStore

log = logging.getLogger("wattsched.daemon")


def _solve_in_worker(problem: Problem, method: str, options: SolveOptions) -> SolveResult:
    return solve(problem, method, options)


class ProcessPlanner:
    """Runs a solver in a separate process so a long MILP build never holds the API's GIL."""

    def __init__(self, method: str, time_limit_s: Optional[float], threads: Optional[int] = None):
        self.name = self.method = method
        self.time_limit_s, self.threads = time_limit_s, threads
        self._pool = cf.ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))

    def plan(self, problem: Problem, start) -> SolveResult:
        opts = SolveOptions(time_limit_s=self.time_limit_s, warm_start=start, threads=self.threads,
                            explain_infeasible=False)
        return self._pool.submit(_solve_in_worker, problem, self.method, opts).result()

    def close(self) -> None:
        procs = list(getattr(self._pool, "_processes", {}).values())  # a running solve is not waited for
        self._pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            if proc.is_alive():
                proc.terminate()


class Daemon:
    """The running service: call `serve()` (blocks until SIGINT/SIGTERM) or `start()`/`stop()`."""

    def __init__(self, scenario: Scenario, settings: ServiceSettings, clock=time.time):
        self.settings = settings
        self.store = SqliteStore(settings.db, synchronous=settings.db_synchronous)
        if settings.fast_method == "greedy":
            self.fast = GreedyPlanner()
        elif settings.fast_method:
            self.fast = SolverPlanner(settings.fast_method, time_limit_s=settings.fast_time_limit_s,
                                      threads=settings.solver_threads)
        else:
            self.fast = default_fast_planner(settings.fast_time_limit_s)
        self.full = None
        if settings.milp and milp_available():
            self.full = ProcessPlanner("milp", settings.milp_time_limit_s, settings.solver_threads)
        actuators = []
        if settings.plan_file is not None:
            actuators.append(FileActuator(settings.plan_file))
        if settings.webhook_url:
            actuators.append(WebhookActuator(settings.webhook_url, retries=settings.webhook_retries,
                                             timeout_s=settings.webhook_timeout_s))
        self.actuators = actuators
        self._wake = threading.Event()
        self._improve = threading.Event()
        self._stop = threading.Event()
        self.loop = ServiceLoop(scenario, self.store, clock, self.fast, self.full, FanOut(actuators),
                                default_verifier(), settings.tick_s, on_change=None)
        self.registry, self.api_metrics = make_registry(self.loop)
        self._threads: list[threading.Thread] = []
        self.app = create_app(self.loop, self.registry, self.api_metrics, settings.token(), notify=self._wake.set,
                              ready=self._ready, planners={"fast": self.fast.name,
                                                           "full": self.full.name if self.full else None})

    def _ready(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def _fast_worker(self) -> None:
        while not self._stop.is_set():
            cur = self.loop.current()
            changed = cur is None or cur.row.inputs_hash != self.loop.inputs_hash()
            if changed or self.loop.due():
                out = self.loop.replan("change" if changed else "tick")
                log.info("re-plan (%s): %s %s %.1f ms", "change" if changed else "tick", out.why,
                         out.method, out.seconds * 1000)
                self._improve.set()
            if self._stop.is_set():
                return
            last = self.loop._last_replan_at_s or self.loop.clock()
            wait_s = max(0.0, self.loop.tick_s - (self.loop.clock() - last))
            if self._wake.wait(timeout=wait_s):
                self._wake.clear()

    def _full_worker(self) -> None:
        while not self._stop.is_set():
            if not self._improve.wait(timeout=1.0):
                continue
            self._improve.clear()
            if self._stop.is_set():
                return
            try:
                out = self.loop.improve()
            except Exception:  # noqa: BLE001 - the background solver must never stop the daemon
                log.exception("background planner failed")
                continue
            if out is not None:
                log.info("background plan: %s %s %s %.2f s", out.why, out.method, out.status, out.seconds)

    def start(self) -> None:
        self.loop.start()
        workers = [("wattsched-replan", self._fast_worker)]
        if self.full is not None:
            workers.append(("wattsched-milp", self._full_worker))
        for name, fn in workers:
            t = threading.Thread(target=fn, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._improve.set()
        for t in self._threads:
            t.join(timeout=5.0)
        if isinstance(self.full, ProcessPlanner):
            self.full.close()
        for act in self.actuators:
            if isinstance(act, WebhookActuator):
                act.close()
        self.store.close()

    def serve(self) -> None:
        import uvicorn
        self.start()
        config = uvicorn.Config(self.app, host=self.settings.host, port=self.settings.port,
                                log_level=self.settings.log_level, access_log=False, lifespan="off")
        server = uvicorn.Server(config)
        try:
            server.run()
        finally:
            self.stop()
