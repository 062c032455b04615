"""Wires the daemon together: settings -> store, planners, actuators, loop, metrics, API, and the
two planning threads (fast re-plan on every change or tick; the MILP in the background)."""
from __future__ import annotations

import concurrent.futures as cf
import gc
import logging
import multiprocessing
import threading
import time
from typing import Optional

from ..model.scenario import Scenario
from ..problem import Problem
from ..solve import SOLVERS, SolveResult, _load_optional_solvers, solve
from .actuators import FanOut, FileActuator, WebhookActuator
from .api import create_app
from .loop import ServiceLoop
from .metrics import make_registry
from .planning import (GreedyPlanner, SolverPlanner, default_fast_planner, default_polish_planner,
                       default_verifier, milp_available)
from .settings import ServiceSettings
from .store import SqliteStore

log = logging.getLogger("wattsched.daemon")


class ProcessPlanner(SolverPlanner):
    """Runs a solver in a separate process so a long MILP build never holds the API's GIL."""

    def __init__(self, method: str, time_limit_s: Optional[float], threads: Optional[int] = None):
        super().__init__(method, time_limit_s, threads)
        self._pool = cf.ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))

    def plan(self, problem: Problem, start) -> SolveResult:
        return self._pool.submit(solve, problem, self.method, self.options(start)).result()

    def close(self) -> None:
        procs = list(getattr(self._pool, "_processes", {}).values())  # a running solve is not waited for
        self._pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            if proc.is_alive():
                proc.terminate()


def settle_gc() -> None:
    """Collect once, then move every object alive after start-up (imported modules, JIT-compiled
    kernels, the scenario) out of the cyclic collector's reach. Without it a full collection walks
    that whole heap and adds 50-150 ms to whichever re-plan triggers it; refcounting still frees
    these objects as usual."""
    gc.collect()
    gc.freeze()


class Daemon:
    """The running service: call `serve()` (blocks until SIGINT/SIGTERM) or `start()`/`stop()`."""

    def __init__(self, scenario: Scenario, settings: ServiceSettings, clock=time.time):
        self.settings = settings
        if settings.fast_method == "greedy":
            self.fast = GreedyPlanner()
        elif settings.fast_method:
            _load_optional_solvers()
            if settings.fast_method not in SOLVERS:
                raise ValueError(f"fast_method: unknown method '{settings.fast_method}' "
                                 f"(known: {', '.join(sorted([*SOLVERS, 'greedy']))})")
            self.fast = SolverPlanner(settings.fast_method, time_limit_s=settings.fast_time_limit_s,
                                      threads=settings.solver_threads)
        else:
            self.fast = default_fast_planner(settings.fast_time_limit_s, warm_up=True)
        self.polish = default_polish_planner() if not settings.fast_method else None
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
        self.store = SqliteStore(settings.db, synchronous=settings.db_synchronous, keep_plans=settings.keep_plans,
                                 keep_events=settings.keep_events)
        self._wake = threading.Event()
        self._improve = threading.Event()
        self._stop = threading.Event()
        self.loop = ServiceLoop(scenario, self.store, clock, self.fast, self.full, FanOut(actuators),
                                default_verifier(), settings.tick_s, polish=self.polish)
        self.registry, self.api_metrics = make_registry(self.loop)
        self._threads: list[threading.Thread] = []
        self.settle_s = 0.5  # quiet time before the background MILP runs
        self.app = create_app(self.loop, self.registry, self.api_metrics, settings.token(), notify=self._wake.set,
                              ready=self._ready, planners={"fast": self.fast.name,
                                                           "polish": self.polish.name if self.polish else None,
                                                           "full": self.full.name if self.full else None})

    def _ready(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def _fast_worker(self) -> None:
        """Re-plan on change and on tick. An urgent change (a grid-limit cut, a hotter ambient) is
        planned at once; other changes are planned together at most every `batch_s`, so a stream of
        submissions does not keep the planner holding the interpreter."""
        settled = False
        failed_hash = None  # inputs whose plan failed: retried on the next tick, not at once
        while not self._stop.is_set():
            cur = self.loop.current()
            inputs = self.loop.inputs_hash()
            changed = (cur is None or cur.row.inputs_hash != inputs) and inputs != failed_hash
            if changed or self.loop.due():
                last = self.loop._last_replan_at_s
                early = last is not None and self.loop.clock() - last < self.settings.batch_s
                if changed and early and not self.loop.urgent and cur is not None:
                    if self._wake.wait(timeout=self.settings.batch_s - (self.loop.clock() - last)):
                        self._wake.clear()
                    continue
                out = self.loop.replan("change" if changed else "tick")
                failed_hash = None if out.adopted or out.why in ("not better", "stale inputs") else inputs
                log.info("re-plan (%s): %s %s %.1f ms", "change" if changed else "tick", out.why,
                         out.method, out.seconds * 1000)
                self._improve.set()
                if not settled:  # after the first plan: the kernels are compiled, the heap is warm
                    settle_gc()
                    settled = True
            if self._stop.is_set():
                return
            now = self.loop.clock()
            last = self.loop._last_replan_at_s or now
            wait_s = max(0.0, self.loop.tick_s - (now - last))
            event_end = self.loop.next_signal_change_s()
            if event_end is not None:  # a demand-response event ends: re-plan right then
                wait_s = min(wait_s, max(0.0, event_end - now) + 0.001)
            if self._wake.wait(timeout=wait_s):
                self._wake.clear()

    def _full_worker(self) -> None:
        """Polish the fast plan once changes pause for `batch_s`; run the MILP once the inputs have
        been quiet for `settle_s` (or `max_wait_s` into a continuous stream), so a burst of changes
        does not keep a core busy with plans of inputs that are already out of date."""
        batch_s, settle_s = self.settings.batch_s, self.settle_s
        max_wait_s = max(settle_s, min(self.loop.tick_s, 30.0))
        waiting_since = None
        while not self._stop.is_set():
            if not self._improve.wait(timeout=1.0):
                continue
            self._improve.clear()
            if waiting_since is None:
                waiting_since = time.monotonic()
            overdue = time.monotonic() - waiting_since >= max_wait_s
            if self._improve.wait(timeout=batch_s) and not overdue:
                continue  # still changing
            if self._stop.is_set():
                return
            self._run_improve(("polish",))
            quiet = not self._improve.wait(timeout=settle_s)
            if quiet or time.monotonic() - waiting_since >= max_wait_s:
                self._run_improve(("full",))
                waiting_since = None

    def _run_improve(self, paths: tuple[str, ...]) -> None:
        try:
            outcomes = self.loop.improve(paths)
        except Exception:  # noqa: BLE001 - the background solver must never stop the daemon
            log.exception("background planner failed")
            return
        for out in outcomes:
            log.info("%s plan: %s %s %s %.3f s", out.path, out.why, out.method, out.status, out.seconds)

    def start(self) -> None:
        self.loop.start()
        workers = [("wattsched-replan", self._fast_worker)]
        if self.full is not None or self.polish is not None:
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
