//! The names of the Kubernetes Secrets the platform reads, from
//! `helm/temporal-platform/secret-names.yaml`: the one list that `k3s/install.sh` and the Terraform
//! example read too, so the three paths cannot disagree on a name.
//!
//! The file is compiled in: a renamed Secret is a new release of the bundle, never a runtime input.

use std::sync::LazyLock;

use serde::Deserialize;

/// The file, as committed.
pub const SOURCE: &str = include_str!("../../../helm/temporal-platform/secret-names.yaml");

/// One Secret name per role (see the file for the keys each Secret holds and who creates it).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretNames {
    pub postgres: String,
    pub postgres_admin: String,
    pub postgres_ca: String,
    pub elasticsearch: String,
    pub elasticsearch_ca: String,
    pub grafana_token: String,
    pub bootstrap_token: String,
}

/// The parsed list.
pub fn secret_names() -> &'static SecretNames {
    static NAMES: LazyLock<SecretNames> = LazyLock::new(|| {
        // Invariant: SOURCE is a compile-time constant that the unit test below parses, so a
        // broken file fails `cargo test`, not a user's render.
        serde_saphyr::from_str(SOURCE).expect("helm/temporal-platform/secret-names.yaml parses")
    });
    &NAMES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_list_parses_and_every_name_is_a_valid_secret_name() {
        let n = secret_names();
        for name in [
            &n.postgres,
            &n.postgres_admin,
            &n.postgres_ca,
            &n.elasticsearch,
            &n.elasticsearch_ca,
            &n.grafana_token,
            &n.bootstrap_token,
        ] {
            // RFC 1123 subdomain, as the API server checks Secret names.
            assert!(
                !name.is_empty()
                    && name.len() <= 253
                    && name.bytes().all(|b| b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || b == b'-'
                        || b == b'.')
                    && !name.starts_with('-')
                    && !name.ends_with('-'),
                "{name} is not a valid Secret name"
            );
        }
    }

    #[test]
    fn install_sh_can_read_it_line_by_line() {
        // k3s/install.sh reads `role: name` lines with sed: one flat mapping, no quotes.
        for line in SOURCE
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        {
            let (role, name) = line.split_once(": ").expect("role: name");
            assert!(
                !role.starts_with(' ') && !name.contains(['"', '\'', ' ', '#']),
                "{line}"
            );
        }
    }
}
