#!/usr/bin/env python3
"""Generate the Grafana dashboards in dashboards/*.json (standard library only).

The dashboards are described here, compactly, and written as Grafana JSON (schemaVersion 39) with the
Prometheus data source as the variable ${datasource} and the template variables namespace, task_queue
(worker/SDK spelling) and taskqueue (server spelling: the server replaces "-" by "_" in label values).

  gen-dashboards.py           write dashboards/*.json
  gen-dashboards.py --check   exit 1 when a committed dashboard differs from what this script generates

Every metric name used here was seen on a real Temporal server 1.32 and Python SDK 1.35 (see
scripts/checks/observability-live), except the temporal_bootstrap_* daemon metrics, whose names are the
contract listed in dashboards/README.md. Units: server histograms are in seconds, SDK histograms in ms.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"

# Label selectors reused by many queries.
NS = 'namespace=~"$namespace"'
TQ_SERVER = 'namespace=~"$namespace", taskqueue=~"$taskqueue"'
TQ_SDK = 'namespace=~"$namespace", task_queue=~"$task_queue"'
CORE_SDK = 'service_name="temporal-core-sdk"'  # Core-based SDKs: histograms in milliseconds
NOT_SERVER_WORKER = 'service_name!="worker"'  # the server's own internal Go SDK worker


def datasource_var() -> dict:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "refresh": 1,
        "hide": 0,
    }


def query_var(name: str, label: str, query: str, description: str) -> dict:
    return {
        "name": name,
        "label": label,
        "description": description,
        "type": "query",
        "datasource": DS,
        "query": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "sort": 1,
        "hide": 0,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
    }


VARS = {
    "namespace": lambda: query_var(
        "namespace", "Namespace", "label_values(service_requests, namespace)",
        "Namespace as the server labels it (a - in the name is shown as _).",
    ),
    "taskqueue": lambda: query_var(
        "taskqueue", "Task queue (server)",
        'label_values(task_schedule_to_start_latency_count{namespace=~"$namespace"}, taskqueue)',
        "Task queue as the server labels it: every - in the name is replaced by _.",
    ),
    "task_queue": lambda: query_var(
        "task_queue", "Task queue (workers)",
        'label_values(temporal_num_pollers{namespace=~"$namespace"}, task_queue)',
        "Task queue as the SDK workers label it (the real name).",
    ),
}


class Board:
    def __init__(self, uid: str, title: str, description: str, tags: list[str], variables: list[str]):
        self.uid, self.title, self.description, self.tags, self.variables = uid, title, description, tags, variables
        self.panels: list[dict] = []
        self.next_id = 1
        self.x = 0
        self.y = 0
        self.row_h = 0

    def _id(self) -> int:
        i = self.next_id
        self.next_id += 1
        return i

    def row(self, title: str) -> None:
        if self.x:
            self.y += self.row_h
        self.x, self.row_h = 0, 0
        self.panels.append({
            "type": "row", "title": title, "id": self._id(), "collapsed": False, "panels": [],
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
        })
        self.y += 1

    def _place(self, w: int, h: int) -> dict:
        if self.x + w > 24:
            self.y += self.row_h
            self.x, self.row_h = 0, 0
        pos = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def panel(self, title: str, description: str, targets: list[tuple[str, str]], unit: str = "short",
              kind: str = "timeseries", w: int = 12, h: int = 8, thresholds: list[tuple[float, str]] | None = None,
              decimals: int | None = None, base: str = "green") -> None:
        defaults: dict = {"unit": unit}
        if decimals is not None:
            defaults["decimals"] = decimals
        steps = [{"color": base, "value": None}] + [{"color": c, "value": v} for v, c in (thresholds or [])]
        defaults["thresholds"] = {"mode": "absolute", "steps": steps}
        if kind == "timeseries":
            defaults["custom"] = {
                "drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never", "spanNulls": False,
                "thresholdsStyle": {"mode": "line" if thresholds else "off"},
            }
            options = {
                "legend": {"displayMode": "table", "placement": "bottom", "showLegend": True, "calcs": ["lastNotNull", "max"]},
                "tooltip": {"mode": "multi", "sort": "desc"},
            }
        else:  # stat
            defaults["color"] = {"mode": "thresholds"}
            options = {
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "colorMode": "value", "graphMode": "area", "textMode": "auto", "orientation": "auto", "justifyMode": "auto",
            }
        self.panels.append({
            "type": kind,
            "title": title,
            "description": description,
            "id": self._id(),
            "gridPos": self._place(w, h),
            "datasource": DS,
            "targets": [
                {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend, "range": True,
                 "instant": False, "editorMode": "code"}
                for i, (expr, legend) in enumerate(targets)
            ],
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": options,
        })

    def to_json(self) -> dict:
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": self.tags,
            "editable": True,
            "graphTooltip": 1,
            "schemaVersion": 39,
            "version": 1,
            "timezone": "browser",
            "refresh": "30s",
            "time": {"from": "now-1h", "to": "now"},
            "links": [],
            "annotations": {"list": [{
                "name": "Annotations & Alerts", "builtIn": 1, "enable": True, "hide": True,
                "iconColor": "rgba(0, 211, 255, 1)", "type": "dashboard",
                "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            }]},
            "templating": {"list": [datasource_var()] + [VARS[v]() for v in self.variables]},
            "panels": self.panels,
        }


def hq(q: str, metric: str, sel: str, by: str) -> str:
    """histogram_quantile over a rate of <metric>_bucket."""
    return f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{{{sel}}}[{RI}])))"


STS_THRESHOLDS_S = [(0.2, "orange"), (0.5, "red")]
STS_THRESHOLDS_MS = [(200, "orange"), (500, "red")]


def overview() -> Board:
    b = Board("temporal-overview", "Temporal / Platform overview",
              "Service health, request and error rates, persistence and history shards of the Temporal server.",
              ["temporal", "temporal-bootstrap"], ["namespace"])
    b.row("Service health")
    b.panel("Scrape targets up", "Targets of the platform's Prometheus jobs that answered the last scrape (up == 1).",
            [('sum by (job) (up{job=~"temporal-.*"})', "{{job}}")], kind="stat", w=6, h=5)
    b.panel("History shards", "Shards owned by history hosts (numshards_gauge summed). Must equal numHistoryShards.",
            [("sum(numshards_gauge)", "shards")], kind="stat", w=6, h=5)
    b.panel("Frontend requests/s", "All requests the frontend served (service_requests, service_name=frontend).",
            [(f'sum(rate(service_requests{{service_name="frontend"}}[{RI}]))', "requests/s")], unit="reqps",
            kind="stat", w=6, h=5)
    b.panel("Workflows completed/s", "Workflow executions that completed successfully (server, workflow_success).",
            [(f"sum(rate(workflow_success{{{NS}}}[{RI}]))", "completed/s")], unit="ops", kind="stat", w=6, h=5)
    b.row("Requests and errors")
    b.panel("Requests by service", "service_requests per Temporal service.",
            [(f"sum by (service_name) (rate(service_requests{{{NS}}}[{RI}]))", "{{service_name}}")], unit="reqps")
    b.panel("Errors by service and type", "service_error_with_type. NotFound, AlreadyStarted and Canceled are usually "
            "client-side outcomes; Internal, Unavailable, DeadlineExceeded and ResourceExhausted are server trouble.",
            [(f"sum by (service_name, error_type) (rate(service_error_with_type{{{NS}}}[{RI}]))",
              "{{service_name}} {{error_type}}")], unit="reqps")
    b.panel("Server-side error ratio", "Share of non-poll requests failing with a server-side error "
            "(the TemporalServiceErrors alert).",
            [("sum by (service_name) (rate(service_error_with_type{operation!~\"Poll.*\", error_type=~\"serviceerror_"
              "(Internal|Unavailable|DeadlineExceeded|ResourceExhausted|DataLoss|Unimplemented)\"}[" + RI + "]))"
              " / sum by (service_name) (rate(service_requests{operation!~\"Poll.*\"}[" + RI + "]))",
              "{{service_name}}")], unit="percentunit", thresholds=[(0.05, "red")])
    b.panel("Frontend latency p95 by operation", "service_latency of the frontend, long polls excluded (seconds).",
            [(hq("0.95", "service_latency", 'service_name="frontend", operation!~"Poll.*"', "operation"),
              "{{operation}}")], unit="s")
    b.row("Persistence")
    b.panel("Persistence latency p99 by operation", "persistence_latency (seconds) per operation.",
            [(hq("0.99", "persistence_latency", "", "operation"), "{{operation}}")], unit="s",
            thresholds=[(0.5, "orange")])
    b.panel("Persistence errors by type", "persistence_error_with_type. NotFound and ConditionFailed are normal "
            "control flow; anything else is a database problem.",
            [(f"sum by (service_name, error_type) (rate(persistence_error_with_type[{RI}]))",
              "{{service_name}} {{error_type}}")], unit="ops")
    b.row("Shards and hosts")
    b.panel("Shards per history host", "numshards_gauge by instance: shards are spread over history hosts.",
            [("sum by (instance) (numshards_gauge)", "{{instance}}")], w=8)
    b.panel("Shard lock wait p99", "semaphore_latency: time spent waiting for a history shard lock (seconds).",
            [(hq("0.99", "semaphore_latency", "", "operation"), "{{operation}}")], unit="s", w=8,
            thresholds=[(0.25, "orange")])
    b.panel("Goroutines per host", "num_goroutines of every server process.",
            [("sum by (instance, service_name) (num_goroutines)", "{{instance}} {{service_name}}")], w=8)
    return b


def task_queues() -> Board:
    b = Board("temporal-task-queues", "Temporal / Task queues and workers",
              "Schedule-to-start latency (the capacity signal), backlogs, pollers, worker slots and sticky cache. "
              "Below 100 ms is healthy, above 500 ms workers are starved.",
              ["temporal", "temporal-bootstrap"], ["namespace", "taskqueue", "task_queue"])
    b.row("Schedule-to-start latency")
    b.panel("Schedule-to-start p95 (server)", "task_schedule_to_start_latency from the history service, in seconds, "
            "by task queue and task type (Activity / Workflow).",
            [(hq("0.95", "task_schedule_to_start_latency", TQ_SERVER, "taskqueue, task_type"),
              "{{taskqueue}} {{task_type}}")], unit="s", thresholds=STS_THRESHOLDS_S)
    b.panel("Schedule-to-start p95 (workers, ms)", "What Core-based SDK workers (Python, TypeScript, .NET) measure, "
            "in milliseconds. The SDK buckets are 100/500/1000 ms: values between are interpolated.",
            [(hq("0.95", "temporal_activity_schedule_to_start_latency", f"{TQ_SDK}, {CORE_SDK}", "task_queue"),
              "{{task_queue}} activity"),
             (hq("0.95", "temporal_workflow_task_schedule_to_start_latency", f"{TQ_SDK}, {CORE_SDK}", "task_queue"),
              "{{task_queue}} workflow task")], unit="ms", thresholds=STS_THRESHOLDS_MS)
    b.row("Backlog")
    b.panel("Backlog (tasks)", "approximate_backlog_count: tasks waiting in the queue's persistence backlog. "
            "Appears about a minute after a backlog forms.",
            [(f"sum by (taskqueue, task_type) (approximate_backlog_count{{{TQ_SERVER}}})",
              "{{taskqueue}} {{task_type}}")])
    b.panel("Backlog age", "approximate_backlog_age_seconds: how long the oldest waiting task has waited.",
            [(f"max by (taskqueue, task_type) (approximate_backlog_age_seconds{{{TQ_SERVER}}})",
              "{{taskqueue}} {{task_type}}")], unit="s", thresholds=[(300, "orange")])
    b.panel("Tasks handed to pollers/s", "poll_success: tasks the matching service gave to worker polls.",
            [(f"sum by (taskqueue, task_type) (rate(poll_success{{{TQ_SERVER}}}[{RI}]))",
              "{{taskqueue}} {{task_type}}")], unit="ops")
    b.panel("Empty polls/s", "poll_timeouts: long polls that returned no task (idle workers).",
            [(f"sum by (taskqueue, task_type) (rate(poll_timeouts{{{TQ_SERVER}}}[{RI}]))",
              "{{taskqueue}} {{task_type}}")], unit="ops")
    b.row("Workers")
    b.panel("Task slots available", "temporal_worker_task_slots_available summed over the workers of a queue. "
            "0 means new tasks wait for a slot.",
            [(f"sum by (task_queue, worker_type) (temporal_worker_task_slots_available{{{TQ_SDK}, {NOT_SERVER_WORKER}}})",
              "{{task_queue}} {{worker_type}}")], w=8)
    b.panel("Task slots used", "temporal_worker_task_slots_used summed over the workers of a queue.",
            [(f"sum by (task_queue, worker_type) (temporal_worker_task_slots_used{{{TQ_SDK}, {NOT_SERVER_WORKER}}})",
              "{{task_queue}} {{worker_type}}")], w=8)
    b.panel("Pollers", "temporal_num_pollers: concurrent polls the workers keep open, by poller type.",
            [(f"sum by (task_queue, poller_type) (temporal_num_pollers{{{TQ_SDK}, {NOT_SERVER_WORKER}}})",
              "{{task_queue}} {{poller_type}}")], w=8)
    b.row("Sticky cache")
    b.panel("Sticky cache size", "temporal_sticky_cache_size: workflows cached by the workers.",
            [(f"sum by (task_queue) (temporal_sticky_cache_size{{{TQ_SDK}}})", "{{task_queue}}")], w=8)
    b.panel("Sticky cache hits/s", "temporal_sticky_cache_hit: workflow tasks served from the cache (no replay).",
            [(f"sum by (task_queue) (rate(temporal_sticky_cache_hit{{{TQ_SDK}}}[{RI}]))", "{{task_queue}}")],
            unit="ops", w=8)
    b.panel("Sticky cache forced evictions/s", "temporal_sticky_cache_total_forced_eviction: cache too small "
            "for the workflows in flight (each eviction costs a full replay later).",
            [(f"sum by (task_queue) (rate(temporal_sticky_cache_total_forced_eviction{{{TQ_SDK}}}[{RI}]))",
              "{{task_queue}}")], unit="ops", w=8)
    return b


def workflows() -> Board:
    b = Board("temporal-workflows", "Temporal / Workflows and activities",
              "Completion, failure, timeout and retry rates by namespace and type.",
              ["temporal", "temporal-bootstrap"], ["namespace", "task_queue"])
    b.row("Workflows (server)")
    b.panel("Workflow outcomes/s", "Closed workflow executions by outcome (history service).",
            [(f"sum(rate(workflow_success{{{NS}}}[{RI}]))", "completed"),
             (f"sum(rate(workflow_failed{{{NS}}}[{RI}]))", "failed"),
             (f"sum(rate(workflow_timeout{{{NS}}}[{RI}]))", "timed out"),
             (f"sum(rate(workflow_terminate{{{NS}}}[{RI}]))", "terminated"),
             (f"sum(rate(workflow_cancel{{{NS}}}[{RI}]))", "canceled")], unit="ops")
    b.panel("Workflow failures by type", "workflow_failed by namespace and workflow type.",
            [(f"sum by (namespace, workflowType) (rate(workflow_failed{{{NS}}}[{RI}]))",
              "{{namespace}} {{workflowType}}")], unit="ops")
    b.panel("Workflow timeouts by type", "workflow_timeout: executions that hit their execution or run timeout.",
            [(f"sum by (namespace, workflowType) (rate(workflow_timeout{{{NS}}}[{RI}]))",
              "{{namespace}} {{workflowType}}")], unit="ops")
    b.panel("Workflow task failures", "failed_workflow_tasks (server, first attempt of a failing task) by failure "
            "cause, and workflow task timeouts (retries of a failing task time out).",
            [(f"sum by (namespace, failure) (rate(failed_workflow_tasks{{{NS}}}[{RI}]))", "{{namespace}} {{failure}}"),
             (f'sum by (namespace) (rate(start_to_close_timeout{{{NS}, operation="TimerActiveTaskWorkflowTaskTimeout"}}[{RI}]))',
              "{{namespace}} workflow task timeout")], unit="ops")
    b.row("Activities (server)")
    b.panel("Activity outcomes/s", "activity_success, activity_fail (final failures), activity_task_fail "
            "(failed attempts, retries included) and activity_timeout.",
            [(f"sum(rate(activity_success{{{NS}}}[{RI}]))", "completed"),
             (f"sum(rate(activity_fail{{{NS}}}[{RI}]))", "failed (final)"),
             (f"sum(rate(activity_task_fail{{{NS}}}[{RI}]))", "failed attempts"),
             (f"sum(rate(activity_timeout{{{NS}}}[{RI}]))", "timed out")], unit="ops")
    b.panel("Activity failed attempts by type", "activity_task_fail by activity type: every failed attempt, "
            "i.e. the retry rate.",
            [(f"sum by (namespace, activityType) (rate(activity_task_fail{{{NS}}}[{RI}]))",
              "{{namespace}} {{activityType}}")], unit="ops")
    b.panel("Activity timeouts by type and kind", "activity_timeout by activity type and timeout type "
            "(StartToClose, ScheduleToClose, Heartbeat, ...).",
            [(f"sum by (activityType, timeout_type) (rate(activity_timeout{{{NS}}}[{RI}]))",
              "{{activityType}} {{timeout_type}}")], unit="ops")
    b.panel("Activity final failures by type", "activity_fail: activities that failed for good (retries exhausted "
            "or non-retryable).",
            [(f"sum by (namespace, activityType) (rate(activity_fail{{{NS}}}[{RI}]))",
              "{{namespace}} {{activityType}}")], unit="ops")
    b.row("Workers (SDK)")
    b.panel("Workflow completions seen by workers", "temporal_workflow_completed / _failed / _canceled by type.",
            [(f"sum by (workflow_type) (rate(temporal_workflow_completed{{{TQ_SDK}}}[{RI}]))", "{{workflow_type}} completed"),
             (f"sum by (workflow_type) (rate(temporal_workflow_failed{{{TQ_SDK}}}[{RI}]))", "{{workflow_type}} failed"),
             (f"sum by (workflow_type) (rate(temporal_workflow_canceled{{{TQ_SDK}}}[{RI}]))", "{{workflow_type}} canceled")],
            unit="ops")
    b.panel("Activity execution failures (workers)", "temporal_activity_execution_failed by activity type: "
            "every failed attempt as the worker saw it.",
            [(f"sum by (activity_type) (rate(temporal_activity_execution_failed{{{TQ_SDK}}}[{RI}]))",
              "{{activity_type}}")], unit="ops")
    b.panel("Workflow task failures (workers)", "temporal_workflow_task_execution_failed by workflow type and reason "
            "(every attempt, unlike the server counter).",
            [(f"sum by (workflow_type, failure_reason) (rate(temporal_workflow_task_execution_failed{{{TQ_SDK}}}[{RI}]))",
              "{{workflow_type}} {{failure_reason}}")], unit="ops")
    b.panel("Activity execution latency p95 (ms)", "temporal_activity_execution_latency (Core SDK, milliseconds).",
            [(hq("0.95", "temporal_activity_execution_latency", f"{TQ_SDK}, {CORE_SDK}", "activity_type"),
              "{{activity_type}}")], unit="ms")
    b.panel("Workflow end-to-end latency p95 (ms)", "temporal_workflow_endtoend_latency: start to close "
            "(Core SDK, milliseconds).",
            [(hq("0.95", "temporal_workflow_endtoend_latency", f"{TQ_SDK}, {CORE_SDK}", "workflow_type"),
              "{{workflow_type}}")], unit="ms")
    b.panel("Failed client requests (workers)", "temporal_request_failure by operation and status code "
            "(NOT_FOUND on RespondActivityTaskCompleted: the activity had already timed out).",
            [(f"sum by (operation, status_code) (rate(temporal_request_failure{{{NS}}}[{RI}]))",
              "{{operation}} {{status_code}}")], unit="ops")
    return b


def persistence() -> Board:
    b = Board("temporal-persistence", "Temporal / Persistence and visibility",
              "Database latency by operation, errors by type, visibility store, and history shard lock contention.",
              ["temporal", "temporal-bootstrap"], ["namespace"])
    b.row("Persistence (main store)")
    b.panel("Requests by operation", "persistence_requests per operation.",
            [(f"sum by (operation) (rate(persistence_requests{{{NS}}}[{RI}]))", "{{operation}}")], unit="ops")
    b.panel("Latency p50 / p99 by operation", "persistence_latency (seconds).",
            [(hq("0.5", "persistence_latency", NS, "operation"), "p50 {{operation}}"),
             (hq("0.99", "persistence_latency", NS, "operation"), "p99 {{operation}}")], unit="s",
            thresholds=[(0.5, "orange")])
    b.panel("Errors by type and operation", "persistence_error_with_type.",
            [(f"sum by (operation, error_type) (rate(persistence_error_with_type{{{NS}}}[{RI}]))",
              "{{operation}} {{error_type}}")], unit="ops")
    b.panel("Unexpected error ratio", "Share of persistence requests failing with an error that is not normal "
            "control flow (the TemporalPersistenceErrors alert).",
            [("sum by (service_name) (rate(persistence_error_with_type{error_type!~\".*(NotFound|ConditionFailed|"
              "AlreadyExists|ShardOwnershipLost|AlreadyStarted|Canceled).*\"}[" + RI + "])) / sum by (service_name) "
              "(rate(persistence_requests[" + RI + "]))", "{{service_name}}")], unit="percentunit",
            thresholds=[(0.01, "red")])
    b.row("Visibility")
    b.panel("Visibility requests by operation", "visibility_persistence_requests per operation.",
            [(f"sum by (operation, visibility_plugin_name) (rate(visibility_persistence_requests[{RI}]))",
              "{{visibility_plugin_name}} {{operation}}")], unit="ops", w=8)
    b.panel("Visibility latency p99 by operation", "visibility_persistence_latency (seconds).",
            [(hq("0.99", "visibility_persistence_latency", "", "operation"), "{{operation}}")], unit="s", w=8)
    b.panel("Visibility errors by type", "visibility_persistence_error_with_type.",
            [(f"sum by (operation, error_type) (rate(visibility_persistence_error_with_type[{RI}]))",
              "{{operation}} {{error_type}}")], unit="ops", w=8)
    b.row("Shard lock contention")
    b.panel("Shard lock wait p50 / p99", "semaphore_latency: waiting for a history shard lock (seconds). "
            "High waits with an idle database mean too few shards.",
            [(hq("0.5", "semaphore_latency", "", "instance, operation"), "p50 {{instance}} {{operation}}"),
             (hq("0.99", "semaphore_latency", "", "instance, operation"), "p99 {{instance}} {{operation}}")],
            unit="s", thresholds=[(0.25, "orange")])
    b.panel("Shard lock acquisitions/s", "semaphore_requests per operation.",
            [(f"sum by (instance, operation) (rate(semaphore_requests[{RI}]))", "{{instance}} {{operation}}")],
            unit="ops")
    return b


def bootstrap() -> Board:
    b = Board("temporal-bootstrap", "Temporal / temporal-bootstrap daemon",
              "The reconcile loop of `temporal-bootstrap run`: runs, step failures and durations, drift and the "
              "certificates it manages (metric contract in dashboards/README.md).",
              ["temporal", "temporal-bootstrap"], [])
    b.row("Reconcile")
    b.panel("Daemon up", "up of the temporal-bootstrap scrape job.",
            [('up{job="temporal-bootstrap"}', "{{instance}}")], kind="stat", w=6, h=5)
    b.panel("Since last successful reconcile", "time() - temporal_bootstrap_last_success_timestamp_seconds.",
            [("time() - max(temporal_bootstrap_last_success_timestamp_seconds)", "age")], unit="s", kind="stat",
            w=6, h=5, thresholds=[(1800, "red")])
    b.panel("Reconcile runs/s", "temporal_bootstrap_reconcile_runs_total.",
            [(f"sum(rate(temporal_bootstrap_reconcile_runs_total[{RI}]))", "runs/s")], unit="ops", kind="stat",
            w=6, h=5)
    b.panel("Steps with drift", "Steps whose temporal_bootstrap_drift is 1.",
            [("sum(temporal_bootstrap_drift)", "drifting steps")], kind="stat", w=6, h=5, thresholds=[(1, "orange")])
    b.panel("Step failures by step and error", "temporal_bootstrap_step_failures_total{step,error}.",
            [(f"sum by (step, error) (rate(temporal_bootstrap_step_failures_total[{RI}]))", "{{step}} {{error}}")],
            unit="ops")
    b.panel("Step duration p95", "temporal_bootstrap_step_duration_seconds{step} (histogram, seconds).",
            [(hq("0.95", "temporal_bootstrap_step_duration_seconds", "", "step"), "{{step}}")], unit="s")
    b.panel("Drift by step", "temporal_bootstrap_drift{step}: 1 while the observed state differs from platform.yaml.",
            [("max by (step) (temporal_bootstrap_drift)", "{{step}}")], w=24)
    b.row("Certificates")
    b.panel("Days until certificate expiry (managed by the daemon)",
            "temporal_bootstrap_certificate_expiry_seconds{certificate} is the notAfter time (Unix seconds).",
            [("(min by (certificate) (temporal_bootstrap_certificate_expiry_seconds) - time()) / 86400",
              "{{certificate}}")], unit="d", thresholds=[(7, "orange"), (21, "green")], base="red")
    b.panel("Server-reported certificates expiring / expired",
            "certificates_expiring and certificates_expired as exported by Temporal servers with TLS expiration "
            "checks enabled.",
            [("sum by (instance) (certificates_expiring)", "{{instance}} expiring"),
             ("sum by (instance) (certificates_expired)", "{{instance}} expired")])
    return b


BOARDS = [overview, task_queues, workflows, persistence, bootstrap]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    stale = 0
    for make in BOARDS:
        b = make()
        path = args.out / f"{b.uid}.json"
        text = json.dumps(b.to_json(), indent=2, ensure_ascii=False) + "\n"
        old = path.read_text(encoding="utf-8") if path.exists() else None
        if old == text:
            print(f"up to date: {path.name} ({sum(1 for p in b.panels if p['type'] != 'row')} panels)")
        elif args.check:
            stale += 1
            print(f"STALE: {path.name}: run scripts/observability/gen-dashboards.py")
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote: {path.name}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
