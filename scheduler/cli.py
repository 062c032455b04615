"""`wattsched` command line: parse, call, print. Exit 0 = done, 1 = no feasible plan or a plan
that fails verification, 2 = bad input (scenario, plan file, option), 3 = internal error."""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from . import __version__
from .jsonio import write_json as _write_json
from .model import ScenarioError, load_scenario
from .model.load import load_json_file

EXIT_OK, EXIT_FAIL, EXIT_INPUT, EXIT_INTERNAL = 0, 1, 2, 3

# subcommands whose code lives in its own module: name -> (module, help)
EXTERNAL = {
    "generate": ("scheduler.generate", "write a random but realistic scenario (tests, benchmarks)"),
    "serve": ("scheduler.service.cli", "run the site daemon: HTTP API, re-planning loop, metrics"),
}


def _err(msg: str) -> None:
    for line in str(msg).splitlines() or [""]:
        print(f"error: {line}", file=sys.stderr)


def _scenario_with_from(args):
    sc = load_scenario(args.scenario)
    previous = None
    if getattr(args, "from_plan", None):
        from .model.running import with_running_from_plan
        previous = load_json_file(args.from_plan, "previous plan")
        sc = with_running_from_plan(sc, previous)
    return sc, previous


def cmd_plan(args) -> int:
    from .problem import compile_problem
    from .assignment import evaluate
    from .solve import SolveOptions, plan_of, solve

    # options first: a bad option is reported whatever the scenario (single-interval or horizon)
    if args.gap is not None and not (0 <= args.gap < 1):
        raise ScenarioError([f"--gap: must be in [0, 1) (got {args.gap})"])
    if args.time_limit is not None and args.time_limit <= 0:
        raise ScenarioError([f"--time-limit: must be positive (got {args.time_limit})"])
    sc, previous = _scenario_with_from(args)
    if sc.periods is not None or getattr(args, "prices", None):
        horizon = importlib.import_module("scheduler.horizon_cli")
        return horizon.run_plan(args, sc)
    problem = compile_problem(sc)
    opts = SolveOptions(backend=args.backend, time_limit_s=args.time_limit,
                        gap=1e-4 if args.gap is None else args.gap)
    if previous is not None:
        from .plan_io import assignment_from_plan
        opts.warm_start = assignment_from_plan(problem, previous)
    if previous is not None and args.solver == "heuristic":
        from .heuristic import repair
        result = repair(problem, opts.warm_start, opts)
    else:
        result = solve(problem, args.solver, opts)
    figures = evaluate(problem, result.assignment) if result.assignment is not None else None
    plan = plan_of(problem, result, figures)
    out = args.output or f"plan-{problem.name}.json"
    _write_json(out, plan)
    if result.assignment is None:
        from .summary import print_infeasible
        print_infeasible(problem.name, result.method, result.seconds, result.infeasible)
        return EXIT_FAIL
    if not args.quiet:
        from .summary import summarize
        # with `-o -` stdout carries the plan JSON alone, so the summary goes to stderr
        summary_to = sys.stderr if out == "-" else sys.stdout
        print(summarize(problem, result, result.assignment, figures), file=summary_to)
        if out != "-":
            print(f"plan written to {out}")
    return EXIT_OK


def cmd_verify(args) -> int:
    from .verify import load_plan, verify_plan

    sc, _ = _scenario_with_from(args)
    plan = load_plan(args.plan)  # not JSON, or not a JSON object: bad input (exit 2)
    problems = verify_plan(sc, plan)
    if problems:
        for line in problems:
            print(line)
        print(f"{args.plan}: {len(problems)} problem(s); the plan is not valid for {args.scenario}",
              file=sys.stderr)
        return EXIT_FAIL
    obj = plan.get("objective_usd")
    print(f"{args.plan}: ok, every limit holds and every figure matches (objective ${obj:,.2f})")
    return EXIT_OK


def cmd_validate(args) -> int:
    sc = load_scenario(args.scenario)
    racks = sum(len(s.racks) for s in sc.sites)
    periods = f", {len(sc.periods)} periods" if sc.periods else ""
    print(f"{args.scenario}: ok ({len(sc.sites)} site(s), {racks} racks, {len(sc.training)} training jobs, "
          f"{len(sc.inference)} inference services{periods})")
    return EXIT_OK


def cmd_schema(args) -> int:
    from .model.scenario import Scenario
    print(json.dumps(Scenario.model_json_schema(), indent=2))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wattsched", description=(
        "Plan what runs where on a converted mining site (GPU caps, miner modes, jobs) for the most "
        "profit without breaking any power or cooling limit."))
    parser.add_argument("--version", action="version", version=f"wattsched {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("plan", help="plan a scenario and write the plan JSON")
    p.add_argument("scenario", help="scenario file (YAML or JSON)")
    p.add_argument("-o", "--output", help="plan file to write ('-' for stdout; default plan-NAME.json)")
    p.add_argument("--solver", default="milp", choices=["milp", "heuristic", "auto"],
                   help="milp: exact; heuristic: Numba fast path; auto: heuristic then warm-started MILP")
    p.add_argument("--backend", default="highs", choices=["highs", "cbc"], help="MILP backend (default highs)")
    p.add_argument("--time-limit", type=float, metavar="S", help="solver time limit in seconds")
    p.add_argument("--gap", type=float, metavar="G", help="relative MIP gap to stop at (default 1e-4)")
    p.add_argument("--from", dest="from_plan", metavar="PLAN",
                   help="previous plan: what runs now (move costs count against it; the heuristic repairs it)")
    p.add_argument("-q", "--quiet", action="store_true", help="print no summary")
    _add_horizon_arguments(p)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("verify", help="recompute a plan from its scenario and list every problem")
    p.add_argument("scenario")
    p.add_argument("plan")
    p.add_argument("--from", dest="from_plan", metavar="PLAN", help="the previous plan the plan was made from")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("validate", help="check a scenario file")
    p.add_argument("scenario")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("schema", help="print the JSON Schema of the scenario format")
    p.set_defaults(func=cmd_schema)

    for name, (module, help_text) in EXTERNAL.items():
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        p = sub.add_parser(name, help=help_text)
        mod.add_arguments(p)
        p.set_defaults(func=mod.run)
    return parser


def _add_horizon_arguments(p: argparse.ArgumentParser) -> None:
    try:
        mod = importlib.import_module("scheduler.horizon_cli")
    except ImportError:
        return
    mod.add_plan_arguments(p)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ScenarioError as err:
        for line in err.problems:
            _err(line)
        return EXIT_INPUT
    except TimeoutError as err:
        _err(str(err))
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`wattsched schema | head`): stop quietly, as a SIGPIPE death would
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as err:  # noqa: BLE001 - an operator gets one line, a developer the traceback
        if os.environ.get("WATTSCHED_DEBUG"):
            raise
        _err(f"internal error: {err.__class__.__name__}: {err} (set WATTSCHED_DEBUG=1 for the traceback)")
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
