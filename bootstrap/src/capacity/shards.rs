//! History shard count: the one irreversible number of the plan.
//!
//! Flow: design load -> shards needed for throughput (per-shard ceiling = 1 / write latency, kept
//! under `shard_target_utilization`) and for open workflows (Little's law, at most
//! `max_open_workflows_per_shard`) -> the larger, rounded up to a power of two, bounded by
//! `min_history_shards ..= max_history_shards`; or the pinned value, checked against the need.
//!
//! Guarantees: the auto count is a power of two within the bounds for any finite or infinite input;
//! a pinned count is returned unchanged; more load never gives fewer shards.

use serde::Serialize;

use super::constants::{Assumptions, Issue};
use super::fmt_rate;

/// Which constraint decided the shard count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Binding {
    /// Serialised updates per shard at the design load.
    Throughput,
    /// Open workflows per shard at the design load.
    OpenWorkflows,
    /// The load needs fewer shards than the floor.
    Minimum,
    /// The load needs more shards than the ceiling; capped (warned).
    Maximum,
    /// `history_shards: N` in the configuration.
    Pinned,
}

impl Binding {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Throughput => "throughput",
            Self::OpenWorkflows => "open workflows",
            Self::Minimum => "minimum",
            Self::Maximum => "maximum",
            Self::Pinned => "pinned",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct HistoryShards {
    /// The shard count to create the cluster with.
    pub count: u32,
    /// `auto` or `pinned`.
    pub mode: &'static str,
    pub binding_constraint: Binding,
    /// What `auto` would choose (equals `count` in auto mode).
    pub recommended: u32,
    /// What decided `recommended` (throughput, open workflows, minimum or maximum).
    pub recommended_binding: Binding,
    /// Shards needed for the design throughput, before rounding.
    pub needed_for_throughput: f64,
    /// Shards needed for the design open workflows, before rounding.
    pub needed_for_open_workflows: f64,
    /// 1 / persistence write latency.
    pub per_shard_ceiling_updates_per_second: f64,
    /// The ceiling times `shard_target_utilization`.
    pub per_shard_target_updates_per_second: f64,
    /// Design updates per second divided by `count`.
    pub design_updates_per_shard_per_second: f64,
    /// Design updates per shard as a fraction of the ceiling.
    pub design_utilization: f64,
    pub design_open_workflows_per_shard: f64,
    pub min: u32,
    pub max: u32,
    /// The arithmetic, in one line a reader can redo by hand.
    pub explanation: String,
}

/// Numbers the shard count depends on.
#[derive(Debug, Clone, Copy)]
pub struct ShardInputs {
    pub design_updates_per_second: f64,
    pub design_open_workflows: f64,
    pub write_latency_seconds: f64,
    pub pinned: Option<u32>,
}

/// Rounds up to a whole count, saturating (NaN counts as 0).
pub(crate) fn ceil_u64(x: f64) -> u64 {
    if x.is_nan() || x <= 0.0 {
        0
    } else if x >= u64::MAX as f64 {
        u64::MAX
    } else {
        x.ceil() as u64
    }
}

pub fn size(i: &ShardInputs, a: &Assumptions) -> (HistoryShards, Vec<Issue>) {
    let mut warnings = Vec::new();
    let latency_ms = i.write_latency_seconds * 1000.0;
    let ceiling = 1.0 / i.write_latency_seconds;
    let target = ceiling * a.shard_target_utilization;
    let need_tp = i.design_updates_per_second / target;
    let need_open = i.design_open_workflows / a.max_open_workflows_per_shard;
    let raw = need_tp.max(need_open);
    let need_whole = ceil_u64(raw);
    // Invariant: the bounds are powers of two of at most 131072 (coerced in Assumptions).
    let min = a.min_history_shards as u32;
    let max = (a.max_history_shards as u32).max(min);
    let (recommended, rec_binding) = recommend(need_whole, need_tp >= need_open, min, max);
    let (count, binding, mode) = match i.pinned {
        Some(n) => (n, Binding::Pinned, "pinned"),
        None => (recommended, rec_binding, "auto"),
    };
    let per_shard = i.design_updates_per_second / f64::from(count.max(1));
    let utilization = per_shard / ceiling;
    let open_per_shard = i.design_open_workflows / f64::from(count.max(1));
    let dominant = if need_tp >= need_open {
        "throughput"
    } else {
        "open workflows"
    };

    let pow2 = power_of_two_text(need_whole);
    let explanation = format!(
        "throughput: {} updates/s / {} updates/s per shard ({}% of the {}/s ceiling at {} ms) = {} shards; \
         open workflows: {} / {} per shard = {} shards; \
         the larger ({dominant}) rounded up to a power of two = {pow2}, bounded to {min}..{max} = {recommended}{}",
        fmt_rate(i.design_updates_per_second),
        fmt_rate(target),
        fmt_rate(a.shard_target_utilization * 100.0),
        fmt_rate(ceiling),
        fmt_rate(latency_ms),
        fmt_rate(need_tp),
        fmt_rate(i.design_open_workflows),
        fmt_rate(a.max_open_workflows_per_shard),
        fmt_rate(need_open),
        match i.pinned {
            Some(n) => format!("; pinned to {n}"),
            None => String::new(),
        }
    );

    match i.pinned {
        None => {
            if rec_binding == Binding::Maximum {
                warnings.push(Issue {
                    path: "capacity.history_shards".into(),
                    message: format!(
                        "the design load needs {} shards ({dominant}) but the planner stops at {max}; at design each shard would carry {} updates/s, {}% of its {}/s ceiling. Lower the persistence write latency, split the load over several clusters, or review the inputs (raising capacity.overrides.max_history_shards is possible but needs expert tuning)",
                        need_whole,
                        fmt_rate(per_shard),
                        fmt_rate(utilization * 100.0),
                        fmt_rate(ceiling)
                    ),
                });
            } else if f64::from(recommended) > a.typical_max_history_shards {
                warnings.push(Issue {
                    path: "capacity.history_shards".into(),
                    message: format!(
                        "{recommended} shards is above the typical range ({min}-{}); the count is fixed forever once the cluster exists, so review the inputs (burst, growth, write latency) before creating it",
                        a.typical_max_history_shards
                    ),
                });
            }
        }
        Some(n) => {
            if u64::from(n) < need_whole {
                warnings.push(Issue {
                    path: "capacity.history_shards".into(),
                    message: format!(
                        "pinned {n} is below the {need_whole} shards the design load needs ({dominant}; auto would choose {recommended}); at design each shard would carry {} updates/s, {}% of its {}/s ceiling, so expect history latency under burst. The count cannot change on an existing cluster: lower the write latency or the load, or plan a new cluster",
                        fmt_rate(per_shard),
                        fmt_rate(utilization * 100.0),
                        fmt_rate(ceiling)
                    ),
                });
            }
            if n < min || n > max {
                warnings.push(Issue {
                    path: "capacity.history_shards".into(),
                    message: format!(
                        "pinned {n} is outside the planner's range {min}..{max}; honoured as configured"
                    ),
                });
            }
        }
    }

    (
        HistoryShards {
            count,
            mode,
            binding_constraint: binding,
            recommended,
            recommended_binding: rec_binding,
            needed_for_throughput: super::round4(need_tp),
            needed_for_open_workflows: super::round4(need_open),
            per_shard_ceiling_updates_per_second: super::round2(ceiling),
            per_shard_target_updates_per_second: super::round2(target),
            design_updates_per_shard_per_second: super::round2(per_shard),
            design_utilization: super::round4(utilization),
            design_open_workflows_per_shard: super::round2(open_per_shard),
            min,
            max,
            explanation,
        },
        warnings,
    )
}

/// The auto count: the need rounded up to a power of two within `min..=max`, and what bound it.
fn recommend(need_whole: u64, throughput_dominates: bool, min: u32, max: u32) -> (u32, Binding) {
    if need_whole <= u64::from(min) {
        (min, Binding::Minimum)
    } else if need_whole > u64::from(max) {
        (max, Binding::Maximum)
    } else {
        // need_whole <= max <= 131072, so the cast and next_power_of_two cannot overflow.
        let n = (need_whole as u32).next_power_of_two().min(max);
        let b = if throughput_dominates {
            Binding::Throughput
        } else {
            Binding::OpenWorkflows
        };
        (n, b)
    }
}

/// `need` rounded up to a power of two, as text (absurd inputs can exceed u64's powers).
fn power_of_two_text(need: u64) -> String {
    match need {
        0 => "1".to_string(),
        n if n <= 1 << 62 => n.next_power_of_two().to_string(),
        _ => "more than 2^62".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(updates: f64, open: f64) -> ShardInputs {
        ShardInputs {
            design_updates_per_second: updates,
            design_open_workflows: open,
            write_latency_seconds: 0.005,
            pinned: None,
        }
    }

    #[test]
    fn rounds_up_to_a_power_of_two_within_bounds() {
        let a = Assumptions::defaults();
        // 100 updates/s per shard at 5 ms and 50%.
        for (updates, want, binding) in [
            (0.0, 16, Binding::Minimum),
            (1_600.0, 16, Binding::Minimum),
            (1_601.0, 32, Binding::Throughput),
            (32_340.0, 512, Binding::Throughput),
            (51_200.0, 512, Binding::Throughput),
            (51_201.0, 1024, Binding::Throughput),
            (1e12, 16384, Binding::Maximum),
            (f64::INFINITY, 16384, Binding::Maximum),
            (f64::NAN, 16, Binding::Minimum),
        ] {
            let (s, _) = size(&inputs(updates, 0.0), &a);
            assert_eq!(
                (s.count, s.binding_constraint),
                (want, binding),
                "{updates}"
            );
        }
        let (s, _) = size(&inputs(0.0, 40_000_000.0), &a);
        assert_eq!(
            (s.count, s.binding_constraint),
            (64, Binding::OpenWorkflows)
        );
    }

    #[test]
    fn warns_when_capped_or_large() {
        let a = Assumptions::defaults();
        let (_, w) = size(&inputs(1e9, 0.0), &a);
        assert!(w[0].message.contains("stops at 16384"), "{w:?}");
        let (s, w) = size(&inputs(500_000.0, 0.0), &a);
        assert_eq!(s.count, 8192);
        assert!(w[0].message.contains("typical range"), "{w:?}");
        let (_, w) = size(&inputs(50_000.0, 0.0), &a);
        assert!(w.is_empty());
    }

    #[test]
    fn pinned_is_honoured_and_checked() {
        let a = Assumptions::defaults();
        let mut i = inputs(32_340.0, 0.0);
        i.pinned = Some(128);
        let (s, w) = size(&i, &a);
        assert_eq!(
            (s.count, s.recommended, s.binding_constraint),
            (128, 512, Binding::Pinned)
        );
        assert!(w[0].message.contains("below the 324 shards"), "{w:?}");
        i.pinned = Some(1000);
        let (s, w) = size(&i, &a);
        assert_eq!(s.count, 1000);
        assert!(w.is_empty(), "{w:?}");
        let (_, w) = size(&inputs(10.0, 0.0), &a);
        assert!(w.is_empty());
        let (s, w) = size(
            &ShardInputs {
                pinned: Some(8),
                ..inputs(10.0, 0.0)
            },
            &a,
        );
        assert_eq!(s.count, 8);
        assert!(
            w[0].message.contains("outside the planner's range"),
            "{w:?}"
        );
    }
}
