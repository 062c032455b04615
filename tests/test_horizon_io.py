"""CSV time series for horizon planning: good files become periods; bad ones give exact
one-line errors (missing periods, overlaps, non-numbers, unknown ids, off-grid times)."""
from __future__ import annotations

import pytest
from test_horizon_cases import tiny

from scheduler.horizon_io import read_series, with_series
from scheduler.model import ScenarioError


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def errors(fn):
    with pytest.raises(ScenarioError) as e:
        fn()
    return e.value.problems


def test_prices_demand_weather_limits_become_periods(tmp_path):
    sc = tiny([40, 40])
    sc = sc.model_copy(update={"periods": None})
    prices = write(tmp_path, "prices.csv", "start_h,wa,hashprice_usd_per_ph_day\n0,31.5,47\n0.25,-5,47.5\n")
    weather = write(tmp_path, "weather.csv", "timestamp,wa\n2024-08-19 00:00:00,30\n2024-08-19 00:15:00,33.5\n")
    limits = write(tmp_path, "limits.csv", "start_h,wa\n0,100\n0.25,14\n")
    out = with_series(sc, prices=prices, weather=weather, limits=limits, periods=2, period_h=0.25)
    assert [p.hours for p in out.periods] == [0.25, 0.25]
    assert out.periods[1].energy_price_usd_per_mwh == {"wa": -5.0}
    assert out.periods[1].ambient_c == {"wa": 33.5}
    assert out.periods[1].grid_limit_kw == {"wa": 14.0}
    assert out.periods[0].hashprice_usd_per_ph_day == 47.0


def test_rows_past_the_horizon_are_ignored_and_order_does_not_matter(tmp_path):
    path = write(tmp_path, "prices.csv", "start_h,wa\n0.5,3\n0,1\n0.25,2\n0.75,4\n")
    assert read_series(path, "prices", ["wa"], 3, 0.25) == {"wa": [1.0, 2.0, 3.0]}


def test_demand_overrides_the_scenario_periods(tmp_path):
    sc = tiny([40, 50])
    path = write(tmp_path, "prices.csv", "start_h,wa\n0,7\n1,8\n")
    out = with_series(sc, prices=path)
    assert [p.energy_price_usd_per_mwh["wa"] for p in out.periods] == [7.0, 8.0]


def test_missing_periods(tmp_path):
    rows = "".join(f"{p * 0.25},{p}\n" for p in range(96) if not 37 <= p <= 40)
    path = write(tmp_path, "prices.csv", "start_h,wa\n" + rows)
    assert errors(lambda: read_series(path, "prices", ["wa"], 96, 0.25)) == [
        "prices.csv: periods 37-40 missing (need 96 rows of 0.25 h)"]


def test_not_a_number(tmp_path):
    rows = "".join(f"{p * 0.25},{'abc' if p == 12 else p}\n" for p in range(16))
    path = write(tmp_path, "prices.csv", "start_h,wa\n" + rows)
    assert errors(lambda: read_series(path, "prices", ["wa"], 16, 0.25)) == [
        "prices.csv line 14: 'abc' is not a number (column wa)"]


def test_unknown_site_and_service(tmp_path):
    path = write(tmp_path, "prices.csv", "start_h,wa,tx\n0,1,2\n")
    assert errors(lambda: read_series(path, "prices", ["wa"], 1, 1.0)) == ["prices.csv: unknown site 'tx' (column 3)"]
    path = write(tmp_path, "demand.csv", "start_h,chat\n0,1\n")
    assert errors(lambda: read_series(path, "demand", ["code"], 1, 1.0)) == [
        "demand.csv: unknown service 'chat' (column 2)"]


def test_overlap_off_grid_negative_and_bad_timestamp(tmp_path):
    path = write(tmp_path, "prices.csv", "start_h,wa\n0,1\n0,2\n0.3,3\n")
    assert errors(lambda: read_series(path, "prices", ["wa"], 2, 0.25)) == [
        "prices.csv line 3: period 0 (start 0 h) overlaps line 2",
        "prices.csv line 4: start 0.3 h is not on the 0.25 h period grid"]
    path = write(tmp_path, "prices.csv", "start_h,wa\n0,1\n")
    assert errors(lambda: read_series(path, "prices", ["wa"], 2, 0.25)) == [
        "prices.csv: period 1 missing (need 2 rows of 0.25 h)"]
    path = write(tmp_path, "demand.csv", "start_h,chat\n0,-4\n")
    assert errors(lambda: read_series(path, "demand", ["chat"], 1, 1.0)) == [
        "demand.csv line 2: -4 is negative (column chat)"]
    path = write(tmp_path, "weather.csv", "timestamp,wa\nyesterday,20\n")
    assert errors(lambda: read_series(path, "weather", ["wa"], 1, 1.0)) == [
        "weather.csv line 2: 'yesterday' is not an ISO timestamp (column timestamp)"]


def test_header_and_file_problems(tmp_path):
    path = write(tmp_path, "prices.csv", "hour,wa\n0,1\n")
    assert errors(lambda: read_series(path, "prices", ["wa"], 1, 1.0)) == [
        "prices.csv: the first column must be 'start_h' or 'timestamp' (got 'hour')"]
    assert errors(lambda: read_series(tmp_path / "nope.csv", "prices", ["wa"], 1, 1.0))[0].startswith(
        "nope.csv: cannot read")
    path = write(tmp_path, "prices.csv", "start_h,wa\n0,1,2\n")
    assert errors(lambda: read_series(path, "prices", ["wa"], 1, 1.0)) == [
        "prices.csv line 2: 3 fields, the header has 2"]


def test_period_count_must_match_the_scenario(tmp_path):
    sc = tiny([40, 50])
    path = write(tmp_path, "prices.csv", "start_h,wa\n0,7\n1,8\n2,9\n")
    assert errors(lambda: with_series(sc, prices=path, periods=3)) == [
        "--periods: 3, but the scenario has 2 periods"]


def test_many_problems_are_capped(tmp_path):
    rows = "".join(f"{p},x\n" for p in range(30))
    path = write(tmp_path, "prices.csv", "start_h,wa\n" + rows)
    errs = errors(lambda: read_series(path, "prices", ["wa"], 30, 1.0))
    assert len(errs) == 9 and errs[-1] == "prices.csv: 22 more problems"
