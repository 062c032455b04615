"""`wattsched plan` on horizon scenarios: plan, CSV, chart and baselines written and verified;
bad CSVs exit 2 with one clear line each; an impossible window exits 1 naming the period."""
from __future__ import annotations

import csv
import json

import yaml
from test_horizon_cases import tiny

from scheduler.cli import main
from scheduler.model import load_scenario
from scheduler.verify import verify_plan


def scenario_file(tmp_path, sc, name="tiny.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(sc.model_dump(mode="json", exclude_none=True)))
    return path


def test_plan_from_csv_series_writes_plan_csv_chart(tmp_path, capsys):
    sc = tiny([40]).model_copy(update={"periods": None})
    sc_path = scenario_file(tmp_path, sc)
    prices = tmp_path / "prices.csv"
    prices.write_text("start_h,wa\n" + "".join(f"{p * 0.5},{[30, 300, 30, 30][p]}\n" for p in range(4)))
    out, table, chart, full = (tmp_path / n for n in ("plan.json", "plan.csv", "plan.png", "sc.json"))
    rc = main(["plan", str(sc_path), "--prices", str(prices), "--periods", "4", "--period-h", "0.5",
               "-o", str(out), "--csv", str(table), "--chart", str(chart), "--baselines",
               "--save-scenario", str(full)])
    assert rc == 0
    plan = json.loads(out.read_text())
    assert len(plan["periods"]) == 4 and plan["solver"]["method"] == "milp-horizon"
    assert verify_plan(load_scenario(full), plan) == []
    rows = list(csv.DictReader(table.open()))
    assert [r["price_usd_per_mwh"] for r in rows] == ["30.000", "300.000", "30.000", "30.000"]
    assert float(rows[1]["miners_kw"]) == 0.0 and float(rows[0]["miners_kw"]) == 10.0
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = capsys.readouterr().out
    assert "baseline fixed" in text and "baseline miner-switch" in text and "miners shed" in text


def test_rolling_solver_on_a_scenario_with_periods(tmp_path, capsys):
    sc_path = scenario_file(tmp_path, tiny([40, 40, 2000], job={"remaining_gpu_h": 8}))
    out = tmp_path / "plan.json"
    assert main(["plan", str(sc_path), "--horizon-solver", "rolling", "-o", str(out), "--quiet"]) == 0
    plan = json.loads(out.read_text())
    assert plan["solver"]["method"] == "rolling"
    assert verify_plan(load_scenario(sc_path), plan) == []
    assert main(["verify", str(sc_path), str(out)]) == 0


def test_bad_csv_exits_2_with_one_line(tmp_path, capsys):
    sc_path = scenario_file(tmp_path, tiny([40]).model_copy(update={"periods": None}))
    prices = tmp_path / "prices.csv"
    prices.write_text("start_h,wa,tx\n0,1,2\n")
    assert main(["plan", str(sc_path), "--prices", str(prices), "--periods", "1"]) == 2
    assert capsys.readouterr().err.strip() == "error: prices.csv: unknown site 'tx' (column 3)"


def test_impossible_window_exits_1(tmp_path, capsys):
    sc_path = scenario_file(tmp_path, tiny([40, 40], job={"required": True}, grid=[20, 5]))
    out = tmp_path / "plan.json"
    assert main(["plan", str(sc_path), "--horizon-solver", "rolling", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "no feasible horizon plan" in err and "@p1" in err
    assert json.loads(out.read_text())["objective_usd"] is None
