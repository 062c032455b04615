"""One entry point for every single-interval solver: `solve(problem, method=...) -> SolveResult`.

A solver is a function `(problem, options) -> SolveResult`; they are looked up by name so the
CLI and the daemon never import a particular one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from .assignment import Assignment, Figures, evaluate, to_plan, violations
from .problem import Problem

STATUSES = ("optimal", "feasible", "infeasible")


@dataclass
class SolveOptions:
    backend: str = "highs"                  # MILP backend: highs | cbc
    time_limit_s: Optional[float] = None
    gap: float = 1e-4                       # relative MIP gap
    warm_start: Optional[Assignment] = None  # e.g. the previous plan, or a heuristic plan
    threads: Optional[int] = None
    explain_infeasible: bool = True


class SolverFigures:
    """The `solver` entry of a plan, for any result with method, status, seconds, backend,
    bound_usd, gap and extra."""

    def solver_info(self) -> dict:
        info = {"method": self.method, "status": self.status, "seconds": round(self.seconds, 6)}
        if self.backend:
            info["backend"] = self.backend
        info["bound_usd"] = self.bound_usd
        info["gap"] = self.gap
        info.update(self.extra)
        return info


@dataclass
class SolveResult(SolverFigures):
    assignment: Optional[Assignment]        # None when infeasible
    method: str
    status: str                             # optimal | feasible | infeasible
    seconds: float
    backend: Optional[str] = None
    bound_usd: Optional[float] = None       # proven upper bound on the objective, when known
    gap: Optional[float] = None             # (bound - objective) / max(1, |objective|)
    infeasible: list[str] = field(default_factory=list)  # limits that cannot all hold
    extra: dict = field(default_factory=dict)


Solver = Callable[[Problem, SolveOptions], SolveResult]


def _milp(problem: Problem, opts: SolveOptions) -> SolveResult:
    from .milp import solve_milp
    return solve_milp(problem, opts)


SOLVERS: dict[str, Solver] = {"milp": _milp}


def register(name: str, solver: Solver) -> None:
    SOLVERS[name] = solver


def solve(problem: Problem, method: str = "milp", options: Optional[SolveOptions] = None) -> SolveResult:
    if method not in SOLVERS:
        _load_optional_solvers()
    if method not in SOLVERS:
        raise ValueError(f"solver: unknown method '{method}' (known: {', '.join(sorted(SOLVERS))})")
    return SOLVERS[method](problem, options or SolveOptions())


def _load_optional_solvers() -> None:
    try:  # the Numba fast path registers 'heuristic' and 'auto' when present
        from . import heuristic  # noqa: F401
    except ImportError:
        pass


def relative_gap(objective: float, bound: Optional[float]) -> Optional[float]:
    if bound is None:
        return None
    return max(0.0, bound - objective) / max(1.0, abs(objective))


def plan_of(problem: Problem, result: SolveResult, f: Optional[Figures] = None) -> dict:
    """The SPEC section 5 plan of a result; for an infeasible result, the plan names the limits.
    `f` is the result's figures when the caller already has them."""
    if result.assignment is None:
        return {"scenario": problem.name, "solver": result.solver_info(), "objective_usd": None,
                "infeasible": list(result.infeasible)}
    f = f if f is not None else evaluate(problem, result.assignment)
    broken = violations(problem, f)
    if broken:  # a solver bug must never reach an operator as a plan
        raise RuntimeError(f"{result.method} produced a plan that breaks limits: {'; '.join(broken[:5])}")
    return to_plan(problem, result.assignment, result.solver_info(), f)
