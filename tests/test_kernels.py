"""The Numba kernels against the slow references in `tests/naive.py`, under JIT and (by re-running
a subset in a subprocess) with `NUMBA_DISABLE_JIT=1`."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from numba import config

import kernels
from kernels.construct import hull
from kernels.core import headroom_kw, objective_usd, recompute, TOL_KW
from scheduler.assignment import evaluate, violations
from scheduler.generate import generate_scenario
from scheduler.heuristic import assignment_of, state_of, workspace
from scheduler.model import ScenarioError, parse_scenario
from scheduler.problem import compile_problem

from naive import brute_force, naive_figures, naive_headroom, naive_upper_hull, tiny_scenario

ROOT = Path(__file__).resolve().parents[1]
FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def generated(seed: int, sites: int = 1, racks: int = 24):
    return compile_problem(parse_scenario(generate_scenario(sites, racks, seed)))


def random_state(ws, rng: np.random.Generator):
    """Any plan, feasible or not: random jobs, levels, replicas and miner modes (GPU counts kept)."""
    pa = ws.pa
    st = kernels.construct(ws)
    for j in range(len(st.job_dom)):
        if st.job_dom[j] >= 0 and rng.random() < 0.5:
            g = pa.dom_model[st.job_dom[j]]
            st.job_lvl[j] = rng.integers(0, pa.gpu_nlev[g])
    for x in range(int(st.ng[0])):
        g = pa.rack_model[st.g_rack[x]]
        st.g_lvl[x] = rng.integers(0, pa.gpu_nlev[g])
        st.g_n[x] = rng.integers(0, st.g_n[x] + 1)
    for k in np.nonzero(pa.rack_kind == 1)[0]:
        nq = pa.mm_nmodes[pa.rack_model[k]]
        st.miners[k, :] = 0
        left = pa.rack_count[k]
        for q in range(nq):
            st.miners[k, q] = rng.integers(0, left + 1)
            left -= st.miners[k, q]
    recompute(pa.ref, st.ref)
    return st


@FAST
@given(seed=hs.integers(0, 10_000))
def test_figures_and_objective_match_naive(seed):
    p = generated(seed % 7)
    ws = workspace(p)
    st = random_state(ws, np.random.default_rng(seed))
    ref = naive_figures(ws.pa, st)
    np.testing.assert_allclose(st.rack_kw, ref["rack_kw"], rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(st.rack_busy[ws.pa.rack_kind == 0],
                                  np.array(ref["busy"])[ws.pa.rack_kind == 0])
    np.testing.assert_allclose(st.feed_kw, ref["feed_kw"], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(st.loop_kw, ref["loop_kw"], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(st.site_kw, ref["site_kw"], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(st.svc_cap_rps, ref["cap_rps"], rtol=1e-12, atol=1e-9)
    assert objective_usd(ws.pa.ref, st.ref) == pytest.approx(ref["objective_usd"], rel=1e-10, abs=1e-7)
    # and the adapter's Assignment evaluates to the same objective (the MILP's judge)
    assert evaluate(p, assignment_of(p, st)).objective_usd == pytest.approx(ref["objective_usd"], rel=1e-10, abs=1e-7)


@FAST
@given(seed=hs.integers(0, 10_000))
def test_headroom_matches_naive(seed):
    p = generated(seed % 5)
    ws = workspace(p)
    st = random_state(ws, np.random.default_rng(seed))
    for k in np.random.default_rng(seed).choice(len(ws.pa.rack_kind), 8):
        got = headroom_kw(ws.pa.ref, st.ref, k) - TOL_KW * 0.5
        assert got == pytest.approx(naive_headroom(ws.pa, st, int(k)), abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(pts=hs.lists(hs.tuples(hs.integers(1, 1000), hs.integers(-500, 2000)), min_size=1, max_size=6))
def test_hull_matches_naive(pts):
    kw = np.array([p[0] / 100 for p in pts])      # centi-kW and cents: no subnormal slopes
    net = np.array([p[1] / 100 for p in pts])
    n = len(pts)
    hf, ht, hs_ = np.zeros(n + 1, np.int64), np.zeros(n + 1, np.int64), np.zeros(n + 1)
    m = hull(kw, net, 0, n, hf, ht, hs_)
    want = naive_upper_hull(kw.tolist(), net.tolist())
    assert [kw[c] for c in ht[:m]] == pytest.approx([kw[c] for c in want])
    assert [net[c] for c in ht[:m]] == pytest.approx([net[c] for c in want])
    assert all(hs_[t] > 0 for t in range(m))
    assert all(hs_[t + 1] <= hs_[t] + 1e-9 for t in range(m - 1))   # concave: slopes fall


TINY_SEEDS = [1, 2, 3, 5, 9, 13, 14, 23, 26, 37]


@pytest.mark.parametrize("seed", TINY_SEEDS)
def test_construct_improve_never_beats_brute_force_and_is_feasible(seed):
    try:
        sc = parse_scenario(tiny_scenario(np.random.default_rng(seed)))
    except ScenarioError:
        pytest.skip("not a valid tiny scenario")
    p = compile_problem(sc)
    opt, _ = brute_force(p)
    ws = workspace(p)
    st = kernels.construct(ws)
    missing = kernels.place_required(ws, st)
    if opt == -np.inf:
        assert missing or not kernels.feasible(ws, st)
        return
    assert not missing
    kernels.improve_plan(ws, st)
    assert kernels.feasible(ws, st)
    a = assignment_of(p, st)
    f = evaluate(p, a)
    assert violations(p, f) == []
    assert f.objective_usd <= opt + 1e-6
    assert f.objective_usd >= 0.8 * opt - 1e-6 if opt > 0 else True


def test_tiny_quality_distribution():
    """On enumerable scenarios the heuristic finds the exact optimum most of the time."""
    hits = n = 0
    for seed in range(12):
        try:
            p = compile_problem(parse_scenario(tiny_scenario(np.random.default_rng(100 + seed))))
        except ScenarioError:
            continue
        opt, _ = brute_force(p)
        if opt == -np.inf:
            continue
        ws = workspace(p)
        st = kernels.construct(ws)
        if kernels.place_required(ws, st):
            continue
        kernels.improve_plan(ws, st)
        n += 1
        hits += kernels.objective(ws, st) >= opt - 1e-6
    assert n >= 8 and hits >= n // 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_repair_any_plan_to_feasible(seed):
    """Garbage in (random levels, too many replicas and miners), a feasible plan out."""
    p = generated(seed)
    ws = workspace(p)
    rng = np.random.default_rng(seed)
    st = random_state(ws, rng)
    for x in range(int(st.ng[0])):
        st.g_n[x] += rng.integers(0, 40)                   # more GPUs than racks hold
    st.miners[:, 0] += rng.integers(0, 5, len(st.miners))  # more miners than racks hold
    assert kernels.repair(ws, st)
    recompute(ws.pa.ref, st.ref)
    assert kernels.feasible(ws, st)
    assert (st.rack_busy <= ws.pa.rack_count).all()
    assert violations(p, evaluate(p, assignment_of(p, st))) == []


@pytest.mark.parametrize("cut", [0.6, 0.8, 0.95])
def test_curtail_sheds_to_new_limits_and_loses_little(cut):
    p = generated(3, racks=40)
    ws = workspace(p)
    st = kernels.construct(ws)
    kernels.improve_plan(ws, st)
    before = kernels.objective(ws, st)
    # same plan, lower grid limit: a new problem with only the limit changed
    from dataclasses import replace
    q = replace(p, site_grid_limit_kw=p.site_grid_limit_kw * cut)
    wq = workspace(q)
    start = state_of(q, wq, assignment_of(p, st))
    assert kernels.curtail(wq, start)
    assert kernels.feasible(wq, start)
    assert violations(q, evaluate(q, assignment_of(q, start))) == []
    after = kernels.objective(wq, start)
    assert after <= before + 1e-6
    # never worse than building from scratch for the cut limit by more than a few percent
    fresh = kernels.construct(wq)
    assert after >= kernels.objective(wq, fresh) - 0.05 * abs(kernels.objective(wq, fresh))


@FAST
@given(seed=hs.integers(0, 10_000))
def test_started_replicas_match_naive(seed):
    """n_started = replicas beyond what runs now on each rack (and _below_top: any replica on a
    model's racks below its top level); drop_started removes exactly those;
    svc_relevel keeps every replica on an allowed level and demand served as before or better
    (it drops only started replicas demand no longer needs)."""
    from kernels.construct import _below_top as below_top
    from kernels.improve import drop_started, n_started, svc_relevel
    p = generated(seed % 500, racks=20 + seed % 20)
    ws = workspace(p)
    pa = ws.pa
    st = random_state(ws, np.random.default_rng(seed))
    a = assignment_of(p, st)
    for i in range(len(p.svc_ids)):
        on = {}
        for (k, _), r in a.svc_place[i].items():
            on[k] = on.get(k, 0) + r
        run = p.svc_running(i)
        want = sum(max(0, n - run.get(k, 0)) for k, n in on.items())
        assert n_started(pa.ref, st.ref, i) == want
        for g in range(pa.gpu_perf.shape[0]):     # replicas below the model's top level?
            below = any(r > 0 and pa.rack_model[k] == g and lvl < pa.gpu_nlev[g] - 1
                        for (k, lvl), r in a.svc_place[i].items())
            assert below_top(pa.ref, st.ref, i, g) == below
        s2 = kernels.copy_state(st)
        drop_started(pa.ref, s2.ref, i)
        assert n_started(pa.ref, s2.ref, i) == 0
        left = {}
        for (k, _), r in assignment_of(p, s2).svc_place[i].items():
            left[k] = left.get(k, 0) + r
        assert left == {k: min(n, run.get(k, 0)) for k, n in on.items() if min(n, run.get(k, 0)) > 0}
        s3 = kernels.copy_state(st)
        svc_relevel(pa.ref, s3.ref, i, p.gpu_cap_w.shape[1] - 1)
        recompute(pa.ref, s3.ref)
        served = min(p.svc_demand_rps[i], st.svc_cap_rps[i])
        assert min(p.svc_demand_rps[i], s3.svc_cap_rps[i]) >= served - 1e-6
        for x in range(int(s3.ng[0])):
            if s3.g_svc[x] == i and s3.g_n[x] > 0:
                g = pa.rack_model[s3.g_rack[x]]
                assert pa.svc_minlev[i, g] <= s3.g_lvl[x] < pa.gpu_nlev[g]


def test_kernels_never_import_scheduler():
    for path in (ROOT / "kernels").glob("*.py"):
        text = path.read_text()
        assert "import scheduler" not in text and "from scheduler" not in text, path.name


@pytest.mark.skipif(config.DISABLE_JIT, reason="already running without JIT")
def test_same_results_without_jit():
    """Re-run the reference tests and a few solves as plain Python (NUMBA_DISABLE_JIT=1)."""
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    subset = "figures or headroom or hull or brute_force or repair_any or started_replicas"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                        str(Path(__file__)), "-k", subset, "--hypothesis-seed=0"],
                       env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    script = ("import json, sys\n"
              "from scheduler.generate import generate_scenario\n"
              "from scheduler.model import parse_scenario\n"
              "from scheduler.problem import compile_problem\n"
              "from scheduler.heuristic import solve_heuristic\n"
              "from scheduler.assignment import evaluate\n"
              "out = []\n"
              "for seed in range(3):\n"
              "    p = compile_problem(parse_scenario(generate_scenario(1, 24, seed)))\n"
              "    out.append(evaluate(p, solve_heuristic(p).assignment).objective_usd)\n"
              "print(json.dumps(out))\n")
    r = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    from scheduler.heuristic import solve_heuristic
    jit = [evaluate(p, solve_heuristic(p).assignment).objective_usd for p in map(generated, range(3))]
    import json
    assert json.loads(r.stdout) == pytest.approx(jit, rel=1e-12)
