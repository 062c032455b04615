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


def _kind(value: Any) -> str:
    """What a value is, in the words of a YAML/JSON user."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def _step(node: Any, part: Any) -> tuple[Any, bool]:
    """One step down `node` along a pydantic location part: (child, whether node was a list)."""
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part], True
    if isinstance(node, dict) and part in node:
        return node[part], False
    return None, isinstance(node, list)


def _path(loc: tuple, data: Any = None) -> str:
    """`sites[0].racks[3].feed` from a pydantic location; with the input data, an int key of a
    mapping is told apart from a list index."""
    out = ""
    node = data
    for part in loc:
        if part == "[key]":
            continue
        child, in_list = _step(node, part)
        if isinstance(part, int) and (in_list or node is None):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
        node = child
    return out or "(scenario)"


def _position(loc: tuple, data: Any) -> tuple:
    """Where a location sits in the document, for reporting problems in document order. A
    missing key or a problem with a whole mapping sorts before the mapping's contents."""
    pos: list[int] = []
    node = data
    for part in loc:
        if part == "[key]":
            break
        if isinstance(node, list) and isinstance(part, int):
            pos.append(part)
        elif isinstance(node, dict):
            keys = list(node)
            pos.append(keys.index(part) if part in node else -1)
        else:
            break
        node, _ = _step(node, part)
    return tuple(pos)


def _shorten(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


_TYPE_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required field is missing",
}


def _message(e: dict) -> str:
    kind = e["type"]
    if kind in _TYPE_MESSAGES:
        return _TYPE_MESSAGES[kind]
    has_input = "input" in e
    value = e.get("input")
    key = bool(e["loc"]) and e["loc"][-1] == "[key]"
    subject = "key" if key else "input"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"{subject} should be a mapping of keys to values (got {_kind(value)})"
    if kind in ("list_type", "tuple_type"):
        return f"{subject} should be a list (got {_kind(value)})"
    if kind == "too_short":
        n = (e.get("ctx") or {}).get("min_length", 1)
        return f"must have at least {n} {'entry' if n == 1 else 'entries'} (got none)" if not value else \
            f"must have at least {n} entries (got {len(value)})"
    if kind == "string_too_short" and (e.get("ctx") or {}).get("min_length") == 1:
        return "key must not be empty" if key else "must not be empty"
    msg = e["msg"]
    if msg.startswith("Value error, "):
        return msg[len("Value error, "):]
    msg = msg[0].lower() + msg[1:]
    if key and msg.startswith("input "):
        msg = "key " + msg[len("input "):]
    if kind not in ("value_error", "assertion_error") and has_input and not isinstance(value, (dict, list)):
        if kind == "string_type" and isinstance(value, (int, float)) and not isinstance(value, bool):
            msg += f" (got the number {value!r}; put it in quotes)"
        else:
            msg += f" (got {_shorten(value)})"
    return msg


def format_validation_error(err: ValidationError, data: Any = None) -> list[str]:
    """One `path: reason` line per pydantic error; given the input data, in document order."""
    lines = []
    for e in err.errors(include_url=False):
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        lines.append((_position(loc, data) if data is not None else (), f"{_path(loc, data)}: {_message(e)}"))
    if data is not None:
        lines.sort(key=lambda pair: pair[0])  # stable: ties keep pydantic's order
    return [line for _, line in lines]


def parse_scenario(data: Any) -> Scenario:
    """Validate already-parsed data; raise ScenarioError listing every problem."""
    if not isinstance(data, dict):
        raise ScenarioError([f"(scenario): the document must be a mapping of keys to values (got {_kind(data)})"])
    try:
        sc = Scenario.model_validate(data)
    except ValidationError as err:
        raise ScenarioError(format_validation_error(err, data)) from None
    problems = check_scenario(sc)
    if problems:
        raise ScenarioError(problems)
    return sc


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, mark):
        super().__init__(f"duplicate key {key!r}")
        self.key, self.mark = key, mark


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in seen:
                        raise _DuplicateKey(key, key_node.start_mark)
                    seen.add(key)
                except TypeError:  # unhashable: the base class reports it
                    pass
        return super().construct_mapping(node, deep=deep)


def parse_text(text: str, name: str = "scenario") -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as err:
        raise ScenarioError([f"{name}: duplicate key {err.key!r} at line {err.mark.line + 1}, "
                             f"column {err.mark.column + 1} (each key may appear once)"]) from None
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
    except UnicodeDecodeError:
        raise ScenarioError([f"{p}: not a text file (not valid UTF-8)"]) from None
    except OSError as err:
        raise ScenarioError([f"{p}: cannot be read ({err.strerror or err.__class__.__name__})"]) from None
    data = parse_text(text, str(p))
    if data is None:
        raise ScenarioError([f"{p}: the file is empty; a scenario is a mapping with at least "
                             f"'version' and 'sites'"])
    if not isinstance(data, dict):
        raise ScenarioError([f"{p}: a scenario must be a mapping of keys to values (got {_kind(data)})"])
    if "name" not in data:
        data = {**data, "name": p.stem}
    return parse_scenario(data)


def load_json_file(path: str | Path, what: str) -> Any:
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError([f"{p}: no such file"]) from None
    except IsADirectoryError:
        raise ScenarioError([f"{p}: is a directory, not a {what} file"]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ScenarioError([f"{p}: cannot be read ({err.__class__.__name__})"]) from None
    except json.JSONDecodeError as err:
        raise ScenarioError([f"{p}: not valid JSON ({what}) at line {err.lineno}, column {err.colno}: {err.msg}"]) from None
