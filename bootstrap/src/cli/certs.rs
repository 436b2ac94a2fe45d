//! `temporal-bootstrap certs issue|renew|inspect|rotate-ca`: the PKI adapter driven directly,
//! without the other steps: files only, no network.

use serde_json::json;

use super::commands::{context, load};
use super::output::Table;
use super::{Cli, CliError, OutputFormat, exit};
use crate::config::PkiConfig;
use crate::pki::{ChangeKind, Outcome, Pki, PkiError, Policy, RotatePhase};

pub(super) fn run(cli: &Cli, action: &super::CertsAction) -> Result<u8, CliError> {
    use super::CertsAction as A;
    let file = match action {
        A::Issue(a) | A::Renew(a) | A::Inspect(a) => &a.file,
        A::RotateCa(a) => &a.config.file,
    };
    let ctx = context(load(file)?, true);
    let Some(pki_cfg) = ctx.config.pki.as_ref() else {
        return Err(CliError::invalid(format!(
            "{}: there is no `pki:` section, so there are no certificates to manage",
            file.display()
        )));
    };
    let pki = Pki::new(pki_cfg, &ctx.config.cluster.name.to_string(), &ctx.base_dir);
    let (title, outcome) = match action {
        A::Inspect(_) => return inspect(cli, pki_cfg, &pki),
        A::Issue(_) => ("certs issue", pki.apply(Policy::CreateMissing)),
        A::Renew(_) => ("certs renew", pki.apply(Policy::Converge)),
        A::RotateCa(a) => {
            let phase = match a.phase {
                super::RotateCaPhase::Start => RotatePhase::Start,
                super::RotateCaPhase::Promote => RotatePhase::Promote,
                super::RotateCaPhase::Finish => RotatePhase::Finish,
            };
            ("certs rotate-ca", pki.rotate(phase))
        }
    };
    print_outcome(cli, title, &outcome.map_err(to_cli)?);
    Ok(exit::OK)
}

fn to_cli(e: PkiError) -> CliError {
    CliError::of_kind(e.kind(), e.to_string())
}

/// `certs inspect`: every certificate with its status; like `status`, exit 1 when one cannot
/// be used as configured.
fn inspect(cli: &Cli, pki_cfg: &PkiConfig, pki: &Pki) -> Result<u8, CliError> {
    let reports = pki.inspect().map_err(to_cli)?;
    match cli.output {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "dir": pki_cfg.dir.display().to_string(),
                "certificates": reports,
            }))
            .unwrap_or_default()
        ),
        OutputFormat::Table => {
            if reports.is_empty() {
                println!(
                    "no certificates under {} (run `temporal-bootstrap certs issue`)",
                    pki_cfg.dir.display()
                );
            } else {
                let mut t = Table::new([
                    "file",
                    "subject",
                    "sans",
                    "usages",
                    "not after",
                    "days left",
                    "status",
                    "detail",
                ]);
                for r in &reports {
                    t.row([
                        r.file.clone(),
                        r.subject.clone(),
                        r.sans.join(","),
                        r.usages.join(","),
                        r.not_after.clone(),
                        r.days_left.to_string(),
                        r.status.as_str().to_string(),
                        r.detail.clone(),
                    ]);
                }
                print!("{}", t.render());
            }
        }
    }
    // Like `status`: exit 1 when a certificate cannot be used as configured.
    let problems = reports.iter().filter(|r| r.status.is_problem()).count();
    if problems > 0 {
        eprintln!(
            "error: {problems} certificate(s) expired, not yet valid, with an invalid chain or different from platform.yaml (see the status column)"
        );
        return Ok(exit::RUNTIME);
    }
    Ok(exit::OK)
}

fn print_outcome(cli: &Cli, title: &str, outcome: &Outcome) {
    for c in &outcome.changes {
        if c.kind == ChangeKind::Drift {
            eprintln!("warning: {}: {}", c.file, c.detail);
        }
    }
    match cli.output {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "command": title,
                "changes": outcome.changes,
                "files_written": outcome.writes,
            }))
            .unwrap_or_default()
        ),
        OutputFormat::Table => {
            if !outcome.changes.is_empty() {
                let mut t = Table::new(["action", "file", "detail"]);
                for c in &outcome.changes {
                    let kind = serde_json::to_value(c.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default();
                    t.row([kind, c.file.clone(), c.detail.clone()]);
                }
                print!("{}", t.render());
            }
            let count = |k| outcome.changes.iter().filter(|c| c.kind == k).count();
            println!(
                "{title}: {} created, {} replaced, {} updated, {} removed, {} to review; {} file(s) written",
                count(ChangeKind::Create),
                count(ChangeKind::Replace),
                count(ChangeKind::Update),
                count(ChangeKind::Remove),
                count(ChangeKind::Drift),
                outcome.writes
            );
        }
    }
}
