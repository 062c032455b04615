"""Settings from the environment (prefix WATTSCHED_), env files and flags; the CLI's error lines."""
from __future__ import annotations

import argparse

import pytest

from scheduler.service.cli import add_arguments, run
from scheduler.service.settings import SettingsError, load_settings


def test_environment_then_flags(monkeypatch, tmp_path):
    monkeypatch.setenv("WATTSCHED_PORT", "9191")
    monkeypatch.setenv("WATTSCHED_TICK_S", "15")
    monkeypatch.setenv("WATTSCHED_MILP", "false")
    s = load_settings()
    assert (s.port, s.tick_s, s.milp, s.host) == (9191, 15.0, False, "127.0.0.1")
    assert load_settings(port=7070, tick_s=None).port == 7070  # a flag wins, an absent flag does not


def test_env_file(tmp_path, monkeypatch):
    monkeypatch.delenv("WATTSCHED_PORT", raising=False)
    env = tmp_path / "w.env"
    env.write_text("WATTSCHED_PORT=8181\nWATTSCHED_DB=/var/lib/x.db\n")
    s = load_settings(env_file=str(env))
    assert s.port == 8181 and str(s.db) == "/var/lib/x.db"


def test_token_from_env_or_file(tmp_path, monkeypatch):
    monkeypatch.delenv("WATTSCHED_AUTH_TOKEN", raising=False)
    assert load_settings().token() is None
    f = tmp_path / "token"
    f.write_text("abc123\n")
    assert load_settings(auth_token_file=str(f)).token() == "abc123"
    monkeypatch.setenv("WATTSCHED_AUTH_TOKEN", "from-env")
    assert load_settings(auth_token_file=str(f)).token() == "from-env"
    monkeypatch.delenv("WATTSCHED_AUTH_TOKEN")
    f.write_text("\n")
    with pytest.raises(SettingsError, match="auth_token_file: .* is empty"):
        load_settings(auth_token_file=str(f)).token()
    with pytest.raises(SettingsError, match="auth_token_file: cannot be read"):
        load_settings(auth_token_file=str(tmp_path / "missing")).token()


@pytest.mark.parametrize("env,expected", [
    ({"WATTSCHED_PORT": "70000"}, "port (WATTSCHED_PORT): "),
    ({"WATTSCHED_TICK_S": "0"}, "tick_s (WATTSCHED_TICK_S): "),
    ({"WATTSCHED_DB_SYNCHRONOUS": "OFF"}, "db_synchronous (WATTSCHED_DB_SYNCHRONOUS): "),
    ({"WATTSCHED_KEEP_PLANS": "0"}, "keep_plans (WATTSCHED_KEEP_PLANS): Input should be greater than or equal to 1"),
])
def test_bad_settings_name_the_variable(monkeypatch, env, expected):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert err.value.problems[0].startswith(expected)


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return run(parser.parse_args(argv))


def test_cli_errors_are_one_line_each(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WATTSCHED_SCENARIO", raising=False)
    assert cli([]) == 2
    assert capsys.readouterr().err == "wattsched serve: scenario: required (argument or WATTSCHED_SCENARIO)\n"
    assert cli([str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wattsched serve: ") and err.endswith("no such file\n") and err.count("\n") == 1
    monkeypatch.setenv("WATTSCHED_PORT", "-1")
    assert cli([str(tmp_path / "nope.yaml")]) == 2
    assert "port (WATTSCHED_PORT)" in capsys.readouterr().err
    monkeypatch.delenv("WATTSCHED_PORT")
    assert cli([str(tmp_path / "nope.yaml"), "--keep-events", "-5"]) == 2
    assert capsys.readouterr().err == ("wattsched serve: keep_events (WATTSCHED_KEEP_EVENTS): "
                                       "Input should be greater than or equal to 1\n")


def test_cli_rejects_unknown_fast_method(tmp_path, capsys):
    import json

    from test_service_loop import small_site
    sc = tmp_path / "s.json"
    sc.write_text(json.dumps(small_site()))
    assert cli([str(sc), "--fast-method", "quantum", "--db", str(tmp_path / "x.db")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wattsched serve: fast_method: unknown method 'quantum' (known: ") and "greedy" in err
