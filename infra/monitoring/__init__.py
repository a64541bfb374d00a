"""Observability: probe history and uptime, the `/metrics` exporter, alerting rules, dashboards, cross-repo metrics.

* :mod:`infra.monitoring.probes` stores every health probe in ``ws.health_probes`` of the environment's ledger
  database, with retention;
* :mod:`infra.monitoring.uptime` turns the stored probes into uptime, error budget and incidents;
* :mod:`infra.monitoring.exporter` probes on an interval and serves ``/metrics`` (`ws monitor`);
* :mod:`infra.monitoring.rules` and :mod:`infra.monitoring.grafana` generate the Prometheus rules (with their
  ``promtool test rules`` tests) and the Grafana dashboard; :mod:`infra.monitoring.workflow` the scheduled
  health workflow;
* :mod:`infra.monitoring.page` renders the self-contained HTML page of `ws dashboard`;
* :mod:`infra.monitoring.pushgateway` runs a local Prometheus Pushgateway for `ws up`.
"""
