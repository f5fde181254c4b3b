"""Latency, TTFB, reliability and cost statistics with honest uncertainty.

* :mod:`harness.stats.intervals` – percentiles, order-statistic quantile intervals, Wilson, Newcombe;
* :mod:`harness.stats.bootstrap` – seeded percentile-bootstrap replicates;
* :mod:`harness.stats.requests` – attempts collapsed to the logical requests every column is computed from;
* :mod:`harness.stats.table` – the provider table (``harness stats``, ``harness run``, the report);
* :mod:`harness.stats.twosample` – baseline-vs-candidate comparisons used by the regression gate;
* :mod:`harness.stats.source` – what a run's configuration adds (its effective timeout) and a stored run's table;
* :mod:`harness.stats.fidelity` – how faithfully a sandbox run kept to its profiles (measured − intended);
* :mod:`harness.stats.goodput` – the share of requests that succeeded within an objective (``--slo``);
* :mod:`harness.stats.bymodel` – one model, every provider: ranks and the differences the data support;
* :mod:`harness.stats.pairwise` – Holm's correction, Newcombe p-values and ratio bootstraps for those pairs.
"""

from harness.stats.table import BY_ALIASES, STATS_COLUMNS, provider_table, resolve_by

__all__ = ["BY_ALIASES", "STATS_COLUMNS", "provider_table", "resolve_by"]
