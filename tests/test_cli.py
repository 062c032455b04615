"""`wattsched` end to end: plan, verify, validate, schema and generate on the small example and
tiny scenarios, run in-process through `scheduler.cli.main` (and a few times as the installed
program), checking exit codes (0 done, 1 infeasible or failed verification, 2 bad input), the
one-line `error: path: reason` messages, and that a plan file is whole SPEC-5 JSON."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scheduler.cli import main

ROOT = Path(__file__).resolve().parents[1]
SMALL = ROOT / "examples" / "small.yaml"
WATTSCHED = Path(sys.executable).with_name("wattsched")

TINY = """\
version: 1
name: tiny
gpu_models:
  H100: {idle_w: 75, host_w: 560, cap_levels: [{cap_w: 350, perf: 0.62}, {cap_w: 700, perf: 1.0}]}
sites:
  - id: s1
    grid_limit_kw: GRID
    energy_price_usd_per_mwh: 40
    ambient_c: 20
    feeds: [{id: F1, limit_kw: 100}]
    loops: [{id: L1, kind: liquid, capacity_kw: 100, design_ambient_c: 35, derate_per_c: 0.01,
             kw_per_kw_heat: 0.0}]
    racks:
      - {id: P1, feed: F1, loop: L1, limit_kw: 40, idle_kw: 1, domain: d1, gpus: {model: H100, count: 32}}
      - {id: P2, feed: F1, loop: L1, limit_kw: 40, idle_kw: 1, domain: d1, gpus: {model: H100, count: 32}}
training:
  - {id: big, gpus: GPUS, value_per_gpu_h: {H100: 2.0}, required: true}
"""


def tiny(tmp_path: Path, grid_kw: float = 80, gpus: int = 64) -> Path:
    """A required 64-GPU job on a 64-GPU domain: at the lowest cap it draws 2 + 64 * 0.91 = 60.24 kW."""
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY.replace("GRID", str(grid_kw)).replace("GPUS", str(gpus)))
    return p


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def small_plan(tmp_path_factory) -> Path:
    """The small example planned once with the MILP (HiGHS); tests copy, never edit, it."""
    path = tmp_path_factory.mktemp("small") / "plan.json"
    assert main(["plan", str(SMALL), "-o", str(path), "-q"]) == 0
    return path


def test_plan_small_prints_a_summary_and_writes_spec5_json(capsys, tmp_path):
    out_path = tmp_path / "plan.json"
    rc, out, err = run(capsys, "plan", SMALL, "-o", out_path)
    assert rc == 0 and err == ""
    plan = json.loads(out_path.read_text())
    site = plan["sites"][0]
    lines = out.splitlines()
    assert lines[0].startswith("small: milp/highs ")
    assert f"site pilot: power {site['site_kw']:.1f} / 400.0 kW" in out
    assert re.search(r"^  loop air: heat [\d.]+ / 260\.0 kW", out, re.M)
    assert re.search(r"^  loop dlc: heat [\d.]+ / 170\.0 kW", out, re.M)
    assert f"hashrate {site['hashrate_th_s'] / 1000:.2f} PH/s" in out
    busy = sum(r.get("gpus_busy", 0) for r in plan["racks"])
    assert f"GPUs busy {busy} / 160" in out
    scheduled = sum(t["scheduled"] for t in plan["training"])
    assert f"training: {scheduled} scheduled, {3 - scheduled} queued" in out
    assert re.search(r"^profit \$[\d,.]+/h", out, re.M)
    assert lines[-1] == f"plan written to {out_path}"

    # SPEC 5
    assert plan["scenario"] == "small"
    solver = plan["solver"]
    assert solver["method"] == "milp" and solver["backend"] == "highs"
    assert solver["status"] in ("optimal", "feasible")
    assert solver["objective_usd"] == pytest.approx(plan["objective_usd"])
    assert solver["bound_usd"] >= plan["objective_usd"] - 1e-6 and 0 <= solver["gap"] <= 1e-4
    assert solver["seconds"] >= 0
    assert set(site) >= {"id", "site_kw", "it_kw", "cooling_kw", "grid_limit_kw", "hashrate_th_s"}
    assert site["site_kw"] <= site["grid_limit_kw"] + 1e-6
    assert site["site_kw"] == pytest.approx(20 + site["it_kw"] + site["cooling_kw"])
    assert [r["id"] for r in plan["racks"]] == ["M01", "M02", "M03", "M04", "P01", "P02", "P03", "P04", "L01", "L02"]
    assert all(r["kw"] >= 0 and ("miners" in r) == r["id"].startswith("M") for r in plan["racks"])
    assert {lp["id"] for lp in plan["loops"]} == {"air", "dlc"}
    assert {f["id"]: f["limit_kw"] for f in plan["feeds"]} == {"F1": 220, "F2": 180}
    assert [t["id"] for t in plan["training"]] == ["llm-finetune", "small-pretrain", "eval-sweep"]
    for t in plan["training"]:
        assert set(t) >= {"id", "scheduled", "moved"}
        if t["scheduled"]:
            assert sum(t["placement"].values()) in (96, 64, 32) and t["cap_w"] in (350, 500, 600, 700)
    assert [i["id"] for i in plan["inference"]] == ["chat-8b", "embeddings"]
    for i in plan["inference"]:
        assert 0 <= i["served_rps"] <= i["demand_rps"]
        assert all(set(e) == {"rack", "replicas", "cap_w"} for e in i["placement"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]  # no temporary file left


def test_plan_overwrites_atomically_and_quiet_prints_nothing(capsys, tmp_path):
    out_path = tmp_path / "plan.json"
    out_path.write_text("old")
    rc, out, err = run(capsys, "plan", SMALL, "-o", out_path, "-q")
    assert (rc, out, err) == (0, "", "")
    assert json.loads(out_path.read_text())["scenario"] == "small"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]


def test_plan_to_stdout_keeps_stdout_pure_json(capsys):
    rc, out, err = run(capsys, "plan", SMALL, "-o", "-")
    assert rc == 0
    assert json.loads(out)["scenario"] == "small"
    assert "site pilot: power" in err


def test_plan_default_output_name(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, _ = run(capsys, "plan", SMALL, "-q")
    assert rc == 0 and json.loads((tmp_path / "plan-small.json").read_text())["scenario"] == "small"


def test_verify_accepts_the_plan(capsys, small_plan):
    rc, out, err = run(capsys, "verify", SMALL, small_plan)
    obj = json.loads(small_plan.read_text())["objective_usd"]
    assert rc == 0 and err == ""
    assert out == f"{small_plan}: ok, every limit holds and every figure matches (objective ${obj:,.2f})\n"


def _turbo_m04(plan):
    for r in plan["racks"]:
        if r["id"] == "M04":
            r["miners"] = {"turbo": 16}   # 0.3 + 16 * 4.1 = 65.9 kW on a 60 kW rack


def _all_miners_normal(plan):
    for r in plan["racks"]:
        if "miners" in r:
            r["miners"] = {"normal": 16}  # every miner rack at 56.3 kW: over the 400 kW grid


def _objective_plus_10(plan):
    plan["objective_usd"] += 10


@pytest.mark.parametrize("breakage,expected", [
    (_turbo_m04, "rack_power[M04]: 65.900 kW exceeds the limit 60 kW"),
    (_all_miners_normal, "site_power[pilot]: "),
    (_objective_plus_10, "objective_usd: reported "),
], ids=["rack", "grid", "objective"])
def test_verify_rejects_a_hand_broken_plan_naming_the_limit(capsys, tmp_path, small_plan, breakage, expected):
    plan = json.loads(small_plan.read_text())
    breakage(plan)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(plan))
    rc, out, err = run(capsys, "verify", SMALL, broken)
    assert rc == 1
    assert any(line.startswith(expected) for line in out.splitlines()), out
    n = len(out.splitlines())
    assert err == f"{broken}: {n} problem(s); the plan is not valid for {SMALL}\n"


def test_verify_objective_change_is_the_only_problem(capsys, tmp_path, small_plan):
    plan = json.loads(small_plan.read_text())
    obj = plan["objective_usd"]
    plan["objective_usd"] = obj + 10
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(plan))
    rc, out, _ = run(capsys, "verify", SMALL, broken)
    assert rc == 1 and out == f"objective_usd: reported {obj + 10:.6f}, recomputed {obj:.6f}\n"


def test_verify_plan_that_is_not_json_is_bad_input(capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"scenario": "small",\n')
    rc, out, err = run(capsys, "verify", SMALL, bad)
    assert (rc, out) == (2, "")
    assert err == f"error: {bad}: not valid JSON (plan) at line 2, column 1: Expecting property name enclosed in double quotes\n"


def test_verify_plan_that_is_not_an_object_is_bad_input(capsys, tmp_path):
    bad = tmp_path / "list.json"
    bad.write_text("[1, 2]")
    rc, out, err = run(capsys, "verify", SMALL, bad)
    assert (rc, out, err) == (2, "", f"error: {bad}: a plan must be a JSON object (got list)\n")


def test_verify_missing_plan_and_missing_scenario(capsys, tmp_path, small_plan):
    rc, out, err = run(capsys, "verify", SMALL, tmp_path / "none.json")
    assert (rc, out, err) == (2, "", f"error: {tmp_path / 'none.json'}: no such file\n")
    rc, out, err = run(capsys, "verify", tmp_path / "none.yaml", small_plan)
    assert (rc, out, err) == (2, "", f"error: {tmp_path / 'none.yaml'}: no such file\n")


def test_verify_empty_plan_object_lists_what_is_missing(capsys, tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    rc, out, _ = run(capsys, "verify", SMALL, empty)
    assert rc == 1
    assert "objective_usd: missing" in out.splitlines() and "racks: missing" in out.splitlines()


def test_validate_ok(capsys):
    rc, out, err = run(capsys, "validate", SMALL)
    assert (rc, err) == (0, "")
    assert out == f"{SMALL}: ok (1 site(s), 10 racks, 3 training jobs, 2 inference services)\n"


def test_validate_bad_scenario_one_line_per_problem(capsys, tmp_path):
    data = yaml.safe_load(SMALL.read_text())
    data["sites"][0]["racks"][0]["feed"] = "F9"
    data["sites"][0]["racks"][9]["feeed"] = "F1"
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    rc, out, err = run(capsys, "validate", p)
    assert (rc, out) == (2, "")
    assert err == "error: sites[0].racks[9].feeed: unknown key\n"   # structure first: references need it
    del data["sites"][0]["racks"][9]["feeed"]
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    rc, out, err = run(capsys, "validate", p)
    assert (rc, out, err) == (2, "", "error: sites[0].racks[0].feed: unknown feed 'F9'\n")


def test_validate_several_problems_each_on_its_line(capsys, tmp_path):
    data = yaml.safe_load(SMALL.read_text())
    data["sites"][0]["grid_limit_kw"] = -400
    data["training"][0]["gpus"] = "96"
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    rc, _, err = run(capsys, "validate", p)
    assert rc == 2
    assert err.splitlines() == [
        "error: sites[0].grid_limit_kw: input should be greater than or equal to 0 (got -400)",
        "error: training[0].gpus: input should be a valid integer (got '96')",
    ]


@pytest.mark.parametrize("text,reason", [
    ("", "the file is empty; a scenario is a mapping with at least 'version' and 'sites'"),
    ("- a\n- b\n", "a scenario must be a mapping of keys to values (got a list)"),
    ("version: 1\nsites: [\n", "not valid YAML or JSON at line 3, column 1: expected the node content, but found '<stream end>'"),
])
def test_validate_unusable_files(capsys, tmp_path, text, reason):
    p = tmp_path / "s.yaml"
    p.write_text(text)
    rc, out, err = run(capsys, "validate", p)
    assert (rc, out, err) == (2, "", f"error: {p}: {reason}\n")


def test_validate_missing_file_and_directory(capsys, tmp_path):
    rc, _, err = run(capsys, "validate", tmp_path / "nope.yaml")
    assert (rc, err) == (2, f"error: {tmp_path / 'nope.yaml'}: no such file\n")
    rc, _, err = run(capsys, "validate", tmp_path)
    assert (rc, err) == (2, f"error: {tmp_path}: is a directory, not a scenario file\n")


def test_schema_is_a_json_schema_of_the_scenario(capsys):
    rc, out, err = run(capsys, "schema")
    assert (rc, err) == (0, "")
    schema = json.loads(out)
    assert {"version", "sites", "gpu_models", "miner_models", "training", "inference", "periods"} <= set(schema["properties"])
    assert {"version", "sites"} <= set(schema["required"])
    assert schema["additionalProperties"] is False
    assert "Rack" in schema["$defs"] and schema["$defs"]["Rack"]["additionalProperties"] is False


def test_cbc_backend_agrees_with_highs_within_the_gap(capsys, tmp_path, small_plan):
    out_path = tmp_path / "cbc.json"
    rc, _, err = run(capsys, "plan", SMALL, "--backend", "cbc", "-o", out_path, "-q")
    assert (rc, err) == (0, "")
    cbc, highs = json.loads(out_path.read_text()), json.loads(small_plan.read_text())
    assert cbc["solver"]["backend"] == "cbc" and cbc["solver"]["status"] in ("optimal", "feasible")
    # the optimum lies in [objective, bound] for each solver: the two intervals overlap
    tol = 1e-6 * max(1.0, abs(highs["objective_usd"]))
    assert cbc["objective_usd"] <= highs["solver"]["bound_usd"] + tol
    assert highs["objective_usd"] <= cbc["solver"]["bound_usd"] + tol
    assert cbc["objective_usd"] == pytest.approx(highs["objective_usd"], rel=1e-3)
    assert run(capsys, "verify", SMALL, out_path)[0] == 0


@pytest.mark.parametrize("option,line", [
    (["--gap", "2"], "error: --gap: must be in [0, 1) (got 2.0)"),
    (["--gap", "-0.1"], "error: --gap: must be in [0, 1) (got -0.1)"),
    (["--time-limit", "-1"], "error: --time-limit: must be positive (got -1.0)"),
    (["--time-limit", "0"], "error: --time-limit: must be positive (got 0.0)"),
])
def test_bad_options_are_bad_input(capsys, tmp_path, option, line):
    rc, out, err = run(capsys, "plan", SMALL, "-o", tmp_path / "p.json", *option)
    assert (rc, out, err) == (2, "", line + "\n")
    assert not (tmp_path / "p.json").exists()


def test_unparsable_option_value_exits_2(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["plan", str(SMALL), "--gap", "abc"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == "wattsched plan: error: argument --gap: invalid float value: 'abc'"


def test_plan_missing_scenario_exits_2(capsys, tmp_path):
    rc, out, err = run(capsys, "plan", tmp_path / "nope.yaml", "-o", tmp_path / "p.json")
    assert (rc, out, err) == (2, "", f"error: {tmp_path / 'nope.yaml'}: no such file\n")


def test_plan_invalid_scenario_exits_2(capsys, tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(SMALL.read_text().replace("feed: F1", "feed: F9", 1))
    rc, out, err = run(capsys, "plan", p, "-o", tmp_path / "p.json")
    assert (rc, out, err) == (2, "", "error: sites[0].racks[0].feed: unknown feed 'F9'\n")


def test_tiny_scenario_plans_when_the_grid_allows(capsys, tmp_path):
    out_path = tmp_path / "p.json"
    rc, _, _ = run(capsys, "plan", tiny(tmp_path, grid_kw=80), "-o", out_path, "-q")
    plan = json.loads(out_path.read_text())
    assert rc == 0 and plan["training"][0]["scheduled"] is True
    assert sum(plan["training"][0]["placement"].values()) == 64


def _infeasible(capsys, tmp_path, scenario: Path) -> tuple[str, dict]:
    out_path = tmp_path / "p.json"
    rc, out, err = run(capsys, "plan", scenario, "-o", out_path)
    assert (rc, out) == (1, "")
    lines = err.splitlines()
    assert lines[0].startswith("tiny: no feasible plan (milp, ") and lines[0].endswith("these limits cannot all hold:")
    assert all(line.startswith("  ") for line in lines[1:]) and len(lines) >= 2
    plan = json.loads(out_path.read_text())
    assert plan["solver"]["status"] == "infeasible" and plan["objective_usd"] is None
    assert plan["infeasible"] == [line[2:] for line in lines[1:]]
    return err, plan


def test_required_job_larger_than_any_domain_is_infeasible(capsys, tmp_path):
    err, _ = _infeasible(capsys, tmp_path, tiny(tmp_path, grid_kw=80, gpus=96))
    assert "  required[big]: " in err


def test_required_job_that_fits_by_gpus_but_not_the_grid_is_infeasible(capsys, tmp_path):
    err, _ = _infeasible(capsys, tmp_path, tiny(tmp_path, grid_kw=50))
    assert "  site_power[s1]: " in err
    assert "10.240 kW" in err   # 60.24 kW needed at the lowest cap, 50 kW allowed


def test_generate_then_plan_then_verify(capsys, tmp_path):
    scenario, plan = tmp_path / "x.yaml", tmp_path / "x-plan.json"
    rc, _, err = run(capsys, "generate", "--sites", 1, "--racks-per-site", 40, "--seed", 3, "-o", scenario)
    assert (rc, err) == (0, "")
    rc, out, _ = run(capsys, "validate", scenario)
    assert rc == 0 and ", 40 racks, " in out
    rc, _, err = run(capsys, "plan", scenario, "-o", plan, "-q")
    assert (rc, err) == (0, "")
    rc, out, err = run(capsys, "verify", scenario, plan)
    assert (rc, err) == (0, "") and ": ok, every limit holds" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x-plan.json", "x.yaml"]


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("wattsched ")


# -- the installed program: exit codes reach the shell, and no traceback is ever printed --

needs_program = pytest.mark.skipif(not WATTSCHED.exists(), reason="wattsched is not installed next to python")


def _program(*argv, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(WATTSCHED), *map(str, argv)], capture_output=True, text=True, cwd=cwd, timeout=120)


@needs_program
def test_program_plan_and_verify_exit_0(tmp_path):
    plan = tmp_path / "plan.json"
    done = _program("plan", SMALL, "-o", plan, "-q")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    done = _program("verify", SMALL, plan)
    assert done.returncode == 0 and ": ok," in done.stdout, done.stderr


@needs_program
def test_program_bad_input_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMALL.read_text().replace("limit_kw: 60", "limit_kw: -60", 1))
    done = _program("validate", bad)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "error: sites[0].racks[0].limit_kw: input should be greater than or equal to 0 (got -60)\n"
    done = _program("plan", SMALL, "--gap", "2", "-o", tmp_path / "p.json")
    assert done.returncode == 2 and "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1


@needs_program
def test_program_infeasible_exits_1_without_traceback(tmp_path):
    done = _program("plan", tiny(tmp_path, grid_kw=50), "-o", tmp_path / "p.json")
    assert done.returncode == 1 and "Traceback" not in done.stderr and "site_power[s1]" in done.stderr, done.stderr


@needs_program
def test_program_output_cut_short_is_not_an_internal_error():
    """`wattsched schema | head -1`: the reader goes away; no 'internal error', no traceback."""
    proc = subprocess.Popen([str(WATTSCHED), "schema"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(1)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) in (0, 141) and err == ""


def test_bad_option_is_reported_before_the_scenario_is_read(capsys, tmp_path):
    rc, out, err = run(capsys, "plan", tmp_path / "nope.yaml", "--gap", "1")
    assert (rc, out, err) == (2, "", "error: --gap: must be in [0, 1) (got 1.0)\n")
