//! Which integration tests can run here, decided from the environment at build time so that the
//! test summary is truthful: a test whose service is not available is listed as ignored
//! (`cargo test`) or SKIPPED (`cargo nextest`), never run as a silent pass.
//!
//! - `tb_stack`: the dev stack of `scripts/dev-services` is meant to be there, i.e.
//!   `eval "$(scripts/dev-services env)"` ran (it exports `TB_REPO_LOCAL`) or `CI=true`. The
//!   tests that need it run and fail, naming the missing variable, when it is not complete.
//! - `tb_opensearch3`: `TB_OPENSEARCH3=1` (a private OpenSearch 3 node on the Java 25 JDK).
//! - `tb_es_url`: `TB_ES_URL`, a disposable Elasticsearch/OpenSearch cluster (never in CI).
//! - `tb_kube_api`: `TB_KUBE_API_URL`, a real Kubernetes API server (never in CI).
//! - `tb_grafana`: `TB_GRAFANA_URL`, a real Grafana (never in CI); the test itself reads
//!   `TB_GRAFANA_TOKEN` (not tracked here: Cargo would keep its value in `target/`).
//!
//! The cfgs apply to the whole package (Cargo has no per-target build-script cfg), so changing
//! one of these variables rebuilds the library too: build and test with the same environment
//! (`scripts/test` exports it before its first build).

fn set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty())
}

fn main() {
    let cfgs = [
        (
            "tb_stack",
            set("TB_REPO_LOCAL") || std::env::var("CI").as_deref() == Ok("true"),
        ),
        (
            "tb_opensearch3",
            std::env::var("TB_OPENSEARCH3").as_deref() == Ok("1"),
        ),
        ("tb_es_url", set("TB_ES_URL")),
        ("tb_kube_api", set("TB_KUBE_API_URL")),
        ("tb_grafana", set("TB_GRAFANA_URL")),
    ];
    for var in [
        "TB_REPO_LOCAL",
        "CI",
        "TB_OPENSEARCH3",
        "TB_ES_URL",
        "TB_KUBE_API_URL",
        "TB_GRAFANA_URL",
    ] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    for (cfg, on) in cfgs {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if on {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
