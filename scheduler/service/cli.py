"""`wattsched serve SCENARIO`: parse flags, load settings and scenario, run the daemon. No logic here."""
from __future__ import annotations

import argparse
import logging
import sys

from ..model.load import ScenarioError, load_scenario
from .settings import ServiceSettings, SettingsError, load_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", nargs="?", help="site scenario file (YAML or JSON); or WATTSCHED_SCENARIO")
    parser.add_argument("--host", help="listen address (default 127.0.0.1; WATTSCHED_HOST)")
    parser.add_argument("--port", type=int, help="listen port (default 8080; WATTSCHED_PORT)")
    parser.add_argument("--db", help="SQLite state file (default wattsched.db; WATTSCHED_DB)")
    parser.add_argument("--tick-s", type=float, dest="tick_s", help="re-plan at least every N seconds (default 60)")
    parser.add_argument("--milp-time-limit-s", type=float, dest="milp_time_limit_s",
                        help="time limit of the background MILP (default 30)")
    parser.add_argument("--no-milp", action="store_const", const=False, dest="milp",
                        help="do not run the MILP in the background")
    parser.add_argument("--fast-method", dest="fast_method",
                        help="fast-path solver: a registered method (heuristic, milp, ...) or greedy "
                             "(default: the Numba repair, else milp with a short limit)")
    parser.add_argument("--keep-plans", type=int, dest="keep_plans",
                        help="newest adopted plans kept in the state file (default 10000)")
    parser.add_argument("--keep-events", type=int, dest="keep_events",
                        help="newest events kept in the state file (default 100000)")
    parser.add_argument("--plan-file", dest="plan_file", help="file actuator: write each adopted plan here")
    parser.add_argument("--webhook-url", dest="webhook_url", help="webhook actuator: POST each adopted plan here")
    parser.add_argument("--auth-token-file", dest="auth_token_file",
                        help="bearer token for write endpoints, first line of this file (or WATTSCHED_AUTH_TOKEN)")
    parser.add_argument("--env-file", dest="env_file", help="read WATTSCHED_* settings from this file too")
    parser.add_argument("--log-level", dest="log_level", choices=["debug", "info", "warning", "error"])


def run(args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in vars(args).items() if k in ServiceSettings.model_fields}  # the flags given
    try:
        settings = load_settings(env_file=getattr(args, "env_file", None), **overrides)
        settings.token()  # fail now on an unreadable token file
    except SettingsError as err:
        for line in err.problems:
            sys.stderr.write(f"wattsched serve: {line}\n")
        return 2
    if settings.scenario is None:
        sys.stderr.write("wattsched serve: scenario: required (argument or WATTSCHED_SCENARIO)\n")
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        scenario = load_scenario(settings.scenario)
        from .daemon import Daemon  # heavy imports only once the inputs are known to be good
        daemon = Daemon(scenario, settings)
    except ScenarioError as err:
        for line in err.problems:
            sys.stderr.write(f"wattsched serve: {line}\n")
        return 2
    except (OSError, ValueError) as err:
        sys.stderr.write(f"wattsched serve: {err}\n")
        return 2
    daemon.serve()
    return 0
