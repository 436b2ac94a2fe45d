//! `render terraform-vars`: the EKS node groups the capacity plan needs, as a Terraform variables
//! file for terraform/examples/aws-complete, plus the chart values that place pods on them.
//!
//! Flow: render the chart values (see [`super::helm`]; same refusals, same plan) -> read back the
//! per-pod CPU, memory and GPU requests the chart will make -> split the pods into node groups
//! (`general`: frontend, matching, worker service, platform add-ons and CPU/IO worker pools;
//! `history`: the history service alone, labelled and tainted; `gpu`: GPU worker pools, when any)
//! -> per group, bin-pack the pods (first fit, largest first) on each candidate node shape's
//! allocatable capacity and keep the shape with the fewest vCPU in total (ties: the smaller
//! shape) -> add the headroom rule ->
//! write `node-groups.auto.tfvars.json` (variable `node_groups`) and `placement-values.yaml`
//! (history nodeSelector/tolerations; the worker pool list with GPU placement when a GPU pool
//! exists).
//!
//! Guarantees: pure and deterministic (a second render writes nothing); every pod the plan
//! requests at the pools' minimum fits in `min_size` nodes and at their maximum in `max_size`
//! nodes of its group, with [`SPARE_NODES`] more in the groups of fixed-size services; a pod that
//! fits no node shape is refused with the platform.yaml field to change (exit 2), before anything
//! is written.
//!
//! Assumptions: AWS EKS managed node groups on the AL2023 AMIs with the VPC CNI (max pods per
//! node from the ENI limits); the allocatable model of [`allocatable`]; the add-ons the
//! aws-complete example installs request about [`ADDON_PODS`].
//!
//! Caveats: requests, not usage: Temporal services have no CPU limit and burst above their
//! request, which the per-node reserve and the spare node absorb. `desired_size` is only the
//! initial count (the module ignores later changes so an autoscaler can own it). Instance types
//! are a starting point; change them in the tfvars file and the counts no longer follow the plan.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::helm::{self, Quantities, Values};
use super::{Artefact, RenderError};
use crate::config::PlatformConfig;

/// The variables file Terraform loads by itself from the root module directory.
pub const TFVARS_FILE: &str = "node-groups.auto.tfvars.json";
/// Chart values that put pods on the node groups (passed after the rendered values.yaml).
pub const PLACEMENT_FILE: &str = "placement-values.yaml";

/// Node label every rendered group carries; history and GPU pods select on it.
pub const WORKLOAD_LABEL: &str = "temporal-platform/workload";
/// Taint key of GPU nodes: the NVIDIA device plugin and GPU pods tolerate it, nothing else does.
pub const GPU_TAINT_KEY: &str = "nvidia.com/gpu";

/// Headroom rule, part 1: spare nodes added to the groups of fixed-size services (general,
/// history): [`SPARE_PERCENT`] of the packed nodes, rounded up, and at least [`SPARE_NODES`].
/// Why: EKS replaces managed nodes one at a time (`update_config.max_unavailable = 1` in
/// modules/aws), and a node can fail; with a spare node every pod of the plan still has room
/// while one node is gone, and in large groups the extra 10 % absorbs pods bursting above their
/// requests (Temporal services have no CPU limit). The GPU group gets none: its pools
/// autoscale and its `max_size` already fits every pool at its maximum replicas.
pub const SPARE_NODES: u64 = 1;
pub const SPARE_PERCENT: u64 = 10;
/// Headroom rule, part 2: smallest size of a group in production. Why: the chart spreads every
/// Deployment over zones (`topologySpread`), and modules/aws spreads nodes over the private
/// subnets; three nodes give three zones something to spread over.
pub const MIN_NODES_PRODUCTION: u64 = 3;

/// Allocatable model, part 1: what runs on every node outside the plan (VPC CNI, kube-proxy,
/// EBS CSI node plugin, node exporter): about 400 m CPU and 1 GiB, rounded up from their default
/// requests and working sets.
pub const DAEMONSET_MILLICORES: u64 = 400;
pub const DAEMONSET_MEMORY_MIB: u64 = 1024;
pub const DAEMONSET_PODS: u64 = 4;
/// Allocatable model, part 2: the kubelet's hard eviction threshold (memory.available < 100Mi).
pub const EVICTION_MEMORY_MIB: u64 = 100;

/// Pods outside the capacity plan that land on the general group: the Prometheus the KEDA
/// queries and the alert rules need (kube-prometheus-stack: Prometheus, operator,
/// kube-state-metrics), KEDA (operator, metrics API server, admission webhooks), CoreDNS (two
/// replicas), and the chart's own bootstrap daemon, web UI and codec server. Requests rounded up
/// from their charts' defaults; Prometheus is given 1 core and 4 GiB for Temporal's series.
pub const ADDON_PODS: &[(&str, u64, u64)] = &[
    ("prometheus", 1000, 4096),
    ("prometheus-operator and kube-state-metrics", 300, 512),
    ("keda", 300, 768),
    ("coredns", 100, 128),
    ("coredns", 100, 128),
    ("temporal-bootstrap daemon", 200, 256),
    ("web ui and codec server", 200, 384),
];

/// One EC2 instance type a group can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeShape {
    pub instance_type: &'static str,
    pub vcpus: u64,
    pub memory_gib: u64,
    pub gpus: u64,
    /// Pods per node with the VPC CNI (the EKS eni-max-pods table).
    pub max_pods: u64,
}

const fn shape(
    instance_type: &'static str,
    vcpus: u64,
    memory_gib: u64,
    gpus: u64,
    max_pods: u64,
) -> NodeShape {
    NodeShape {
        instance_type,
        vcpus,
        memory_gib,
        gpus,
        max_pods,
    }
}

/// General-purpose shapes (frontend, matching, add-ons, CPU/IO worker pools), smallest first.
pub const GENERAL_SHAPES: &[NodeShape] = &[
    shape("m7i.2xlarge", 8, 32, 0, 58),
    shape("m7i.4xlarge", 16, 64, 0, 234),
    shape("m7i.8xlarge", 32, 128, 0, 234),
    shape("m7i.16xlarge", 64, 256, 0, 737),
];
/// Memory-optimised shapes for history (shard caches grow with shards per replica).
pub const HISTORY_SHAPES: &[NodeShape] = &[
    shape("r7i.2xlarge", 8, 64, 0, 58),
    shape("r7i.4xlarge", 16, 128, 0, 234),
    shape("r7i.8xlarge", 32, 256, 0, 234),
    shape("r7i.16xlarge", 64, 512, 0, 737),
];
/// NVIDIA GPU shapes (A10G), smallest first; g5.12xlarge is the first with more than one GPU.
pub const GPU_SHAPES: &[NodeShape] = &[
    shape("g5.2xlarge", 8, 32, 1, 58),
    shape("g5.4xlarge", 16, 64, 1, 234),
    shape("g5.8xlarge", 32, 128, 1, 234),
    shape("g5.12xlarge", 48, 192, 4, 737),
    shape("g5.48xlarge", 192, 768, 8, 345),
];

/// CPU the kubelet reserves on an EKS AMI: 6 % of the first core, 1 % of the second, 0.5 % of
/// the third and fourth, 0.25 % of every further core.
pub fn kube_reserved_millicores(vcpus: u64) -> u64 {
    let mut m: f64 = 0.0;
    for core in 1..=vcpus {
        m += match core {
            1 => 60.0,
            2 => 10.0,
            3 | 4 => 5.0,
            _ => 2.5,
        };
    }
    m.ceil() as u64
}

/// Memory the kubelet reserves on an EKS AMI: 255 MiB + 11 MiB per pod the node can run.
pub fn kube_reserved_memory_mib(max_pods: u64) -> u64 {
    255 + 11 * max_pods
}

/// What the plan's pods can request on one node of `s`: capacity minus kube-reserved, the
/// eviction threshold and the DaemonSets.
pub fn allocatable(s: &NodeShape) -> Capacity {
    Capacity {
        millicores: (s.vcpus * 1000)
            .saturating_sub(kube_reserved_millicores(s.vcpus))
            .saturating_sub(DAEMONSET_MILLICORES),
        memory_mib: (s.memory_gib * 1024)
            .saturating_sub(kube_reserved_memory_mib(s.max_pods))
            .saturating_sub(EVICTION_MEMORY_MIB)
            .saturating_sub(DAEMONSET_MEMORY_MIB),
        gpus: s.gpus,
        pods: s.max_pods.saturating_sub(DAEMONSET_PODS),
    }
}

/// Resources of a node, or requested by a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capacity {
    pub millicores: u64,
    pub memory_mib: u64,
    pub gpus: u64,
    pub pods: u64,
}

impl Capacity {
    fn fits(&self, pod: &Capacity) -> bool {
        pod.millicores <= self.millicores
            && pod.memory_mib <= self.memory_mib
            && pod.gpus <= self.gpus
            && pod.pods <= self.pods
    }
    fn take(&mut self, pod: &Capacity) {
        self.millicores -= pod.millicores;
        self.memory_mib -= pod.memory_mib;
        self.gpus -= pod.gpus;
        self.pods -= pod.pods;
    }
}

/// Spare nodes for `packed` nodes of a group that gets them (see [`SPARE_NODES`]).
pub fn spare_nodes(packed: u64) -> u64 {
    packed
        .saturating_mul(SPARE_PERCENT)
        .div_ceil(100)
        .max(SPARE_NODES)
}

/// Pods of one kind: `count` replicas of the same requests, and the field that sizes them.
#[derive(Debug, Clone)]
struct PodSet {
    what: String,
    field: String,
    request: Capacity,
    min: u64,
    max: u64,
}

/// Nodes of `s` that hold `count` pods of each set (first fit, largest first).
fn pack(s: &NodeShape, sets: &[(Capacity, u64)]) -> u64 {
    let room = allocatable(s);
    let mut pods: Vec<Capacity> = sets
        .iter()
        .flat_map(|(c, n)| std::iter::repeat_n(*c, usize::try_from(*n).unwrap_or(usize::MAX)))
        .collect();
    pods.sort_by(|a, b| {
        (b.gpus, b.millicores, b.memory_mib).cmp(&(a.gpus, a.millicores, a.memory_mib))
    });
    let mut nodes: Vec<Capacity> = Vec::new();
    for p in &pods {
        match nodes.iter_mut().find(|n| n.fits(p)) {
            Some(n) => n.take(p),
            None => {
                let mut n = room;
                n.take(p);
                nodes.push(n);
            }
        }
    }
    nodes.len() as u64
}

// ---------------------------------------------------------------------------------------------
// the variables file (the shape of `node_groups` in terraform/modules/aws/variables.tf)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize)]
pub struct TfVars {
    pub node_groups: BTreeMap<String, NodeGroup>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeGroup {
    pub instance_types: Vec<String>,
    pub ami_type: &'static str,
    pub min_size: u64,
    pub max_size: u64,
    pub desired_size: u64,
    pub disk_size_gib: u64,
    pub capacity_type: &'static str,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
}

/// An EKS node group taint (EKS spells the effect NO_SCHEDULE, Kubernetes NoSchedule).
#[derive(Debug, Clone, Serialize)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: &'static str,
}

/// AMI types of the EKS managed node groups.
pub const AMI_STANDARD: &str = "AL2023_x86_64_STANDARD";
pub const AMI_NVIDIA: &str = "AL2023_x86_64_NVIDIA";
/// Root volume sizes: GPU images (CUDA, model weights in layers) are several times larger.
pub const DISK_GIB: u64 = 50;
pub const GPU_DISK_GIB: u64 = 100;

/// `node-groups.auto.tfvars.json` and `placement-values.yaml`.
pub fn terraform_vars(
    config: &PlatformConfig,
    source: &Path,
) -> Result<Vec<Artefact>, RenderError> {
    let values = helm::values(config)?;
    let vars = node_groups(config, &values)?;
    let json = serde_json::to_string_pretty(&vars)
        .map_err(|e| RenderError::Invalid(format!("cannot serialise the node groups: {e}")))?
        + "\n";
    Ok(vec![
        Artefact {
            path: TFVARS_FILE.into(),
            content: json.into_bytes(),
        },
        Artefact {
            path: PLACEMENT_FILE.into(),
            content: placement_yaml(&values, &vars, source)?.into_bytes(),
        },
    ])
}

/// The node groups for the pods of `values` (the chart values rendered from `config`).
pub fn node_groups(config: &PlatformConfig, values: &Values) -> Result<TfVars, RenderError> {
    let production = config.cluster.environment == crate::config::Environment::Production;
    let min_nodes = if production { MIN_NODES_PRODUCTION } else { 1 };
    let mut issues = Vec::new();

    let service =
        |name: &str, v: &helm::ServiceValues, issues: &mut Vec<(String, String)>| PodSet {
            what: format!("{name} service"),
            field: "capacity".into(),
            request: requests(&v.resources.requests, &format!("server.{name}"), issues),
            min: v.replicas,
            max: v.replicas,
        };
    let mut general = vec![
        service("frontend", &values.server.frontend, &mut issues),
        service("matching", &values.server.matching, &mut issues),
        service("worker", &values.server.worker, &mut issues),
    ];
    for (what, millicores, memory_mib) in ADDON_PODS {
        general.push(PodSet {
            what: (*what).into(),
            field: "capacity".into(),
            request: Capacity {
                millicores: *millicores,
                memory_mib: *memory_mib,
                gpus: 0,
                pods: 1,
            },
            min: 1,
            max: 1,
        });
    }
    let history = vec![service("history", &values.server.history, &mut issues)];
    let mut gpu = Vec::new();
    let mut pool_sets = Vec::new();
    for (i, p) in values.worker_pools.iter().enumerate() {
        let field = format!("workers[{i}]");
        let set = PodSet {
            what: format!("worker pool `{}`", p.name),
            request: requests(&p.resources.requests, &field, &mut issues),
            field,
            min: u64::from(p.autoscaling.min_replicas),
            max: u64::from(p.autoscaling.max_replicas.max(p.autoscaling.min_replicas)),
        };
        if set.request.gpus > 0 {
            gpu.push(set);
        } else {
            pool_sets.push(set);
        }
    }
    if !issues.is_empty() {
        return Err(refuse(issues));
    }

    let mut groups = BTreeMap::new();
    let mut general_all = general;
    general_all.extend(pool_sets);
    let groups_in = [
        ("general", GENERAL_SHAPES, general_all, "general"),
        ("history", HISTORY_SHAPES, history, "history"),
        ("gpu", GPU_SHAPES, gpu, "gpu"),
    ];
    for (name, shapes, sets, workload) in groups_in {
        if sets.is_empty() {
            continue;
        }
        let gpu_group = name == "gpu";
        // The GPU group follows its pools alone (GPU nodes are expensive), without spare nodes.
        let (floor, spare): (u64, fn(u64) -> u64) = if gpu_group {
            (0, |_| 0)
        } else {
            (min_nodes, spare_nodes)
        };
        let at = |max: bool| -> Vec<(Capacity, u64)> {
            sets.iter()
                .map(|p| (p.request, if max { p.max } else { p.min }))
                .collect()
        };
        let size = |s: &NodeShape, max: bool| {
            let packed = pack(s, &at(max));
            (packed + spare(packed)).max(floor)
        };
        let Some(s) = pick_shape(shapes, &sets, &mut issues, |s| size(s, false)) else {
            continue;
        };
        let min_size = size(&s, false);
        let max_size = size(&s, true).max(min_size);
        let mut labels = BTreeMap::new();
        labels.insert(WORKLOAD_LABEL.to_string(), workload.to_string());
        let taints = match name {
            "history" => vec![Taint {
                key: WORKLOAD_LABEL.into(),
                value: "history".into(),
                effect: "NO_SCHEDULE",
            }],
            "gpu" => vec![Taint {
                key: GPU_TAINT_KEY.into(),
                value: "true".into(),
                effect: "NO_SCHEDULE",
            }],
            _ => vec![],
        };
        groups.insert(
            name.to_string(),
            NodeGroup {
                instance_types: vec![s.instance_type.to_string()],
                ami_type: if gpu_group { AMI_NVIDIA } else { AMI_STANDARD },
                min_size,
                max_size,
                desired_size: min_size,
                disk_size_gib: if gpu_group { GPU_DISK_GIB } else { DISK_GIB },
                capacity_type: "ON_DEMAND",
                labels,
                taints,
            },
        );
    }
    if !issues.is_empty() {
        return Err(refuse(issues));
    }
    Ok(TfVars {
        node_groups: groups,
    })
}

/// Among the shapes whose allocatable capacity holds every pod of `sets`, the one with the
/// fewest vCPU in total at `nodes(shape)` nodes (ties: the first, smaller one).
fn pick_shape(
    shapes: &[NodeShape],
    sets: &[PodSet],
    issues: &mut Vec<(String, String)>,
    nodes: impl Fn(&NodeShape) -> u64,
) -> Option<NodeShape> {
    let fits = |s: &NodeShape| {
        let room = allocatable(s);
        sets.iter().all(|p| room.fits(&p.request))
    };
    let best = shapes
        .iter()
        .filter(|s| fits(s))
        .min_by_key(|s| nodes(s).saturating_mul(s.vcpus));
    if let Some(s) = best {
        return Some(*s);
    }
    let largest = shapes.last()?;
    let room = allocatable(largest);
    for p in sets.iter().filter(|p| !room.fits(&p.request)) {
        issues.push((
            p.field.clone(),
            format!(
                "one replica of the {} requests {} CPU, {} memory and {} GPU(s); the largest node shape of its group, {} ({} vCPU, {} GiB, {} GPU(s)), offers {} CPU, {} memory and {} GPU(s) to pods: lower the per-replica size (cpu_cores, gpus, or capacity.overrides.max_cores_per_replica for a service)",
                p.what,
                helm::cpu_quantity(p.request.millicores),
                helm::memory_quantity(p.request.memory_mib),
                p.request.gpus,
                largest.instance_type,
                largest.vcpus,
                largest.memory_gib,
                largest.gpus,
                helm::cpu_quantity(room.millicores),
                helm::memory_quantity(room.memory_mib),
                room.gpus,
            ),
        ));
    }
    None
}

fn refuse(issues: Vec<(String, String)>) -> RenderError {
    RenderError::Invalid(format!(
        "cannot render terraform vars:\n{}",
        issues
            .iter()
            .map(|(path, msg)| format!("  {path}: {msg}"))
            .collect::<Vec<_>>()
            .join("\n")
    ))
}

/// Requests of a pod from the chart's quantities (written by [`helm::cpu_quantity`] and
/// [`helm::memory_quantity`]).
fn requests(q: &Quantities, field: &str, issues: &mut Vec<(String, String)>) -> Capacity {
    let mut bad = |what: &str, v: &str| {
        issues.push((
            field.to_string(),
            format!("cannot read the rendered {what} request `{v}`"),
        ))
    };
    let millicores = match q.cpu.as_deref() {
        None => 0,
        Some(v) => parse_cpu(v).unwrap_or_else(|| {
            bad("CPU", v);
            0
        }),
    };
    let memory_mib = match q.memory.as_deref() {
        None => 0,
        Some(v) => parse_memory(v).unwrap_or_else(|| {
            bad("memory", v);
            0
        }),
    };
    let gpus = match q.gpu.as_deref() {
        None => 0,
        Some(v) => v.parse().unwrap_or_else(|_| {
            bad("GPU", v);
            0
        }),
    };
    Capacity {
        millicores,
        memory_mib,
        gpus,
        pods: 1,
    }
}

fn parse_cpu(v: &str) -> Option<u64> {
    match v.strip_suffix('m') {
        Some(m) => m.parse().ok(),
        None => v.parse::<u64>().ok()?.checked_mul(1000),
    }
}

fn parse_memory(v: &str) -> Option<u64> {
    if let Some(g) = v.strip_suffix("Gi") {
        g.parse::<u64>().ok()?.checked_mul(1024)
    } else {
        v.strip_suffix("Mi")?.parse().ok()
    }
}

// ---------------------------------------------------------------------------------------------
// placement values
// ---------------------------------------------------------------------------------------------

/// History on the history group; GPU pools on the GPU group. The worker pool list is repeated
/// only when a pool needs placement, because Helm replaces lists instead of merging them.
fn placement_yaml(values: &Values, vars: &TfVars, source: &Path) -> Result<String, RenderError> {
    let mut doc = serde_json::Map::new();
    if vars.node_groups.contains_key("history") {
        doc.insert(
            "server".into(),
            serde_json::json!({"history": {
                "nodeSelector": {WORKLOAD_LABEL: "history"},
                "tolerations": [{"key": WORKLOAD_LABEL, "operator": "Equal", "value": "history", "effect": "NoSchedule"}],
            }}),
        );
    }
    if vars.node_groups.contains_key("gpu") {
        let mut pools = serde_json::to_value(&values.worker_pools)
            .map_err(|e| RenderError::Invalid(format!("cannot serialise the worker pools: {e}")))?;
        if let Some(list) = pools.as_array_mut() {
            for (pool, v) in list.iter_mut().zip(&values.worker_pools) {
                if v.resources.requests.gpu.is_some() {
                    pool["nodeSelector"] = serde_json::json!({WORKLOAD_LABEL: "gpu"});
                    pool["tolerations"] = serde_json::json!([
                        {"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}
                    ]);
                }
            }
        }
        doc.insert("workerPools".into(), pools);
    }
    let mut options = serde_saphyr::SerializerOptions::default();
    options.compact_list_indent = false;
    let body = if doc.is_empty() {
        "{}\n".to_string()
    } else {
        serde_saphyr::to_string_with_options(&serde_json::Value::Object(doc), options)
            .map_err(|e| RenderError::Invalid(format!("cannot serialise the placement: {e}")))?
    };
    let name = source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "platform.yaml".into());
    Ok(format!(
        "# Generated by `temporal-bootstrap render terraform-vars` from {name}, with {TFVARS_FILE}.\n\
         # Chart values that place pods on those node groups: pass after values.yaml.\n\
         # Do not edit: change {name} and render again.\n{body}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_reserved_follows_the_eks_ladder() {
        assert_eq!(kube_reserved_millicores(1), 60);
        assert_eq!(kube_reserved_millicores(4), 80);
        assert_eq!(kube_reserved_millicores(8), 90);
        assert_eq!(kube_reserved_memory_mib(58), 893);
        let a = allocatable(&GENERAL_SHAPES[0]);
        assert_eq!((a.millicores, a.memory_mib), (7510, 30751));
    }

    #[test]
    fn packing_is_first_fit_largest_first() {
        let s = GENERAL_SHAPES[0];
        let pod = |m: u64| Capacity {
            millicores: m,
            memory_mib: 1024,
            gpus: 0,
            pods: 1,
        };
        // 7510 m per node: two 3000 m pods per node.
        assert_eq!(pack(&s, &[(pod(3000), 4)]), 2);
        assert_eq!(pack(&s, &[(pod(3000), 5)]), 3);
        // The small pods fill the gaps left by the large ones.
        assert_eq!(pack(&s, &[(pod(3000), 2), (pod(100), 3)]), 1);
        assert_eq!(pack(&s, &[]), 0);
    }

    #[test]
    fn spare_nodes_are_ten_percent_and_at_least_one() {
        assert_eq!([0, 1, 10, 11, 31].map(spare_nodes), [1, 1, 1, 2, 4]);
    }

    #[test]
    fn quantities_parse_back() {
        assert_eq!(parse_cpu("6750m"), Some(6750));
        assert_eq!(parse_cpu("2"), Some(2000));
        assert_eq!(parse_memory("2Gi"), Some(2048));
        assert_eq!(parse_memory("1848Mi"), Some(1848));
        assert_eq!(parse_memory("1G"), None);
    }
}
