"""What an operator reads of a horizon plan: a per-period CSV of site power by component (GPUs,
miners, cooling, base) with price, limit and profit; a PNG chart of the stacked site power
against the grid limit with the price on a second axis; and a short text summary (profit, gap,
energy per day, when miners shed, when training runs)."""
from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .assignment import evaluate
from .horizon_core import Horizon, PeriodFigures
from .problem import GPU, MINER

CSV_COLUMNS = ("period", "start_h", "hours", "site", "gpus_kw", "miners_kw", "cooling_kw", "base_kw",
               "site_kw", "grid_limit_kw", "price_usd_per_mwh", "hashrate_th_s", "training_gpus_busy",
               "profit_usd")


@dataclass(frozen=True)
class PeriodRow:
    period: int
    start_h: float
    hours: float
    site: str
    gpus_kw: float          # GPU racks (idle and busy GPUs, hosts, rack idle)
    miners_kw: float        # miner racks
    cooling_kw: float
    base_kw: float          # the site's always-on base
    site_kw: float
    grid_limit_kw: float
    price_usd_per_mwh: float
    hashrate_th_s: float
    training_gpus_busy: int
    profit_usd: float       # the period's objective (all sites)


def period_rows(h: Horizon, periods: list[PeriodFigures]) -> list[PeriodRow]:
    rows = []
    for p, pf in enumerate(periods):
        prob, a = pf.problem, pf.assignment
        f = evaluate(prob, a)
        train = np.zeros(len(prob.site_ids), dtype=np.int64)
        for j in range(len(a.job_level)):
            if a.job_level[j] >= 0:
                for k, n in a.job_place[j].items():
                    train[prob.rack_site[k]] += n
        for s, sid in enumerate(prob.site_ids):
            at = prob.rack_site == s
            rows.append(PeriodRow(
                period=p, start_h=float(h.start_h[p]), hours=float(h.hours[p]), site=sid,
                gpus_kw=float(f.rack_kw[at & (prob.rack_kind == GPU)].sum()),
                miners_kw=float(f.rack_kw[at & (prob.rack_kind == MINER)].sum()),
                cooling_kw=float(f.site_cooling_kw[s]), base_kw=float(prob.site_base_kw[s]),
                site_kw=float(f.site_kw[s]), grid_limit_kw=float(prob.site_grid_limit_kw[s]),
                price_usd_per_mwh=float(prob.site_price_usd_per_mwh[s]), hashrate_th_s=float(f.site_th_s[s]),
                training_gpus_busy=int(train[s]), profit_usd=float(pf.objective_usd)))
    return rows


def write_csv(path: str | Path, rows: list[PeriodRow]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, lineterminator="\n")
        w.writeheader()
        for r in rows:
            d = asdict(r)
            w.writerow({k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in d.items()})


def write_chart(path: str | Path, rows: list[PeriodRow], title: str = "") -> None:
    """Stacked site power (base, cooling, miners, GPUs) per site against the grid limit, with
    the energy price on a second axis."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sites = list(dict.fromkeys(r.site for r in rows))
    fig, axes = plt.subplots(len(sites), 1, figsize=(12, 4.2 * len(sites)), squeeze=False)
    for ax, sid in zip(axes[:, 0], sites):
        rs = [r for r in rows if r.site == sid]
        t = np.array([r.start_h for r in rs] + [rs[-1].start_h + rs[-1].hours])

        def step(vals):
            return np.array(list(vals) + [list(vals)[-1]]) / 1000.0

        layers = [("base", [r.base_kw for r in rs], "#9e9e9e"), ("cooling", [r.cooling_kw for r in rs], "#64b5f6"),
                  ("miners", [r.miners_kw for r in rs], "#ffb74d"), ("GPUs", [r.gpus_kw for r in rs], "#7e57c2")]
        ax.stackplot(t, *[step(v) for _, v, _ in layers], labels=[n for n, _, _ in layers],
                     colors=[c for _, _, c in layers], step="post", alpha=0.9)
        ax.step(t, step([r.grid_limit_kw for r in rs]), where="post", color="black", lw=1.5, label="grid limit")
        ax.set_xlim(t[0], t[-1])
        ax.set_ylabel(f"{sid}: site power (MW)")
        ax.set_xlabel("hours from the start of the horizon")
        ax2 = ax.twinx()
        ax2.step(t, np.array([r.price_usd_per_mwh for r in rs] + [rs[-1].price_usd_per_mwh]), where="post",
                 color="#d32f2f", lw=1.0, label="energy price")
        ax2.set_ylabel("energy price (USD/MWh)", color="#d32f2f")
        prices = [r.price_usd_per_mwh for r in rs]
        if max(prices) > 20 * max(1.0, float(np.median(np.abs(prices)))) and min(prices) > 0:
            ax2.set_yscale("log")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=8, ncol=6,
                  frameon=False)
    if title:
        axes[0, 0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _spans(flags: list[bool], starts: list[float], ends: list[float]) -> list[tuple[float, float]]:
    out, a = [], None
    for n, f in enumerate(flags):
        if f and a is None:
            a = starts[n]
        if a is not None and (not f or n == len(flags) - 1):
            out.append((a, ends[n] if f else starts[n]))
            a = None
    return out


def summary_lines(h: Horizon, rows: list[PeriodRow], objective_usd: float, solver: dict,
                  baselines: Optional[list] = None, training: Optional[list[dict]] = None) -> list[str]:
    """Readable lines: profit, gap, energy per day, miner shedding and training spans."""
    gap = solver.get("gap")
    gap_txt = f", gap {gap * 100:.2f}%" if isinstance(gap, (int, float)) else ""
    out = [f"{h.scenario.name or 'scenario'}: {h.n_periods} periods over {h.end_h:g} h, "
           f"profit ${objective_usd:,.2f} ({solver.get('method')}, {solver.get('status')}{gap_txt}, "
           f"{solver.get('seconds', 0):.1f} s)"]
    for sid in dict.fromkeys(r.site for r in rows):
        rs = [r for r in rows if r.site == sid]
        starts = [r.start_h for r in rs]
        ends = [r.start_h + r.hours for r in rs]
        days = int(np.ceil(h.end_h / 24.0 - 1e-9))
        energy = []
        for d in range(days):
            mwh = sum(r.site_kw * r.hours / 1000.0 for r in rs if d * 24 <= r.start_h < (d + 1) * 24)
            energy.append(f"day {d + 1} {mwh:,.1f} MWh")
        out.append(f"  {sid}: energy {', '.join(energy)}; peak {max(r.site_kw for r in rs):,.0f} kW")
        top = max(r.miners_kw for r in rs)
        if top > 0:
            shed = _spans([r.miners_kw < 0.5 * top for r in rs], starts, ends)
            if shed:
                txt = ", ".join(f"{a:g}-{b:g} h" for a, b in shed[:8]) + (" ..." if len(shed) > 8 else "")
                out.append(f"  {sid}: miners shed below half their peak during {txt}")
            else:
                out.append(f"  {sid}: miners never shed below half their peak")
    busy = [r.training_gpus_busy for r in rows if r.site == rows[0].site] if rows else []
    if busy and max(busy) > 0:
        starts = [r.start_h for r in rows if r.site == rows[0].site]
        ends = [r.start_h + r.hours for r in rows if r.site == rows[0].site]
        low = _spans([b < 0.5 * max(busy) for b in busy], starts, ends)
        if low:
            txt = ", ".join(f"{a:g}-{b:g} h" for a, b in low[:8]) + (" ..." if len(low) > 8 else "")
            out.append(f"  training runs below half its peak GPUs during {txt}")
    for e in training or []:
        j = h.problems[0].job_ids.index(e["id"])
        if np.isnan(h.remaining_gpu_h[j]):
            continue
        done = "not finished" if e["completed_h"] is None else f"done at {e['completed_h']:.2f} h"
        late = f", {e['late_h']:.2f} h late" if e["late_h"] > 0 else ""
        out.append(f"  job {e['id']}: {e['work_done_gpu_h']:,.0f} of {h.remaining_gpu_h[j]:,.0f} GPU-h, {done}{late}")
    if baselines:
        for b in baselines:
            diff = (objective_usd - b.objective_usd) / max(1.0, abs(b.objective_usd)) * 100.0
            ramp = f", {b.ramp_breaks} ramp breaks" if b.ramp_breaks else ""
            out.append(f"  baseline {b.name}: ${b.objective_usd:,.2f} (wattsched {diff:+.2f}%{ramp}; {b.note})")
    return out
