//! The planner's named constants: every number the model uses, with its unit, valid range and a
//! one-line source or reason. Each can be overridden with `capacity.overrides.<name>`.
//!
//! This file depends on nothing else in the crate, so `config::validate` can check override names
//! and load limits against it without a dependency cycle (config -> capacity::constants,
//! capacity -> config).

use std::collections::BTreeMap;

use serde::Serialize;

/// What values a constant accepts besides its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Real,
    Integer,
    PowerOfTwo,
}

/// One named constant of the model.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Constant {
    pub name: &'static str,
    pub value: f64,
    pub unit: &'static str,
    pub min: f64,
    pub max: f64,
    pub kind: Kind,
    /// Where the default comes from, in one line.
    pub source: &'static str,
}

impl Constant {
    /// Why `v` is not acceptable for this constant, if it is not.
    pub fn reject(&self, v: f64) -> Option<String> {
        let range = format!(
            "between {} and {} {}",
            fmt_num(self.min),
            fmt_num(self.max),
            self.unit
        );
        if !v.is_finite() {
            return Some(format!("must be a finite number {range}"));
        }
        if v < self.min || v > self.max {
            return Some(format!("{} is out of range; expected {range}", fmt_num(v)));
        }
        match self.kind {
            Kind::Real => None,
            Kind::Integer if v.fract() != 0.0 => Some(format!(
                "{} is not a whole number; expected {range}",
                fmt_num(v)
            )),
            Kind::PowerOfTwo if v.fract() != 0.0 || !(v as u64).is_power_of_two() => Some(format!(
                "{} is not a power of two; expected a power of two {range}",
                fmt_num(v)
            )),
            _ => None,
        }
    }

    /// The nearest acceptable value (used when the planner is called without validation).
    fn coerce(&self, v: f64) -> f64 {
        if !v.is_finite() {
            return self.value;
        }
        let v = v.clamp(self.min, self.max);
        match self.kind {
            Kind::Real => v,
            Kind::Integer => v.round().clamp(self.min, self.max),
            // Invariant: max is at most 131072 for every power-of-two constant, so no overflow.
            Kind::PowerOfTwo => (v.ceil() as u64).next_power_of_two() as f64,
        }
    }
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

macro_rules! constants {
    ($( $name:ident : $value:expr, $unit:expr, [$min:expr, $max:expr], $kind:ident, $source:expr; )*) => {
        /// Every constant of the model, in documentation order.
        pub const CONSTANTS: &[Constant] = &[ $( Constant {
            name: stringify!($name),
            value: $value,
            unit: $unit,
            min: $min,
            max: $max,
            kind: Kind::$kind,
            source: $source,
        }, )* ];

        /// The constants in force for one plan: defaults with the overrides applied.
        #[derive(Debug, Clone, PartialEq)]
        pub struct Assumptions { $( pub $name: f64, )* }

        impl Assumptions {
            pub fn defaults() -> Self {
                Self { $( $name: $value, )* }
            }

            /// Applies overrides. Unknown names are ignored and invalid values are brought into
            /// range here; `config::validate` rejects both before the planner runs.
            pub fn with_overrides(overrides: &BTreeMap<String, f64>) -> Self {
                let mut a = Self::defaults();
                $(
                    if let Some(v) = overrides.get(stringify!($name)) {
                        a.$name = constant(stringify!($name)).map_or($value, |c| c.coerce(*v));
                    }
                )*
                a
            }

            /// The value of the constant called `name`.
            pub fn get(&self, name: &str) -> Option<f64> {
                match name {
                    $( stringify!($name) => Some(self.$name), )*
                    _ => None,
                }
            }
        }
    };
}

constants! {
    // --- history events and updates per workflow (the per-event model) ---
    events_per_workflow_base: 5.0, "events", [1.0, 1000.0], Integer,
        "WorkflowExecutionStarted + first workflow task (scheduled, started, completed) + WorkflowExecutionCompleted";
    events_per_activity: 6.0, "events", [1.0, 1000.0], Integer,
        "ActivityTaskScheduled, Started, Completed + the workflow task that reacts (scheduled, started, completed)";
    events_per_timer_or_signal: 5.0, "events", [1.0, 1000.0], Integer,
        "TimerStarted + TimerFired (a signal: WorkflowExecutionSignaled) + a workflow task round trip (3)";
    updates_per_workflow_base: 3.0, "updates", [1.0, 1000.0], Integer,
        "serialised shard writes: create the execution, first workflow task started, first workflow task completed";
    updates_per_activity: 4.0, "updates", [1.0, 1000.0], Integer,
        "activity started, activity completed (+ workflow task scheduled), workflow task started, workflow task completed";
    updates_per_timer_or_signal: 3.0, "updates", [1.0, 1000.0], Integer,
        "timer fired or signal received (+ workflow task scheduled), workflow task started, workflow task completed";
    // --- load shape ---
    burst_duration_seconds: 3600.0, "s", [60.0, 604800.0], Real,
        "a burst lasts about an hour (a Black Friday hour); only the open-workflow count depends on it";
    average_to_peak_ratio: 0.5, "ratio", [0.01, 1.0], Real,
        "a daily traffic curve averages about half its peak hour; used for storage only";
    // --- history shards ---
    shard_target_utilization: 0.5, "fraction of the per-shard ceiling", [0.05, 1.0], Real,
        "headroom for uneven hashing of workflows to shards, retries and write-latency spikes";
    max_open_workflows_per_shard: 1000000.0, "workflows", [1000.0, 1000000000.0], Real,
        "keeps per-shard timer/transfer queues and database ranges moderate; engineering judgement, not a Temporal limit";
    min_history_shards: 16.0, "shards", [1.0, 16384.0], PowerOfTwo,
        "fewer shards cannot spread over 3 history hosts and leave no room to grow (the count is immutable)";
    max_history_shards: 16384.0, "shards", [16.0, 131072.0], PowerOfTwo,
        "beyond this shard ownership churn and database connections need expert tuning (clusters have run 128K)";
    typical_max_history_shards: 4096.0, "shards", [16.0, 131072.0], PowerOfTwo,
        "above this the plan warns: a very large cluster, review the inputs before fixing the count forever";
    // --- Temporal services ---
    shards_per_history_replica: 500.0, "shards", [1.0, 131072.0], Integer,
        "Temporal suggests starting with one history process per 500 shards";
    min_replicas_production: 3.0, "replicas", [1.0, 100.0], Integer,
        "history, matching and frontend survive one node loss during a rolling update";
    min_replicas_development: 1.0, "replicas", [1.0, 100.0], Integer,
        "development clusters trade availability for footprint";
    max_cores_per_replica: 8.0, "cores", [1.0, 128.0], Integer,
        "beyond about 8 cores a Go process scales worse than another replica (GC, scheduling)";
    min_cpu_millicores: 500.0, "millicores", [100.0, 64000.0], Integer,
        "smallest CPU request that keeps a Temporal service responsive at idle";
    cpu_request_step_millicores: 250.0, "millicores", [1.0, 4000.0], Integer,
        "CPU requests are rounded up to this step so plans stay stable under small input changes";
    history_updates_per_core: 500.0, "updates/s per core", [10.0, 1000000.0], Real,
        "conservative estimate of history CPU per serialised update (encoding, task processing); measure and override";
    history_memory_base_mib: 1024.0, "MiB", [128.0, 1048576.0], Real,
        "Go runtime, gRPC and caches of a history process without shards";
    history_memory_per_shard_mib: 0.5, "MiB per shard", [0.0, 1024.0], Real,
        "the shard's events cache when full (history.eventsCacheMaxSizeBytes 512 KiB); at rest a shard measured 0.03 MiB (scripts/bench/shards)";
    history_cache_entries_per_host: 128000.0, "mutable states", [0.0, 100000000.0], Integer,
        "history.hostLevelCacheMaxSize: since 1.26 one mutable-state cache per history host (128,000 entries), not 512 per shard";
    mutable_state_cache_entry_kib: 76.0, "KiB", [0.1, 10240.0], Real,
        "live heap per cached workflow measured on 1.32.2 (scripts/bench/shards: 74 and 79 KiB, workflows of 4 activities); bigger histories cost more";
    matching_tasks_per_core: 2000.0, "tasks/s per core", [10.0, 1000000.0], Real,
        "estimate: matching dispatches tasks in memory; measure and override";
    matching_memory_mib: 1024.0, "MiB", [128.0, 1048576.0], Real,
        "task queue partitions are small in memory; backlogs stay in the database";
    frontend_requests_per_task: 2.0, "requests per task", [1.0, 10.0], Real,
        "each task costs a poll and a respond call at the frontend";
    frontend_requests_per_core: 2000.0, "requests/s per core", [10.0, 1000000.0], Real,
        "estimate: the frontend authenticates, rate-limits and forwards; measure and override";
    frontend_memory_mib: 1024.0, "MiB", [128.0, 1048576.0], Real,
        "mostly open long polls and TLS sessions";
    worker_service_replicas_production: 2.0, "replicas", [1.0, 100.0], Integer,
        "the internal worker service runs system workflows (scanners, replication); two survive a node loss";
    worker_service_cpu_millicores: 500.0, "millicores", [100.0, 64000.0], Integer,
        "system workflows are light";
    worker_service_memory_mib: 1024.0, "MiB", [128.0, 1048576.0], Real,
        "system workflows are light";
    // --- task queues ---
    default_task_queue_partitions: 4.0, "partitions", [1.0, 1024.0], Integer,
        "Temporal's default read and write partitions per task queue";
    tasks_per_partition_per_second: 500.0, "tasks/s", [10.0, 1000000.0], Real,
        "one partition is owned by one matching host and dispatches in order; stay well below ~1000 tasks/s";
    // --- persistence and visibility storage ---
    history_event_bytes: 512.0, "bytes", [64.0, 2097152.0], Real,
        "workflow task events ~150 bytes, scheduled/completed events carry ~1 KiB JSON payloads; measure yours";
    mutable_state_bytes: 4096.0, "bytes per workflow", [256.0, 104857600.0], Real,
        "the executions row with its activity, timer and child maps";
    postgres_rows_per_update: 4.0, "rows", [1.0, 100.0], Real,
        "a history update inserts a history node, updates the execution, inserts a task and later deletes it";
    postgres_storage_overhead: 1.0, "fraction added", [0.0, 10.0], Real,
        "indexes, dead tuples before vacuum and WAL double the raw row size";
    postgres_storage_warning_gib: 10240.0, "GiB", [1.0, 1000000000.0], Real,
        "beyond ~10 TiB on one primary, backups, restores and vacuum take hours; plan archival or shorter retention";
    visibility_writes_per_workflow: 2.0, "writes", [1.0, 1000.0], Real,
        "a started and a closed record; search attribute upserts add more";
    visibility_document_bytes: 2048.0, "bytes", [128.0, 10485760.0], Real,
        "one visibility record with a handful of search attributes, indexed";
    es_target_primary_shard_gib: 30.0, "GiB", [10.0, 50.0], Real,
        "Elastic recommends primary shards of 10-50 GB";
    es_replicas_production: 1.0, "replicas", [0.0, 5.0], Integer,
        "one copy of each shard survives a node loss (used when visibility.elasticsearch.replicas is unset)";
    es_replicas_development: 0.0, "replicas", [0.0, 5.0], Integer,
        "single-node development clusters cannot place replicas";
    // --- worker pools ---
    min_replicas_high_priority_pool: 2.0, "replicas", [1.0, 100.0], Integer,
        "in production a high-priority pool below this minimum stops its task queue when one pod dies (warning)";
    cpu_slots_per_core: 1.0, "activities per core", [0.5, 4.0], Real,
        "CPU-bound work: concurrency = number of cores";
    io_slots_per_core: 4.0, "activities per core", [1.0, 20.0], Real,
        "I/O-bound work: 2-5x cores (default 4x)";
    gpu_slots_per_gpu: 1.0, "activities per GPU", [1.0, 2.0], Integer,
        "GPU work: 1-2 per GPU (GPU memory, not cores, is the limit)";
    activity_slots_per_poller: 10.0, "slots", [1.0, 1000.0], Real,
        "one long poll keeps about ten slots fed without idle pollers";
    min_pollers: 2.0, "pollers", [1.0, 100.0], Integer,
        "two pollers hide the latency of one poll round trip";
    max_pollers: 16.0, "pollers", [1.0, 1000.0], Integer,
        "more pollers than this only load the frontend";
    target_slot_utilization: 0.7, "fraction of slots", [0.1, 1.0], Real,
        "autoscaling keeps about 70% of a pool's task slots busy: the rest absorbs a burst's first minute while new pods start";
    scale_down_after_seconds: 600.0, "s", [10.0, 86400.0], Real,
        "scale down only to the highest need of the last 10 minutes, so a pause in a burst does not saw-tooth the pool";
}

/// The constant called `name`.
pub fn constant(name: &str) -> Option<&'static Constant> {
    CONSTANTS.iter().find(|c| c.name == name)
}

/// A problem with the `capacity:` section, with its dotted field path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    pub path: String,
    pub message: String,
}

impl Issue {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Pairs that must stay ordered after overrides: (lower, upper).
const ORDERED: &[(&str, &str)] = &[
    ("min_history_shards", "max_history_shards"),
    ("min_pollers", "max_pollers"),
];

/// Checks `capacity.overrides`: every name must be a known constant and every value valid.
pub fn check_overrides(overrides: &BTreeMap<String, f64>) -> Vec<Issue> {
    let mut out = Vec::new();
    for (name, v) in overrides {
        let path = format!("capacity.overrides.{name}");
        match constant(name) {
            None => out.push(Issue::new(
                path,
                format!(
                    "unknown constant `{name}`; valid names: {} (see docs/capacity-model.md)",
                    CONSTANTS
                        .iter()
                        .map(|c| c.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
            Some(c) => {
                if let Some(why) = c.reject(*v) {
                    out.push(Issue::new(path, why));
                }
            }
        }
    }
    if out.is_empty() {
        let value = |n: &str| {
            overrides
                .get(n)
                .copied()
                .or_else(|| constant(n).map(|c| c.value))
                .unwrap_or(0.0)
        };
        for (lo, hi) in ORDERED {
            if value(lo) > value(hi) {
                let at = if overrides.contains_key(*lo) { lo } else { hi };
                out.push(Issue::new(
                    format!("capacity.overrides.{at}"),
                    format!(
                        "{lo} ({}) must not exceed {hi} ({})",
                        fmt_num(value(lo)),
                        fmt_num(value(hi))
                    ),
                ));
            }
        }
    }
    out
}

/// Highest normal daily peak the model accepts. The largest Temporal deployments publicly described
/// run well below a million workflow starts per second; beyond it the model is extrapolating.
pub const MAX_PEAK_STARTS_PER_SECOND: f64 = 1_000_000.0;
/// Highest burst multiplier accepted; a spike of more than 1000x is a different workload.
pub const MAX_BURST_MULTIPLIER: f64 = 1_000.0;
/// Largest `workers[].peak_tasks_per_second` the partition model plans for: at 500 tasks/s per
/// partition this is 2,000 partitions on one task queue, far beyond any cluster we model.
pub const MAX_PEAK_TASKS_PER_SECOND: f64 = 1_000_000.0;
/// Temporal's default hard limit on events in one workflow history (`limit.historyCount.error`).
pub const MAX_HISTORY_EVENTS: f64 = 51_200.0;
/// Temporal's default warning threshold on history events (`limit.historyCount.warn`).
pub const WARN_HISTORY_EVENTS: f64 = 10_240.0;

/// The load figures of `capacity:` that have limits (plain numbers, so config can call this).
#[derive(Debug, Clone, Copy)]
pub struct LoadInputs {
    pub peak_workflow_starts_per_second: f64,
    pub activities_per_workflow: f64,
    pub timers_and_signals_per_workflow: f64,
    pub burst_multiplier: f64,
}

/// History events of one workflow run under the given constants.
pub fn events_per_workflow(a: &Assumptions, activities: f64, timers: f64) -> f64 {
    a.events_per_workflow_base
        + activities * a.events_per_activity
        + timers * a.events_per_timer_or_signal
}

/// Errors for load figures beyond what the model (or Temporal) accepts.
pub fn check_load(input: &LoadInputs, overrides: &BTreeMap<String, f64>) -> Vec<Issue> {
    let mut out = Vec::new();
    let starts = input.peak_workflow_starts_per_second;
    if !starts.is_finite() || starts <= 0.0 {
        out.push(Issue::new(
            "capacity.peak_workflow_starts_per_second",
            "must be a number greater than 0",
        ));
    } else if starts > MAX_PEAK_STARTS_PER_SECOND {
        out.push(Issue::new(
            "capacity.peak_workflow_starts_per_second",
            format!(
                "{} starts per second is beyond what one Temporal cluster is modelled for (at most {}); split the load over several clusters or check the unit (per second, not per day)",
                fmt_num(starts),
                fmt_num(MAX_PEAK_STARTS_PER_SECOND)
            ),
        ));
    }
    let burst = input.burst_multiplier;
    if burst.is_finite() && burst > MAX_BURST_MULTIPLIER {
        out.push(Issue::new(
            "capacity.burst_multiplier",
            format!(
                "{} is beyond the modelled range 1 to {}; a spike this large is a different workload, plan it as its own peak",
                fmt_num(burst),
                fmt_num(MAX_BURST_MULTIPLIER)
            ),
        ));
    }
    let a = Assumptions::with_overrides(overrides);
    let events = events_per_workflow(
        &a,
        input.activities_per_workflow,
        input.timers_and_signals_per_workflow,
    );
    if !events.is_finite() || events > MAX_HISTORY_EVENTS {
        let field = if input.activities_per_workflow * a.events_per_activity
            >= input.timers_and_signals_per_workflow * a.events_per_timer_or_signal
        {
            "capacity.activities_per_workflow"
        } else {
            "capacity.timers_and_signals_per_workflow"
        };
        out.push(Issue::new(
            field,
            format!(
                "a workflow would have about {} history events, above Temporal's default limit of {} per run; model one run of a workflow that uses continue-as-new",
                fmt_num(events.round()),
                fmt_num(MAX_HISTORY_EVENTS)
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_names_unique() {
        let mut names = std::collections::BTreeSet::new();
        for c in CONSTANTS {
            assert!(names.insert(c.name), "duplicate constant {}", c.name);
            assert_eq!(c.reject(c.value), None, "default of {} is invalid", c.name);
            assert!(!c.source.is_empty() && !c.unit.is_empty(), "{}", c.name);
        }
        assert!(check_overrides(&BTreeMap::new()).is_empty());
    }

    #[test]
    fn overrides_are_checked() {
        let o = BTreeMap::from([("shard_target_utilisation".to_string(), 0.5)]);
        let issues = check_overrides(&o);
        assert_eq!(
            issues[0].path,
            "capacity.overrides.shard_target_utilisation"
        );
        assert!(issues[0].message.contains("shard_target_utilization"));

        for (name, v, want) in [
            ("shard_target_utilization", 0.0, "out of range"),
            ("shard_target_utilization", f64::NAN, "finite"),
            ("min_history_shards", 24.0, "power of two"),
            ("default_task_queue_partitions", 2.5, "whole number"),
        ] {
            let issues = check_overrides(&BTreeMap::from([(name.to_string(), v)]));
            assert!(issues[0].message.contains(want), "{name}: {issues:?}");
        }
        let issues = check_overrides(&BTreeMap::from([
            ("min_history_shards".to_string(), 8192.0),
            ("max_history_shards".to_string(), 4096.0),
        ]));
        assert!(
            issues.iter().any(|i| i.message.contains("must not exceed")),
            "{issues:?}"
        );
    }

    #[test]
    fn overrides_apply_and_are_coerced_without_validation() {
        let a = Assumptions::with_overrides(&BTreeMap::from([
            ("io_slots_per_core".to_string(), 3.0),
            ("min_history_shards".to_string(), 20.0),
            ("shard_target_utilization".to_string(), f64::INFINITY),
        ]));
        assert_eq!(a.io_slots_per_core, 3.0);
        assert_eq!(a.min_history_shards, 32.0);
        assert_eq!(a.shard_target_utilization, 0.5);
    }

    #[test]
    fn load_limits() {
        let ok = LoadInputs {
            peak_workflow_starts_per_second: 100.0,
            activities_per_workflow: 8.0,
            timers_and_signals_per_workflow: 2.0,
            burst_multiplier: 50.0,
        };
        assert!(check_load(&ok, &BTreeMap::new()).is_empty());
        let absurd = LoadInputs {
            peak_workflow_starts_per_second: 1e9,
            burst_multiplier: 1e6,
            activities_per_workflow: 1e7,
            ..ok
        };
        let paths: Vec<String> = check_load(&absurd, &BTreeMap::new())
            .into_iter()
            .map(|i| i.path)
            .collect();
        assert_eq!(
            paths,
            [
                "capacity.peak_workflow_starts_per_second",
                "capacity.burst_multiplier",
                "capacity.activities_per_workflow"
            ]
        );
    }
}
