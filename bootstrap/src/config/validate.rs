//! Cross-field rules: what the types alone cannot express. Pure; reports every finding at once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::load::Finding;
use super::model::*;
use super::types::{HumanDuration, SearchAttributeType, ShardSetting};
use crate::{capacity, versions};

/// Errors make the configuration unusable; warnings are printed and do not fail `validate`.
#[derive(Debug, Default)]
pub struct Report {
    pub errors: Vec<Finding>,
    pub warnings: Vec<Finding>,
}

impl Report {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Finding::new(path, message));
    }
    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Finding::new(path, message));
    }
}

/// Shortest retention we accept: the dev server takes one hour, production clusters need a day.
pub const MIN_RETENTION: HumanDuration = HumanDuration::from_days(1);

pub fn check(c: &PlatformConfig) -> Report {
    let mut r = Report::default();
    check_cluster(c, &mut r);
    check_capacity(c, &mut r);
    check_stores(c, &mut r);
    check_namespaces(c, &mut r);
    check_workers(c, &mut r);
    if let Some(pki) = &c.pki {
        check_pki(pki, &mut r);
    }
    check_observability(&c.observability, &mut r);
    if let Some(codec) = &c.codec {
        r.errors.extend(super::codec::check(codec));
    }
    if let Some(audit) = &c.audit {
        check_audit(audit, &mut r);
        let stale = crate::observability::rules::thresholds_for(&c.observability)
            .ok()
            .and_then(|t| t.get("audit_stale_seconds")?.parse::<f64>().ok());
        if let Some(stale) = stale
            && audit.interval.as_duration().as_secs_f64() * 2.0 > stale
        {
            r.warn(
                "audit.interval",
                format!(
                    "`{}` leaves TemporalBootstrapAuditStale ({stale} s) less than two missed audits; set observability.alert_thresholds.audit_stale_seconds to about 3x the interval",
                    audit.interval
                ),
            );
        }
    }
    r
}

fn check_audit(a: &crate::config::model::AuditConfig, r: &mut Report) {
    if a.interval.as_duration() < std::time::Duration::from_secs(60) {
        r.error(
            "audit.interval",
            format!("`{}` is too short: at least 1m (an audit reads up to `sample` histories per namespace)", a.interval),
        );
    }
    if !(1..=10_000).contains(&a.sample) {
        r.error(
            "audit.sample",
            format!(
                "{} is out of range: 1 to 10000 histories per namespace",
                a.sample
            ),
        );
    }
    if a.since.as_duration().is_zero() {
        r.error("audit.since", "must be longer than 0 (e.g. 24h)");
    }
}

fn check_cluster(c: &PlatformConfig, r: &mut Report) {
    let v = c.cluster.temporal_version;
    match versions::SupportedRelease::target(v) {
        Err(why) => r.error("cluster.temporal_version", why.to_string()),
        // A warning, not an error: a running cluster may be on such a patch and must stay
        // manageable (and upgradable) until it moves.
        Ok(release) => {
            if let Some(fix) = release.missing_authorization_fix() {
                r.warn(
                    "cluster.temporal_version",
                    format!(
                        "{v} lacks the authorization security fixes that landed in {fix}; upgrade to {} (temporal-bootstrap upgrade plan --to {})",
                        release.latest_of_line(),
                        release.latest_of_line()
                    ),
                );
            }
        }
    }
    match &c.cluster.authorization {
        None if c.cluster.environment == Environment::Production => r.warn(
            "cluster.authorization",
            "not set: every client with a valid certificate may do anything in every namespace; set jwt_key_sources and token (README: Authorization)",
        ),
        None => {}
        Some(a) => {
            if a.jwt_key_sources.is_empty() {
                r.error(
                    "cluster.authorization.jwt_key_sources",
                    "needs at least one JWKS URL (your identity provider's, e.g. https://idp.example.com/.well-known/jwks.json)",
                );
            }
            if let Some(u) = a.jwt_key_sources.iter().find(|u| u.as_url().scheme() != "https")
                && c.cluster.environment == Environment::Production
            {
                r.error(
                    "cluster.authorization.jwt_key_sources",
                    format!("{u}: use https in production (the signing keys decide who is admin)"),
                );
            }
            if a.permissions_claim.trim().is_empty() {
                r.error(
                    "cluster.authorization.permissions_claim",
                    format!("must not be empty (Temporal's default is `{DEFAULT_PERMISSIONS_CLAIM}`)"),
                );
            }
            if c.cluster.frontend.tls.is_none() {
                r.error(
                    "cluster.authorization",
                    "needs cluster.frontend.tls: a bearer token must not cross the network in plaintext",
                );
            }
        }
    }
    if let Some(tls) = &c.cluster.frontend.tls
        && tls.cert.is_some() != tls.key.is_some()
    {
        r.error(
            "cluster.frontend.tls",
            "set both `cert` and `key` for mTLS, or neither",
        );
    }
}

fn check_capacity(c: &PlatformConfig, r: &mut Report) {
    let cap = &c.capacity;
    if cap.burst_multiplier.get() < 1.0 {
        r.error(
            "capacity.burst_multiplier",
            "must be at least 1 (1 means no burst above the daily peak)",
        );
    }
    if cap.growth.years > 10 {
        r.error("capacity.growth.years", "must be between 0 and 10; plan longer horizons by re-planning, not by oversizing today");
    }
    let lat = cap.persistence_write_latency.as_millis();
    if !(1..=10_000).contains(&lat) {
        r.error(
            "capacity.persistence_write_latency",
            "must be between 1ms and 10s (a typical PostgreSQL p99 write is 2ms-20ms)",
        );
    }
    if cap.average_workflow_duration.as_millis() == 0 {
        r.error(
            "capacity.average_workflow_duration",
            "must be greater than 0 (e.g. 30s, 2h, 7d)",
        );
    }
    if let ShardSetting::Pinned(n) = cap.history_shards
        && !n.is_power_of_two()
    {
        r.warn(
            "capacity.history_shards",
            format!("{n} is not a power of two; multi-cluster replication later needs shard counts that are multiples of each other, so prefer {}", n.next_power_of_two()),
        );
    }
    if let Some(ret) = cap.retention
        && ret < MIN_RETENTION
    {
        r.error("capacity.retention", "must be at least 1d");
    }
    // Override names and values, and load figures beyond the model, are owned by the planner's
    // constants table (capacity::constants depends on nothing in config: no cycle).
    let load = capacity::LoadInputs {
        peak_workflow_starts_per_second: cap.peak_workflow_starts_per_second.get(),
        activities_per_workflow: cap.activities_per_workflow.get(),
        timers_and_signals_per_workflow: cap.timers_and_signals_per_workflow.get(),
        burst_multiplier: cap.burst_multiplier.get(),
    };
    for issue in capacity::check_overrides(&cap.overrides)
        .into_iter()
        .chain(capacity::check_load(&load, &cap.overrides))
    {
        r.error(issue.path, issue.message);
    }
}

fn check_stores(c: &PlatformConfig, r: &mut Report) {
    let production = c.cluster.environment == Environment::Production;
    if production && matches!(c.persistence, PersistenceConfig::Sqlite(_)) {
        r.error("persistence.sqlite", "SQLite is for development only; use `postgres`, or set cluster.environment: development");
    }
    if production && matches!(c.visibility, VisibilityConfig::Sqlite(_)) {
        r.error("visibility.sqlite", "SQLite is for development only; use `elasticsearch` or `postgres`, or set cluster.environment: development");
    }
    if let PersistenceConfig::Postgres(pg) = &c.persistence {
        if pg.host.trim().is_empty() {
            r.error(
                "persistence.postgres.host",
                "must not be empty; expected a host name or IP address",
            );
        }
        if pg.port == 0 {
            r.error("persistence.postgres.port", "must be between 1 and 65535");
        }
        for (field, value) in [("database", &pg.database), ("user", &pg.user)] {
            if !is_sql_identifier(value) {
                r.error(format!("persistence.postgres.{field}"), format!("`{value}` is not a plain SQL identifier; expected lowercase letters, digits and '_' starting with a letter (at most 63)"));
            }
        }
        if let Some(admin) = &pg.admin
            && admin.user == pg.user
        {
            // The persistence step would bring the application role to least privilege, which
            // would strip the admin role of SUPERUSER/CREATEDB/CREATEROLE.
            r.error(
                "persistence.postgres.user",
                format!("the application role `{}` is also persistence.postgres.admin.user; Temporal must connect as its own least-privilege role: choose another persistence.postgres.user (e.g. `temporal`), which the admin role creates", pg.user),
            );
        }
        if let Some(tls) = &pg.tls
            && tls.mode == PostgresTlsMode::VerifyFull
            && tls.ca.is_none()
        {
            r.error(
                "persistence.postgres.tls.ca",
                "verify-full needs the CA certificate that signed the server certificate",
            );
        }
        if let VisibilityConfig::Postgres(vis) = &c.visibility {
            if !is_sql_identifier(&vis.database) {
                r.error("visibility.postgres.database", format!("`{}` is not a plain SQL identifier; expected lowercase letters, digits and '_' starting with a letter", vis.database));
            }
            if vis.database == pg.database {
                r.error("visibility.postgres.database", "must differ from persistence.postgres.database (Temporal keeps visibility in its own database)");
            }
        }
    } else if matches!(c.visibility, VisibilityConfig::Postgres(_)) {
        r.error("visibility.postgres", "PostgreSQL visibility uses the persistence PostgreSQL server; configure persistence.postgres too");
    }
    if let VisibilityConfig::Elasticsearch(es) = &c.visibility
        && !es.index.starts_with("temporal_visibility_v1")
    {
        r.error("visibility.elasticsearch.index", format!("`{}` does not match Temporal's index template pattern temporal_visibility_v1*; use e.g. temporal_visibility_v1_{}", es.index, c.cluster.name.as_str().replace('-', "_")));
    }
}

fn check_namespaces(c: &PlatformConfig, r: &mut Report) {
    if c.namespaces.is_empty() {
        r.error(
            "namespaces",
            "at least one namespace is required (workflows need a namespace to run in)",
        );
    }
    let mut seen = BTreeSet::new();
    for (i, ns) in c.namespaces.iter().enumerate() {
        let at = format!("namespaces[{i}]");
        if !seen.insert(ns.name.clone()) {
            r.error(
                format!("{at}.name"),
                format!(
                    "namespace `{}` is listed twice; each namespace appears once",
                    ns.name
                ),
            );
        }
        if ns.retention < MIN_RETENTION {
            r.error(
                format!("{at}.retention"),
                format!(
                    "{} is too short; retention must be at least 1d",
                    ns.retention
                ),
            );
        }
        if c.visibility.is_sql() {
            let mut per_type: BTreeMap<SearchAttributeType, usize> = BTreeMap::new();
            for ty in ns.search_attributes.values() {
                *per_type.entry(*ty).or_default() += 1;
            }
            for (ty, count) in per_type {
                if count > ty.sql_visibility_cap() {
                    r.error(
                        format!("{at}.search_attributes"),
                        format!("{count} attributes of type {ty}, but SQL visibility allows at most {} per namespace; remove some or use Elasticsearch visibility", ty.sql_visibility_cap()),
                    );
                }
            }
        }
        let mut lower = BTreeMap::new();
        for name in ns.search_attributes.keys() {
            if let Some(other) = lower.insert(name.as_str().to_ascii_lowercase(), name.clone()) {
                r.error(format!("{at}.search_attributes.{name}"), format!("`{name}` and `{other}` differ only in case; Elasticsearch and SQL visibility treat them as the same column"));
            }
        }
    }
}

fn check_workers(c: &PlatformConfig, r: &mut Report) {
    let mut names = BTreeSet::new();
    for (i, w) in c.workers.iter().enumerate() {
        let at = format!("workers[{i}]");
        if !names.insert(w.name.clone()) {
            r.error(
                format!("{at}.name"),
                format!("worker pool `{}` is listed twice", w.name),
            );
        }
        if let Some(p) = w.peak_tasks_per_second
            && p.get() > capacity::MAX_PEAK_TASKS_PER_SECOND
        {
            r.error(
                format!("{at}.peak_tasks_per_second"),
                format!(
                    "{} tasks per second is beyond what one task queue is planned for (at most {}); spread the work over several task queues or check the unit (per second)",
                    p.get(),
                    capacity::MAX_PEAK_TASKS_PER_SECOND
                ),
            );
        }
        if let Some(d) = w.activity_duration
            && (d.as_duration().is_zero() || d.as_secs_f64() > 86_400.0)
        {
            r.error(
                format!("{at}.activity_duration"),
                "must be above 0 and at most 24h (the average time one activity runs, e.g. 800ms or 4s)",
            );
        }
        if w.replicas.max == 0 || w.replicas.min > w.replicas.max {
            r.error(
                format!("{at}.replicas"),
                format!(
                    "min {} and max {} are inconsistent; expected 0 <= min <= max and max >= 1",
                    w.replicas.min, w.replicas.max
                ),
            );
        }
        match (w.profile, w.gpus) {
            (WorkerProfile::Gpu, None | Some(0)) => r.error(
                format!("{at}.gpus"),
                "the gpu profile needs `gpus: N` (1 or more per replica)",
            ),
            (WorkerProfile::Cpu | WorkerProfile::Io, Some(_)) => r.error(
                format!("{at}.gpus"),
                "`gpus` applies only to the gpu profile",
            ),
            _ => {}
        }
        if let Some(ns) = &w.namespace
            && !c.namespaces.iter().any(|n| &n.name == ns)
        {
            r.error(
                format!("{at}.namespace"),
                format!("namespace `{ns}` is not declared under namespaces"),
            );
        }
    }
}

fn check_pki(pki: &PkiConfig, r: &mut Report) {
    let ca = pki.ca.validity;
    let leaves = std::iter::once(("pki.frontend".to_string(), &pki.frontend.validity))
        .chain(std::iter::once((
            "pki.internode".to_string(),
            &pki.internode.validity,
        )))
        .chain(
            pki.clients
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("pki.clients[{i}]"), &c.validity)),
        );
    for (at, validity) in leaves {
        let v = validity.unwrap_or(DEFAULT_LEAF_VALIDITY);
        if v > ca {
            r.error(format!("{at}.validity"), format!("{v} is longer than the CA's validity {ca}; a certificate cannot outlive its issuer"));
        }
        if pki.renew_before >= v {
            r.error(
                "pki.renew_before",
                format!(
                    "{} is not shorter than the validity {v} of {at}; it would renew on every run",
                    pki.renew_before
                ),
            );
        }
    }
    let dir = pki.dir.to_string_lossy();
    if dir.trim().is_empty() || pki.dir == Path::new(".") || pki.dir == Path::new("./") {
        r.error(
            "pki.dir",
            format!("`{dir}` would put the CA and every private key next to platform.yaml; name a directory of their own, e.g. pki (it is created with mode 0700)"),
        );
    }
    for (at, leaf) in [
        ("pki.frontend", &pki.frontend),
        ("pki.internode", &pki.internode),
    ] {
        for (i, name) in leaf.dns_names.iter().enumerate() {
            if name.as_str().parse::<std::net::IpAddr>().is_ok() {
                r.error(
                    format!("{at}.dns_names[{i}]"),
                    format!("`{name}` is an IP address; list it under {at}.ip_addresses (a DNS SAN never matches an address a client connects to)"),
                );
            }
        }
    }
    if pki.frontend.dns_names.is_empty() && pki.frontend.ip_addresses.is_empty() {
        r.error(
            "pki.frontend",
            "needs at least one entry in dns_names or ip_addresses (clients check the server name)",
        );
    }
    let mut names = BTreeSet::new();
    for (i, c) in pki.clients.iter().enumerate() {
        if !names.insert(c.name.clone()) {
            r.error(
                format!("pki.clients[{i}].name"),
                format!("client `{}` is listed twice", c.name),
            );
        }
    }
    if let Some(ks) = &pki.kubernetes_secrets {
        check_kubernetes_secrets(pki, ks, r);
    }
}

fn check_kubernetes_secrets(pki: &PkiConfig, ks: &KubernetesSecretsConfig, r: &mut Report) {
    let at = "pki.kubernetes_secrets";
    if !is_dns1123_label(&ks.namespace) {
        r.error(format!("{at}.namespace"), format!("`{}` is not a valid namespace name; expected a DNS-1123 label: 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit (e.g. temporal)", ks.namespace));
    }
    // Secret name -> where it is used: two certificates in one Secret would overwrite each other.
    let mut used: BTreeMap<String, String> = BTreeMap::new();
    let mut named = |path: String, name: &str, r: &mut Report| {
        if !is_dns1123_subdomain(name) {
            r.error(path.clone(), format!("`{name}` is not a valid Secret name; expected a DNS-1123 subdomain: at most 253 lowercase letters, digits, '-' or '.', starting and ending with a letter or digit (e.g. temporal-tls-frontend)"));
        }
        if let Some(first) = used.insert(name.to_string(), path.clone()) {
            r.error(path, format!("Secret `{name}` is already used by {first}; every certificate needs its own Secret"));
        }
    };
    named(format!("{at}.ca"), &ks.ca, r);
    named(format!("{at}.frontend"), &ks.frontend, r);
    named(format!("{at}.internode"), &ks.internode, r);
    for (client, secret) in &ks.clients {
        let path = format!("{at}.clients.{client}");
        named(path.clone(), secret, r);
        if !pki.clients.iter().any(|c| c.name.as_str() == client) {
            let known: Vec<&str> = pki.clients.iter().map(|c| c.name.as_str()).collect();
            r.error(
                path,
                format!(
                    "client `{client}` is not in pki.clients (known: {}); add it there or remove this entry",
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                ),
            );
        }
    }
    for (i, c) in pki.clients.iter().enumerate() {
        if !ks.clients.contains_key(c.name.as_str()) {
            r.warn(
                format!("pki.clients[{i}]"),
                format!("client `{}` has no entry in {at}.clients: its certificate stays in pki.dir only", c.name),
            );
        }
    }
    if pki.ca.bring_your_own.is_some() {
        r.warn(
            format!("{at}.ca"),
            "with pki.ca.bring_your_own the CA key stays where its reference points: the CA Secret is not written",
        );
    }
}

/// A DNS-1123 label (namespace names): 1-63 of [a-z0-9-], alphanumeric at both ends.
pub fn is_dns1123_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain (most object names, Secrets included): at most 253 characters, labels of
/// [a-z0-9-] separated by '.', each alphanumeric at both ends.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    (1..=253).contains(&s.len())
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn check_observability(o: &ObservabilityConfig, r: &mut Report) {
    if o.slo.schedule_to_start_warning >= o.slo.schedule_to_start_critical {
        r.error("observability.slo", "schedule_to_start_warning must be lower than schedule_to_start_critical (defaults 200ms and 500ms)");
    } else if o.slo.scale_up_schedule_to_start.as_duration().is_zero()
        || o.slo.scale_up_schedule_to_start >= o.slo.schedule_to_start_critical
    {
        r.error("observability.slo.scale_up_schedule_to_start", "must be above 0 and below schedule_to_start_critical, so pools scale before the critical alert (default 300ms, critical 500ms)");
    }
    if !o.alert_thresholds.is_empty() {
        // The rule renderer is pure (embedded templates), so validation can name the valid keys.
        let valid = crate::observability::rules::threshold_names();
        for (name, value) in &o.alert_thresholds {
            if !valid.contains(name) {
                r.error(
                    format!("observability.alert_thresholds.{name}"),
                    format!(
                        "unknown threshold; valid names (alerts/thresholds.yaml): {}",
                        valid.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                );
            } else if !value.is_finite() || *value < 0.0 {
                r.error(
                    format!("observability.alert_thresholds.{name}"),
                    "must be a number of 0 or more",
                );
            }
        }
    }
    if let Some(g) = &o.grafana
        && g.folder.trim().is_empty()
    {
        r.error("observability.grafana.folder", "must not be empty");
    }
}

fn is_sql_identifier(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns1123_names() {
        for ok in ["temporal", "a", "tls-1", "0abc"] {
            assert!(is_dns1123_label(ok), "{ok}");
            assert!(is_dns1123_subdomain(ok), "{ok}");
        }
        assert!(is_dns1123_subdomain("temporal-tls.frontend"));
        assert!(!is_dns1123_label("temporal-tls.frontend"));
        for bad in ["", "-a", "a-", "Temporal", "a_b", "a..b", ".a", "a b"] {
            assert!(!is_dns1123_subdomain(bad), "{bad}");
            assert!(!is_dns1123_label(bad), "{bad}");
        }
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1123_subdomain(&"a".repeat(253)));
        assert!(!is_dns1123_subdomain(&"a".repeat(254)));
    }
}
