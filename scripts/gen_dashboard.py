#!/usr/bin/env python3
"""Generates deploy/grafana/dashboards/activity-relay.json (run from the repository root)."""
import json
panels = []
y = 0
def row(title):
    global y
    panels.append({"type": "row", "title": title, "collapsed": False, "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "id": len(panels) + 1, "panels": []})
    y += 1
def ts(title, exprs, unit="short", w=12, x=0, h=8, desc=""):
    panels.append({
        "type": "timeseries", "title": title, "description": desc, "id": len(panels) + 1,
        "datasource": {"type": "prometheus", "uid": "prometheus"},
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": [{"refId": chr(65 + i), "expr": e, "legendFormat": l, "datasource": {"type": "prometheus", "uid": "prometheus"}} for i, (e, l) in enumerate(exprs)],
    })
def stat(title, expr, unit="short", w=6, x=0, h=4):
    panels.append({
        "type": "stat", "title": title, "id": len(panels) + 1,
        "datasource": {"type": "prometheus", "uid": "prometheus"},
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [{"refId": "A", "expr": expr, "datasource": {"type": "prometheus", "uid": "prometheus"}}],
    })

row("Overview")
stat("Events in /s", 'sum(rate(activity_relay_events_in_total[1m]))', "ops", x=0)
stat("Published /s", 'sum(rate(activity_relay_published_total[1m]))', "ops", x=6)
stat("Spool used", 'max(activity_relay_spool_bytes / activity_relay_spool_max_bytes)', "percentunit", x=12)
stat("Stream connected", 'min(activity_relay_stream_connected)', "bool_on_off", x=18)
y += 4
row("Events in and out")
ts("Events in by type", [('sum by (type) (rate(activity_relay_events_in_total[1m]))', "{{type}}")], "ops", x=0)
ts("Events in by ingress", [('sum by (ingress) (rate(activity_relay_events_in_total[1m]))', "{{ingress}}")], "ops", x=12)
y += 8
ts("Published by sink", [('sum by (sink) (rate(activity_relay_published_total[1m]))', "{{sink}}")], "ops", x=0)
ts("Publish failures by sink and reason", [('sum by (sink, reason) (rate(activity_relay_publish_failures_total[1m]))', "{{sink}} {{reason}}"), ('sum by (sink) (rate(activity_relay_publish_retries_total[1m]))', "{{sink}} retries")], "ops", x=12)
y += 8
ts("Duplicates dropped by type", [('sum by (type) (rate(activity_relay_duplicates_total[5m]))', "{{type}}")], "ops", x=0)
ts("Dead letters", [('sum by (reason) (rate(activity_relay_dead_letters_total[5m]))', "ingress {{reason}}"), ('sum by (sink, reason) (rate(activity_relay_sink_dead_letters_total[5m]))', "{{sink}} {{reason}}")], "ops", x=12)
y += 8
row("Spool")
ts("Spool bytes", [('sum(activity_relay_spool_bytes)', "used"), ('sum(activity_relay_spool_max_bytes)', "max")], "bytes", x=0)
ts("Pending records per sink", [('sum by (sink) (activity_relay_pending_records)', "{{sink}}"), ('sum(activity_relay_spool_records)', "retained")], "short", x=12)
y += 8
ts("Oldest pending event age per sink", [('max by (sink) (activity_relay_oldest_pending_age_seconds)', "{{sink}}")], "s", x=0)
ts("Sink backoff", [('max by (sink) (activity_relay_backoff_seconds)', "{{sink}}"), ('sum by (sink) (activity_relay_in_flight)', "{{sink}} in flight")], "s", x=12)
y += 8
row("Latency")
ts("Publish latency, accept to broker ack", [
    ('histogram_quantile(0.5, sum by (le, sink) (rate(activity_relay_publish_latency_seconds_bucket[5m])))', "p50 {{sink}}"),
    ('histogram_quantile(0.99, sum by (le, sink) (rate(activity_relay_publish_latency_seconds_bucket[5m])))', "p99 {{sink}}")], "s", x=0)
ts("Webhook handler latency", [
    ('histogram_quantile(0.5, sum by (le) (rate(activity_relay_webhook_handler_seconds_bucket[5m])))', "p50"),
    ('histogram_quantile(0.99, sum by (le) (rate(activity_relay_webhook_handler_seconds_bucket[5m])))', "p99")], "s", x=12)
y += 8
row("Ingress")
ts("Webhook requests by app and outcome", [('sum by (app, outcome) (rate(activity_relay_webhook_requests_total[1m]))', "{{app}} {{outcome}}")], "reqps", x=0)
ts("Signature failures and CRC checks", [('sum by (app, reason) (rate(activity_relay_webhook_signature_failures_total[5m]))', "{{app}} {{reason}}"), ('sum by (app) (rate(activity_relay_webhook_crc_checks_total[5m]))', "{{app}} CRC")], "reqps", x=12)
y += 8
ts("Stream connection", [('min(activity_relay_stream_connected)', "connected"), ('max(activity_relay_stream_backoff_seconds)', "backoff (s)")], "short", x=0)
ts("Stream reconnects and heartbeats", [('sum by (reason) (rate(activity_relay_stream_reconnects_total[5m]))', "reconnect {{reason}}"), ('sum(rate(activity_relay_stream_heartbeats_total[5m]))', "heartbeats")], "ops", x=12)
y += 8
row("Webhook limits (hostile traffic)")
ts("Connections", [('sum(activity_relay_webhook_connections_open)', "open"), ('sum by (outcome) (rate(activity_relay_webhook_connections_total[1m]))', "closed {{outcome}} /s")], "short", x=0,
   desc="refused: max_connections open; no_request: closed before any response (header read timeout, idle, malformed, TLS failed)")
ts("POSTs refused by a limit", [('sum by (app, outcome) (rate(activity_relay_webhook_requests_total{outcome=~"busy|preauth_budget|too_large|read_timeout|bad_crc_token"}[1m]))', "{{app}} {{outcome}}")], "reqps", x=12)
y += 8
row("AAA to XAA cutover")
ts("Share of events by input format", [('sum by (format) (rate(activity_relay_events_in_total[5m])) / ignoring(format) group_left sum(rate(activity_relay_events_in_total[5m]))', "{{format}}")], "percentunit", x=0,
   desc="During X's overlap both formats arrive; after it only xaa")
ts("Cross-format duplicates dropped", [('sum by (format) (rate(activity_relay_cross_format_duplicates_total[5m]))', "second copy as {{format}}"), ('sum by (format) (rate(activity_relay_duplicates_total[5m]))', "all duplicates as {{format}}")], "ops", x=12,
   desc="The same real event delivered once per format: published once, the second copy dropped")
y += 8
ts("Deliveries refused by an ingress's formats setting", [('sum(rate(activity_relay_dead_letters_total{reason="format_not_accepted"}[5m]))', "kept as dead letters")], "ops", x=0)
y += 8
row("Gap recovery")
ts("Replay jobs", [('sum by (outcome) (increase(activity_relay_replay_jobs_total[15m]))', "{{outcome}}")], "short", x=0)
ts("Gap still being recovered", [('max by (ingress) (activity_relay_recovery_gap_seconds)', "{{ingress}}")], "s", x=12)
y += 8

dash = {
    "uid": "activity-relay", "title": "activity-relay", "tags": ["activity-relay"],
    "timezone": "utc", "schemaVersion": 39, "version": 1, "refresh": "10s",
    "time": {"from": "now-30m", "to": "now"}, "editable": True,
    "annotations": {"list": []}, "templating": {"list": []}, "panels": panels,
}
json.dump(dash, open("deploy/grafana/dashboards/activity-relay.json", "w"), indent=2)
print(len(panels), "panels")
