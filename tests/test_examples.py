"""The example sites load, compile, and keep the promises their comments make."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from scheduler.assignment import Assignment, evaluate, violations
from scheduler.model.load import load_scenario
from scheduler.problem import compile_problem

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FILES = sorted(EXAMPLES.glob("*.yaml"))


def _top_rack_kw(sc, rack) -> float:
    """Naive: a rack at its highest draw (top miner mode / top GPU cap), ignoring its limit."""
    if rack.miners is not None:
        top = max(m.kw for m in sc.miner_models[rack.miners.model].modes.values())
        return rack.idle_kw + rack.miners.count * top
    model = sc.gpu_models[rack.gpus.model]
    return rack.idle_kw + rack.gpus.count * (model.cap_levels[-1].cap_w + model.host_w) / 1000.0


def _capped_rack_kw(sc, rack) -> float:
    return min(rack.limit_kw, _top_rack_kw(sc, rack))


def _nameplate_kw(sc, site) -> float:
    """Everything at full power (capped at rack limits), with cooling and base load."""
    kwph = {lp.id: lp.kw_per_kw_heat for lp in site.loops}
    return site.base_kw + sum(_capped_rack_kw(sc, r) * (1 + kwph[r.loop]) for r in site.racks)


def _domain_gpus(sc) -> dict[str, tuple[str, str, int]]:
    """domain -> (site, GPU model, GPUs)."""
    out: dict[str, tuple[str, str, int]] = {}
    for site in sc.sites:
        for r in site.racks:
            if r.domain is not None:
                _, model, n = out.get(r.domain, (site.id, r.gpus.model, 0))
                out[r.domain] = (site.id, model, n + r.gpus.count)
    return out


def test_there_are_examples():
    names = {f.stem for f in FILES}
    assert {"wa-18mw", "small", "fleet-2site"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_example_loads_and_compiles(path):
    sc = load_scenario(path)
    assert sc.name == path.stem                       # an explicit name, equal to the file's
    assert path.read_text(encoding="utf-8").startswith("#")  # a comment header explains the site
    p = compile_problem(sc)
    assert p.n_racks == sum(len(s.racks) for s in sc.sites)
    assert len(p.job_ids) >= 1 and len(p.svc_ids) >= 1


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_example_running_placements_are_valid(path):
    sc = load_scenario(path)
    racks = {r.id: (s.id, r) for s in sc.sites for r in s.racks}
    used: Counter[str] = Counter()
    for job in sc.training:
        if not job.running:
            continue
        assert sum(job.running.values()) == job.gpus, job.id
        assert len({racks[k][1].domain for k in job.running}) == 1, job.id
        assert all(racks[k][1].domain is not None for k in job.running), job.id
        for k, n in job.running.items():
            assert racks[k][1].gpus.model in job.value_per_gpu_h
            assert job.sites is None or racks[k][0] in job.sites
            used[k] += n
    for svc in sc.inference:
        for k, n in (svc.running or {}).items():
            assert racks[k][1].gpus.model in svc.replica_rps
            assert svc.sites is None or racks[k][0] in svc.sites
            used[k] += n * svc.gpus_per_replica
    for k, n in used.items():
        assert n <= racks[k][1].gpus.count, k


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_example_grid_binds_but_idle_site_fits(path):
    """Every example site is grid-limited, yet the site with nothing running is within all limits."""
    sc = load_scenario(path)
    for site in sc.sites:
        assert _nameplate_kw(sc, site) > site.grid_limit_kw, site.id
    p = compile_problem(sc)
    assert violations(p, evaluate(p, Assignment.empty(p))) == []


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_example_jobs_compete_and_required_jobs_fit(path):
    sc = load_scenario(path)
    domains = _domain_gpus(sc)
    assert sum(j.gpus for j in sc.training) > sum(n for _, _, n in domains.values())
    for job in sc.training:
        if job.required:
            assert any(n >= job.gpus and model in job.value_per_gpu_h and (job.sites is None or s in job.sites)
                       for s, model, n in domains.values()), job.id


def test_wa_18mw_is_the_promised_site():
    sc = load_scenario(EXAMPLES / "wa-18mw.yaml")
    (site,) = sc.sites
    assert site.grid_limit_kw == 18000
    assert site.grid_limit_kw < sum(r.limit_kw for r in site.racks) + site.base_kw
    assert 19000 < _nameplate_kw(sc, site) < 20500
    assert 150 <= len(site.racks) <= 350
    assert 2 <= len(site.feeds) <= 4 and 2 <= len(site.loops) <= 4
    assert {lp.kind for lp in site.loops} == {"air", "liquid"}
    assert 30 <= site.energy_price_usd_per_mwh <= 40 and 18 <= site.ambient_c <= 22
    assert 40 <= sc.hashprice_usd_per_ph_day <= 50
    assert 6 <= len(sc.training) <= 10 and 3 <= len(sc.inference) <= 6
    assert sum(j.required for j in sc.training) == 1
    assert all(32 <= j.gpus <= 512 for j in sc.training)
    assert {"H100-SXM", "H200-SXM", "B200", "L40S"} <= set(sc.gpu_models)
    for model in sc.miner_models.values():
        assert len(model.modes) >= 2
    kinds = {(r.miners.model if r.miners else r.gpus.model) for r in site.racks}
    assert {"S21Hydro", "S19jPro"} <= kinds
    # training only on domain racks, identical racks within a domain
    for d, (_, _, n) in _domain_gpus(sc).items():
        racks = [r for r in site.racks if r.domain == d]
        assert 4 <= len(racks) <= 16
        assert len({(r.gpus.model, r.gpus.count, r.limit_kw, r.feed, r.loop) for r in racks}) == 1


def test_small_is_small():
    sc = load_scenario(EXAMPLES / "small.yaml")
    (site,) = sc.sites
    assert 8 <= len(site.racks) <= 12
    assert len(site.feeds) == 2 and len(site.loops) == 2
    assert 2 <= len(sc.training) <= 3 and 1 <= len(sc.inference) <= 2


def test_fleet_has_two_sites_with_pinned_and_free_work():
    sc = load_scenario(EXAMPLES / "fleet-2site.yaml")
    assert len(sc.sites) == 2
    wa, tx = sc.sites
    assert tx.ambient_c > wa.ambient_c and tx.energy_price_usd_per_mwh > wa.energy_price_usd_per_mwh
    assert any(j.sites is not None and len(j.sites) == 1 for j in sc.training)
    assert any(j.sites is None for j in sc.training)
    ids = [r.id for s in sc.sites for r in s.racks]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("name", ["small", "fleet-2site"])
def test_example_solves_with_the_milp(name):
    from scheduler.solve import SolveOptions, solve
    p = compile_problem(load_scenario(EXAMPLES / f"{name}.yaml"))
    result = solve(p, "milp", SolveOptions(time_limit_s=60))
    assert result.status in ("optimal", "feasible")
    assert violations(p, evaluate(p, result.assignment)) == []
