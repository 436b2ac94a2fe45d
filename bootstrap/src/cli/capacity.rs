//! `plan --capacity` rendered as text tables: one function per section, in the order printed.

use std::fmt::Write as _;

use super::output::Table;
use crate::capacity::{self, fmt_rate as n};
use crate::config;

/// `plan --capacity` as text: the inputs, the load, then each decision with its basis.
pub(super) fn table(s: &capacity::Sizing) -> String {
    let mut out = String::new();
    inputs_section(&mut out, s);
    out.push('\n');
    load_table(&mut out, s);
    out.push('\n');
    shards_section(&mut out, s);
    out.push('\n');
    services_table(&mut out, s);
    task_queues_table(&mut out, s);
    out.push('\n');
    stores_section(&mut out, s);
    worker_pools_table(&mut out, s);
    out.push('\n');
    assumptions_table(&mut out, s);
    warnings_section(&mut out, s);
    out
}

/// The model version, the inputs and the per-workflow figures.
fn inputs_section(out: &mut String, s: &capacity::Sizing) {
    let i = &s.inputs;
    let dur = config::types::HumanDuration::from_millis(
        (i.average_workflow_duration_seconds * 1000.0) as u64,
    );
    let _ = writeln!(
        out,
        "Capacity plan (model v{}, {})",
        s.model_version, i.environment
    );
    let _ = writeln!(
        out,
        "  inputs: {} starts/s at the daily peak; {} activities and {} timers/signals per workflow; {dur} average duration; burst x{}; growth {}% a year for {} years (x{}); write latency {} ms; retention {} days",
        n(i.peak_workflow_starts_per_second),
        n(i.activities_per_workflow),
        n(i.timers_and_signals_per_workflow),
        n(i.burst_multiplier),
        n(i.growth_annual_percent),
        i.growth_years,
        i.growth_factor,
        n(i.persistence_write_latency_ms),
        n(i.retention_days),
    );
    let p = &s.per_workflow;
    let _ = writeln!(
        out,
        "  per workflow: {} history events, {} history updates, {} workflow tasks + {} activity tasks",
        n(p.history_events),
        n(p.history_updates),
        n(p.workflow_tasks),
        n(p.activity_tasks)
    );
}

/// Load now (daily peak, burst) and at the design horizon.
fn load_table(out: &mut String, s: &capacity::Sizing) {
    let i = &s.inputs;
    let mut t = Table::new([
        "load",
        "starts/s",
        "state transitions/s",
        "history updates/s",
        "tasks/s",
        "open workflows",
    ]);
    for (label, l) in [
        ("now, daily peak".to_string(), &s.load.now_peak),
        (
            format!("now, burst x{}", n(i.burst_multiplier)),
            &s.load.now_burst,
        ),
        (
            format!("design: +{}y growth, burst", i.growth_years),
            &s.load.design,
        ),
    ] {
        t.row([
            label,
            n(l.workflow_starts_per_second),
            n(l.state_transitions_per_second),
            n(l.history_updates_per_second),
            n(l.tasks_per_second),
            n(l.open_workflows),
        ]);
    }
    out.push_str(&t.render());
}

/// The history shard count and why.
fn shards_section(out: &mut String, s: &capacity::Sizing) {
    let h = &s.history_shards;
    let _ = writeln!(
        out,
        "History shards: {} ({}, binding constraint: {})",
        h.count,
        h.mode,
        h.binding_constraint.as_str()
    );
    if h.mode == "pinned" {
        let _ = writeln!(
            out,
            "  auto would choose {} (binding constraint: {})",
            h.recommended,
            h.recommended_binding.as_str()
        );
    }
    for part in h.explanation.split("; ") {
        let _ = writeln!(out, "  {part}");
    }
    let _ = writeln!(
        out,
        "  at design: {} updates/s per shard ({}% of the ceiling), {} open workflows per shard",
        n(h.design_updates_per_shard_per_second),
        n(h.design_utilization * 100.0),
        n(h.design_open_workflows_per_shard)
    );
}

/// Replicas and requests per service.
fn services_table(out: &mut String, s: &capacity::Sizing) {
    let mut t = Table::new([
        "service",
        "replicas",
        "cpu request",
        "memory request",
        "basis",
    ]);
    for sv in &s.services {
        t.row([
            sv.name.to_string(),
            sv.replicas.to_string(),
            format!("{}m", sv.cpu_millicores),
            format!("{}Mi", sv.memory_mib),
            sv.basis.clone(),
        ]);
    }
    out.push_str(&t.render());
}

/// Partitions per task queue (when pools are declared).
fn task_queues_table(out: &mut String, s: &capacity::Sizing) {
    if !s.task_queues.is_empty() {
        out.push('\n');
        let mut t = Table::new(["task queue", "pools", "peak tasks/s", "partitions", "basis"]);
        for q in &s.task_queues {
            t.row([
                format!("{}/{}", q.namespace, q.task_queue),
                q.pools.join(","),
                q.peak_tasks_per_second.map(n).unwrap_or_else(|| "-".into()),
                q.partitions.to_string(),
                q.basis.clone(),
            ]);
        }
        out.push_str(&t.render());
    }
}

/// Persistence and visibility throughput and size.
fn stores_section(out: &mut String, s: &capacity::Sizing) {
    let db = &s.persistence;
    let _ = writeln!(
        out,
        "Persistence ({}): {} transactions/s, {} row writes/s today under burst; {} GiB at the end of the horizon (history {} GiB + SQL visibility {} GiB)",
        db.store,
        n(db.transactions_per_second),
        n(db.row_writes_per_second),
        n(db.total_storage_gib),
        n(db.history_storage_gib),
        n(db.visibility_storage_gib)
    );
    let _ = writeln!(out, "  {}", db.basis);
    let v = &s.visibility;
    match (v.primary_shards, v.replicas) {
        (Some(shards), Some(replicas)) => {
            let _ = writeln!(
                out,
                "Visibility ({}): {} writes/s; {} documents, {} GiB primary in {shards} primary shard(s) with {replicas} replica(s) each = {} GiB",
                v.store,
                n(v.writes_per_second),
                n(v.documents),
                n(v.primary_size_gib),
                n(v.total_size_gib)
            );
        }
        _ => {
            let _ = writeln!(
                out,
                "Visibility ({}): {} writes/s; {} records, {} GiB (counted in persistence)",
                v.store,
                n(v.writes_per_second),
                n(v.documents),
                n(v.total_size_gib)
            );
        }
    }
}

/// Worker pools with their autoscaling thresholds.
fn worker_pools_table(out: &mut String, s: &capacity::Sizing) {
    if !s.worker_pools.is_empty() {
        out.push('\n');
        let mut t = Table::new([
            "worker pool",
            "task queue",
            "profile",
            "priority",
            "activities/replica",
            "pollers",
            "replicas",
            "partitions",
            "at burst",
            "autoscaling",
        ]);
        for w in &s.worker_pools {
            let a = &w.autoscaling;
            t.row([
                w.name.clone(),
                format!("{}/{}", w.namespace, w.task_queue),
                w.profile.to_string(),
                w.priority.to_string(),
                w.max_concurrent_activities.to_string(),
                w.activity_pollers.to_string(),
                format!("{}..{}", w.replicas.min, w.replicas.max),
                w.task_queue_partitions.to_string(),
                w.replicas_for_burst
                    .map_or_else(|| "-".into(), |r| format!("{r} replicas")),
                format!(
                    "up at s2s >{}ms, slots {}% busy; down after {}s",
                    n(a.scale_up_above_ms),
                    n(a.target_slot_utilization * 100.0),
                    n(a.scale_down_after_seconds)
                ),
            ]);
        }
        out.push_str(&t.render());
    }
}

/// The key constants and every overridden one.
fn assumptions_table(out: &mut String, s: &capacity::Sizing) {
    const KEY: &[&str] = &[
        "events_per_activity",
        "updates_per_activity",
        "shard_target_utilization",
        "max_open_workflows_per_shard",
        "burst_duration_seconds",
        "min_history_shards",
        "max_history_shards",
        "shards_per_history_replica",
        "tasks_per_partition_per_second",
        "average_to_peak_ratio",
    ];
    let mut t = Table::new(["assumption", "value", "unit", "source"]);
    for a in s
        .assumptions
        .iter()
        .filter(|a| a.overridden || KEY.contains(&a.name))
    {
        t.row([
            format!(
                "{}{}",
                a.name,
                if a.overridden { " (override)" } else { "" }
            ),
            n(a.value),
            a.unit.to_string(),
            a.source.to_string(),
        ]);
    }
    out.push_str(&t.render());
    let _ = writeln!(
        out,
        "  ({} constants in all: see --output json or docs/capacity-model.md; override with capacity.overrides.<name>)",
        s.assumptions.len()
    );
}

/// Capacity warnings, if any.
fn warnings_section(out: &mut String, s: &capacity::Sizing) {
    if !s.warnings.is_empty() {
        out.push('\n');
        let _ = writeln!(out, "Warnings:");
        for w in &s.warnings {
            let _ = writeln!(out, "  {}: {}", w.path, w.message);
        }
    }
}
