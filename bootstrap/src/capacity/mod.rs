//! The capacity planner: turns the `capacity:` and `workers:` sections into history shards,
//! Temporal service replicas, task queue partitions, PostgreSQL and visibility sizing and worker
//! pool settings. Pure: no I/O, no async. The model is documented in docs/capacity-model.md.
//!
//! Flow: inputs -> per-workflow counts (history events, serialised history updates, tasks) ->
//! three load levels (now at the daily peak; now under burst; design = end of the growth horizon
//! under burst) -> shards from the design level (immutable), services, partitions and database
//! write rates from the burst level today (they can be re-planned), storage from the daily average
//! at the end of the horizon -> worker pool settings from each pool's profile.
//!
//! Guarantees: deterministic; never panics and never overflows (all arithmetic is f64, counts
//! saturate); the auto shard count is a power of two within the bounds; a pinned count is
//! honoured; more load never yields fewer shards or replicas. Every constant is in [`CONSTANTS`]
//! and can be overridden with `capacity.overrides.<name>`.
//!
//! Assumptions: the per-event model of [`constants`]; rates are per second.
//!
//! Caveats: a model, not a measurement. It sizes a starting point; the schedule-to-start latency
//! and `persistence_latency` of the running cluster are the truth.

mod constants;
pub mod shards;
mod sizing;

use std::collections::BTreeMap;

use serde::Serialize;

pub use constants::{
    Assumptions, CONSTANTS, Constant, Issue, Kind, LoadInputs, MAX_BURST_MULTIPLIER,
    MAX_HISTORY_EVENTS, MAX_PEAK_STARTS_PER_SECOND, MAX_PEAK_TASKS_PER_SECOND, WARN_HISTORY_EVENTS,
    check_load, check_overrides, constant, events_per_workflow,
};
pub use shards::{Binding, HistoryShards};
pub use sizing::{
    Autoscaling, Persistence, ReplicaBounds, Service, TaskQueue, Visibility, WorkerPool,
};

use crate::config::types::ShardSetting;
use crate::config::{Environment, PlatformConfig};

/// Version of the model; bumped when the same input gives different numbers.
pub const MODEL_VERSION: u32 = 1;

/// The planner refuses inputs it cannot size (normally caught earlier by `validate`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", .issues.iter().map(|i| format!("{}: {}", i.path, i.message)).collect::<Vec<_>>().join("\n"))]
pub struct CapacityError {
    pub issues: Vec<Issue>,
}

/// The full sizing; serialised as the `capacity` key of `plan --output json`.
#[derive(Debug, Clone, Serialize)]
pub struct Sizing {
    pub model_version: u32,
    pub inputs: Inputs,
    pub per_workflow: PerWorkflow,
    pub load: Loads,
    pub history_shards: HistoryShards,
    pub services: Vec<Service>,
    pub task_queues: Vec<TaskQueue>,
    pub persistence: Persistence,
    pub visibility: Visibility,
    pub worker_pools: Vec<WorkerPool>,
    pub warnings: Vec<Issue>,
    pub assumptions: Vec<AssumptionValue>,
}

/// The inputs as the planner read them (after defaults).
#[derive(Debug, Clone, Serialize)]
pub struct Inputs {
    pub environment: &'static str,
    pub peak_workflow_starts_per_second: f64,
    pub activities_per_workflow: f64,
    pub timers_and_signals_per_workflow: f64,
    pub average_workflow_duration_seconds: f64,
    pub burst_multiplier: f64,
    pub growth_annual_percent: f64,
    pub growth_years: u32,
    /// (1 + annual) ^ years.
    pub growth_factor: f64,
    pub persistence_write_latency_ms: f64,
    pub retention_days: f64,
    pub history_shards: ShardSetting,
    pub overrides: BTreeMap<String, f64>,
}

/// Counts for one average workflow run.
#[derive(Debug, Clone, Serialize)]
pub struct PerWorkflow {
    /// History events (each is one state transition of the workflow).
    pub history_events: f64,
    /// Serialised writes to the workflow's shard.
    pub history_updates: f64,
    /// Workflow tasks: the first one plus one per activity and per timer or signal.
    pub workflow_tasks: f64,
    pub activity_tasks: f64,
    /// Stored bytes: events x history_event_bytes + mutable_state_bytes.
    pub stored_bytes: f64,
}

/// One load level.
#[derive(Debug, Clone, Serialize)]
pub struct Load {
    pub workflow_starts_per_second: f64,
    /// History events per second.
    pub state_transitions_per_second: f64,
    /// Serialised shard writes per second (what the per-shard ceiling limits).
    pub history_updates_per_second: f64,
    /// Workflow and activity tasks dispatched by matching per second.
    pub tasks_per_second: f64,
    /// Little's law, with the burst window: rate x duration + (burst - 1) x rate x min(duration, burst window).
    pub open_workflows: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Loads {
    /// Today, at the normal daily peak.
    pub now_peak: Load,
    /// Today, under burst: sizes services, partitions and database write rates.
    pub now_burst: Load,
    /// End of the growth horizon, under burst: sizes history shards.
    pub design: Load,
}

/// One constant as used in this plan.
#[derive(Debug, Clone, Serialize)]
pub struct AssumptionValue {
    pub name: &'static str,
    pub value: f64,
    pub default: f64,
    pub unit: &'static str,
    pub overridden: bool,
    pub source: &'static str,
}

pub(crate) fn round2(x: f64) -> f64 {
    if x.is_finite() && x.abs() < 1e15 {
        (x * 100.0).round() / 100.0
    } else {
        x
    }
}

pub(crate) fn round4(x: f64) -> f64 {
    if x.is_finite() && x.abs() < 1e12 {
        (x * 10_000.0).round() / 10_000.0
    } else {
        x
    }
}

/// A number for humans: at most two decimals (four below 1), no trailing zeros, no thousands separators (so a
/// reader can paste it into a calculator).
pub fn fmt_rate(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "n/a".into()
        } else {
            "inf".into()
        };
    }
    if x.abs() >= 1e15 {
        return format!("{x:.3e}");
    }
    // Below 1, four decimals keep small quantities (0.0041 shards) visible.
    let s = if x.abs() < 1.0 {
        format!("{:.4}", round4(x))
    } else {
        format!("{:.2}", round2(x))
    };
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

fn load_level(a: &Assumptions, per: &PerWorkflow, rate: f64, burst: f64, duration_s: f64) -> Load {
    let starts = rate * burst;
    let open = rate * duration_s + (burst - 1.0) * rate * duration_s.min(a.burst_duration_seconds);
    Load {
        workflow_starts_per_second: round2(starts),
        state_transitions_per_second: round2(starts * per.history_events),
        history_updates_per_second: round2(starts * per.history_updates),
        tasks_per_second: round2(starts * (per.workflow_tasks + per.activity_tasks)),
        open_workflows: round2(open),
    }
}

/// Sizes the platform described by `config`.
pub fn plan(config: &PlatformConfig) -> Result<Sizing, CapacityError> {
    let cap = &config.capacity;
    let a = Assumptions::with_overrides(&cap.overrides);
    let starts = cap.peak_workflow_starts_per_second.get();
    let activities = cap.activities_per_workflow.get();
    let timers = cap.timers_and_signals_per_workflow.get();
    let burst = cap.burst_multiplier.get();
    let duration_s = cap.average_workflow_duration.as_secs_f64();
    let latency_s = cap.persistence_write_latency.as_secs_f64();

    check_inputs(cap, starts, activities, timers, burst)?;

    let years = cap.growth.years;
    let growth = (1.0 + cap.growth.annual.fraction()).powi(years as i32);
    let production = config.cluster.environment == Environment::Production;
    let retention_days = config.sizing_retention().as_days_f64();

    let events = events_per_workflow(&a, activities, timers);
    let per = per_workflow(&a, events, activities, timers);
    let load = Loads {
        now_peak: load_level(&a, &per, starts, 1.0, duration_s),
        now_burst: load_level(&a, &per, starts, burst, duration_s),
        design: load_level(&a, &per, starts * growth, burst, duration_s),
    };

    let mut warnings = Vec::new();
    if events > WARN_HISTORY_EVENTS {
        warnings.push(Issue {
            path: "capacity.activities_per_workflow".into(),
            message: format!(
                "about {} history events per workflow is above Temporal's warning threshold of {}; long histories slow replay, consider continue-as-new",
                fmt_rate(events),
                fmt_rate(WARN_HISTORY_EVENTS)
            ),
        });
    }
    let pinned = match cap.history_shards {
        ShardSetting::Auto => None,
        ShardSetting::Pinned(n) => Some(n),
    };
    let (history_shards, shard_warnings) = shards::size(
        &shards::ShardInputs {
            design_updates_per_second: load.design.history_updates_per_second,
            design_open_workflows: load.design.open_workflows,
            write_latency_seconds: latency_s,
            pinned,
        },
        &a,
    );
    warnings.extend(shard_warnings);

    let services = sizing::services(&a, &load.now_burst, history_shards.count, production);
    let (task_queues, worker_pools, pool_warnings) = sizing::workers(&a, config, burst, production);
    warnings.extend(pool_warnings);
    let (persistence, visibility) = sizing::storage(
        &a,
        config,
        &per,
        &load.now_burst,
        starts * growth * a.average_to_peak_ratio,
        duration_s,
        retention_days,
        production,
    );
    warnings.extend(sizing::storage_warnings(&a, &persistence));

    let assumptions = assumption_values(&a, &cap.overrides);

    Ok(Sizing {
        model_version: MODEL_VERSION,
        inputs: Inputs {
            environment: if production {
                "production"
            } else {
                "development"
            },
            peak_workflow_starts_per_second: starts,
            activities_per_workflow: activities,
            timers_and_signals_per_workflow: timers,
            average_workflow_duration_seconds: duration_s,
            burst_multiplier: burst,
            growth_annual_percent: round2(cap.growth.annual.fraction() * 100.0),
            growth_years: years,
            growth_factor: round4(growth),
            persistence_write_latency_ms: round2(latency_s * 1000.0),
            retention_days: round2(retention_days),
            history_shards: cap.history_shards,
            overrides: cap.overrides.clone(),
        },
        per_workflow: per,
        load,
        history_shards,
        services,
        task_queues,
        persistence,
        visibility,
        worker_pools,
        warnings,
        assumptions,
    })
}

/// Every input the model divides by or raises to a power, checked before any arithmetic.
fn check_inputs(
    cap: &crate::config::CapacityConfig,
    starts: f64,
    activities: f64,
    timers: f64,
    burst: f64,
) -> Result<(), CapacityError> {
    let duration_s = cap.average_workflow_duration.as_secs_f64();
    let latency_s = cap.persistence_write_latency.as_secs_f64();
    let mut issues = check_overrides(&cap.overrides);
    issues.extend(check_load(
        &LoadInputs {
            peak_workflow_starts_per_second: starts,
            activities_per_workflow: activities,
            timers_and_signals_per_workflow: timers,
            burst_multiplier: burst,
        },
        &cap.overrides,
    ));
    if burst < 1.0 {
        issues.push(Issue {
            path: "capacity.burst_multiplier".into(),
            message: "must be at least 1 (1 means no burst above the daily peak)".into(),
        });
    }
    if duration_s <= 0.0 {
        issues.push(Issue {
            path: "capacity.average_workflow_duration".into(),
            message: "must be greater than 0 (e.g. 30s, 2h, 7d)".into(),
        });
    }
    if latency_s < 0.001 {
        issues.push(Issue {
            path: "capacity.persistence_write_latency".into(),
            message: "must be at least 1ms (a typical PostgreSQL p99 write is 2ms-20ms)".into(),
        });
    }
    if cap.growth.years > 10 {
        issues.push(Issue {
            path: "capacity.growth.years".into(),
            message: "must be between 0 and 10".into(),
        });
    }
    if issues.is_empty() {
        Ok(())
    } else {
        Err(CapacityError { issues })
    }
}

/// History and task counts of one workflow.
fn per_workflow(a: &Assumptions, events: f64, activities: f64, timers: f64) -> PerWorkflow {
    let workflow_tasks = 1.0 + activities + timers;
    PerWorkflow {
        history_events: round2(events),
        history_updates: round2(
            a.updates_per_workflow_base
                + activities * a.updates_per_activity
                + timers * a.updates_per_timer_or_signal,
        ),
        workflow_tasks: round2(workflow_tasks),
        activity_tasks: round2(activities),
        stored_bytes: round2(events * a.history_event_bytes + a.mutable_state_bytes),
    }
}

/// Every constant of the model with the value used (overridden or default) and its source.
fn assumption_values(
    a: &Assumptions,
    overrides: &std::collections::BTreeMap<String, f64>,
) -> Vec<AssumptionValue> {
    CONSTANTS
        .iter()
        .map(|c| {
            let value = a.get(c.name).unwrap_or(c.value);
            AssumptionValue {
                name: c.name,
                value,
                default: c.value,
                unit: c.unit,
                overridden: overrides.contains_key(c.name),
                source: c.source,
            }
        })
        .collect()
}

/// The history shard count to create the cluster with: the pinned value, else the planned one.
/// For steps that need only this number (e.g. a cluster step comparing with `historyShardCount`).
pub fn history_shard_count(config: &PlatformConfig) -> Result<u32, CapacityError> {
    plan(config).map(|s| s.history_shards.count)
}

/// Primary shards for a new Elasticsearch/OpenSearch visibility index; 1 for SQL visibility or
/// when the inputs cannot be planned (validation reports those first). Fits the visibility step's
/// shard hook: `SearchVisibilityStep::new().with_shard_hook(|ctx| capacity::visibility_primary_shards(&ctx.config))`.
pub fn visibility_primary_shards(config: &PlatformConfig) -> u32 {
    plan(config)
        .ok()
        .and_then(|s| s.visibility.primary_shards)
        .map_or(1, |n| u32::try_from(n).unwrap_or(u32::MAX).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(text: &str) -> Sizing {
        let loaded = crate::config::load_str(text, "example.yaml").expect("example is valid");
        plan(&loaded.config).expect("example plans")
    }

    /// The worked example of docs/capacity-model.md, number by number.
    #[test]
    fn worked_example_of_the_docs() {
        let s = example(include_str!("../../../examples/ecommerce-burst.yaml"));
        assert_eq!(
            (
                s.per_workflow.history_events,
                s.per_workflow.history_updates
            ),
            (51.0, 33.0)
        );
        assert_eq!(s.inputs.growth_factor, 1.96);
        assert_eq!(s.load.design.workflow_starts_per_second, 980.0);
        assert_eq!(s.load.design.history_updates_per_second, 32340.0);
        assert_eq!(s.load.design.open_workflows, 1_764_000.0);
        let h = &s.history_shards;
        assert_eq!((h.needed_for_throughput, h.count), (323.4, 512));
        assert_eq!(h.binding_constraint, Binding::Throughput);
        assert_eq!(h.design_updates_per_shard_per_second, 63.16);
        let svc = |name: &str| s.services.iter().find(|x| x.name == name).unwrap();
        let hist = svc("history");
        assert_eq!(
            (hist.replicas, hist.cpu_millicores, hist.memory_mib),
            (5, 6750, 10576)
        );
        assert_eq!(
            (svc("matching").replicas, svc("matching").cpu_millicores),
            (3, 1250)
        );
        assert_eq!(
            (svc("frontend").replicas, svc("frontend").cpu_millicores),
            (3, 2750)
        );
        assert_eq!(svc("worker").replicas, 2);
        assert_eq!(s.task_queues[0].partitions, 6);
        assert_eq!(s.task_queues[1].partitions, 4);
        assert_eq!(s.persistence.transactions_per_second, 16500.0);
        assert_eq!(s.persistence.row_writes_per_second, 66000.0);
        assert_eq!(s.persistence.workflows_retained, 11_871_720.0);
        assert_eq!(s.persistence.total_storage_gib, 667.98);
        assert_eq!(s.visibility.primary_shards, Some(1));
        assert_eq!(s.visibility.total_size_gib, 45.29);
        assert_eq!(s.worker_pools[0].max_concurrent_activities, 8);
        assert_eq!(s.worker_pools[0].activity_pollers, 2);
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    }

    #[test]
    fn worker_concurrency_by_profile_and_override() {
        let s = example(include_str!("../../../examples/fintech-large.yaml"));
        let slots: Vec<(&str, u64)> = s
            .worker_pools
            .iter()
            .map(|w| (w.profile, w.max_concurrent_activities))
            .collect();
        // io 4 cores x 5 (overridden), io 2 x 5, cpu 8 x 1, gpu 2 GPUs x 1.
        assert_eq!(slots, [("io", 20), ("io", 10), ("cpu", 8), ("gpu", 2)]);
        let a = &s.worker_pools[0].autoscaling;
        assert_eq!(
            (
                a.scale_up_above_ms,
                a.target_slot_utilization,
                a.scale_down_after_seconds
            ),
            (300.0, 0.7, 600.0)
        );
        assert!(
            s.assumptions
                .iter()
                .any(|x| x.name == "io_slots_per_core" && x.overridden)
        );
    }

    /// The burst harness's pool: 0.2 tasks/s x burst 50 x 4 s = 40 busy slots, 4 slots per replica
    /// at 0.7 target utilisation = 14.3, so 15 replicas; a max below that is warned about.
    #[test]
    fn replicas_for_burst_by_littles_law() {
        let text = include_str!("../../../tests/burst/platform.yaml");
        let s = example(text);
        assert_eq!(s.worker_pools[0].replicas_for_burst, Some(15));
        assert!(
            !s.warnings.iter().any(|w| w.path.starts_with("workers")),
            "{:?}",
            s.warnings
        );
        let s = example(&text.replace("max: 16", "max: 10"));
        let w = s
            .warnings
            .iter()
            .find(|w| w.path == "workers[0].replicas.max")
            .expect("a max below the burst's need is warned about");
        assert!(
            w.message.contains("needs 15 replicas") && w.message.contains("40 busy slots"),
            "{}",
            w.message
        );
        // Without activity_duration the plan cannot know, and says nothing.
        let s = example(&text.replace("    activity_duration: 4s\n", ""));
        assert_eq!(s.worker_pools[0].replicas_for_burst, None);
    }

    #[test]
    fn development_relaxes_minimums() {
        // The local example pins the dev server's single shard; size it as `auto` here.
        let local = include_str!("../../../examples/local.yaml")
            .replace("history_shards: 1 ", "history_shards: auto ");
        let s = example(&local);
        assert_eq!(s.inputs.environment, "development");
        assert!(
            s.services.iter().all(|x| x.replicas == 1),
            "{:?}",
            s.services
        );
        assert_eq!(s.history_shards.count, 16);
    }

    #[test]
    fn accessors_for_steps() {
        let text = include_str!("../../../examples/fintech-large.yaml");
        let c = crate::config::load_str(text, "x.yaml").unwrap().config;
        assert_eq!(history_shard_count(&c).unwrap(), 256);
        assert_eq!(visibility_primary_shards(&c), 15);
        let local = include_str!("../../../examples/local.yaml");
        let c = crate::config::load_str(local, "x.yaml").unwrap().config;
        assert_eq!(visibility_primary_shards(&c), 1);
    }

    #[test]
    fn fmt_rate_is_readable() {
        assert_eq!(fmt_rate(323.4), "323.4");
        assert_eq!(fmt_rate(1_764_000.0), "1764000");
        assert_eq!(fmt_rate(0.00405), "0.0041");
        assert_eq!(fmt_rate(66.666_666), "66.67");
        assert_eq!(fmt_rate(f64::INFINITY), "inf");
    }
}
