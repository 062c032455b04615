"""The scenario generator: valid, deterministic, exactly the size asked for, and with limits that bind."""
from __future__ import annotations

import argparse
import json
from collections import defaultdict

import pytest
import yaml

from scheduler.assignment import Assignment, evaluate, violations
from scheduler.generate import add_arguments, generate_scenario, run, scenario_text, write_scenario
from scheduler.model.load import ScenarioError, load_scenario, parse_scenario
from scheduler.problem import compile_problem

SIZES = [(1, 40), (1, 200), (2, 200), (4, 400)]
SEEDS = [0, 1, 7]


def _top_kw(data: dict, rack: dict) -> float:
    """Naive: one rack flat out (top mode or top cap), capped at its own limit."""
    if "miners" in rack:
        modes = data["miner_models"][rack["miners"]["model"]]["modes"].values()
        top = rack["idle_kw"] + rack["miners"]["count"] * max(m["kw"] for m in modes)
    else:
        model = data["gpu_models"][rack["gpus"]["model"]]
        top = rack["idle_kw"] + rack["gpus"]["count"] * (model["cap_levels"][-1]["cap_w"] + model["host_w"]) / 1000
    return min(top, rack["limit_kw"])


def _loop_cap_kw(loop: dict, ambient_c: float) -> float:
    return loop["capacity_kw"] * min(1.0, max(0.0, 1 - loop["derate_per_c"] * (ambient_c - loop["design_ambient_c"])))


@pytest.fixture(scope="module")
def generated() -> dict:
    return {(s, r, seed): generate_scenario(s, r, seed) for s, r in SIZES for seed in SEEDS}


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_generated_scenarios_validate_with_exact_sizes(generated, size):
    for seed in SEEDS:
        data = generated[(*size, seed)]
        sc = parse_scenario(data)
        assert len(sc.sites) == size[0]
        assert [len(s.racks) for s in sc.sites] == [size[1]] * size[0]
        p = compile_problem(sc)
        assert p.n_racks == size[0] * size[1]
        assert len(p.job_ids) >= 1 and len(p.svc_ids) >= 1 and len(p.domain_ids) >= 1


@pytest.mark.parametrize("size", [(1, 1), (1, 2), (1, 5), (1, 11), (3, 13)], ids=str)
def test_tiny_sizes_still_validate(size):
    sc = parse_scenario(generate_scenario(*size, seed=3))
    assert [len(s.racks) for s in sc.sites] == [size[1]] * size[0]


def test_fleet_scale_validates():
    data = generate_scenario(50, 400, seed=0)
    sc = parse_scenario(data)
    assert len(sc.sites) == 50 and all(len(s.racks) == 400 for s in sc.sites)
    assert compile_problem(sc).n_racks == 20_000


def test_same_seed_same_scenario_and_different_seeds_differ():
    a, b = generate_scenario(2, 200, 5), generate_scenario(2, 200, 5)
    assert a == b
    assert scenario_text(a) == scenario_text(b)
    assert generate_scenario(2, 200, 6) != a
    assert generate_scenario(1, 40, 0) != generate_scenario(1, 40, 1)


def test_limits_bind(generated):
    """Feeds, loops and the grid are set below what their racks could draw flat out."""
    binding_feeds = binding_loops = 0
    for data in generated.values():
        for site in data["sites"]:
            by_feed, by_loop = defaultdict(float), defaultdict(float)
            total = site["base_kw"]
            kwph = {lp["id"]: lp["kw_per_kw_heat"] for lp in site["loops"]}
            for r in site["racks"]:
                kw = _top_kw(data, r)
                by_feed[r["feed"]] += kw
                by_loop[r["loop"]] += kw
                total += kw * (1 + kwph[r["loop"]])
            binding_feeds += sum(f["limit_kw"] < by_feed[f["id"]] for f in site["feeds"])
            binding_loops += sum(_loop_cap_kw(lp, site["ambient_c"]) < by_loop[lp["id"]] for lp in site["loops"])
            assert site["grid_limit_kw"] < total, site["id"]
    assert binding_feeds >= len(generated) and binding_loops >= len(generated)


def test_nothing_running_is_feasible(generated):
    """No required jobs and idle loads within every limit: the empty plan is always valid."""
    for data in generated.values():
        sc = parse_scenario(data)
        assert not any(j.required for j in sc.training)
        p = compile_problem(sc)
        assert violations(p, evaluate(p, Assignment.empty(p))) == []


def test_racks_are_identical_within_halls_and_domains(generated):
    for data in generated.values():
        domains = defaultdict(set)
        for site in data["sites"]:
            for r in site["racks"]:
                if "domain" in r:
                    domains[r["domain"]].add((r["gpus"]["model"], r["gpus"]["count"], r["limit_kw"], r["feed"], r["loop"]))
        assert all(len(v) == 1 for v in domains.values())


def test_jobs_and_services_are_realistic(generated):
    for (sites, racks, _), data in generated.items():
        sc = parse_scenario(data)
        domain_gpus = compile_problem(sc).domain_gpus
        assert all(j.gpus % 8 == 0 and 8 <= j.gpus <= 512 for j in sc.training)
        # jobs ask for more GPUs than the domains hold, so they compete
        assert sum(j.gpus for j in sc.training) > domain_gpus.sum()
        assert all(len(m.cap_levels) in (3, 4) for m in sc.gpu_models.values())
        assert all(2 <= len(m.modes) <= 3 for m in sc.miner_models.values())
        assert all(s.demand_rps > 0 for s in sc.inference)
        if sites > 1:
            assert all(j.sites for j in sc.training)
    big = parse_scenario(generated[(4, 400, 0)])
    assert any(j.running for j in big.training) and any(s.running for s in big.inference)


def test_ids_are_site_prefixed(generated):
    data = generated[(2, 200, 0)]
    for n, site in enumerate(data["sites"]):
        prefix = f"s{n}-"
        assert all(r["id"].startswith(prefix) for r in site["racks"])
        assert all(f["id"].startswith(prefix) for f in site["feeds"])
        assert all(lp["id"].startswith(prefix) for lp in site["loops"])


def test_write_yaml_and_json_round_trip(tmp_path):
    data = generate_scenario(1, 40, 2)
    for name in ("g.yaml", "g.json"):
        path = tmp_path / name
        write_scenario(data, path)
        assert load_scenario(path) == parse_scenario(data)
    assert json.loads((tmp_path / "g.json").read_text()) == data
    assert yaml.safe_load((tmp_path / "g.yaml").read_text()) == data


@pytest.mark.parametrize("bad", [(0, 40, 0), (1, 0, 0), (1, 40, -1), (1.5, 40, 0), (True, 40, 0)])
def test_bad_arguments_are_one_clear_error(bad):
    with pytest.raises(ValueError) as err:
        generate_scenario(*bad)
    assert len(str(err.value).splitlines()) == 1
    assert str(err.value).split(":")[0] in ("sites", "racks_per_site", "seed")


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_cli_writes_a_file_or_stdout(tmp_path, capsys):
    out = tmp_path / "s.yaml"
    assert run(_args("--sites", "2", "--racks-per-site", "30", "--seed", "4", "-o", str(out))) == 0
    assert load_scenario(out).name == "generated-2x30-seed4"
    assert run(_args("--racks-per-site", "20")) == 0
    assert parse_scenario(yaml.safe_load(capsys.readouterr().out)).name == "generated-1x20-seed0"


def test_cli_bad_option_names_the_flag(tmp_path):
    with pytest.raises(ScenarioError) as err:
        run(_args("--sites", "0"))
    assert err.value.problems == ["--sites: must be an integer >= 1 (got 0)"]
    with pytest.raises(ScenarioError) as err:
        run(_args("-o", str(tmp_path / "no-such-dir" / "x.yaml")))
    assert len(err.value.problems) == 1 and "cannot be written" in err.value.problems[0]
