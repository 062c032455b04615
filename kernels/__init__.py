"""Numba fast path: array kernels for the construction heuristic, local search, repair and
curtailment of a single-interval plan. numpy + numba only; never imports `scheduler`.

Numba compilation is cached on disk (`cache=True`); set `NUMBA_DISABLE_JIT=1` to run the same
code as plain Python (the tests do both)."""
from .api import (Workspace, alloc_state, construct, copy_state, curtail, feasible, from_running,
                  improve_plan, objective, place_required, prepare, recheck, repair, tidy)
from .arrays import PROBLEM_FIELDS, STATE_FIELDS, PlanState, ProblemArrays
from .config import guard_cache
from .core import recompute as _any_kernel

guard_cache(_any_kernel)

__all__ = ["Workspace", "alloc_state", "construct", "copy_state", "curtail", "feasible", "from_running",
           "improve_plan", "objective", "place_required", "prepare", "recheck", "repair", "tidy",
           "PROBLEM_FIELDS", "STATE_FIELDS", "PlanState", "ProblemArrays"]
