"""Horizon periods from CSV time series (`wattsched plan SCENARIO --prices ... --periods 96
--period-h 0.25`): reads and checks the files, and returns the scenario with its `periods`.

Formats (one row per period, a header row first, comma-separated):
- the first column is `start_h` (hours from the start of the horizon) or `timestamp`
  (ISO 8601, e.g. `2024-08-19 14:15:00`; the first row is hour 0);
- prices.csv: one column per site id, energy price in USD/MWh (may be negative); an optional
  `hashprice_usd_per_ph_day` column;
- demand.csv: one column per inference service id, demand in requests per second;
- weather.csv: one column per site id, ambient temperature in °C;
- limits.csv: one column per site id, grid limit in kW (e.g. demand-response windows).
Rows past the horizon are ignored; every period of the horizon needs exactly one row. Each
problem is one line naming the file, the line or column, and the reason.
"""
from __future__ import annotations

import csv
import math
from datetime import datetime
from pathlib import Path
from typing import Optional

from .model import ScenarioError, parse_scenario
from .model.scenario import Scenario

KINDS = {  # kind -> (period field, id kind, extra columns allowed)
    "prices": ("energy_price_usd_per_mwh", "site", ("hashprice_usd_per_ph_day",)),
    "demand": ("demand_rps", "service", ()),
    "weather": ("ambient_c", "site", ()),
    "limits": ("grid_limit_kw", "site", ()),
}
MAX_ERRORS = 8
NONNEG = {"demand_rps", "grid_limit_kw", "hashprice_usd_per_ph_day"}


def _ranges(ns: list[int]) -> str:
    out, start = [], None
    for n, x in enumerate(ns):
        if start is None:
            start = x
        if n + 1 == len(ns) or ns[n + 1] != x + 1:
            out.append(str(start) if start == x else f"{start}-{x}")
            start = None
    return ", ".join(out)


def read_series(path: str | Path, kind: str, known_ids: list[str], periods: int,
                period_h: float) -> dict[str, list[float]]:
    """Column -> one value per period, from a CSV of `kind` (prices, demand, weather, limits)."""
    field_name, id_kind, extras = KINDS[kind]
    name = Path(path).name
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as e:
        raise ScenarioError([f"{name}: cannot read ({e.strerror or e})"])
    rows = list(csv.reader(text.splitlines()))
    if not rows or not any(c.strip() for c in rows[0]):
        raise ScenarioError([f"{name}: empty (need a header row: start_h or timestamp, then {id_kind} ids)"])
    header = [c.strip() for c in rows[0]]
    if header[0] not in ("start_h", "timestamp"):
        raise ScenarioError([f"{name}: the first column must be 'start_h' or 'timestamp' (got '{header[0]}')"])
    errs = []
    for n, col in enumerate(header[1:], start=2):
        if col not in known_ids and col not in extras:
            errs.append(f"{name}: unknown {id_kind} '{col}' (column {n})")
        elif col in header[1:n - 1]:
            errs.append(f"{name}: column '{col}' appears twice (column {n})")
    if len(header) < 2:
        errs.append(f"{name}: no {id_kind} columns")
    if errs:
        raise ScenarioError(errs)
    values: dict[str, list[Optional[float]]] = {c: [None] * periods for c in header[1:]}
    seen: dict[int, int] = {}
    t0: Optional[datetime] = None
    for line, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            errs.append(f"{name} line {line}: {len(row)} fields, the header has {len(header)}")
            continue
        cell = row[0].strip()
        if header[0] == "timestamp":
            try:
                t = datetime.fromisoformat(cell)
            except ValueError:
                errs.append(f"{name} line {line}: '{cell}' is not an ISO timestamp (column timestamp)")
                continue
            t0 = t0 or t
            start_h = (t - t0).total_seconds() / 3600.0
        else:
            try:
                start_h = float(cell)
            except ValueError:
                errs.append(f"{name} line {line}: '{cell}' is not a number (column start_h)")
                continue
        k = start_h / period_h
        p = round(k)
        if not math.isfinite(k) or abs(k - p) > 1e-6:
            errs.append(f"{name} line {line}: start {start_h:g} h is not on the {period_h:g} h period grid")
            continue
        if p < 0:
            errs.append(f"{name} line {line}: start {start_h:g} h is before the first period")
            continue
        if p >= periods:
            continue
        if p in seen:
            errs.append(f"{name} line {line}: period {p} (start {start_h:g} h) overlaps line {seen[p]}")
            continue
        seen[p] = line
        for col, raw in zip(header[1:], row[1:]):
            try:
                v = float(raw)
            except ValueError:
                v = float("nan")
            if not math.isfinite(v):
                errs.append(f"{name} line {line}: '{raw.strip()}' is not a number (column {col})")
                continue
            if v < 0 and (field_name if col not in extras else col) in NONNEG:
                errs.append(f"{name} line {line}: {v:g} is negative (column {col})")
                continue
            values[col][p] = v
    missing = [p for p in range(periods) if p not in seen]
    if missing and not errs:  # unreadable rows explain missing periods better
        which = f"period {missing[0]}" if len(missing) == 1 else f"periods {_ranges(missing)}"
        errs.append(f"{name}: {which} missing (need {periods} rows of {period_h:g} h)")
    if len(errs) > MAX_ERRORS:
        errs = errs[:MAX_ERRORS] + [f"{name}: {len(errs) - MAX_ERRORS} more problems"]
    if errs:
        raise ScenarioError(errs)
    return {c: [float(x) for x in v] for c, v in values.items()}


def with_series(sc: Scenario, *, prices=None, demand=None, weather=None, limits=None,
                periods: Optional[int] = None, period_h: Optional[float] = None) -> Scenario:
    """`sc` with its periods set (or overridden) from the CSV files given."""
    errs = []
    if periods is not None and periods < 1:
        errs.append(f"--periods: must be at least 1 (got {periods})")
    if period_h is not None and not period_h > 0:
        errs.append(f"--period-h: must be positive (got {period_h:g})")
    if errs:
        raise ScenarioError(errs)
    base = [per.model_dump(exclude_none=True) for per in sc.periods] if sc.periods else None
    if periods is None:
        periods = len(base) if base else None
    if period_h is None:
        period_h = base[0]["hours"] if base and all(b["hours"] == base[0]["hours"] for b in base) else 1.0
    if periods is None:
        periods = _count_rows(prices or demand or weather or limits)
    if base is not None and len(base) != periods:
        raise ScenarioError([f"--periods: {periods}, but the scenario has {len(base)} periods"])
    if base is not None and any(abs(b["hours"] - period_h) > 1e-9 for b in base):
        raise ScenarioError([f"--period-h: the scenario's periods are not all {period_h:g} h long"])
    out = base or [{"hours": period_h} for _ in range(periods)]
    sites = [s.id for s in sc.sites]
    services = [i.id for i in sc.inference]
    for kind, path in (("prices", prices), ("demand", demand), ("weather", weather), ("limits", limits)):
        if path is None:
            continue
        field_name, id_kind, _ = KINDS[kind]
        series = read_series(path, kind, sites if id_kind == "site" else services, periods, period_h)
        for col, vals in series.items():
            for p, v in enumerate(vals):
                if col == "hashprice_usd_per_ph_day":
                    out[p]["hashprice_usd_per_ph_day"] = v
                else:
                    out[p].setdefault(field_name, {})[col] = v
    data = sc.model_dump(exclude_none=True)
    data["periods"] = out
    return parse_scenario(data)


def _count_rows(path) -> int:
    if path is None:
        raise ScenarioError(["--periods: give --periods (or a scenario with periods, or a CSV)"])
    try:
        rows = [r for r in csv.reader(Path(path).read_text(encoding="utf-8-sig").splitlines()) if any(
            c.strip() for c in r)]
    except OSError as e:
        raise ScenarioError([f"{Path(path).name}: cannot read ({e.strerror or e})"])
    return max(1, len(rows) - 1)
