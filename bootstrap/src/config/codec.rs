//! The `codec:` section: the remote codec server (payload encryption keys, access rules, CORS).
//! Pure: the cross-field rules are in [`check`]; secrets and files are read by `crate::codec`.

use std::net::SocketAddr;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::load::Finding;
use super::types::{NamespaceName, SecretRef};

/// The codec server (`temporal-bootstrap codec-server`). See docs/payload-encryption.md.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CodecConfig {
    /// Address to listen on, IP:PORT.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Serve HTTPS with this certificate and key (PEM files, e.g. issued by `certs issue`).
    /// Omit for plain HTTP (loopback or behind a TLS-terminating proxy only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<CodecTlsConfig>,
    /// Browser origins allowed to call the server (the Temporal Web UI), e.g.
    /// `https://temporal.example.com`. Empty: no CORS (CLI and SDK callers only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cors_origins: Vec<String>,
    /// Named AES-256 keys. Exactly one is `current` (used by /encode); all decrypt.
    pub keys: Vec<CodecKeyConfig>,
    /// Who may encode and decode which namespaces. Deny by default.
    pub access: CodecAccessConfig,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8089))
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CodecTlsConfig {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM, 0600).
    pub key: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CodecKeyConfig {
    /// Key id written to `encryption-key-id` (public, not secret): 1-64 of `A-Za-z0-9._-`.
    pub id: String,
    /// The key: 32 random bytes, base64 (`temporal-bootstrap codec keygen --out FILE`).
    pub secret: SecretRef,
    /// The key used by /encode. Exactly one key is current.
    #[serde(default)]
    pub current: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CodecAccessConfig {
    /// Static bearer tokens, each with its own rights.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<CodecTokenRule>,
    /// JSON Web Tokens (RS256/ES256) verified against a JWKS file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<CodecJwtConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CodecTokenRule {
    /// Caller name used in audit logs and metrics (never the token).
    pub name: String,
    /// The token (a secret reference).
    pub token: SecretRef,
    /// Namespaces whose payloads this caller may decrypt (/decode); `"*"` means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decode: Vec<String>,
    /// Namespaces whose payloads this caller may encrypt (/encode); `"*"` means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub encode: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CodecJwtConfig {
    /// JWKS file (`{"keys": [...]}`) with the issuer's RSA and P-256 public keys.
    pub jwks_file: PathBuf,
    /// Required `iss` claim.
    pub issuer: String,
    /// Required `aud` claim (a string or one of an array).
    pub audience: String,
    /// Claim naming the caller in audit logs.
    #[serde(default = "default_caller_claim")]
    pub caller_claim: String,
    /// Rights granted when a claim has a value (string claim equal, or array claim containing it).
    /// A caller gets the union of every matching rule.
    pub rules: Vec<CodecJwtRule>,
}

fn default_caller_claim() -> String {
    "sub".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CodecJwtRule {
    /// Claim name, e.g. `groups` or `sub`.
    pub claim: String,
    /// Required value of the claim.
    pub value: String,
    /// Namespaces whose payloads this caller may decrypt (/decode); `"*"` means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decode: Vec<String>,
    /// Namespaces whose payloads this caller may encrypt (/encode); `"*"` means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub encode: Vec<String>,
}

/// Cross-field rules of the `codec:` section (paths are under `codec.`).
pub fn check(c: &CodecConfig) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut err = |p: String, m: String| out.push(Finding::new(format!("codec.{p}"), m));
    if c.keys.is_empty() {
        err(
            "keys".into(),
            "at least one key is required (temporal-bootstrap codec keygen --out FILE)".into(),
        );
    }
    let current = c.keys.iter().filter(|k| k.current).count();
    if !c.keys.is_empty() && current != 1 {
        err(
            "keys".into(),
            format!(
                "exactly one key must have `current: true` (found {current}); it encrypts, all keys decrypt"
            ),
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, k) in c.keys.iter().enumerate() {
        if !valid_key_id(&k.id) {
            err(
                format!("keys[{i}].id"),
                "must be 1-64 characters of letters, digits, '.', '_' or '-'".into(),
            );
        }
        if !seen.insert(k.id.as_str()) {
            err(
                format!("keys[{i}].id"),
                format!("duplicate key id `{}`", k.id),
            );
        }
    }
    for (i, o) in c.cors_origins.iter().enumerate() {
        if !valid_origin(o) {
            err(
                format!("cors_origins[{i}]"),
                format!(
                    "`{o}` is not an origin; expected scheme://host[:port] with no path, e.g. https://temporal.example.com (`*` is refused)"
                ),
            );
        }
    }
    let a = &c.access;
    if a.tokens.is_empty() && a.jwt.is_none() {
        err(
            "access".into(),
            "no `tokens` and no `jwt`: nobody could call the server; configure at least one".into(),
        );
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, t) in a.tokens.iter().enumerate() {
        if t.name.trim().is_empty() || t.name.len() > 128 {
            err(
                format!("access.tokens[{i}].name"),
                "must be 1-128 characters".into(),
            );
        }
        if !names.insert(t.name.as_str()) {
            err(
                format!("access.tokens[{i}].name"),
                format!("duplicate caller name `{}`", t.name),
            );
        }
        check_rights(
            &t.decode,
            &t.encode,
            &format!("access.tokens[{i}]"),
            &mut err,
        );
    }
    if let Some(j) = &a.jwt {
        if j.issuer.is_empty() {
            err("access.jwt.issuer".into(), "must not be empty".into());
        }
        if j.audience.is_empty() {
            err("access.jwt.audience".into(), "must not be empty".into());
        }
        if j.rules.is_empty() {
            err(
                "access.jwt.rules".into(),
                "at least one rule is required (deny by default)".into(),
            );
        }
        for (i, r) in j.rules.iter().enumerate() {
            check_rights(
                &r.decode,
                &r.encode,
                &format!("access.jwt.rules[{i}]"),
                &mut err,
            );
        }
    }
    out
}

fn check_rights(
    decode: &[String],
    encode: &[String],
    path: &str,
    err: &mut impl FnMut(String, String),
) {
    for (field, list) in [("decode", decode), ("encode", encode)] {
        for (i, ns) in list.iter().enumerate() {
            if ns != "*" && ns.parse::<NamespaceName>().is_err() {
                err(
                    format!("{path}.{field}[{i}]"),
                    format!("`{ns}` is not a namespace name; expected a namespace or `*` (all)"),
                );
            }
        }
    }
}

/// Key ids travel in payload metadata; keep them short and printable.
pub fn valid_key_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn valid_origin(o: &str) -> bool {
    let rest = match o
        .strip_prefix("https://")
        .or_else(|| o.strip_prefix("http://"))
    {
        Some(r) => r,
        None => return false,
    };
    !rest.is_empty()
        && !rest.contains('/')
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> CodecConfig {
        serde_json::from_value(serde_json::json!({
            "keys": [{"id": "k1", "secret": "env:K1", "current": true}],
            "access": {"tokens": [{"name": "ops", "token": "env:T", "decode": ["payments"]}]}
        }))
        .unwrap()
    }

    #[test]
    fn minimal_is_valid_and_defaults_to_loopback() {
        let c = base();
        assert!(check(&c).is_empty(), "{:?}", check(&c));
        assert_eq!(c.listen.to_string(), "127.0.0.1:8089");
    }

    #[test]
    fn exactly_one_current_key() {
        let mut c = base();
        c.keys[0].current = false;
        assert!(check(&c)[0].message.contains("exactly one"));
        c.keys.push(c.keys[0].clone());
        c.keys[0].current = true;
        c.keys[1].current = true;
        let f = check(&c);
        assert!(f.iter().any(|f| f.message.contains("found 2")));
        assert!(f.iter().any(|f| f.message.contains("duplicate key id")));
    }

    #[test]
    fn bad_origins_namespaces_and_ids_are_named() {
        let mut c = base();
        c.cors_origins = vec!["*".into(), "https://ui.example.com/path".into()];
        c.keys[0].id = "bad id".into();
        c.access.tokens[0].encode = vec!["no spaces".into()];
        let paths: Vec<String> = check(&c).into_iter().map(|f| f.path).collect();
        assert!(paths.contains(&"codec.cors_origins[0]".to_string()));
        assert!(paths.contains(&"codec.cors_origins[1]".to_string()));
        assert!(paths.contains(&"codec.keys[0].id".to_string()));
        assert!(paths.contains(&"codec.access.tokens[0].encode[0]".to_string()));
    }

    #[test]
    fn no_caller_at_all_is_an_error() {
        let mut c = base();
        c.access.tokens.clear();
        assert!(check(&c)[0].message.contains("nobody could call"));
    }

    #[test]
    fn inline_secrets_and_unknown_fields_are_refused() {
        let r: Result<CodecConfig, _> = serde_json::from_value(serde_json::json!({
            "keys": [{"id": "k1", "secret": "c2VjcmV0", "current": true}],
            "access": {}
        }));
        assert!(r.is_err());
        let r: Result<CodecConfig, _> = serde_json::from_value(serde_json::json!({
            "keys": [], "access": {}, "colour": "blue"
        }));
        assert!(r.is_err());
    }
}
