"""The actuation port: where an adopted plan goes. A file actuator (atomic replace) and a webhook
actuator (HTTP POST with retries, off the planning thread); device adapters come later."""
from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional, Protocol

log = logging.getLogger("wattsched.actuators")


class Actuator(Protocol):
    """Receives every adopted plan, in order. Must not block planning for long."""

    def publish(self, document: dict) -> None: ...


class NullActuator:
    def publish(self, document: dict) -> None:
        return None


class RecordingActuator:
    """Keeps what it was given (tests, dry runs)."""

    def __init__(self):
        self.published: list[dict] = []

    def publish(self, document: dict) -> None:
        self.published.append(document)


class FileActuator:
    """Writes the document as JSON to `path` atomically: temp file in the same directory, fsync, rename."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def publish(self, document: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(document, fh, separators=(",", ":"))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise


class WebhookActuator:
    """POSTs each adopted plan as JSON to `url`, retrying with exponential backoff.

    Delivery runs on its own thread; when plans come faster than the endpoint takes them only the
    newest pending one is sent (an old plan is worthless once a newer one is adopted).
    """

    def __init__(self, url: str, retries: int = 5, backoff_s: float = 0.5, timeout_s: float = 5.0,
                 headers: Optional[dict] = None, sleep: Callable[[float], None] = time.sleep):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook_url: must start with http:// or https:// (got {url!r})")
        self.url, self.retries, self.backoff_s, self.timeout_s = url, retries, backoff_s, timeout_s
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self._sleep = sleep
        self._pending: Optional[dict] = None
        self._cond = threading.Condition()
        self._stopped = False
        self.delivered = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="wattsched-webhook", daemon=True)
        self._thread.start()

    def publish(self, document: dict) -> None:
        with self._cond:
            self._pending = document
            self._cond.notify()

    def deliver(self, document: dict) -> bool:
        """Send one document now, with retries; True when the endpoint answered 2xx."""
        data = json.dumps(document, separators=(",", ":")).encode()
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(self.url, data=data, headers=self.headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    if 200 <= resp.status < 300:
                        return True
            except urllib.error.HTTPError as err:
                if 400 <= err.code < 500 and err.code not in (408, 429):
                    log.warning("webhook %s rejected the plan: HTTP %s", self.url, err.code)
                    return False
            except (urllib.error.URLError, OSError) as err:
                log.info("webhook %s attempt %d failed: %s", self.url, attempt + 1, err)
            if attempt < self.retries:
                self._sleep(self.backoff_s * (2 ** attempt))
        return False

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stopped:
                    self._cond.wait()
                if self._stopped and self._pending is None:
                    return
                doc, self._pending = self._pending, None
            if self.deliver(doc):
                self.delivered += 1
            else:
                self.failed += 1
                log.warning("webhook %s: plan not delivered after %d attempts", self.url, self.retries + 1)

    def close(self, timeout_s: float = 5.0) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout_s)


class FanOut:
    """Publishes to several actuators; one failing does not stop the others."""

    def __init__(self, actuators: list):
        self.actuators = list(actuators)

    def publish(self, document: dict) -> None:
        for act in self.actuators:
            try:
                act.publish(document)
            except Exception:  # noqa: BLE001 - actuation trouble must not stop planning
                log.exception("actuator %s failed", type(act).__name__)
