//! `render terraform-vars`: the EKS node groups of terraform/examples/aws-complete from the
//! capacity plan. Runs the real binary on the examples; checks that every pod the plan and the
//! chart values request fits in the groups, that history and GPU pools get their own groups and
//! placement, that bad input is refused naming the field, and that a second render writes nothing.
//! terraform/tests/check_agreement.py checks the same files against the Terraform code.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use temporal_bootstrap::render::terraform::{self, GENERAL_SHAPES, GPU_SHAPES, HISTORY_SHAPES};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate lives in the workspace")
        .to_path_buf()
}

fn render(target: &str, config: &Path, out: &Path) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_temporal-bootstrap"));
    c.env_remove("TEMPORAL_BOOTSTRAP_CONFIG")
        .args(["--output", "json", "render", target, "-f"])
        .arg(config)
        .arg("-o")
        .arg(out);
    c.output().expect("binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn rendered(example: &str) -> (tempfile::TempDir, Value, Value, Value) {
    let dir = tempfile::tempdir().unwrap();
    let config = repo().join("examples").join(example);
    let out = render("terraform-vars", &config, dir.path());
    assert_eq!(out.status.code(), Some(0), "{example}: {}", text(&out));
    let out = render("helm-values", &config, dir.path());
    assert_eq!(out.status.code(), Some(0), "{example}: {}", text(&out));
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    let vars: Value = serde_json::from_str(&read(terraform::TFVARS_FILE)).unwrap();
    let placement: Value = serde_saphyr::from_str(&read(terraform::PLACEMENT_FILE)).unwrap();
    let values: Value = serde_saphyr::from_str(&read("values.yaml")).unwrap();
    (dir, vars, placement, values)
}

fn millicores(q: &Value) -> u64 {
    match q.as_str() {
        Some(s) => match s.strip_suffix('m') {
            Some(m) => m.parse().unwrap(),
            None => s.parse::<u64>().unwrap() * 1000,
        },
        None => q.as_u64().unwrap_or(0) * 1000,
    }
}

fn mib(q: &Value) -> u64 {
    let s = q.as_str().unwrap();
    match s.strip_suffix("Gi") {
        Some(g) => g.parse::<u64>().unwrap() * 1024,
        None => s.strip_suffix("Mi").unwrap().parse().unwrap(),
    }
}

/// Allocatable CPU and memory of `count` nodes of the group's instance type.
fn group_capacity(group: &Value, count: u64) -> (u64, u64) {
    let itype = group["instance_types"][0].as_str().unwrap();
    let shape = GENERAL_SHAPES
        .iter()
        .chain(HISTORY_SHAPES)
        .chain(GPU_SHAPES)
        .find(|s| s.instance_type == itype)
        .unwrap_or_else(|| panic!("unknown instance type {itype}"));
    let a = terraform::allocatable(shape);
    (a.millicores * count, a.memory_mib * count)
}

/// Sum of the requests of the pods `pick` selects, at min or max worker pool replicas.
fn requested(
    values: &Value,
    services: &[&str],
    pools: impl Fn(&Value) -> bool,
    max: bool,
) -> (u64, u64) {
    let (mut cpu, mut mem) = (0, 0);
    for s in services {
        let v = &values["server"][s];
        let n = v["replicas"].as_u64().unwrap();
        cpu += n * millicores(&v["resources"]["requests"]["cpu"]);
        mem += n * mib(&v["resources"]["requests"]["memory"]);
    }
    for p in values["workerPools"].as_array().unwrap() {
        if !pools(p) {
            continue;
        }
        let key = if max { "maxReplicas" } else { "minReplicas" };
        let n = p["autoscaling"][key].as_u64().unwrap();
        cpu += n * millicores(&p["resources"]["requests"]["cpu"]);
        mem += n * mib(&p["resources"]["requests"]["memory"]);
    }
    (cpu, mem)
}

fn is_gpu(p: &Value) -> bool {
    !p["resources"]["requests"]["nvidia.com/gpu"].is_null()
}

#[test]
fn production_node_groups_hold_the_plan_with_headroom() {
    let (_dir, vars, placement, values) = rendered("production.yaml");
    let groups = vars["node_groups"].as_object().unwrap();
    assert_eq!(
        groups.keys().collect::<Vec<_>>(),
        ["general", "gpu", "history"],
        "{vars:#}"
    );

    // Every group fits its pods at the minimum with the spare node left over, and at the maximum.
    let spare = terraform::SPARE_NODES;
    for (name, services, pools, spare) in [
        (
            "general",
            &["frontend", "matching", "worker"][..],
            (|p: &Value| !is_gpu(p)) as fn(&Value) -> bool,
            spare,
        ),
        (
            "history",
            &["history"][..],
            (|_: &Value| false) as fn(&Value) -> bool,
            spare,
        ),
        ("gpu", &[][..], is_gpu as fn(&Value) -> bool, 0),
    ] {
        let g = &groups[name];
        for (size, max) in [("min_size", false), ("max_size", true)] {
            let nodes = g[size].as_u64().unwrap();
            let (cpu, mem) = requested(&values, services, pools, max);
            let (have_cpu, have_mem) = group_capacity(g, nodes - spare);
            assert!(
                cpu <= have_cpu && mem <= have_mem,
                "{name}.{size} = {nodes}: pods request {cpu}m/{mem}Mi, {} nodes give {have_cpu}m/{have_mem}Mi",
                nodes - spare
            );
        }
        assert_eq!(g["desired_size"], g["min_size"]);
    }

    // The whole plan: more vCPU than requested (the review found 35 vCPU of nodes for ~70 requested).
    let total_request = requested(
        &values,
        &["frontend", "matching", "worker", "history"],
        |_| true,
        false,
    )
    .0;
    let total_nodes: u64 = groups
        .values()
        .map(|g| group_capacity(g, g["min_size"].as_u64().unwrap()).0)
        .sum();
    assert!(
        total_nodes > total_request,
        "{total_nodes}m of nodes for {total_request}m of requests"
    );

    // History alone on its group, GPU pools on the GPU group.
    let h = &groups["history"];
    assert_eq!(h["labels"][terraform::WORKLOAD_LABEL], "history");
    assert_eq!(h["taints"][0]["effect"], "NO_SCHEDULE");
    let hp = &placement["server"]["history"];
    assert_eq!(hp["nodeSelector"][terraform::WORKLOAD_LABEL], "history");
    assert_eq!(hp["tolerations"][0]["key"], h["taints"][0]["key"]);
    assert_eq!(hp["tolerations"][0]["value"], h["taints"][0]["value"]);
    assert_eq!(hp["tolerations"][0]["effect"], "NoSchedule");
    let gpu = &groups["gpu"];
    assert_eq!(gpu["ami_type"], terraform::AMI_NVIDIA);
    assert_eq!(gpu["taints"][0]["key"], terraform::GPU_TAINT_KEY);
    let pools = placement["workerPools"].as_array().unwrap();
    let rendered_pools = values["workerPools"].as_array().unwrap();
    assert_eq!(pools.len(), rendered_pools.len());
    for (p, r) in pools.iter().zip(rendered_pools) {
        let mut without = p.clone();
        let o = without.as_object_mut().unwrap();
        let selector = o.remove("nodeSelector");
        let tolerations = o.remove("tolerations");
        assert_eq!(
            &without, r,
            "placement changes only nodeSelector and tolerations"
        );
        assert_eq!(selector.is_some(), is_gpu(r));
        assert_eq!(tolerations.is_some(), is_gpu(r));
    }
}

#[test]
fn examples_without_gpu_pools_get_no_gpu_group_nor_pool_list() {
    let (_dir, vars, placement, _values) = rendered("ecommerce-burst.yaml");
    let groups = vars["node_groups"].as_object().unwrap();
    assert!(groups.contains_key("general") && groups.contains_key("history"));
    assert!(!groups.contains_key("gpu"), "{vars:#}");
    assert!(placement.get("workerPools").is_none(), "{placement:#}");
    for g in groups.values() {
        assert!(g["min_size"].as_u64().unwrap() >= terraform::MIN_NODES_PRODUCTION);
    }
}

#[test]
fn bad_inputs_exit_2_name_the_field_and_write_nothing() {
    let src = std::fs::read_to_string(repo().join("examples/production.yaml")).unwrap();
    let cases = [
        // 16 GPUs per replica: no GPU node shape has that many.
        (src.replace("    gpus: 1\n", "    gpus: 16\n"), "workers[2]"),
        // A pool the chart cannot run (no image) is refused as by render helm-values.
        (
            src.replace("    image: registry.example.com/payments-io:1.0.0   # container image, rendered into the Helm chart\n", ""),
            "workers[0].image",
        ),
    ];
    for (yaml, field) in cases {
        assert_ne!(yaml, src, "the case must change the example");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("platform.yaml");
        std::fs::write(&config, &yaml).unwrap();
        let out_dir = dir.path().join("out");
        let out = render("terraform-vars", &config, &out_dir);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains(field), "{field}: {}", text(&out));
        assert!(!out_dir.exists(), "nothing written");
    }
}

#[test]
fn a_second_render_writes_nothing_and_the_files_are_snapshotted() {
    let dir = tempfile::tempdir().unwrap();
    let config = repo().join("examples/production.yaml");
    let first = render("terraform-vars", &config, dir.path());
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let second = render("terraform-vars", &config, dir.path());
    let doc: Value = serde_json::from_slice(&second.stdout).unwrap();
    let results: Vec<&str> = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["unchanged", "unchanged"]);
    let tfvars = std::fs::read_to_string(dir.path().join(terraform::TFVARS_FILE)).unwrap();
    insta::assert_snapshot!("terraform_vars_production", tfvars);
}
