"""Daemon settings: environment variables with prefix `WATTSCHED_` (e.g. `WATTSCHED_PORT=9090`),
optionally an env file, overridden by command-line flags."""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WATTSCHED_", extra="ignore")

    scenario: Optional[Path] = None                 # the site's scenario file (YAML or JSON)
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    db: Path = Path("wattsched.db")                 # SQLite state file (WAL)
    db_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    keep_plans: int = Field(10000, ge=1)            # newest adopted plans kept in the state file
    keep_events: int = Field(100000, ge=1)          # newest events kept (older ones are deleted)
    tick_s: float = Field(60.0, gt=0)               # re-plan at least this often
    batch_s: float = Field(0.25, ge=0)              # non-urgent changes are planned together at most this often
    milp: bool = True                               # run the MILP in the background
    milp_time_limit_s: float = Field(30.0, gt=0)
    fast_method: Optional[str] = None               # fast-path solver: a registered method or 'greedy' (default: heuristic, else milp)
    fast_time_limit_s: float = Field(2.0, gt=0)     # time limit when the fast path is the MILP
    solver_threads: Optional[int] = Field(None, ge=1)
    auth_token: Optional[str] = None                # bearer token required on write endpoints
    auth_token_file: Optional[Path] = None          # or read it from this file (first line)
    plan_file: Optional[Path] = None                # file actuator: write each adopted plan here
    webhook_url: Optional[str] = None               # webhook actuator: POST each adopted plan here
    webhook_retries: int = Field(5, ge=0)
    webhook_timeout_s: float = Field(5.0, gt=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("auth_token")
    @classmethod
    def _token_not_blank(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not v.strip():
            raise ValueError("must not be blank")
        return v

    def token(self) -> Optional[str]:
        """The bearer token in force: `auth_token`, else the first line of `auth_token_file`."""
        if self.auth_token:
            return self.auth_token.strip()
        if self.auth_token_file is not None:
            try:
                text = self.auth_token_file.read_text(encoding="utf-8").strip().splitlines()
            except OSError as err:
                raise SettingsError([f"auth_token_file: cannot be read ({err.__class__.__name__}: {self.auth_token_file})"])
            if not text or not text[0].strip():
                raise SettingsError([f"auth_token_file: {self.auth_token_file} is empty"])
            return text[0].strip()
        return None


class SettingsError(ValueError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def load_settings(env_file: Optional[str] = None, **overrides) -> ServiceSettings:
    """Environment (and `env_file`) first, then the non-None `overrides` (command-line flags)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return ServiceSettings(_env_file=env_file, **given)
    except ValidationError as err:
        lines = []
        for e in err.errors(include_url=False):
            name = ".".join(str(p) for p in e["loc"]) or "settings"
            lines.append(f"{name} (WATTSCHED_{name.upper()}): {e['msg']}")
        raise SettingsError(lines) from None
