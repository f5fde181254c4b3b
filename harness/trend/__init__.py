"""Trends over time: a named series of runs, each target's figures run by run, and a flag on a run that
differs from the series' recent history (the tests of ``harness compare``). See ``docs/trend.md``."""

from harness.trend.build import TREND_SCHEMA_VERSION, Trend, TrendPoint, build_trend
from harness.trend.series import Measurement, SeriesRun, known_series, measurement_of, series_of, series_runs

__all__ = ["TREND_SCHEMA_VERSION", "Measurement", "SeriesRun", "Trend", "TrendPoint", "build_trend", "known_series",
           "measurement_of", "series_of", "series_runs"]
