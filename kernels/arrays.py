"""The array forms the kernels share: `ProblemArrays` (a read-only numeric problem) and
`PlanState` (one plan's decisions plus the power figures they imply), with allocation helpers.

numpy only. Index conventions: GPU racks have kind 0, miner racks kind 1; a training job's
GPUs are stored per position within its domain's rack list; inference replicas are stored as
a flat list of groups (service, rack, level, replicas) where groups may repeat or be empty.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import config, njit, types
from numba.experimental import structref

GPU_KIND, MINER_KIND = 0, 1

PROBLEM_FIELDS = (
    "interval_h", "usd_per_th_h",
    "site_lim_kw", "site_price_usd_per_mwh", "site_base_kw",
    "feed_lim_kw", "feed_site", "loop_cap_kw", "loop_site",
    "gpu_nlev", "gpu_perf", "gpu_busy_kw",
    "mm_nmodes", "mm_th_s", "mm_kw",
    "rack_site", "rack_feed", "rack_loop", "rack_kind", "rack_lim_kw", "rack_base_kw",
    "rack_model", "rack_count", "rack_domain", "rack_dpos", "rack_fac",
    "dom_site", "dom_model", "dom_gpus", "dom_ptr", "dom_racks",
    "job_gpus", "job_val", "job_minlev", "job_req", "job_site_ok", "job_move_usd",
    "job_run_dom", "job_run_n",
    "svc_gpr", "svc_rps", "svc_minlev", "svc_demand_rps", "svc_val", "svc_pen", "svc_site_ok",
    "svc_move_usd", "svc_run_ptr", "svc_run_rack", "svc_run_reps",
    "model_rack_ptr", "model_racks", "site_rack_ptr", "site_racks", "site_dom_ptr", "site_doms",
)
_ProblemTuple = namedtuple("ProblemArrays", PROBLEM_FIELDS)
_PROBLEM_DOC = """Read-only problem. `job_val[j,g]` is -1 where model g is not allowed; `job_run_n[j,r]` are the
running GPUs at position r of domain `job_run_dom[j]`; `model_racks` lists each GPU model's racks
in the order inference fills them; `site_racks` / `site_doms` list each site's racks / domains."""

STATE_FIELDS = (
    "job_dom", "job_lvl", "job_n",
    "g_svc", "g_rack", "g_lvl", "g_n", "ng",
    "miners",
    "rack_busy", "rack_kw", "feed_kw", "loop_kw", "site_kw", "svc_cap_rps", "dom_free",
)
_StateTuple = namedtuple("PlanState", STATE_FIELDS)
_PLAN_DOC = """A plan: decisions (job_dom/job_lvl/job_n, groups g_*, first ng[0] used; miners[K,Q]) and the
figures kept in step with them (rack/feed/loop kW, site kW incl. base and cooling, service
capacity in rps, free GPUs per domain)."""



# Kernels receive a StructRef (one pointer) rather than the tuple: Numba passes tuples by value,
# so every call of a helper would copy ~60 array structs. Under NUMBA_DISABLE_JIT the tuple
# itself is used. The constructors take the arrays as separate arguments in field order (a
# namedtuple argument's type does not make a stable on-disk cache key; a plain tuple's does).
@structref.register
class ProblemRefType(types.StructRef):
    def preprocess_fields(self, fields):
        return tuple((n, types.unliteral(t)) for n, t in fields)


@structref.register
class StateRefType(types.StructRef):
    def preprocess_fields(self, fields):
        return tuple((n, types.unliteral(t)) for n, t in fields)


class ProblemRef(structref.StructRefProxy):
    pass


class StateRef(structref.StructRefProxy):
    pass


structref.define_proxy(ProblemRef, ProblemRefType, list(PROBLEM_FIELDS))
structref.define_proxy(StateRef, StateRefType, list(STATE_FIELDS))


@njit(cache=True)
def _problem_ref(*fields):
    return ProblemRef(*fields)


@njit(cache=True)
def _state_ref(*fields):
    return StateRef(*fields)


class _WithRef:
    """`ref` is what kernels take: a StructRef sharing the tuple's arrays (the tuple itself
    without JIT), made once by the subclass's `_make_ref`."""

    @property
    def ref(self):
        r = self.__dict__.get("_ref")
        if r is None:
            r = self if config.DISABLE_JIT else type(self)._make_ref(*self)
            self.__dict__["_ref"] = r
        return r


class ProblemArrays(_WithRef, _ProblemTuple):
    __doc__ = _PROBLEM_DOC
    _make_ref = staticmethod(_problem_ref)


class PlanState(_WithRef, _StateTuple):
    __doc__ = _PLAN_DOC
    _make_ref = staticmethod(_state_ref)


def group_capacity(pa: ProblemArrays) -> int:
    """Upper bound on the groups a plan needs: each holds at least one GPU, plus room to split."""
    gpu = pa.rack_kind == GPU_KIND
    return int(pa.rack_count[gpu].sum()) * 2 + 64


def alloc_state(pa: ProblemArrays) -> PlanState:
    J, R = pa.job_run_n.shape
    K, Q = len(pa.rack_kind), pa.mm_kw.shape[1]
    N = group_capacity(pa)
    i8 = np.int64
    return PlanState(
        job_dom=np.full(J, -1, i8), job_lvl=np.full(J, -1, i8), job_n=np.zeros((J, R), i8),
        g_svc=np.zeros(N, i8), g_rack=np.zeros(N, i8), g_lvl=np.zeros(N, i8), g_n=np.zeros(N, i8),
        ng=np.zeros(1, i8), miners=np.zeros((K, Q), i8),
        rack_busy=np.zeros(K, i8), rack_kw=np.zeros(K), feed_kw=np.zeros(len(pa.feed_lim_kw)),
        loop_kw=np.zeros(len(pa.loop_cap_kw)), site_kw=np.zeros(len(pa.site_lim_kw)),
        svc_cap_rps=np.zeros(len(pa.svc_gpr)), dom_free=np.zeros(len(pa.dom_gpus), i8))


def copy_state(st: PlanState) -> PlanState:
    return PlanState(*(x.copy() for x in st))
