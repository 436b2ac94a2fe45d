//! Rolling the Temporal services to a hop's release.
//!
//! Flow: the orchestrator calls [`Executor::roll`] after the schema is at the hop's versions,
//! then polls the cluster until it reports the hop's version.
//! Guarantees: executors only change the image tags of the server and admin-tools; re-running a
//! roll with the same tags is harmless (Helm makes an identical revision, a merge patch of the
//! same values changes nothing).
//! Assumptions: the chart takes the tags as `server.image.tag` and `admintools.image.tag` (the
//! official temporalio/temporal chart does); Helm and k3s executors need `helm` / `kubectl` on
//! PATH and a kubeconfig with rights on the release.
//! Caveats: a chart that runs its own schema jobs must have them disabled: the schema is ours.

use std::time::Duration;

use super::{Executor, RollOutcome, UpgradeError};
use crate::versions::Hop;

/// Values set on the chart for a hop.
pub const IMAGE_TAG_VALUES: &[&str] = &["server.image.tag", "admintools.image.tag"];

/// How services are rolled (`--executor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// Print the change for an operator and wait for the version to appear.
    Manual,
    /// Run `helm upgrade` (needs `helm` on PATH).
    Helm,
    /// Patch the k3s HelmChart resource with kubectl (needs `kubectl` on PATH).
    K3s,
    /// Stop the server process named by --pid-file and start the hop's binary from
    /// --server-binaries with the same arguments (Linux).
    Process,
}

/// Prints what to change and lets an operator (or a GitOps pipeline) roll the services.
#[derive(Debug, Clone, Default)]
pub struct Manual;

/// Minimum time the manual executor waits for an operator.
pub const MANUAL_MIN_WAIT: Duration = Duration::from_secs(60 * 60);

impl Executor for Manual {
    fn name(&self) -> &'static str {
        "manual"
    }
    async fn roll(&self, hop: &Hop) -> Result<RollOutcome, UpgradeError> {
        let sets: Vec<String> = IMAGE_TAG_VALUES
            .iter()
            .map(|k| format!("{k}={}", hop.to))
            .collect();
        let detail = format!(
            "roll the services to {} and {} now (Helm values: {}); waiting for the cluster to report {}",
            hop.server_image,
            hop.admin_tools_image,
            sets.join(", "),
            hop.to
        );
        eprintln!("ACTION REQUIRED: {detail}");
        Ok(RollOutcome { detail })
    }
    fn wait_budget(&self, configured: Duration) -> Duration {
        configured.max(MANUAL_MIN_WAIT)
    }
}

/// `helm upgrade <release> <chart> -n <namespace> --reuse-values --set ...`.
#[derive(Debug, Clone)]
pub struct Helm {
    pub release: String,
    pub chart: String,
    pub namespace: String,
}

impl Helm {
    /// The helm arguments for a hop.
    pub fn args(&self, hop: &Hop) -> Vec<String> {
        let mut a = vec![
            "upgrade".to_string(),
            self.release.clone(),
            self.chart.clone(),
            "--namespace".into(),
            self.namespace.clone(),
            "--reuse-values".into(),
        ];
        for k in IMAGE_TAG_VALUES {
            a.push("--set".into());
            a.push(format!("{k}={}", hop.to));
        }
        a
    }
}

impl Executor for Helm {
    fn name(&self) -> &'static str {
        "helm"
    }
    fn preflight(&self) -> Result<(), UpgradeError> {
        require("helm")
    }
    async fn roll(&self, hop: &Hop) -> Result<RollOutcome, UpgradeError> {
        let args = self.args(hop);
        run("helm", &args).await?;
        Ok(RollOutcome {
            detail: format!("helm {}", args.join(" ")),
        })
    }
}

/// Merge-patches `spec.set` of the k3s `HelmChart` resource; the k3s helm controller upgrades.
#[derive(Debug, Clone)]
pub struct K3s {
    pub helmchart: String,
    pub namespace: String,
}

impl K3s {
    /// The kubectl arguments for a hop.
    pub fn args(&self, hop: &Hop) -> Vec<String> {
        let set: serde_json::Map<String, serde_json::Value> = IMAGE_TAG_VALUES
            .iter()
            .map(|k| (k.to_string(), serde_json::Value::String(hop.to.to_string())))
            .collect();
        let patch = serde_json::json!({"spec": {"set": set}});
        vec![
            "--namespace".into(),
            self.namespace.clone(),
            "patch".into(),
            "helmcharts.helm.cattle.io".into(),
            self.helmchart.clone(),
            "--type".into(),
            "merge".into(),
            "-p".into(),
            patch.to_string(),
        ]
    }
}

impl Executor for K3s {
    fn name(&self) -> &'static str {
        "k3s"
    }
    fn preflight(&self) -> Result<(), UpgradeError> {
        require("kubectl")
    }
    async fn roll(&self, hop: &Hop) -> Result<RollOutcome, UpgradeError> {
        let args = self.args(hop);
        run("kubectl", &args).await?;
        Ok(RollOutcome {
            detail: format!("kubectl {}", args.join(" ")),
        })
    }
}

/// Whether `program` is an executable on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

fn require(program: &str) -> Result<(), UpgradeError> {
    if on_path(program) {
        Ok(())
    } else {
        Err(UpgradeError::Executor(format!(
            "`{program}` is not on PATH; install it or use --executor manual"
        )))
    }
}

async fn run(program: &str, args: &[String]) -> Result<(), UpgradeError> {
    require(program)?;
    let out = tokio::process::Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| UpgradeError::Executor(format!("cannot run {program}: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(UpgradeError::Executor(format!(
            "{program} {} exited with {}: {}",
            args.first().map(String::as_str).unwrap_or(""),
            out.status,
            stderr.trim().chars().take(500).collect::<String>()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::types::TemporalVersion;

    fn hop() -> Hop {
        crate::versions::plan_hops(
            TemporalVersion::new(1, 27, 4),
            TemporalVersion::new(1, 28, 4),
            &crate::versions::HopOptions::default(),
        )
        .unwrap()
        .remove(0)
    }

    #[test]
    fn helm_sets_both_image_tags_and_reuses_values() {
        let h = Helm {
            release: "temporal".into(),
            chart: "temporalio/temporal".into(),
            namespace: "temporal".into(),
        };
        assert_eq!(
            h.args(&hop()).join(" "),
            "upgrade temporal temporalio/temporal --namespace temporal --reuse-values --set server.image.tag=1.28.4 --set admintools.image.tag=1.28.4"
        );
    }

    #[test]
    fn k3s_merge_patches_the_helmchart_set_values() {
        let k = K3s {
            helmchart: "temporal".into(),
            namespace: "kube-system".into(),
        };
        let a = k.args(&hop());
        assert_eq!(
            a[2..5].join(" "),
            "patch helmcharts.helm.cattle.io temporal"
        );
        let patch: serde_json::Value = serde_json::from_str(a.last().unwrap()).unwrap();
        assert_eq!(patch["spec"]["set"]["server.image.tag"], "1.28.4");
        assert_eq!(patch["spec"]["set"]["admintools.image.tag"], "1.28.4");
    }

    #[tokio::test]
    async fn a_missing_binary_is_a_clear_error() {
        let err = run("definitely-not-a-binary-tb", &[]).await.unwrap_err();
        assert!(err.to_string().contains("--executor manual"));
    }
}
