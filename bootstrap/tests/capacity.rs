//! Capacity planner: properties of the pure model, golden JSON plans of the example profiles,
//! and bad input through the CLI (exit code 2 with the field path).

use std::path::Path;
use std::process::Command;

use proptest::prelude::*;
use temporal_bootstrap::capacity::{self, Sizing};
use temporal_bootstrap::config::types::{
    HumanDuration, NonNegative, Percent, Positive, ShardSetting,
};
use temporal_bootstrap::config::{PlatformConfig, load_str};

const PROFILES: [&str; 4] = [
    "small-team",
    "ecommerce-burst",
    "fintech-large",
    "onprem-edge",
];

fn repo() -> &'static Path {
    // Invariant: the crate lives in <repo>/bootstrap.
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn base() -> PlatformConfig {
    load_str(
        include_str!("../../examples/ecommerce-burst.yaml"),
        "ecommerce-burst.yaml",
    )
    .unwrap()
    .config
}

#[derive(Debug, Clone, Copy)]
struct Load {
    starts: f64,
    activities: f64,
    timers: f64,
    duration_ms: u64,
    burst: f64,
    annual: f64,
    years: u32,
    latency_ms: u64,
}

fn with(load: Load, shards: ShardSetting) -> PlatformConfig {
    let mut c = base();
    let cap = &mut c.capacity;
    cap.peak_workflow_starts_per_second = Positive::new(load.starts).unwrap();
    cap.activities_per_workflow = NonNegative::new(load.activities).unwrap();
    cap.timers_and_signals_per_workflow = NonNegative::new(load.timers).unwrap();
    cap.average_workflow_duration = HumanDuration::from_millis(load.duration_ms);
    cap.burst_multiplier = Positive::new(load.burst).unwrap();
    cap.growth.annual = Percent::from_fraction(load.annual);
    cap.growth.years = load.years;
    cap.persistence_write_latency = HumanDuration::from_millis(load.latency_ms);
    cap.history_shards = shards;
    c
}

fn load_strategy() -> impl Strategy<Value = Load> {
    (
        0.001f64..100_000.0,
        0.0f64..100.0,
        0.0f64..50.0,
        1u64..(90 * 86_400_000),
        1.0f64..100.0,
        0.0f64..2.0,
        0u32..=10,
        1u64..200,
    )
        .prop_map(
            |(starts, activities, timers, duration_ms, burst, annual, years, latency_ms)| Load {
                starts,
                activities,
                timers,
                duration_ms,
                burst,
                annual,
                years,
                latency_ms,
            },
        )
}

/// Everything that must not shrink when the load grows.
fn sized(s: &Sizing) -> Vec<u64> {
    let mut v = vec![u64::from(s.history_shards.count)];
    v.extend(s.services.iter().map(|sv| sv.replicas));
    v.extend(s.task_queues.iter().map(|q| q.partitions));
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn more_load_never_yields_fewer_shards_or_replicas(
        load in load_strategy(),
        dimension in 0usize..8,
        factor in 1.0f64..10.0,
    ) {
        let mut more = load;
        match dimension {
            0 => more.starts *= factor,
            1 => more.activities *= factor,
            2 => more.timers *= factor,
            3 => more.duration_ms = (load.duration_ms as f64 * factor) as u64,
            4 => more.burst *= factor,
            5 => more.annual *= factor,
            6 => more.years = (load.years + factor as u32).min(10),
            _ => more.latency_ms = (load.latency_ms as f64 * factor) as u64,
        }
        let a = capacity::plan(&with(load, ShardSetting::Auto)).unwrap();
        let b = capacity::plan(&with(more, ShardSetting::Auto)).unwrap();
        for (x, y) in sized(&a).iter().zip(sized(&b).iter()) {
            prop_assert!(y >= x, "{:?} -> {:?}: {:?} vs {:?}", load, more, sized(&a), sized(&b));
        }
    }

    #[test]
    fn auto_shards_are_a_power_of_two_in_bounds(load in load_strategy()) {
        let s = capacity::plan(&with(load, ShardSetting::Auto)).unwrap();
        let n = s.history_shards.count;
        prop_assert!(n.is_power_of_two() && (16..=16384).contains(&n), "{n}");
        prop_assert_eq!(n, s.history_shards.recommended);
    }

    #[test]
    fn pinned_shards_are_honoured(load in load_strategy(), pinned in 1u32..=131_072) {
        let s = capacity::plan(&with(load, ShardSetting::Pinned(pinned))).unwrap();
        prop_assert_eq!(s.history_shards.count, pinned);
        let auto = capacity::plan(&with(load, ShardSetting::Auto)).unwrap();
        prop_assert_eq!(s.history_shards.recommended, auto.history_shards.count);
        let below = s.warnings.iter().any(|w| w.message.contains("is below the"));
        let need = s.history_shards.needed_for_throughput.max(s.history_shards.needed_for_open_workflows);
        prop_assert_eq!(below, f64::from(pinned) < need.ceil(), "pinned {} need {}", pinned, need);
    }

    #[test]
    fn any_input_gives_a_plan_or_a_clear_error_never_a_panic(
        starts in prop_oneof![1e-9f64..1.0, 1.0f64..1e6, 1e6f64..1e15],
        activities in prop_oneof![0.0f64..100.0, 100.0f64..1e12],
        burst in prop_oneof![1.0f64..1000.0, 1000.0f64..1e12],
        duration_ms in 1u64..(1000 * 365 * 86_400_000),
        annual in 0.0f64..10.0,
        years in 0u32..=10,
        latency_ms in 1u64..=10_000,
    ) {
        let load = Load { starts, activities, timers: 1.0, duration_ms, burst, annual, years, latency_ms };
        match capacity::plan(&with(load, ShardSetting::Auto)) {
            Ok(s) => {
                let n = s.history_shards.count;
                prop_assert!(n.is_power_of_two() && (16..=16384).contains(&n));
                for l in [&s.load.now_peak, &s.load.now_burst, &s.load.design] {
                    prop_assert!(l.history_updates_per_second.is_finite() && l.open_workflows.is_finite());
                }
                prop_assert!(s.persistence.total_storage_gib.is_finite());
                prop_assert!(serde_json::to_string(&s).is_ok());
            }
            Err(e) => {
                prop_assert!(!e.issues.is_empty());
                prop_assert!(e.issues.iter().all(|i| i.path.starts_with("capacity.")), "{e}");
                prop_assert!(starts > 1e6 || activities > 5_000.0 || burst > 1000.0, "unexpected error: {e}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The CLI: golden JSON plans and bad input
// ---------------------------------------------------------------------------------------------

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_temporal-bootstrap"))
        .args(args)
        .current_dir(repo())
        .env_remove("TEMPORAL_BOOTSTRAP_CONFIG")
        .output()
        .expect("run temporal-bootstrap");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn plan_json(file: &str) -> serde_json::Value {
    let (code, stdout, stderr) = run(&["plan", "-f", file, "--offline", "--output", "json"]);
    assert_eq!(code, 0, "plan {file}: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("plan {file}: {e}\n{stdout}"))
}

#[test]
fn golden_json_plans_of_the_example_profiles() {
    for profile in PROFILES {
        let file = format!("examples/{profile}.yaml");
        let (code, _, stderr) = run(&["validate", "-f", &file]);
        assert_eq!(code, 0, "validate {file}: {stderr}");
        let doc = plan_json(&file);
        assert!(doc["steps"].is_array(), "steps next to capacity");
        insta::assert_json_snapshot!(format!("plan_{profile}"), doc["capacity"]);
    }
}

#[test]
fn table_output_names_the_binding_constraint_and_assumptions() {
    let (code, stdout, _) = run(&["plan", "-f", "examples/fintech-large.yaml", "--offline"]);
    assert_eq!(code, 0);
    for want in [
        "History shards: 256 (auto, binding constraint: open workflows)",
        "rounded up to a power of two = 256",
        "shard_target_utilization",
        "io_slots_per_core (override)",
        "service",
        "step",
    ] {
        assert!(stdout.contains(want), "missing `{want}` in:\n{stdout}");
    }
    let capacity_at = stdout.find("Capacity plan").unwrap();
    let steps_at = stdout.find("\nstep ").unwrap();
    assert!(capacity_at < steps_at, "sizing comes before the steps");
}

/// docs/capacity-model.md lists the shard count of each profile; it must match the tool.
#[test]
fn documented_shard_counts_match_the_tool() {
    let doc = std::fs::read_to_string(repo().join("docs/capacity-model.md")).unwrap();
    for profile in PROFILES {
        let s = &plan_json(&format!("examples/{profile}.yaml"))["capacity"]["history_shards"];
        let count = s["count"].as_u64().unwrap();
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| {profile} ")))
            .unwrap_or_else(|| panic!("no summary row for {profile} in docs/capacity-model.md"));
        assert!(
            row.contains(&format!("| **{count}** |")),
            "{profile}: the tool says {count}, the docs say: {row}"
        );
    }
}

fn write_variant(dir: &tempfile::TempDir, name: &str, from: &str, to: &str) -> String {
    let base = include_str!("../../examples/small-team.yaml");
    assert!(base.contains(from), "`{from}` not in small-team.yaml");
    let path = dir.path().join(format!("{name}.yaml"));
    std::fs::write(&path, base.replacen(from, to, 1)).unwrap();
    path.display().to_string()
}

#[test]
fn bad_capacity_input_exits_2_with_the_field_path() {
    let dir = tempfile::tempdir().unwrap();
    let starts = "peak_workflow_starts_per_second: 2";
    let retention = "  retention: 7d\n";
    let cases: &[(&str, &str, &str, &[&str])] = &[
        (
            "zero-starts",
            starts,
            "peak_workflow_starts_per_second: 0",
            &["capacity.peak_workflow_starts_per_second", "greater than 0"],
        ),
        (
            "negative-starts",
            starts,
            "peak_workflow_starts_per_second: -5",
            &["capacity.peak_workflow_starts_per_second", "greater than 0"],
        ),
        (
            "absurd-starts",
            starts,
            "peak_workflow_starts_per_second: 1000000000",
            &[
                "capacity.peak_workflow_starts_per_second",
                "at most 1000000",
            ],
        ),
        (
            "burst-below-one",
            "burst_multiplier: 3",
            "burst_multiplier: 0.5",
            &["capacity.burst_multiplier", "at least 1"],
        ),
        (
            "absurd-burst",
            "burst_multiplier: 3",
            "burst_multiplier: 1e9",
            &["capacity.burst_multiplier", "1 to 1000"],
        ),
        (
            "absurd-activities",
            "activities_per_workflow: 5",
            "activities_per_workflow: 1000000",
            &["capacity.activities_per_workflow", "51200"],
        ),
        (
            "negative-timers",
            "timers_and_signals_per_workflow: 1",
            "timers_and_signals_per_workflow: -1",
            &["capacity.timers_and_signals_per_workflow", "0 or more"],
        ),
        (
            "negative-growth",
            "annual: 50%",
            "annual: -10%",
            &["capacity.growth.annual"],
        ),
        (
            "zero-pool-rate",
            "    priority: normal\n",
            "    priority: normal\n    peak_tasks_per_second: 0\n",
            &["workers[0].peak_tasks_per_second", "greater than 0"],
        ),
        (
            "zero-duration",
            "average_workflow_duration: 5m",
            "average_workflow_duration: 0s",
            &["capacity.average_workflow_duration"],
        ),
        (
            "zero-latency",
            "persistence_write_latency: 10ms",
            "persistence_write_latency: 0ms",
            &["capacity.persistence_write_latency"],
        ),
        (
            "zero-shards",
            "history_shards: auto",
            "history_shards: 0",
            &["capacity.history_shards"],
        ),
        (
            "unknown-override",
            retention,
            "  retention: 7d\n  overrides: { shard_target_utilisation: 0.4 }\n",
            &[
                "capacity.overrides.shard_target_utilisation",
                "valid names:",
                "shard_target_utilization",
            ],
        ),
        (
            "override-out-of-range",
            retention,
            "  retention: 7d\n  overrides: { shard_target_utilization: 2 }\n",
            &[
                "capacity.overrides.shard_target_utilization",
                "between 0.05 and 1",
            ],
        ),
        (
            // The YAML loader refuses non-finite numbers before typing (position, no field path).
            "override-nan",
            retention,
            "  retention: 7d\n  overrides: { io_slots_per_core: .nan }\n",
            &[":22:", "non-finite"],
        ),
        (
            "override-huge",
            retention,
            "  retention: 7d\n  overrides: { io_slots_per_core: 1e300 }\n",
            &["capacity.overrides.io_slots_per_core", "between 1 and 20"],
        ),
        (
            "override-not-power-of-two",
            retention,
            "  retention: 7d\n  overrides: { min_history_shards: 24 }\n",
            &["capacity.overrides.min_history_shards", "power of two"],
        ),
    ];
    for (name, from, to, wants) in cases {
        let file = write_variant(&dir, name, from, to);
        for args in [
            vec!["validate", "-f", &file],
            vec!["plan", "-f", &file, "--offline"],
        ] {
            let (code, stdout, stderr) = run(&args);
            assert_eq!(code, 2, "{name} {args:?}: stdout {stdout} stderr {stderr}");
            for want in *wants {
                assert!(
                    stderr.contains(want),
                    "{name} {args:?}: `{want}` missing in {stderr}"
                );
            }
            assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        }
    }
}

#[test]
fn extreme_but_valid_load_is_capped_with_a_warning_not_an_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let base = include_str!("../../examples/small-team.yaml")
        .replacen(
            "peak_workflow_starts_per_second: 2",
            "peak_workflow_starts_per_second: 1000000",
            1,
        )
        .replacen("burst_multiplier: 3", "burst_multiplier: 1000", 1)
        .replacen(
            "activities_per_workflow: 5",
            "activities_per_workflow: 8000",
            1,
        )
        .replacen(
            "growth: { annual: 50%, years: 2 }",
            "growth: { annual: 1000%, years: 10 }",
            1,
        );
    let path = dir.path().join("extreme.yaml");
    std::fs::write(&path, base).unwrap();
    let file = path.display().to_string();
    let (code, stdout, stderr) = run(&["plan", "-f", &file, "--offline", "--output", "json"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("stops at 16384"), "{stderr}");
    assert!(stderr.contains("Temporal's warning threshold"), "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let cap = &doc["capacity"];
    assert_eq!(cap["history_shards"]["count"], 16384);
    for level in ["now_peak", "now_burst", "design"] {
        for (k, v) in cap["load"][level].as_object().unwrap() {
            assert!(v.as_f64().is_some_and(f64::is_finite), "{level}.{k} = {v}");
        }
    }
}

#[test]
fn pinned_shards_below_the_need_are_honoured_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let text = include_str!("../../examples/ecommerce-burst.yaml").replacen(
        "history_shards: auto",
        "history_shards: 128",
        1,
    );
    let path = dir.path().join("pinned.yaml");
    std::fs::write(&path, text).unwrap();
    let file = path.display().to_string();
    let (code, stdout, stderr) = run(&["plan", "-f", &file, "--offline", "--output", "json"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("capacity.history_shards: pinned 128 is below the 324 shards"),
        "{stderr}"
    );
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let s = &doc["capacity"]["history_shards"];
    assert_eq!(
        (s["count"].as_u64(), s["recommended"].as_u64()),
        (Some(128), Some(512))
    );
    assert_eq!(s["binding_constraint"], "pinned");
}

#[test]
fn every_constant_is_documented() {
    let doc = std::fs::read_to_string(repo().join("docs/capacity-model.md")).unwrap();
    for c in capacity::CONSTANTS {
        assert!(
            doc.contains(&format!("`{}`", c.name)),
            "docs/capacity-model.md does not mention `{}`",
            c.name
        );
    }
}
