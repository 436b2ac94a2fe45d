//! Everything sized after the shard count: Temporal services, task queue partitions, worker pools,
//! PostgreSQL and visibility. Pure functions of the load levels and the assumptions.

use std::collections::HashMap;

use serde::Serialize;

use super::constants::{Assumptions, Issue};
use super::shards::ceil_u64;
use super::{Load, PerWorkflow, fmt_rate, round2};
use crate::config::{PlatformConfig, Priority, VisibilityConfig, WorkerPoolConfig, WorkerProfile};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const SECONDS_PER_DAY: f64 = 86_400.0;
/// history.cacheTTL: an untouched mutable state leaves the cache after an hour.
const CACHE_TTL_SECONDS: f64 = 3_600.0;

/// One Temporal service deployment with its per-replica requests.
#[derive(Debug, Clone, Serialize)]
pub struct Service {
    pub name: &'static str,
    pub replicas: u64,
    pub cpu_millicores: u64,
    pub memory_mib: u64,
    /// How the replica count was derived.
    pub basis: String,
}

fn cpu_request(a: &Assumptions, cores_total: f64, replicas: u64) -> u64 {
    let per_replica = cores_total / replicas.max(1) as f64 * 1000.0;
    let step = a.cpu_request_step_millicores;
    ceil_u64(((per_replica / step).ceil() * step).max(a.min_cpu_millicores))
}

pub(super) fn services(
    a: &Assumptions,
    load: &Load,
    shards: u32,
    production: bool,
) -> Vec<Service> {
    let min = if production {
        a.min_replicas_production
    } else {
        a.min_replicas_development
    };
    let min_r = ceil_u64(min).max(1);
    let max_cores = a.max_cores_per_replica;

    let h_cores = load.history_updates_per_second / a.history_updates_per_core;
    let by_shards = ceil_u64(f64::from(shards) / a.shards_per_history_replica);
    let by_cpu = ceil_u64(h_cores / max_cores);
    let h_replicas = min_r.max(by_shards).max(by_cpu);
    let shards_per_replica = ceil_u64(f64::from(shards) / h_replicas as f64);
    // The host-level cache holds the workflows touched within its TTL (1 h): the open ones and
    // those started in the last hour, spread over the replicas, up to its entry limit.
    let cached = ((load.open_workflows + load.workflow_starts_per_second * CACHE_TTL_SECONDS)
        / h_replicas as f64)
        .min(a.history_cache_entries_per_host);
    let history = Service {
        name: "history",
        replicas: h_replicas,
        cpu_millicores: cpu_request(a, h_cores, h_replicas),
        memory_mib: ceil_u64(
            a.history_memory_base_mib
                + shards_per_replica as f64 * a.history_memory_per_shard_mib
                + cached * a.mutable_state_cache_entry_kib / 1024.0,
        ),
        basis: format!(
            "max(minimum {min_r}, {shards} shards / {} per replica = {by_shards}, {} updates/s / {} per core = {} cores / {} per replica = {by_cpu})",
            fmt_rate(a.shards_per_history_replica),
            fmt_rate(load.history_updates_per_second),
            fmt_rate(a.history_updates_per_core),
            fmt_rate(h_cores),
            fmt_rate(max_cores),
        ),
    };

    let m_cores = load.tasks_per_second / a.matching_tasks_per_core;
    let m_by_cpu = ceil_u64(m_cores / max_cores);
    let m_replicas = min_r.max(m_by_cpu);
    let matching = Service {
        name: "matching",
        replicas: m_replicas,
        cpu_millicores: cpu_request(a, m_cores, m_replicas),
        memory_mib: ceil_u64(a.matching_memory_mib),
        basis: format!(
            "max(minimum {min_r}, {} tasks/s / {} per core = {} cores / {} per replica = {m_by_cpu})",
            fmt_rate(load.tasks_per_second),
            fmt_rate(a.matching_tasks_per_core),
            fmt_rate(m_cores),
            fmt_rate(max_cores),
        ),
    };

    let requests =
        load.workflow_starts_per_second + load.tasks_per_second * a.frontend_requests_per_task;
    let f_cores = requests / a.frontend_requests_per_core;
    let f_by_cpu = ceil_u64(f_cores / max_cores);
    let f_replicas = min_r.max(f_by_cpu);
    let frontend = Service {
        name: "frontend",
        replicas: f_replicas,
        cpu_millicores: cpu_request(a, f_cores, f_replicas),
        memory_mib: ceil_u64(a.frontend_memory_mib),
        basis: format!(
            "max(minimum {min_r}, {} requests/s / {} per core = {} cores / {} per replica = {f_by_cpu})",
            fmt_rate(requests),
            fmt_rate(a.frontend_requests_per_core),
            fmt_rate(f_cores),
            fmt_rate(max_cores),
        ),
    };

    let w_replicas = if production {
        ceil_u64(a.worker_service_replicas_production).max(1)
    } else {
        ceil_u64(a.min_replicas_development).max(1)
    };
    let worker = Service {
        name: "worker",
        replicas: w_replicas,
        cpu_millicores: ceil_u64(a.worker_service_cpu_millicores),
        memory_mib: ceil_u64(a.worker_service_memory_mib),
        basis: "fixed: system workflows only".into(),
    };
    vec![frontend, history, matching, worker]
}

/// A task queue served by one or more worker pools.
#[derive(Debug, Clone, Serialize)]
pub struct TaskQueue {
    pub namespace: String,
    pub task_queue: String,
    pub pools: Vec<String>,
    /// Sum of the pools' `peak_tasks_per_second`, when any is set.
    pub peak_tasks_per_second: Option<f64>,
    /// The peak times the burst multiplier.
    pub burst_tasks_per_second: Option<f64>,
    pub partitions: u64,
    pub basis: String,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct ReplicaBounds {
    pub min: u32,
    pub max: u32,
}

/// Horizontal autoscaling of a pool (the chart's KEDA ScaledObject; docs/autoscaling.md).
#[derive(Debug, Clone, Serialize)]
pub struct Autoscaling {
    /// The metrics the two triggers read.
    pub signals: [&'static str; 3],
    /// Scale up when the p95 schedule-to-start or the oldest backlog task's age is above this
    /// (`observability.slo.scale_up_schedule_to_start`).
    pub scale_up_above_ms: f64,
    /// Share of the task slots the pool is sized to keep busy.
    pub target_slot_utilization: f64,
    pub scale_down_after_seconds: f64,
    pub min_replicas: u32,
    pub max_replicas: u32,
}

/// Settings of one worker pool.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerPool {
    pub name: String,
    pub namespace: String,
    pub task_queue: String,
    pub profile: &'static str,
    pub priority: &'static str,
    pub cpu_cores: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    /// Per replica (the SDK's max concurrent activity executions).
    pub max_concurrent_activities: u64,
    /// Activity task pollers per replica.
    pub activity_pollers: u64,
    pub replicas: ReplicaBounds,
    pub max_concurrent_activities_at_max_replicas: u64,
    pub task_queue_partitions: u64,
    pub autoscaling: Autoscaling,
    /// Replicas the pool needs at the burst, when `peak_tasks_per_second` and
    /// `activity_duration` are given: ceil(tasks/s x burst x duration / (slots x target use)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas_for_burst: Option<u64>,
    pub basis: String,
}

type WorkerPlan = (Vec<TaskQueue>, Vec<WorkerPool>, Vec<Issue>);

pub(super) fn workers(
    a: &Assumptions,
    config: &PlatformConfig,
    burst: f64,
    production: bool,
) -> WorkerPlan {
    let default_ns = config
        .namespaces
        .first()
        .map(|n| n.name.to_string())
        .unwrap_or_default();
    let default_p = ceil_u64(a.default_task_queue_partitions).max(1);
    let queues = task_queues(a, config, burst, &default_ns, default_p);

    let mut pools = Vec::new();
    let mut warnings = Vec::new();
    for (i, w) in config.workers.iter().enumerate() {
        let ns = w
            .namespace
            .as_ref()
            .map(|n| n.to_string())
            .unwrap_or_else(|| default_ns.clone());
        let cores = w.cpu_cores.get();
        let (profile, slots, basis) = activity_slots(a, w);
        let slots = ceil_u64(slots.floor()).max(1);
        let pollers = ceil_u64(slots as f64 / a.activity_slots_per_poller).clamp(
            ceil_u64(a.min_pollers).max(1),
            ceil_u64(a.max_pollers).max(1),
        );
        let priority = match w.priority {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        };
        if production
            && w.priority == Priority::High
            && f64::from(w.replicas.min) < a.min_replicas_high_priority_pool
        {
            warnings.push(Issue {
                path: format!("workers[{i}].replicas.min"),
                message: format!(
                    "high-priority pool `{}` keeps {} replica(s) at minimum; use at least {} so one pod loss does not stop its task queue",
                    w.name,
                    w.replicas.min,
                    fmt_rate(a.min_replicas_high_priority_pool)
                ),
            });
        }
        let burst_need = burst_replicas(a, w, burst, slots);
        if let Some(need) = &burst_need
            && need.replicas > u64::from(w.replicas.max)
        {
            warnings.push(Issue {
                path: format!("workers[{i}].replicas.max"),
                message: format!(
                    "pool `{}` needs {} replicas at the burst ({}); replicas.max {} caps it, so its queue will backlog. Raise replicas.max or the slots per replica",
                    w.name, need.replicas, need.basis, w.replicas.max
                ),
            });
        }
        let partitions = queues
            .iter()
            .find(|q| q.namespace == ns && q.task_queue == w.task_queue.as_str())
            .map_or(default_p, |q| q.partitions);
        pools.push(WorkerPool {
            name: w.name.to_string(),
            namespace: ns,
            task_queue: w.task_queue.to_string(),
            profile,
            priority,
            cpu_cores: cores,
            gpus: w.gpus,
            max_concurrent_activities: slots,
            activity_pollers: pollers,
            replicas: ReplicaBounds {
                min: w.replicas.min,
                max: w.replicas.max,
            },
            max_concurrent_activities_at_max_replicas: slots
                .saturating_mul(u64::from(w.replicas.max)),
            task_queue_partitions: partitions,
            autoscaling: Autoscaling {
                signals: [
                    "task_schedule_to_start_latency",
                    "approximate_backlog_age_seconds",
                    "temporal_worker_task_slots_used",
                ],
                scale_up_above_ms: config
                    .observability
                    .slo
                    .scale_up_schedule_to_start
                    .as_secs_f64()
                    * 1000.0,
                target_slot_utilization: a.target_slot_utilization,
                scale_down_after_seconds: a.scale_down_after_seconds,
                min_replicas: w.replicas.min,
                max_replicas: w.replicas.max,
            },
            replicas_for_burst: burst_need.as_ref().map(|n| n.replicas),
            basis: format!("{basis} = {slots} per replica"),
        });
    }
    (queues, pools, warnings)
}

/// The task queues the pools poll, with their summed peak and the partitions it needs.
fn task_queues(
    a: &Assumptions,
    config: &PlatformConfig,
    burst: f64,
    default_ns: &str,
    default_p: u64,
) -> Vec<TaskQueue> {
    let mut queues: Vec<TaskQueue> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    for w in &config.workers {
        let ns = w
            .namespace
            .as_ref()
            .map(|n| n.to_string())
            .unwrap_or_else(|| default_ns.to_string());
        let key = (ns.clone(), w.task_queue.to_string());
        let i = *index.entry(key).or_insert_with(|| {
            queues.push(TaskQueue {
                namespace: ns,
                task_queue: w.task_queue.to_string(),
                pools: vec![],
                peak_tasks_per_second: None,
                burst_tasks_per_second: None,
                partitions: 0,
                basis: String::new(),
            });
            queues.len() - 1
        });
        let q = &mut queues[i];
        q.pools.push(w.name.to_string());
        if let Some(p) = w.peak_tasks_per_second {
            q.peak_tasks_per_second = Some(q.peak_tasks_per_second.unwrap_or(0.0) + p.get());
        }
    }
    for q in &mut queues {
        match q.peak_tasks_per_second {
            None => {
                q.partitions = default_p;
                q.basis = "default (no peak_tasks_per_second on its pools)".into();
            }
            Some(peak) => {
                let b = peak * burst;
                let need = ceil_u64(b / a.tasks_per_partition_per_second);
                q.partitions = default_p.max(need);
                q.peak_tasks_per_second = Some(round2(peak));
                q.burst_tasks_per_second = Some(round2(b));
                q.basis = format!(
                    "max(default {default_p}, {} tasks/s x burst {} = {} / {} per partition = {need})",
                    fmt_rate(peak),
                    fmt_rate(burst),
                    fmt_rate(b),
                    fmt_rate(a.tasks_per_partition_per_second)
                );
            }
        }
    }

    queues
}

/// Replicas a pool needs at the burst, with the arithmetic.
struct BurstNeed {
    replicas: u64,
    basis: String,
}

/// Little's law: busy slots = tasks per second x seconds per task; the pool is sized so they are
/// `target_slot_utilization` of its slots (what the autoscaler's slot trigger converges to).
fn burst_replicas(
    a: &Assumptions,
    w: &WorkerPoolConfig,
    burst: f64,
    slots: u64,
) -> Option<BurstNeed> {
    let peak = w.peak_tasks_per_second?.get();
    let seconds = w.activity_duration?.as_secs_f64();
    let busy = peak * burst * seconds;
    let replicas = ceil_u64(busy / (slots as f64 * a.target_slot_utilization)).max(1);
    Some(BurstNeed {
        replicas,
        basis: format!(
            "{} tasks/s x burst {} x {} s = {} busy slots / ({slots} slots x {} target utilisation)",
            fmt_rate(peak),
            fmt_rate(burst),
            fmt_rate(seconds),
            fmt_rate(busy),
            fmt_rate(a.target_slot_utilization)
        ),
    })
}

/// Concurrent activity slots of one replica, by profile, with the reasoning.
fn activity_slots(a: &Assumptions, w: &WorkerPoolConfig) -> (&'static str, f64, String) {
    let cores = w.cpu_cores.get();
    let gpus = w.gpus.unwrap_or(1).max(1);
    match w.profile {
        WorkerProfile::Cpu => (
            "cpu",
            cores * a.cpu_slots_per_core,
            format!(
                "CPU-bound: {} cores x {}",
                fmt_rate(cores),
                fmt_rate(a.cpu_slots_per_core)
            ),
        ),
        WorkerProfile::Io => (
            "io",
            cores * a.io_slots_per_core,
            format!(
                "I/O-bound: {} cores x {}",
                fmt_rate(cores),
                fmt_rate(a.io_slots_per_core)
            ),
        ),
        WorkerProfile::Gpu => (
            "gpu",
            f64::from(gpus) * a.gpu_slots_per_gpu,
            format!("GPU: {gpus} GPUs x {}", fmt_rate(a.gpu_slots_per_gpu)),
        ),
    }
}

/// Workflow state in the persistence database.
#[derive(Debug, Clone, Serialize)]
pub struct Persistence {
    pub store: &'static str,
    /// Today under burst (history updates, plus visibility writes when visibility is SQL).
    pub transactions_per_second: f64,
    pub row_writes_per_second: f64,
    /// Closed workflows within retention plus open ones, at the end of the growth horizon.
    pub workflows_retained: f64,
    pub history_storage_gib: f64,
    /// SQL visibility in the same server (0 with Elasticsearch).
    pub visibility_storage_gib: f64,
    pub total_storage_gib: f64,
    pub basis: String,
}

/// The visibility store.
#[derive(Debug, Clone, Serialize)]
pub struct Visibility {
    pub store: &'static str,
    pub writes_per_second: f64,
    pub documents: f64,
    /// One copy, without replicas.
    pub primary_size_gib: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_shards: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u64>,
    pub total_size_gib: f64,
    pub basis: String,
}

pub(super) fn storage_warnings(a: &Assumptions, p: &Persistence) -> Vec<Issue> {
    if p.store == "postgres" && p.total_storage_gib > a.postgres_storage_warning_gib {
        vec![Issue {
            path: "capacity.retention".into(),
            message: format!(
                "persistence needs about {} GiB at the end of the growth horizon, above {} GiB for one PostgreSQL primary; backups, restores and vacuum will take hours. Shorten retention, archive closed histories, or split namespaces over several clusters",
                fmt_rate(p.total_storage_gib),
                fmt_rate(a.postgres_storage_warning_gib)
            ),
        }]
    } else {
        vec![]
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn storage(
    a: &Assumptions,
    config: &PlatformConfig,
    per: &PerWorkflow,
    load: &Load,
    average_rate_at_horizon: f64,
    duration_s: f64,
    retention_days: f64,
    production: bool,
) -> (Persistence, Visibility) {
    let retained = average_rate_at_horizon * (retention_days * SECONDS_PER_DAY + duration_s);
    let overhead = 1.0 + a.postgres_storage_overhead;
    let history_gib = retained * per.stored_bytes * overhead / GIB;
    let vis_writes = load.workflow_starts_per_second * a.visibility_writes_per_workflow;
    let vis_primary_gib = retained * a.visibility_document_bytes / GIB;
    let store = match config.persistence {
        crate::config::PersistenceConfig::Postgres(_) => "postgres",
        crate::config::PersistenceConfig::Sqlite(_) => "sqlite",
    };
    let updates = load.history_updates_per_second;
    let basis_retained = format!(
        "{} starts/s (average at horizon) x ({} days + {} s open) = {} workflows",
        fmt_rate(average_rate_at_horizon),
        fmt_rate(retention_days),
        fmt_rate(duration_s),
        fmt_rate(retained)
    );

    let (visibility, sql_vis_gib, sql_vis_writes) = match &config.visibility {
        VisibilityConfig::Elasticsearch(es) => {
            let shards = ceil_u64(vis_primary_gib / a.es_target_primary_shard_gib).max(1);
            let replicas = es.replicas.map(u64::from).unwrap_or_else(|| {
                ceil_u64(if production {
                    a.es_replicas_production
                } else {
                    a.es_replicas_development
                })
            });
            (
                Visibility {
                    store: "elasticsearch",
                    writes_per_second: round2(vis_writes),
                    documents: retained.round(),
                    primary_size_gib: round2(vis_primary_gib),
                    primary_shards: Some(shards),
                    replicas: Some(replicas),
                    total_size_gib: round2(vis_primary_gib * (1 + replicas) as f64),
                    basis: format!(
                        "{} GiB / {} GiB per primary shard = {shards} primaries, {replicas} replica(s) each",
                        fmt_rate(vis_primary_gib),
                        fmt_rate(a.es_target_primary_shard_gib)
                    ),
                },
                0.0,
                0.0,
            )
        }
        VisibilityConfig::Postgres(_) | VisibilityConfig::Sqlite(_) => {
            let sql_gib = vis_primary_gib * overhead;
            (
                Visibility {
                    store: if matches!(config.visibility, VisibilityConfig::Postgres(_)) {
                        "postgres"
                    } else {
                        "sqlite"
                    },
                    writes_per_second: round2(vis_writes),
                    documents: retained.round(),
                    primary_size_gib: round2(vis_primary_gib),
                    primary_shards: None,
                    replicas: None,
                    total_size_gib: round2(sql_gib),
                    basis: format!(
                        "{} records x {} bytes x {} overhead",
                        fmt_rate(retained),
                        fmt_rate(a.visibility_document_bytes),
                        fmt_rate(overhead)
                    ),
                },
                sql_gib,
                vis_writes,
            )
        }
    };
    let persistence = Persistence {
        store,
        transactions_per_second: round2(updates + sql_vis_writes),
        row_writes_per_second: round2(updates * a.postgres_rows_per_update + sql_vis_writes),
        workflows_retained: retained.round(),
        history_storage_gib: round2(history_gib),
        visibility_storage_gib: round2(sql_vis_gib),
        total_storage_gib: round2(history_gib + sql_vis_gib),
        basis: format!(
            "{basis_retained} x {} bytes x {} overhead",
            fmt_rate(per.stored_bytes),
            fmt_rate(overhead)
        ),
    };
    (persistence, visibility)
}
