"""Derive the wa-48h example's time series from the real public data in ../shared/data
(see examples/data/README.md for sources and licenses). Run from the repository root:

    python examples/data/derive_wa48h.py /work/shared/data
"""
import collections
import csv
import sys
from datetime import datetime, timedelta
from pathlib import Path

DATA = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
OUT = Path(__file__).parent
START = datetime(2024, 8, 19)          # ERCOT 48 h with a 4,857.82 USD/MWh real-time spike
PERIODS, PERIOD_H = 192, 0.25
DEMAND_START = datetime(2024, 11, 20)  # the busiest 48 h of the Alibaba GenAI trace
BASE_RPS = {"chat-70b": 320, "code-assist": 150, "chat-8b": 700, "embeddings": 3000, "image-gen": 45}


def ercot():
    src = DATA / "ercot-hb-south-15min" / "ercot_hb_south_15min_2024-06-01_to_2024-10-31.csv"
    rows = {r["interval_start_local"]: r for r in csv.DictReader(src.open())}
    prices, weather = [], []
    for p in range(PERIODS):
        t = START + timedelta(hours=p * PERIOD_H)
        r = rows[t.strftime("%Y-%m-%d %H:%M:%S")]
        ts = t.strftime("%Y-%m-%d %H:%M:%S")
        prices.append((ts, float(r["HB_SOUTH_RTM"])))
        weather.append((ts, float(r["temperature_S"])))
    return prices, weather


def demand(times):
    src = DATA / "alibaba-genai-2026" / "lora_request_trace_2024-11-15_to_2024-11-26.csv"
    counts = collections.Counter(r["gmt_create"][:13] for r in csv.DictReader(src.open()))
    hourly = [counts[(DEMAND_START + timedelta(hours=h)).strftime("%Y-%m-%d %H")] for h in range(48)]
    mean = sum(hourly) / len(hourly)
    # requests per hour -> a relative load shape, floored (services never go quiet) and capped
    shape = [min(2.0, max(0.3, 0.3 + 0.7 * c / mean)) for c in hourly]
    return [(ts, {s: round(b * shape[int(p * PERIOD_H)], 2) for s, b in BASE_RPS.items()})
            for p, ts in enumerate(times)]


def write(name, header, rows):
    with (OUT / name).open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


if __name__ == "__main__":
    prices, weather = ercot()
    write("wa-48h-prices.csv", ["timestamp", "wa"], [(t, f"{v:.2f}") for t, v in prices])
    write("wa-48h-weather.csv", ["timestamp", "wa"], [(t, f"{v:.2f}") for t, v in weather])
    d = demand([t for t, _ in prices])
    write("wa-48h-demand.csv", ["timestamp", *BASE_RPS], [(t, *(v[s] for s in BASE_RPS)) for t, v in d])
