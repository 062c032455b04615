"""Reading scenarios from YAML/JSON text or files, turning every problem into `path: reason`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .checks import check_scenario
from .scenario import Scenario


class ScenarioError(ValueError):
    """A scenario that cannot be used; `problems` holds one `path: reason` line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(scenario)"


_TYPE_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required field is missing",
}


def format_validation_error(err: ValidationError) -> list[str]:
    lines = []
    for e in err.errors(include_url=False):
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        kind = e["type"]
        if kind in _TYPE_MESSAGES:
            msg = _TYPE_MESSAGES[kind]
        else:
            msg = e["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, "):]
            msg = msg[0].lower() + msg[1:]
            if kind not in ("value_error", "assertion_error") and "input" in e and not isinstance(
                    e["input"], (dict, list)):
                msg += f" (got {e['input']!r})"
        lines.append(f"{_path(loc)}: {msg}")
    return lines


def parse_scenario(data: Any) -> Scenario:
    """Validate already-parsed data; raise ScenarioError listing every problem."""
    if not isinstance(data, dict):
        raise ScenarioError(["(scenario): the document must be a mapping of keys to values"])
    try:
        sc = Scenario.model_validate(data)
    except ValidationError as err:
        raise ScenarioError(format_validation_error(err)) from None
    problems = check_scenario(sc)
    if problems:
        raise ScenarioError(problems)
    return sc


def parse_text(text: str, name: str = "scenario") -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        reason = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ScenarioError([f"{name}: not valid YAML or JSON{where}: {reason}"]) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read a YAML or JSON scenario file. The scenario's name defaults to the file's stem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError([f"{p}: no such file"]) from None
    except IsADirectoryError:
        raise ScenarioError([f"{p}: is a directory, not a scenario file"]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ScenarioError([f"{p}: cannot be read ({err.__class__.__name__})"]) from None
    data = parse_text(text, str(p))
    if isinstance(data, dict) and "name" not in data:
        data = {**data, "name": p.stem}
    return parse_scenario(data)


def load_json_file(path: str | Path, what: str) -> Any:
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError([f"{p}: no such file"]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ScenarioError([f"{p}: cannot be read ({err.__class__.__name__})"]) from None
    except json.JSONDecodeError as err:
        raise ScenarioError([f"{p}: not valid JSON ({what}) at line {err.lineno}, column {err.colno}: {err.msg}"]) from None
