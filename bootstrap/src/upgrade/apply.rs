//! `upgrade apply`: the hops, one at a time, resumable.
//!
//! Flow per hop (each phase recorded in the state file before the next starts):
//! 1. check the cluster runs the hop's `from` (or already its `to`): anything else is refused,
//!    so a hop can never skip a minor release;
//! 2. schema: read the current versions; migrate to the hop's exact versions unless already
//!    there; read again to verify (schema first: no pod of the new release starts before this);
//! 3. roll the services through the [`Executor`] (skipped when the cluster already reports `to`);
//! 4. wait (bounded) until the cluster reports `to`;
//! 5. soak: the version must stay `to` for the soak time (the history service reloads its shards).
//!
//! Guarantees: a re-run continues at the recorded phase (a kill during the soak keeps the time
//! already soaked); a converged run (state done, or the cluster already at the target) makes no
//! write; the schema never goes backwards (the migrator is only called with a higher target).
//! Assumptions: one `upgrade apply` at a time per cluster; the [`SchemaMigrator`] honours its
//! contract (idempotent, forward-only).
//! Caveats: probe errors while the frontend restarts are tolerated until the wait budget ends.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::plan::VisibilityStore;
use super::state::{self, HopState, Phase, UpgradeState};
use super::{
    Clock, ClusterProbe, CurrentSchemas, Executor, SchemaMigrator, UpgradeError, VisibilityTarget,
};
use crate::config::types::TemporalVersion;
use crate::versions::{self, Hop, HopOptions, UpgradeRefusal};

/// What `upgrade apply` was asked to do.
#[derive(Debug, Clone)]
pub struct ApplyRequest {
    pub cluster: String,
    pub to: TemporalVersion,
    /// `--from`: must match what the cluster reports.
    pub from_hint: Option<TemporalVersion>,
    pub store: VisibilityStore,
    pub soak: Duration,
    pub wait_timeout: Duration,
    pub poll_interval: Duration,
    pub state_path: PathBuf,
    /// `--allow-insecure-release` and `--via`.
    pub hops: HopOptions,
}

/// What happened in one hop during this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HopReport {
    pub from: TemporalVersion,
    pub to: TemporalVersion,
    pub actions: Vec<String>,
}

/// What happened in this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    pub cluster: String,
    pub to: TemporalVersion,
    pub resumed: bool,
    /// Nothing was to do (already at the target, or the recorded upgrade is complete).
    pub converged: bool,
    pub hops: Vec<HopReport>,
    pub state_file: String,
}

fn log(msg: &str) {
    tracing::info!("{msg}");
    eprintln!("upgrade: {msg}");
}

/// Rebuilds and checks the hops recorded in a state file.
fn hops_from_state(s: &UpgradeState, options: &HopOptions) -> Result<Vec<Hop>, UpgradeError> {
    let mut hops = Vec::new();
    for (i, h) in s.hops.iter().enumerate() {
        let mut one = versions::plan_hops(
            h.from,
            h.to,
            &HopOptions {
                allow_insecure_release: options.allow_insecure_release,
                via: Vec::new(),
            },
        )?;
        if one.len() != 1 {
            return Err(UpgradeRefusal::SkippedMinor {
                index: i + 1,
                from: h.from,
                to: h.to,
            }
            .into());
        }
        hops.push(one.remove(0));
    }
    versions::check_hops(&hops)?;
    Ok(hops)
}

/// Whether the PostgreSQL schemas of a hop are in place (an Elasticsearch target is the
/// mapping phase's).
fn schema_at_least(
    current: &CurrentSchemas,
    temporal: versions::SchemaVersion,
    vis: VisibilityTarget,
) -> bool {
    let t = current.postgres_temporal.is_some_and(|c| c >= temporal);
    let v = match vis {
        VisibilityTarget::Postgres(want) => current.postgres_visibility.is_some_and(|c| c >= want),
        VisibilityTarget::Elasticsearch(_) | VisibilityTarget::Sqlite => true,
    };
    t && v
}

fn fmt_current(c: &CurrentSchemas) -> String {
    let o = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    format!(
        "temporal {} / visibility {} / es {}",
        o(c.postgres_temporal.map(|v| v.to_string())),
        o(c.postgres_visibility.map(|v| v.to_string())),
        o(c.elasticsearch.map(|v| format!("v{v}")))
    )
}

/// Runs (or resumes) the upgrade.
pub async fn apply<M, P, E, C>(
    req: &ApplyRequest,
    migrator: &M,
    probe: &P,
    executor: &E,
    clock: &C,
) -> Result<ApplyReport, UpgradeError>
where
    M: SchemaMigrator,
    P: ClusterProbe,
    E: Executor,
    C: Clock,
{
    // A missing helm/kubectl must stop us before the first schema change, not after it.
    executor.preflight()?;
    Upgrade {
        req,
        migrator,
        probe,
        executor,
        clock,
    }
    .run()
    .await
}

/// One run of [`apply`]: the request and the four things it acts through.
struct Upgrade<'a, M, P, E, C> {
    req: &'a ApplyRequest,
    migrator: &'a M,
    probe: &'a P,
    executor: &'a E,
    clock: &'a C,
}

impl<M, P, E, C> Upgrade<'_, M, P, E, C>
where
    M: SchemaMigrator,
    P: ClusterProbe,
    E: Executor,
    C: Clock,
{
    /// Each hop moves through its phases (schema, roll, wait for the version, soak); the state
    /// file is saved after every phase, so a re-run continues where this one stopped.
    async fn run(&self) -> Result<ApplyReport, UpgradeError> {
        let path = &self.req.state_path;
        let recorded = state::load(path)?;
        // A resumed run may start while the frontend restarts (mid-roll): only a phase that acts
        // on the running version needs it, and then it is checked below.
        let first_probe = self.probe.server_version().await;
        let mut report = ApplyReport {
            cluster: self.req.cluster.clone(),
            to: self.req.to,
            resumed: false,
            converged: false,
            hops: Vec::new(),
            state_file: path.display().to_string(),
        };
        let Some((mut st, hops)) = self.start_or_resume(recorded, &first_probe, &mut report)?
        else {
            report.converged = true;
            return Ok(report);
        };

        let pending: Vec<&Hop> = hops
            .iter()
            .zip(&st.hops)
            .filter(|(_, s)| s.phase == Phase::Pending)
            .map(|(h, _)| h)
            .collect();
        self.migrator.preflight(&pending).await?;

        let mut first_probe = Some(first_probe);
        let mut running: Option<TemporalVersion> = None;
        while let Some(i) = st.next_hop() {
            let hop = &hops[i];
            let mut actions = Vec::new();
            let label = format!("hop {}/{} {} -> {}", i + 1, hops.len(), hop.from, hop.to);
            if st.hops[i].phase <= Phase::MappingApplied {
                match self
                    .running_at_hop_start(hop, &label, running, &mut first_probe)
                    .await
                {
                    Ok(v) => running = Some(v),
                    // A roll interrupted after the services stopped (a killed `process` roll):
                    // nothing answers. Rolling again is idempotent and starts them; the wait
                    // then checks which release comes up.
                    Err(UpgradeError::Probe { reason, .. })
                        if st.hops[i].phase == Phase::MappingApplied =>
                    {
                        log(&format!(
                            "{label}: the cluster does not answer ({reason}); a previous roll was interrupted: rolling again"
                        ));
                        running = None;
                    }
                    Err(e) => return Err(e),
                }
            }
            if st.hops[i].phase == Phase::Pending {
                actions.push(self.migrate_schema(hop, &label).await?);
                self.advance(&mut st, i, Phase::SchemaApplied, self.clock.now())?;
            }
            if st.hops[i].phase == Phase::SchemaApplied {
                actions.push(self.migrate_mapping(hop, &label).await?);
                self.advance(&mut st, i, Phase::MappingApplied, self.clock.now())?;
            }
            if st.hops[i].phase == Phase::MappingApplied {
                actions.push(self.roll(hop, &label, running).await?);
                self.advance(&mut st, i, Phase::Rolled, self.clock.now())?;
            }
            if st.hops[i].phase == Phase::Rolled {
                running = Some(self.wait_for_version(hop, &label).await?);
                actions.push(format!("cluster reports {}", hop.to));
                let now = self.clock.now();
                st.hops[i].version_seen_at = Some(now);
                self.advance(&mut st, i, Phase::Soaking, now)?;
            }
            if st.hops[i].phase == Phase::Soaking {
                self.soak(hop, &label, st.hops[i].version_seen_at).await?;
                actions.push(format!("soaked {}s", self.req.soak.as_secs()));
                self.advance(&mut st, i, Phase::Done, self.clock.now())?;
                running = Some(hop.to);
                log(&format!("{label}: done"));
            }
            report.hops.push(HopReport {
                from: hop.from,
                to: hop.to,
                actions,
            });
        }
        if report.hops.is_empty() {
            report.converged = true;
        }
        Ok(report)
    }

    /// The state to work from: the recorded unfinished upgrade, or a new one planned from the
    /// running version (saved before anything is changed). `None`: nothing to do.
    fn start_or_resume(
        &self,
        recorded: Option<UpgradeState>,
        first_probe: &Result<TemporalVersion, UpgradeError>,
        report: &mut ApplyReport,
    ) -> Result<Option<(UpgradeState, Vec<Hop>)>, UpgradeError> {
        let req = self.req;
        let path = &req.state_path;
        match recorded {
            Some(s) if s.cluster != req.cluster => Err(UpgradeError::Invalid(format!(
                "{} records an upgrade of cluster {}, not {}: pass another --state",
                path.display(),
                s.cluster,
                req.cluster
            ))),
            Some(s) if !s.is_done() && s.to != req.to => Err(UpgradeError::Invalid(format!(
                "{} records an unfinished upgrade to {}: finish it first (re-run with --to {}), or move the file away if that upgrade was abandoned",
                path.display(),
                s.to,
                s.to
            ))),
            Some(s) if !s.is_done() => {
                let hops = hops_from_state(&s, &req.hops)?;
                report.resumed = true;
                log(&format!(
                    "resuming the upgrade to {} recorded in {} at hop {}",
                    s.to,
                    path.display(),
                    s.next_hop().map(|i| i + 1).unwrap_or(0)
                ));
                Ok(Some((s, hops)))
            }
            done_or_none => {
                let running =
                    first_probe
                        .as_ref()
                        .map(|v| *v)
                        .map_err(|e| UpgradeError::Probe {
                            address: self.probe.address(),
                            reason: e.to_string(),
                        })?;
                if let Some(from) = req.from_hint
                    && from != running
                {
                    return Err(UpgradeError::Invalid(format!(
                        "--from {from} but the cluster reports {running}: re-plan from the running release"
                    )));
                }
                let hops = versions::plan_hops(running, req.to, &req.hops)?;
                if hops.is_empty() {
                    log(&format!(
                        "the cluster already runs {}: nothing to do",
                        req.to
                    ));
                    return Ok(None);
                }
                if let Some(done) = done_or_none {
                    log(&format!(
                        "{} records a finished upgrade to {}; starting a new one",
                        path.display(),
                        done.to
                    ));
                }
                let s = UpgradeState {
                    format: UpgradeState::FORMAT,
                    cluster: req.cluster.clone(),
                    from: running,
                    to: req.to,
                    hops: hops
                        .iter()
                        .map(|h| HopState {
                            from: h.from,
                            to: h.to,
                            phase: Phase::Pending,
                            version_seen_at: None,
                            updated_at: None,
                        })
                        .collect(),
                };
                state::save(path, &s)?;
                Ok(Some((s, hops)))
            }
        }
    }

    /// Schema and roll act on what runs: it must be this hop's `from` (or already `to`).
    async fn running_at_hop_start(
        &self,
        hop: &Hop,
        label: &str,
        known: Option<TemporalVersion>,
        first_probe: &mut Option<Result<TemporalVersion, UpgradeError>>,
    ) -> Result<TemporalVersion, UpgradeError> {
        let now_running = match (known, first_probe.take()) {
            (Some(v), _) => v,
            (None, Some(Ok(v))) => v,
            (None, Some(Err(e))) => return Err(e),
            (None, None) => self.probe.server_version().await?,
        };
        if now_running != hop.from && now_running != hop.to {
            return Err(UpgradeError::Invalid(format!(
                "{label}: the cluster reports {now_running}, expected {} (or {}); refusing to continue, since that could skip a minor release or roll a release back. Check what changed it, then re-plan",
                hop.from, hop.to
            )));
        }
        Ok(now_running)
    }

    /// The stores to the hop's exact schema versions (left alone when already there).
    async fn migrate_schema(&self, hop: &Hop, label: &str) -> Result<String, UpgradeError> {
        let temporal = hop.schemas.postgres_temporal;
        let vis = self.req.store.target(hop);
        let before = self.migrator.current_versions().await?;
        if schema_at_least(&before, temporal, vis) {
            return Ok(format!(
                "schema already at or above target ({})",
                fmt_current(&before)
            ));
        }
        log(&format!(
            "{label}: schema {} -> temporal {temporal}, visibility {vis}",
            fmt_current(&before)
        ));
        self.migrator.migrate_to(temporal, vis).await?;
        let after = self.migrator.current_versions().await?;
        if !schema_at_least(&after, temporal, vis) {
            return Err(UpgradeError::Schema(format!(
                "{label}: after migrating, the stores report {}; expected temporal {temporal}, visibility {vis}",
                fmt_current(&after)
            )));
        }
        Ok(format!(
            "schema {} -> {}",
            fmt_current(&before),
            fmt_current(&after)
        ))
    }

    /// The Elasticsearch/OpenSearch template and mapping of the hop's schema version, after the
    /// PostgreSQL schemas and before any service of the new release starts: documents the new
    /// release writes must find their fields mapped (the template has `dynamic: false`).
    async fn migrate_mapping(&self, hop: &Hop, label: &str) -> Result<String, UpgradeError> {
        let VisibilityTarget::Elasticsearch(want) = self.req.store.target(hop) else {
            return Ok("no search mapping on this visibility store".into());
        };
        let before = self.migrator.current_versions().await?.elasticsearch;
        if before.is_some_and(|v| v >= want) {
            return Ok(format!("search mapping already at or above v{want}"));
        }
        let shown = |v: Option<u32>| v.map_or("-".to_string(), |v| format!("v{v}"));
        log(&format!(
            "{label}: search mapping {} -> v{want}",
            shown(before)
        ));
        self.migrator.migrate_search(want).await?;
        let after = self.migrator.current_versions().await?.elasticsearch;
        if after.is_none_or(|v| v < want) {
            return Err(UpgradeError::Schema(format!(
                "{label}: after migrating, the visibility index records search schema {}; expected v{want}",
                shown(after)
            )));
        }
        Ok(format!("search mapping {} -> v{want}", shown(before)))
    }

    async fn roll(
        &self,
        hop: &Hop,
        label: &str,
        running: Option<TemporalVersion>,
    ) -> Result<String, UpgradeError> {
        if running == Some(hop.to) {
            return Ok(format!("services already report {}", hop.to));
        }
        log(&format!(
            "{label}: rolling the services ({})",
            self.executor.name()
        ));
        let out = self.executor.roll(hop).await?;
        Ok(format!("rolled: {}", out.detail))
    }

    /// Polls until the cluster reports the hop's release, within the executor's budget.
    async fn wait_for_version(
        &self,
        hop: &Hop,
        label: &str,
    ) -> Result<TemporalVersion, UpgradeError> {
        let budget = self.executor.wait_budget(self.req.wait_timeout).as_secs();
        let start = self.clock.now();
        loop {
            let last = match self.probe.server_version().await {
                Ok(v) if v == hop.to => return Ok(v),
                Ok(v) if v != hop.from => {
                    return Err(UpgradeError::Invalid(format!(
                        "{label}: the cluster reports {v} while rolling to {}: refusing to continue",
                        hop.to
                    )));
                }
                Ok(v) => v.to_string(),
                Err(e) => e.to_string(),
            };
            let waited = self.clock.now().saturating_sub(start);
            if waited >= budget {
                return Err(UpgradeError::Timeout {
                    expected: hop.to,
                    waited_secs: waited,
                    last_seen: last,
                });
            }
            self.clock.sleep(self.req.poll_interval).await;
        }
    }

    /// Waits out the soak from when the version was first seen; a version change during it
    /// stops the upgrade.
    async fn soak(
        &self,
        hop: &Hop,
        label: &str,
        version_seen_at: Option<u64>,
    ) -> Result<(), UpgradeError> {
        let clock = self.clock;
        let since = version_seen_at.unwrap_or_else(|| clock.now());
        let until = since + self.req.soak.as_secs();
        if clock.now() < until {
            log(&format!(
                "{label}: soaking {}s (history reloads its shards)",
                until - clock.now()
            ));
        }
        while clock.now() < until {
            let left = until - clock.now();
            clock
                .sleep(self.req.poll_interval.min(Duration::from_secs(left)))
                .await;
            if let Ok(v) = self.probe.server_version().await
                && v != hop.to
            {
                return Err(UpgradeError::Regressed {
                    expected: hop.to,
                    seen: v,
                });
            }
        }
        Ok(())
    }

    /// Records that hop `i` reached `phase` at `now`, durably.
    fn advance(
        &self,
        st: &mut UpgradeState,
        i: usize,
        phase: Phase,
        now: u64,
    ) -> Result<(), UpgradeError> {
        st.hops[i].phase = phase;
        st.hops[i].updated_at = Some(now);
        state::save(&self.req.state_path, st)
    }
}

/// Orchestration tests against in-memory fakes of the cluster, the schema stores and the
/// executor (the real adapters are tested in their own modules). Time is a fake clock.
#[cfg(test)]
mod tests_with_in_memory_fakes {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::upgrade::RollOutcome;
    use crate::versions::SchemaVersion;

    fn v(s: &str) -> TemporalVersion {
        s.parse().unwrap()
    }

    #[derive(Debug, Default)]
    struct World {
        version: Option<TemporalVersion>,
        /// Version the cluster will report after `rollout_polls` more probes.
        rolling_to: Option<TemporalVersion>,
        rollout_polls: u32,
        /// When set, a roll never shows up (stuck rollout).
        stuck: bool,
        schema: CurrentSchemas,
        migrate_calls: u32,
        roll_calls: u32,
        /// The roll with this 1-based number fails (the process "dies" there).
        crash_on_roll: Option<u32>,
        /// The crashing roll had already stopped the services (nothing answers afterwards).
        crash_after_stop: bool,
        /// Migrations are recorded but do not take effect.
        broken_migrator: bool,
        search_calls: u32,
        /// The search migration with this 1-based number fails (the process "dies" there).
        crash_on_search: Option<u32>,
        /// Probe calls after which the cluster reports this version (regression during soak).
        regress_after: Option<(u32, TemporalVersion)>,
        probes: u32,
        now: u64,
    }

    #[derive(Clone, Default)]
    struct Fake(Arc<Mutex<World>>);

    impl Fake {
        fn at(version: &str) -> Self {
            let f = Fake::default();
            {
                let mut w = f.0.lock().unwrap();
                let ver = v(version);
                let t = crate::versions::SupportedRelease::of(ver)
                    .unwrap()
                    .schemas();
                w.version = Some(ver);
                w.schema = CurrentSchemas {
                    postgres_temporal: Some(t.postgres_temporal),
                    postgres_visibility: Some(t.postgres_visibility),
                    elasticsearch: None,
                };
                w.now = 1_000_000;
                w.rollout_polls = 2;
            }
            f
        }
        fn w(&self) -> std::sync::MutexGuard<'_, World> {
            self.0.lock().unwrap()
        }
        /// (migrate calls, roll calls). One lock: two `w()` in one expression would deadlock.
        fn counts(&self) -> (u32, u32) {
            let w = self.w();
            (w.migrate_calls, w.roll_calls)
        }
    }

    impl ClusterProbe for Fake {
        fn address(&self) -> String {
            "fake://cluster".into()
        }
        async fn server_version(&self) -> Result<TemporalVersion, UpgradeError> {
            let mut w = self.w();
            w.probes += 1;
            if let Some((after, to)) = w.regress_after
                && w.probes > after
            {
                w.version = Some(to);
            }
            if let Some(to) = w.rolling_to
                && !w.stuck
            {
                if w.rollout_polls == 0 {
                    w.version = Some(to);
                    w.rolling_to = None;
                } else {
                    w.rollout_polls -= 1;
                    // The frontend restarts during a roll.
                    return Err(UpgradeError::Probe {
                        address: "fake".into(),
                        reason: "connection refused".into(),
                    });
                }
            }
            w.version.ok_or(UpgradeError::Probe {
                address: "fake".into(),
                reason: "down".into(),
            })
        }
    }

    impl SchemaMigrator for Fake {
        async fn current_versions(&self) -> Result<CurrentSchemas, UpgradeError> {
            Ok(self.w().schema)
        }
        async fn migrate_to(
            &self,
            temporal: SchemaVersion,
            visibility: VisibilityTarget,
        ) -> Result<(), UpgradeError> {
            let mut w = self.w();
            w.migrate_calls += 1;
            if w.broken_migrator {
                return Ok(());
            }
            // The server never starts a release whose schema is missing: model it.
            w.schema.postgres_temporal = Some(temporal);
            if let VisibilityTarget::Postgres(vis) = visibility {
                w.schema.postgres_visibility = Some(vis);
            }
            Ok(())
        }
        async fn migrate_search(&self, version: u32) -> Result<(), UpgradeError> {
            let mut w = self.w();
            w.search_calls += 1;
            if w.crash_on_search == Some(w.search_calls) {
                return Err(UpgradeError::Schema("process killed".into()));
            }
            assert!(
                w.schema.postgres_temporal.is_some(),
                "mapping before the PostgreSQL schema"
            );
            w.schema.elasticsearch = Some(version);
            Ok(())
        }
    }

    impl Executor for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }
        async fn roll(&self, hop: &Hop) -> Result<RollOutcome, UpgradeError> {
            let mut w = self.w();
            w.roll_calls += 1;
            if w.crash_on_roll == Some(w.roll_calls) {
                if w.crash_after_stop {
                    w.version = None;
                }
                return Err(UpgradeError::Executor("process killed".into()));
            }
            let needs = crate::versions::SupportedRelease::of(hop.to)
                .unwrap()
                .schemas();
            let visibility_ready = match w.schema.elasticsearch {
                Some(es) => es >= needs.elasticsearch,
                None => w.schema.postgres_visibility >= Some(needs.postgres_visibility),
            };
            assert!(
                w.schema.postgres_temporal >= Some(needs.postgres_temporal) && visibility_ready,
                "services rolled to {} before the schema and mapping were migrated",
                hop.to
            );
            w.rolling_to = Some(hop.to);
            w.rollout_polls = 2;
            Ok(RollOutcome {
                detail: format!("fake roll to {}", hop.to),
            })
        }
    }

    impl Clock for Fake {
        fn now(&self) -> u64 {
            self.w().now
        }
        async fn sleep(&self, d: Duration) {
            self.w().now += d.as_secs().max(1);
        }
    }

    fn req(dir: &std::path::Path, to: &str) -> ApplyRequest {
        ApplyRequest {
            cluster: "prod-eu1".into(),
            to: v(to),
            from_hint: None,
            store: VisibilityStore::Postgres,
            soak: Duration::from_secs(600),
            wait_timeout: Duration::from_secs(900),
            poll_interval: Duration::from_secs(10),
            state_path: dir.join("platform.upgrade-state.json"),
            hops: HopOptions::default(),
        }
    }

    async fn run(f: &Fake, r: &ApplyRequest) -> Result<ApplyReport, UpgradeError> {
        apply(r, f, f, f, f).await
    }

    #[tokio::test]
    async fn upgrades_1_27_to_1_31_hop_by_hop_schema_first() {
        let dir = tempfile::tempdir().unwrap();
        let f = Fake::at("1.27.4");
        let start = f.now();
        let r = run(&f, &req(dir.path(), "1.31.2")).await.unwrap();
        let w = f.w();
        assert_eq!(w.version, Some(v("1.31.2")));
        assert_eq!(w.schema.postgres_temporal, Some(SchemaVersion::new(1, 19)));
        assert_eq!(
            w.schema.postgres_visibility,
            Some(SchemaVersion::new(1, 14))
        );
        assert_eq!(w.roll_calls, 4);
        // 1.29 -> 1.30 keeps persistence at 1.18 but moves visibility: still one migration.
        assert_eq!(w.migrate_calls, 4);
        assert!(w.now - start >= 4 * 600, "each hop soaked");
        let path: Vec<String> = r.hops.iter().map(|h| h.to.to_string()).collect();
        assert_eq!(path, ["1.28.4", "1.29.7", "1.30.9", "1.31.2"]);
        let st = state::load(&req(dir.path(), "1.31.2").state_path)
            .unwrap()
            .unwrap();
        assert!(st.is_done());
    }

    #[tokio::test]
    async fn a_second_run_on_a_converged_cluster_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let f = Fake::at("1.29.7");
        let r = req(dir.path(), "1.30.6");
        run(&f, &r).await.unwrap();
        let before = std::fs::read(&r.state_path).unwrap();
        let (m, k) = f.counts();
        let again = run(&f, &r).await.unwrap();
        assert!(again.converged);
        assert_eq!(f.counts(), (m, k));
        assert_eq!(std::fs::read(&r.state_path).unwrap(), before);
        // Already at the target with no state file at all: no state file is written either.
        let fresh = tempfile::tempdir().unwrap();
        let r2 = req(fresh.path(), "1.30.6");
        assert!(run(&f, &r2).await.unwrap().converged);
        assert!(!r2.state_path.exists());
    }

    #[tokio::test]
    async fn a_run_killed_between_hops_resumes_without_redoing_finished_work() {
        let dir = tempfile::tempdir().unwrap();
        let f = Fake::at("1.27.4");
        f.w().crash_on_roll = Some(2);
        let r = req(dir.path(), "1.30.6");
        let err = run(&f, &r).await.unwrap_err();
        assert!(err.to_string().contains("killed"));
        let st = state::load(&r.state_path).unwrap().unwrap();
        assert_eq!(st.hops[0].phase, Phase::Done);
        assert_eq!(st.hops[1].phase, Phase::MappingApplied);
        assert_eq!(f.w().migrate_calls, 2);
        assert_eq!(f.w().version, Some(v("1.28.4")));

        f.w().crash_on_roll = None;
        let resumed = run(&f, &r).await.unwrap();
        assert!(resumed.resumed);
        // Hop 2's schema was done before the kill: not repeated; hop 3 migrates once.
        assert_eq!(f.w().migrate_calls, 3);
        assert_eq!(
            f.w().roll_calls,
            4,
            "2 before the kill (one failed) + 2 after"
        );
        assert_eq!(f.w().version, Some(v("1.30.6")));
        let to: Vec<String> = resumed.hops.iter().map(|h| h.to.to_string()).collect();
        assert_eq!(to, ["1.29.7", "1.30.6"]);
    }

    #[tokio::test]
    async fn a_run_killed_during_the_soak_only_soaks_what_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let f = Fake::at("1.28.4");
        let r = req(dir.path(), "1.28.4");
        let now = f.now();
        let st = UpgradeState {
            format: 1,
            cluster: "prod-eu1".into(),
            from: v("1.27.4"),
            to: v("1.28.4"),
            hops: vec![HopState {
                from: v("1.27.4"),
                to: v("1.28.4"),
                phase: Phase::Soaking,
                version_seen_at: Some(now - 450),
                updated_at: Some(now - 450),
            }],
        };
        state::save(&r.state_path, &st).unwrap();
        let out = run(&f, &r).await.unwrap();
        assert!(out.resumed);
        let soaked = f.now() - now;
        assert!(
            (150..=160).contains(&soaked),
            "soaked {soaked}s, expected the remaining 150s"
        );
        assert_eq!(f.counts(), (0, 0));
    }

    #[tokio::test]
    async fn a_cluster_moved_past_the_next_hop_is_refused_before_any_write() {
        let dir = tempfile::tempdir().unwrap();
        let f = Fake::at("1.27.4");
        f.w().crash_on_roll = Some(2);
        let r = req(dir.path(), "1.31.2");
        run(&f, &r).await.unwrap_err();
        // Someone rolled the cluster from 1.28.4 straight to 1.30.6 behind our back.
        f.w().version = Some(v("1.30.6"));
        f.w().crash_on_roll = None;
        let m = f.w().migrate_calls;
        let err = run(&f, &r).await.unwrap_err();
        assert!(err.is_invalid());
        assert!(err.to_string().contains("skip a minor"), "{err}");
        assert_eq!(f.w().migrate_calls, m);
    }

    #[tokio::test]
    async fn a_hand_edited_state_that_skips_a_minor_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = Fake::at("1.27.4");
        let r = req(dir.path(), "1.29.7");
        let st = UpgradeState {
            format: 1,
            cluster: "prod-eu1".into(),
            from: v("1.27.4"),
            to: v("1.29.7"),
            hops: vec![HopState {
                from: v("1.27.4"),
                to: v("1.29.7"),
                phase: Phase::Pending,
                version_seen_at: None,
                updated_at: None,
            }],
        };
        state::save(&r.state_path, &st).unwrap();
        let err = run(&f, &r).await.unwrap_err();
        assert!(matches!(
            err,
            UpgradeError::Refused(UpgradeRefusal::SkippedMinor { .. })
        ));
        assert_eq!(f.counts(), (0, 0));
    }

    #[tokio::test]
    async fn refusals_and_mismatches_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let f = Fake::at("1.29.7");
        // Downgrade.
        let err = run(&f, &req(dir.path(), "1.28.4")).await.unwrap_err();
        assert!(matches!(
            err,
            UpgradeError::Refused(UpgradeRefusal::Downgrade { .. })
        ));
        // Known-broken target.
        let f2 = Fake::at("1.26.3");
        let err = run(&f2, &req(dir.path(), "1.27.0")).await.unwrap_err();
        assert!(err.to_string().contains("1.27.4"));
        // --from that is not what runs.
        let mut r = req(dir.path(), "1.30.6");
        r.from_hint = Some(v("1.28.4"));
        let err = run(&f, &r).await.unwrap_err();
        assert!(err.is_invalid() && err.to_string().contains("reports 1.29.7"));
        assert!(!r.state_path.exists());
        assert_eq!(f.counts(), (0, 0));
        // An unfinished upgrade to another target.
        f.w().crash_on_roll = Some(1);
        run(&f, &req(dir.path(), "1.31.2")).await.unwrap_err();
        f.w().crash_on_roll = None;
        let err = run(&f, &req(dir.path(), "1.30.6")).await.unwrap_err();
        assert!(
            err.to_string().contains("unfinished upgrade to 1.31.2"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_rollout_that_never_shows_up_times_out_and_resumes_waiting_without_rerolling() {
        let dir = tempfile::tempdir().unwrap();
        let f = Fake::at("1.29.7");
        f.w().stuck = true;
        let r = req(dir.path(), "1.30.6");
        let err = run(&f, &r).await.unwrap_err();
        assert!(matches!(err, UpgradeError::Timeout { .. }), "{err}");
        assert_eq!(
            state::load(&r.state_path).unwrap().unwrap().hops[0].phase,
            Phase::Rolled
        );
        f.w().stuck = false;
        run(&f, &r).await.unwrap();
        assert_eq!(f.w().roll_calls, 1);
        assert_eq!(f.w().version, Some(v("1.30.6")));
    }

    #[tokio::test]
    async fn a_version_change_during_the_soak_stops_the_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let f = Fake::at("1.29.7");
        // Roll shows up after a few probes; then someone rolls back during the soak.
        f.w().regress_after = Some((10, v("1.29.7")));
        let err = run(&f, &req(dir.path(), "1.30.6")).await.unwrap_err();
        assert!(matches!(err, UpgradeError::Regressed { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_migration_that_does_not_reach_the_target_stops_before_the_roll() {
        let dir = tempfile::tempdir().unwrap();
        let f = Fake::at("1.29.7");
        f.w().broken_migrator = true;
        let err = run(&f, &req(dir.path(), "1.30.6")).await.unwrap_err();
        assert!(matches!(err, UpgradeError::Schema(_)), "{err}");
        assert_eq!(f.w().roll_calls, 0);
    }

    /// An executor whose tool is missing.
    struct NoTool;
    impl Executor for NoTool {
        fn name(&self) -> &'static str {
            "no-tool"
        }
        fn preflight(&self) -> Result<(), UpgradeError> {
            Err(UpgradeError::Executor("`helm` is not on PATH".into()))
        }
        async fn roll(&self, _: &Hop) -> Result<RollOutcome, UpgradeError> {
            unreachable!("preflight failed")
        }
    }

    #[tokio::test]
    async fn a_missing_executor_tool_stops_before_the_first_schema_change() {
        let dir = tempfile::tempdir().unwrap();
        let f = Fake::at("1.29.7");
        let r = req(dir.path(), "1.30.6");
        let err = apply(&r, &f, &f, &NoTool, &f).await.unwrap_err();
        assert!(err.to_string().contains("not on PATH"));
        assert_eq!(f.counts(), (0, 0));
        assert!(!r.state_path.exists());
    }

    /// OpenSearch visibility: per hop the PostgreSQL schema, then the index mapping of the hop's
    /// schema version, then the roll; a crash between the schema and the mapping resumes at the
    /// mapping without migrating the schema again.
    #[tokio::test]
    async fn search_mappings_migrate_per_hop_before_the_roll_and_resume_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let f = Fake::at("1.29.7");
        {
            let mut w = f.w();
            w.schema.postgres_visibility = None;
            w.schema.elasticsearch = Some(9);
            w.crash_on_search = Some(2);
        }
        let mut r = req(dir.path(), "1.32.2");
        r.store = VisibilityStore::Opensearch;
        let err = run(&f, &r).await.unwrap_err();
        assert!(err.to_string().contains("killed"), "{err}");
        let st = state::load(&r.state_path).unwrap().unwrap();
        assert_eq!(
            st.hops.iter().map(|h| h.phase).collect::<Vec<_>>(),
            [Phase::Done, Phase::SchemaApplied, Phase::Pending]
        );
        {
            let w = f.w();
            // Hop 1 (1.30.9) keeps persistence 1.18: only its mapping (v13) moves.
            assert_eq!((w.migrate_calls, w.search_calls), (1, 2));
            assert_eq!(w.schema.elasticsearch, Some(13));
        }

        f.w().crash_on_search = None;
        let resumed = run(&f, &r).await.unwrap();
        assert!(resumed.resumed);
        let w = f.w();
        assert_eq!(w.version, Some(v("1.32.2")));
        assert_eq!(w.schema.elasticsearch, Some(14));
        // Hop 2's schema is not migrated again, its mapping is; hop 3 (1.32) needs neither.
        assert_eq!((w.migrate_calls, w.search_calls), (1, 3));
    }

    /// A roll killed after it stopped the services: the re-run finds nothing answering, rolls
    /// again (idempotent) and finishes.
    #[tokio::test]
    async fn a_roll_killed_after_the_services_stopped_is_rolled_again() {
        let dir = tempfile::tempdir().unwrap();
        let f = Fake::at("1.29.7");
        {
            let mut w = f.w();
            w.crash_on_roll = Some(2);
            w.crash_after_stop = true;
        }
        let r = req(dir.path(), "1.31.2");
        run(&f, &r).await.unwrap_err();
        assert_eq!(f.w().version, None, "the services are down");
        f.w().crash_on_roll = None;
        let resumed = run(&f, &r).await.unwrap();
        assert!(resumed.resumed);
        let w = f.w();
        assert_eq!(w.version, Some(v("1.31.2")));
        assert_eq!(w.roll_calls, 3);
    }
}
