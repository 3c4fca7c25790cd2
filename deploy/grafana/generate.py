#!/usr/bin/env python3
"""Writes gateway-dashboard.json, the Grafana dashboard of the gateway's
metrics: pools, sessions, throughput, errors, syncs, cluster nodes, process.

Edit the panels here and run `python3 deploy/grafana/generate.py`; the test
command checks that the JSON is this script's output and that every metric
it names is one the gateway exports (tests/tests/monitoring.rs).

Import the JSON in Grafana (Dashboards > New > Import) or provision it; pick
the Prometheus data source in the dashboard's `datasource` variable.
"""

import json
import os
import sys

DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'instance=~"$instance"'
RSEL = 'instance=~"$instance", remote=~"$remote"'

panels = []
next_id = 1
y = 0


def row(title):
    global next_id, y
    panels.append({"type": "row", "title": title, "id": next_id, "collapsed": False,
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
    next_id += 1
    y += 1


def panel(kind, title, targets, x, w, h=8, unit=None, description=None, stack=False,
          extra=None):
    global next_id
    p = {
        "type": kind,
        "title": title,
        "id": next_id,
        "datasource": DS,
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr,
             "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
        "fieldConfig": {"defaults": {"unit": unit or "short"}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom",
                               "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
    }
    if description:
        p["description"] = description
    if stack:
        p["fieldConfig"]["defaults"]["custom"] = {"stacking": {"mode": "normal"}}
    if extra:
        p.update(extra)
    panels.append(p)
    next_id += 1


def table(title, targets, x, w, description=None):
    """A table of instant queries merged on their labels."""
    panel("table", title, targets, x, w, description=description,
          extra={"transformations": [{"id": "merge", "options": {}}]})
    for t in panels[-1]["targets"]:
        t["format"] = "table"
        t["instant"] = True


def line_end(h=8):
    global y
    y += h


row("Connection pools")
panel("timeseries", "Connections in use, idle and waiting, against the cap", [
    (f"sum by (remote) (gateway_remote_connections_in_use{{{RSEL}}})", "{{remote}} in use"),
    (f"sum by (remote) (gateway_remote_connections_idle{{{RSEL}}})", "{{remote}} idle"),
    (f"sum by (remote) (gateway_remote_waiters{{{RSEL}}})", "{{remote}} waiting"),
    (f"max by (remote) (gateway_remote_connections_max{{{RSEL}}})", "{{remote}} cap"),
], 0, 12, description="Per remote, summed over the selected nodes; the cap is max_connections (in a cluster it holds across nodes). For S3 remotes, in use counts requests in flight.")
panel("timeseries", "Pool wait, 95th percentile", [
    (f"histogram_quantile(0.95, sum by (le, remote) (rate(gateway_remote_pool_wait_seconds_bucket{{{RSEL}}}[5m])))",
     "{{remote}}"),
], 12, 6, unit="s", description="How long requests that had to wait for a connection waited.")
panel("timeseries", "Requests that gave up waiting", [
    (f"sum by (remote) (increase(gateway_remote_pool_timeouts_total{{{RSEL}}}[5m]))", "{{remote}}"),
], 18, 6, description="Requests that waited pool_wait for a connection and failed as busy, per 5 minutes.")
line_end()

row("Remotes: connecting and operations")
panel("stat", "Remotes disabled (host key changed)", [
    (f"max by (remote) (gateway_remote_disabled{{{RSEL}}})", "{{remote}}"),
], 0, 6, description="1: disabled until an admin trusts the remote's new host key. Text says which, not only colour.",
      extra={"options": {"reduceOptions": {"calcs": ["lastNotNull"]}, "textMode": "value_and_name",
                         "colorMode": "background"},
             "fieldConfig": {"defaults": {"unit": "short", "mappings": [
                 {"type": "value", "options": {"0": {"text": "enabled", "color": "green"},
                                               "1": {"text": "DISABLED", "color": "red"}}}]},
                 "overrides": []}})
panel("timeseries", "Connect failures by reason", [
    (f"sum by (remote, reason) (increase(gateway_remote_connect_failures_total{{{RSEL}}}[5m])) > 0",
     "{{remote}} {{reason}}"),
    (f"sum by (remote) (increase(gateway_remote_connect_retries_total{{{RSEL}}}[5m])) > 0",
     "{{remote}} retried (closed before login)"),
], 6, 9, description="Per 5 minutes.")
panel("timeseries", "Operation latency, 95th percentile", [
    (f"histogram_quantile(0.95, sum by (le, operation) (rate(gateway_remote_operation_seconds_bucket{{{RSEL}}}[5m])))",
     "{{operation}}"),
], 15, 9, unit="s")
line_end()
panel("timeseries", "Operation errors by kind", [
    (f"sum by (remote, operation, kind) (rate(gateway_remote_operation_errors_total{{{RSEL}}}[5m])) > 0",
     "{{remote}} {{operation}} {{kind}}"),
], 0, 12, unit="ops")
panel("timeseries", "Operations per second", [
    (f"sum by (remote) (rate(gateway_remote_operation_seconds_count{{{RSEL}}}[5m]))", "{{remote}}"),
], 12, 12, unit="ops")
line_end()

row("Throughput")
panel("timeseries", "Bytes per second to and from remotes", [
    (f"sum by (remote) (rate(gateway_remote_bytes_written_total{{{RSEL}}}[1m]))", "{{remote}} written"),
    (f"-sum by (remote) (rate(gateway_remote_bytes_read_total{{{RSEL}}}[1m]))", "{{remote}} read"),
], 0, 24, unit="Bps", description="File content written to each remote (up) and read from it (down), mounts and syncs together.")
line_end()

row("Sessions")
panel("timeseries", "Sessions and connections not logged in", [
    (f"sum by (instance) (gateway_sessions{{{SEL}}})", "{{instance}} sessions"),
    (f"sum by (instance) (gateway_connections_unauthenticated{{{SEL}}})", "{{instance}} not logged in"),
], 0, 8)
panel("timeseries", "Logins by outcome", [
    (f"sum by (outcome) (rate(gateway_logins_total{{{SEL}}}[5m]))", "{{outcome}}"),
], 8, 8, unit="ops")
panel("timeseries", "Refusals and bans", [
    (f"sum by (reason) (increase(gateway_sessions_refused_total{{{SEL}}}[5m])) > 0", "{{reason}}"),
    (f"sum(increase(gateway_throttled_addresses_total{{{SEL}}}[5m]))", "addresses banned"),
    (f"sum by (status) (rate(gateway_s3_requests_total{{{SEL}}}[5m]))", "S3 endpoint {{status}}/s"),
], 16, 8)
line_end()

row("Syncs")
table("Syncs now", [
    (f"max by (sync) (gateway_sync_running{{{SEL}}})", "running"),
    (f"time() - max by (sync) (gateway_sync_last_success_timestamp_seconds{{{SEL}}})", "since last success"),
    (f"min by (sync) (gateway_sync_next_run_timestamp_seconds{{{SEL}}}) - time()", "next run in"),
], 0, 12, description="Running: 1 while a node runs it. A negative 'next run in' is overdue.")
panel("timeseries", "Sync runs by outcome", [
    (f"sum by (sync, outcome) (increase(gateway_sync_runs_total{{{SEL}}}[1h])) > 0", "{{sync}} {{outcome}}"),
], 12, 6, description="Per hour.")
panel("timeseries", "Bytes and files copied by syncs", [
    (f"sum by (sync) (rate(gateway_sync_bytes_copied_total{{{SEL}}}[5m]))", "{{sync}} bytes/s"),
    (f"sum by (sync) (increase(gateway_sync_files_failed_total{{{SEL}}}[1h])) > 0", "{{sync}} files failed per hour"),
], 18, 6, unit="Bps")
line_end()

row("Cluster and process")
table("Nodes", [
    (f"max by (instance, version) (gateway_build_info{{{SEL}}})", "build"),
    (f"max by (instance) (gateway_state_store_up{{{SEL}}})", "state store up"),
    ('up{job="gateway", ' + SEL + '}', "scraped"),
], 0, 8)
panel("timeseries", "Resident memory", [
    (f"process_resident_memory_bytes{{job=\"gateway\", {SEL}}}", "{{instance}}"),
], 8, 6, unit="bytes")
panel("timeseries", "CPU", [
    (f"rate(process_cpu_seconds_total{{job=\"gateway\", {SEL}}}[1m])", "{{instance}}"),
], 14, 5, unit="percentunit")
panel("timeseries", "Open files", [
    (f"process_open_fds{{job=\"gateway\", {SEL}}}", "{{instance}} open"),
    (f"process_max_fds{{job=\"gateway\", {SEL}}}", "{{instance}} limit"),
], 19, 5)
line_end()

dashboard = {
    "title": "File-transfer gateway",
    "uid": "file-transfer-gateway",
    "description": "Pools, sessions, throughput, errors, syncs and nodes of the gateway (deploy/grafana/generate.py).",
    "tags": ["gateway", "sftp"],
    "timezone": "browser",
    "schemaVersion": 39,
    "version": 1,
    "editable": True,
    "refresh": "30s",
    "time": {"from": "now-3h", "to": "now"},
    "templating": {"list": [
        {"name": "datasource", "label": "Data source", "type": "datasource",
         "query": "prometheus", "current": {}, "hide": 0},
        {"name": "instance", "label": "Node", "type": "query", "datasource": DS,
         "query": {"query": 'label_values(gateway_build_info, instance)', "refId": "instance"},
         "definition": "label_values(gateway_build_info, instance)",
         "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2,
         "current": {"text": "All", "value": "$__all"}},
        {"name": "remote", "label": "Remote", "type": "query", "datasource": DS,
         "query": {"query": 'label_values(gateway_remote_connect_attempts_total, remote)', "refId": "remote"},
         "definition": "label_values(gateway_remote_connect_attempts_total, remote)",
         "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2,
         "current": {"text": "All", "value": "$__all"}},
    ]},
    "panels": panels,
}

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gateway-dashboard.json")
text = json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"
if "--check" in sys.argv:
    with open(out, encoding="utf-8") as f:
        if f.read() != text:
            sys.exit(f"{out} is not generate.py's output: run python3 {sys.argv[0]}")
else:
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)
