"""Durable daemon state: the `Store` port and its SQLite (WAL) implementation.

Workloads, signals, adopted plans (with their inputs' hash and solver figures) and an append-only
event log. A write returns only after its transaction commits, so whatever the API acknowledged
survives a `kill -9` of the process (synchronous=FULL also survives power loss).
"""
from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Protocol


@dataclass(frozen=True)
class WorkloadRow:
    kind: str            # training | inference
    id: str
    body: Optional[dict]  # the SPEC section 1 item; None for a cancelled scenario workload
    state: str           # active | cancelled
    source: str          # api | scenario
    submitted_at_s: float
    cancelled_at_s: Optional[float]


@dataclass(frozen=True)
class PlanRow:
    seq: int
    adopted_at_s: float
    inputs_hash: str
    method: str
    status: str
    solver_seconds: float
    objective_usd: Optional[float]
    reason: str
    plan: dict


class Store(Protocol):
    """Where the daemon keeps what it must not forget."""

    def add_workload(self, kind: str, wid: str, body: dict, at_s: float) -> None: ...
    def cancel_workload(self, kind: str, wid: str, source: str, at_s: float) -> None: ...
    def workloads(self) -> list[WorkloadRow]: ...
    def add_signal(self, body: dict, at_s: float) -> int: ...
    def signals(self) -> list[tuple[int, float, dict]]: ...
    def add_plan(self, row: PlanRow) -> int: ...
    def last_plan(self) -> Optional[PlanRow]: ...
    def plan(self, seq: int) -> Optional[PlanRow]: ...
    def plans(self, limit: int, before: Optional[int] = None) -> list[PlanRow]: ...
    def add_event(self, kind: str, body: dict, at_s: float) -> int: ...
    def events(self, after: int = 0, limit: int = 100) -> list[dict]: ...
    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS workloads (
    kind TEXT NOT NULL, id TEXT NOT NULL, body TEXT, state TEXT NOT NULL, source TEXT NOT NULL,
    submitted_at_s REAL NOT NULL, cancelled_at_s REAL, PRIMARY KEY (kind, id));
CREATE TABLE IF NOT EXISTS signals (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at_s REAL NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS plans (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, adopted_at_s REAL NOT NULL, inputs_hash TEXT NOT NULL,
    method TEXT NOT NULL, status TEXT NOT NULL, solver_seconds REAL NOT NULL, objective_usd REAL,
    reason TEXT NOT NULL, plan TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at_s REAL NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL);
"""


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


class SqliteStore:
    """SQLite in WAL mode; one connection shared by the daemon's threads behind a lock."""

    def __init__(self, path: str | Path, synchronous: str = "FULL", keep_plans: Optional[int] = None,
                 keep_events: Optional[int] = None):
        """`keep_plans` / `keep_events`: how many of the newest plans and events to keep (None: all);
        older rows are deleted in the transaction that adds a new one."""
        self.path = str(path)
        self.keep_plans = keep_plans
        self.keep_events = keep_events
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self.synchronous = synchronous.upper()
        self._db.execute(f"PRAGMA synchronous={self.synchronous}")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    # one transaction per call: the event log entry commits with the change it records
    def _tx(self, statements: list[tuple[str, tuple]], durable: bool = True) -> int:
        """Run statements in one transaction. `durable=False` skips the fsync (still safe against a
        process crash in WAL mode; a power cut may lose it): used for plans, which can be recomputed."""
        with self._lock:
            cur = self._db.cursor()
            if not durable and self.synchronous == "FULL":
                cur.execute("PRAGMA synchronous=NORMAL")
            try:
                return self._run(cur, statements)
            finally:
                if not durable and self.synchronous == "FULL":
                    cur.execute("PRAGMA synchronous=FULL")

    @staticmethod
    def _run(cur, statements: list[tuple[str, tuple]]) -> int:
        cur.execute("BEGIN IMMEDIATE")
        try:
            last = 0
            for sql, args in statements:
                cur.execute(sql, args)
                if last == 0:
                    last = cur.lastrowid or 0
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return last

    def _event(self, kind: str, body: dict, at_s: float) -> list[tuple[str, tuple]]:
        """Append one event; with `keep_events`, delete all but the newest `keep_events` events."""
        out = [("INSERT INTO events (at_s, kind, body) VALUES (?, ?, ?)", (at_s, kind, _dumps(body)))]
        if self.keep_events is not None:
            out.append(("DELETE FROM events WHERE seq <= (SELECT MAX(seq) FROM events) - ?", (self.keep_events,)))
        return out

    def add_workload(self, kind: str, wid: str, body: dict, at_s: float) -> None:
        self._tx([("INSERT INTO workloads (kind, id, body, state, source, submitted_at_s) "
                   "VALUES (?, ?, ?, 'active', 'api', ?) ON CONFLICT (kind, id) DO UPDATE SET "
                   "body=excluded.body, state='active', source='api', submitted_at_s=excluded.submitted_at_s, "
                   "cancelled_at_s=NULL", (kind, wid, _dumps(body), at_s)),
                  *self._event("workload_submitted", {"kind": kind, "id": wid}, at_s)])

    def cancel_workload(self, kind: str, wid: str, source: str, at_s: float) -> None:
        if source == "scenario":  # a tombstone for a workload of the base scenario
            sql = ("INSERT INTO workloads (kind, id, body, state, source, submitted_at_s, cancelled_at_s) "
                   "VALUES (?, ?, NULL, 'cancelled', 'scenario', ?, ?) ON CONFLICT (kind, id) DO UPDATE SET "
                   "body=NULL, state='cancelled', source='scenario', cancelled_at_s=excluded.cancelled_at_s",
                   (kind, wid, at_s, at_s))
        else:
            sql = ("UPDATE workloads SET state='cancelled', cancelled_at_s=? WHERE kind=? AND id=?",
                   (at_s, kind, wid))
        self._tx([sql, *self._event("workload_cancelled", {"kind": kind, "id": wid}, at_s)])

    def workloads(self) -> list[WorkloadRow]:
        with self._lock:
            rows = self._db.execute("SELECT kind, id, body, state, source, submitted_at_s, cancelled_at_s "
                                    "FROM workloads ORDER BY submitted_at_s, rowid").fetchall()
        return [WorkloadRow(k, i, json.loads(b) if b else None, s, src, t, c) for k, i, b, s, src, t, c in rows]

    def add_signal(self, body: dict, at_s: float) -> int:
        return self._tx([("INSERT INTO signals (at_s, body) VALUES (?, ?)", (at_s, _dumps(body))),
                         *self._event("signal", body, at_s)])

    def signals(self) -> list[tuple[int, float, dict]]:
        with self._lock:
            rows = self._db.execute("SELECT seq, at_s, body FROM signals ORDER BY seq").fetchall()
        return [(s, t, json.loads(b)) for s, t, b in rows]

    def add_plan(self, row: PlanRow) -> int:
        trim = [] if self.keep_plans is None else [
            ("DELETE FROM plans WHERE seq <= (SELECT MAX(seq) FROM plans) - ?", (self.keep_plans,))]
        return self._tx([
            ("INSERT INTO plans (adopted_at_s, inputs_hash, method, status, solver_seconds, objective_usd, "
             "reason, plan) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
             (row.adopted_at_s, row.inputs_hash, row.method, row.status, row.solver_seconds,
              row.objective_usd, row.reason, _dumps(row.plan))),
            *self._event("plan_adopted", {"method": row.method, "status": row.status, "reason": row.reason,
                                          "objective_usd": row.objective_usd, "inputs_hash": row.inputs_hash},
                         row.adopted_at_s), *trim], durable=False)

    _PLAN_COLS = "seq, adopted_at_s, inputs_hash, method, status, solver_seconds, objective_usd, reason, plan"

    @staticmethod
    def _plan_row(r) -> PlanRow:
        return PlanRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], json.loads(r[8]))

    def last_plan(self) -> Optional[PlanRow]:
        with self._lock:
            r = self._db.execute(f"SELECT {self._PLAN_COLS} FROM plans ORDER BY seq DESC LIMIT 1").fetchone()
        return self._plan_row(r) if r else None

    def plan(self, seq: int) -> Optional[PlanRow]:
        with self._lock:
            r = self._db.execute(f"SELECT {self._PLAN_COLS} FROM plans WHERE seq=?", (seq,)).fetchone()
        return self._plan_row(r) if r else None

    def plans(self, limit: int, before: Optional[int] = None) -> list[PlanRow]:
        with self._lock:
            rows = self._db.execute(f"SELECT {self._PLAN_COLS} FROM plans WHERE seq < ? ORDER BY seq DESC LIMIT ?",
                                    (before if before is not None else 2**62, limit)).fetchall()
        return [self._plan_row(r) for r in rows]

    def add_event(self, kind: str, body: dict, at_s: float) -> int:
        return self._tx(self._event(kind, body, at_s))

    def events(self, after: int = 0, limit: int = 100) -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT seq, at_s, kind, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                                    (after, limit)).fetchall()
        return [{"seq": s, "at_s": t, "kind": k, "body": json.loads(b)} for s, t, k, b in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
