"""Latency, TTFB, reliability and cost statistics with honest uncertainty.

* :mod:`harness.stats.intervals` – percentiles, order-statistic quantile intervals, Wilson, Newcombe;
* :mod:`harness.stats.bootstrap` – seeded percentile-bootstrap replicates;
* :mod:`harness.stats.requests` – attempts collapsed to the logical requests every column is computed from;
* :mod:`harness.stats.table` – the provider table (``harness stats``, ``harness run``, the report);
* :mod:`harness.stats.twosample` – baseline-vs-candidate comparisons used by the regression gate;
* :mod:`harness.stats.source` – what a run's configuration adds (its effective timeout).
"""

from harness.stats.table import BY_ALIASES, STATS_COLUMNS, provider_table, resolve_by

__all__ = ["BY_ALIASES", "STATS_COLUMNS", "provider_table", "resolve_by"]
