"""Fixtures shared by tests/ and benchmarks/ (pytest loads this file for both): servers run as
subprocesses on free loopback ports, above all the site daemon `python -m scheduler.service`.

    def test_x(daemon, tmp_path):
        with daemon(scenario_path, tmp_path / "state.db", "--no-milp") as (proc, url):
            ...
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Optional

import httpx
import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _running(argv: list[str], log_path: Path, ready: Optional[Callable[[], bool]] = None, startup_s: float = 30.0):
    """Start `argv` (output to `log_path`); wait until `ready()` (a transport error counts as not
    yet); yield the process; on exit SIGTERM it, and SIGKILL it if it has not stopped in 20 s."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + startup_s
            while ready is not None:
                if proc.poll() is not None:
                    log.flush()
                    raise AssertionError(f"{' '.join(argv[:3])} exited with {proc.returncode}: {log_path.read_text()}")
                try:
                    if ready():
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"{' '.join(argv[:3])} not ready in {startup_s:g} s")
                time.sleep(0.05)
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


def _healthy(url: str) -> bool:
    return httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200


@contextmanager
def _running_daemon(scenario_path: Path, db: Path, *flags: str, ready: Callable[[str], bool] = _healthy,
                    startup_s: float = 30.0):
    """`python -m scheduler.service` on a free loopback port, its log next to `db`; yields
    (process, base url) once `ready(url)` (default: /healthz answers)."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "scheduler.service", str(scenario_path), "--host", "127.0.0.1",
            "--port", str(port), "--db", str(db), "--log-level", "warning", *flags]
    with _running(argv, db.with_suffix(f".{port}.log"), lambda: ready(url), startup_s) as proc:
        yield proc, url


@pytest.fixture
def free_port() -> Callable[[], int]:
    """A function returning a free loopback TCP port."""
    return _free_port


@pytest.fixture
def spawn():
    """`with spawn(argv, log_path, ready=None, startup_s=30.0) as proc:` a server subprocess."""
    return _running


@pytest.fixture
def daemon():
    """`with daemon(scenario_path, db, *flags, ready=..., startup_s=30.0) as (proc, url):` the site daemon."""
    return _running_daemon
