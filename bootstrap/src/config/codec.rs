//! The `codec:` section: the remote codec server (payload encryption keys, access rules, CORS).
//! Pure: the cross-field rules are in [`check`]; secrets and files are read by `crate::codec`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::load::{ConfigErrors, ConfigIssue, Finding, LoadedConfig};
use super::locate::PathIndex;
use super::types::{HumanDuration, NamespaceName, SecretRef};

/// Shortest static bearer token accepted (characters of the resolved value).
pub const MIN_TOKEN_CHARS: usize = 16;

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
    /// Where wrapped keys are unwrapped: `file` (default; every key is a `secret:`),
    /// `vault-transit` (OpenBao or Vault Transit) or `aws-kms`. See docs/payload-encryption.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms: Option<KmsConfig>,
    /// Named AES-256 keys. Exactly one is `current` (used by /encode); all decrypt.
    pub keys: Vec<CodecKeyConfig>,
    /// Who may encode and decode which namespaces. Deny by default.
    pub access: CodecAccessConfig,
    /// Resource limits against slow or abusive clients. Every field has a default.
    #[serde(default)]
    pub limits: CodecLimits,
}

/// `codec.limits`: what one client can make the server hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CodecLimits {
    /// Largest request body in bytes (default 33554432 = 32 MiB; 1024 to 1073741824). Larger
    /// bodies get 413; a body is read only after the caller is authenticated and authorised.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Connections served at once (default 256; 1 to 65536). Further connections wait in the
    /// listen backlog until one closes.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Time a client has to send the request headers, counted from the connection's start or the
    /// end of its previous request; also bounds the TLS handshake and idle keep-alive
    /// connections (default 10s; 100ms to 5m).
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout: HumanDuration,
    /// Time a client has to send the whole request body after its headers (default 60s; 100ms
    /// to 1h). Exceeded: 408 and the connection is closed.
    #[serde(default = "default_body_read_timeout")]
    pub body_read_timeout: HumanDuration,
    /// Time a write of the answer may make no progress because the client does not read it
    /// (default 60s; 100ms to 1h). Exceeded: the connection is closed.
    #[serde(default = "default_write_timeout")]
    pub write_timeout: HumanDuration,
}

fn default_max_body_bytes() -> u64 {
    32 * 1024 * 1024
}
fn default_max_connections() -> u32 {
    256
}
fn default_header_read_timeout() -> HumanDuration {
    HumanDuration::from_secs(10)
}
fn default_body_read_timeout() -> HumanDuration {
    HumanDuration::from_secs(60)
}
fn default_write_timeout() -> HumanDuration {
    HumanDuration::from_secs(60)
}

impl Default for CodecLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: default_max_body_bytes(),
            max_connections: default_max_connections(),
            header_read_timeout: default_header_read_timeout(),
            body_read_timeout: default_body_read_timeout(),
            write_timeout: default_write_timeout(),
        }
    }
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
    /// Exactly one of `secret` and `wrapped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretRef>,
    /// The key wrapped by `codec.kms` (envelope encryption; `temporal-bootstrap codec keygen
    /// --kms`): the Transit ciphertext `vault:v1:...` or the AWS KMS CiphertextBlob in base64,
    /// usually `file:keys/ID.wrapped`. Unwrapped in memory at start; never written in clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapped: Option<SecretRef>,
    /// The key used by /encode. Exactly one key is current.
    #[serde(default)]
    pub current: bool,
}

/// `codec.kms`: the key-encryption key that wraps the data keys (envelope encryption).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum KmsConfig {
    /// No KMS: every key is a `secret:` (a file or environment variable holding the key).
    File,
    /// OpenBao or HashiCorp Vault, Transit secrets engine.
    VaultTransit(VaultTransitConfig),
    /// AWS KMS (symmetric key), signed with the AWS credentials of the environment.
    AwsKms(AwsKmsConfig),
}

impl KmsConfig {
    /// The `kind:` value, as written in platform.yaml.
    pub fn kind(&self) -> &'static str {
        match self {
            KmsConfig::File => "file",
            KmsConfig::VaultTransit(_) => "vault-transit",
            KmsConfig::AwsKms(_) => "aws-kms",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultTransitConfig {
    /// Server URL, e.g. `https://openbao.example.com:8200` (http only on loopback).
    pub address: String,
    /// Mount path of the Transit engine.
    #[serde(default = "default_transit_mount")]
    pub mount: String,
    /// Name of the Transit key that wraps the data keys (type aes256-gcm96).
    pub key: String,
    /// A token whose policy allows `update` on `MOUNT/decrypt/KEY` (and
    /// `MOUNT/datakey/wrapped/KEY` for `codec keygen --kms`).
    pub token: SecretRef,
    /// Enterprise/OpenBao namespace (`X-Vault-Namespace`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// CA certificate (PEM) for the server's TLS certificate; default: the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

fn default_transit_mount() -> String {
    "transit".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsKmsConfig {
    /// AWS region, e.g. `eu-west-1`.
    pub region: String,
    /// The KMS key (id, ARN or `alias/NAME`) that wraps the data keys.
    pub key_id: String,
    /// Endpoint override (a VPC endpoint or FIPS endpoint); default
    /// `https://kms.REGION.amazonaws.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
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
    let kms_kind = c.kms.as_ref().map_or("file", KmsConfig::kind);
    for (i, k) in c.keys.iter().enumerate() {
        match (&k.secret, &k.wrapped) {
            (Some(_), Some(_)) | (None, None) => err(
                format!("keys[{i}]"),
                "set exactly one of `secret` (the key itself) and `wrapped` (the key wrapped by codec.kms)".into(),
            ),
            (None, Some(_)) if kms_kind == "file" => err(
                format!("keys[{i}].wrapped"),
                "a wrapped key needs codec.kms with kind `vault-transit` or `aws-kms`".into(),
            ),
            _ => {}
        }
    }
    match &c.kms {
        Some(KmsConfig::VaultTransit(v)) => {
            if let Some(m) = kms_url_problem(&v.address) {
                err("kms.address".into(), m);
            }
            for (field, value) in [("mount", &v.mount), ("key", &v.key)] {
                if !valid_key_id(value.trim_matches('/')) && !value.contains('/') {
                    err(
                        format!("kms.{field}"),
                        format!(
                            "`{value}` is not a Transit {field} name (letters, digits, '.', '_', '-')"
                        ),
                    );
                }
            }
        }
        Some(KmsConfig::AwsKms(a)) => {
            let region_ok = !a.region.is_empty()
                && a.region
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-');
            if !region_ok {
                err(
                    "kms.region".into(),
                    format!("`{}` is not an AWS region, e.g. eu-west-1", a.region),
                );
            }
            if a.key_id.trim().is_empty() {
                err(
                    "kms.key_id".into(),
                    "must name the KMS key: an id, an ARN or alias/NAME".into(),
                );
            }
            if let Some(e) = &a.endpoint
                && let Some(m) = kms_url_problem(e)
            {
                err("kms.endpoint".into(), m);
            }
        }
        Some(KmsConfig::File) | None => {}
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
    let mut refs: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for (i, t) in a.tokens.iter().enumerate() {
        // Two callers reading the same reference share one token: neither audit lines nor
        // rights could tell them apart. (Equal values behind different references are refused
        // when the server resolves them.) The reference is a name, not the secret.
        if let Some(first) = refs.insert(t.token.to_string(), i) {
            err(
                format!("access.tokens[{i}].token"),
                format!(
                    "`{}` is also the token of access.tokens[{first}]; each caller needs its own token",
                    t.token
                ),
            );
        }
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
    check_limits(&c.limits, &mut err);
    out
}

/// A KMS URL must be https, except on loopback (a local agent or a test server).
fn kms_url_problem(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let Some(rest) = rest else {
        return Some(format!(
            "`{url}` is not an http(s) URL, e.g. https://openbao.example.com:8200"
        ));
    };
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let hostname = host.rsplit_once(':').map_or(host, |(h, _)| h);
    if host.is_empty() {
        return Some(format!("`{url}` has no host"));
    }
    let loopback = matches!(hostname, "localhost" | "127.0.0.1" | "[::1]");
    if url.starts_with("http://") && !loopback {
        return Some(format!(
            "`{url}` is plain http: keys would cross the network in clear; use https (http is accepted on loopback only)"
        ));
    }
    None
}

fn check_limits(l: &CodecLimits, err: &mut impl FnMut(String, String)) {
    if !(1024..=1024 * 1024 * 1024).contains(&l.max_body_bytes) {
        err(
            "limits.max_body_bytes".into(),
            format!(
                "{} is out of range; expected 1024 to 1073741824 bytes (default 33554432, 32 MiB)",
                l.max_body_bytes
            ),
        );
    }
    if !(1..=65536).contains(&l.max_connections) {
        err(
            "limits.max_connections".into(),
            format!(
                "{} is out of range; expected 1 to 65536 (default 256)",
                l.max_connections
            ),
        );
    }
    for (field, value, max, default) in [
        (
            "header_read_timeout",
            l.header_read_timeout,
            HumanDuration::from_secs(300),
            "10s",
        ),
        (
            "body_read_timeout",
            l.body_read_timeout,
            HumanDuration::from_secs(3600),
            "60s",
        ),
        (
            "write_timeout",
            l.write_timeout,
            HumanDuration::from_secs(3600),
            "60s",
        ),
    ] {
        if value < HumanDuration::from_millis(100) || value > max {
            err(
                format!("limits.{field}"),
                format!("{value} is out of range; expected 100ms to {max} (default {default})"),
            );
        }
    }
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

/// What `codec-server` needs from its file: the `codec:` section and the namespaces the file
/// declares (metrics label them by name; others are counted as `_other`).
#[derive(Debug, Clone)]
pub struct CodecFile {
    /// `None` when a complete platform.yaml has no `codec:` section.
    pub codec: Option<CodecConfig>,
    /// `namespaces[].name` of a complete platform.yaml; empty for a codec-only file.
    pub namespaces: Vec<String>,
    pub path: PathBuf,
    pub warnings: Vec<ConfigIssue>,
}

/// Top-level sections that make a file a complete platform.yaml.
const PLATFORM_SECTIONS: &[&str] = &[
    "cluster",
    "capacity",
    "persistence",
    "visibility",
    "namespaces",
];

/// A file holding only `codec:`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodecOnly {
    codec: CodecConfig,
}

/// Loads the file `codec-server` is given: either a complete platform.yaml (validated as a
/// whole, as every other command does) or a file with only the `codec:` section (validated on
/// its own). Errors are `FILE:LINE:COL: field.path: message` either way and never echo secrets.
pub fn load_codec_file(path: &Path) -> Result<CodecFile, ConfigErrors> {
    let file = path.display().to_string();
    let issue = |line: usize, col: usize, path: String, message: String| ConfigErrors {
        issues: vec![ConfigIssue {
            file: file.clone(),
            line,
            col,
            path,
            message,
        }],
    };
    // The same bounded read as load_file (regular files only, size limit); a file that is not
    // UTF-8 goes to load_file below, which reports the position.
    let text = match crate::fsutil::read_limited(path, crate::fsutil::FileKind::Config) {
        Ok(bytes) => String::from_utf8(bytes).unwrap_or_default(),
        Err(e) => {
            return Err(issue(
                1,
                1,
                String::new(),
                format!("{e}; pass an existing platform.yaml with -f"),
            ));
        }
    };
    let tree: Option<serde_json::Value> = serde_saphyr::from_str(&text).ok();
    let codec_only = tree
        .as_ref()
        .and_then(serde_json::Value::as_object)
        .is_some_and(|m| {
            m.contains_key("codec") && !PLATFORM_SECTIONS.iter().any(|k| m.contains_key(*k))
        });
    let Some(tree) = tree.filter(|_| codec_only) else {
        // A complete platform.yaml (or one the full loader explains best, syntax errors included).
        let loaded: LoadedConfig = super::load::load_file(path)?;
        return Ok(CodecFile {
            namespaces: loaded
                .config
                .namespaces
                .iter()
                .map(|n| n.name.as_str().to_string())
                .collect(),
            codec: loaded.config.codec,
            path: loaded.path,
            warnings: loaded.warnings,
        });
    };
    let index = PathIndex::build(&text);
    let parsed: CodecOnly = serde_path_to_error::deserialize(&tree).map_err(|e| {
        let (path, mut message) = super::load::describe_type_error(&e);
        if !path.contains(['.', '[']) && path != "codec" && message.starts_with("unknown field") {
            message = format!(
                "{message} (a codec-only file holds `codec:` alone; give the complete platform.yaml otherwise)"
            );
        }
        let pos = index.find(&path);
        issue(pos.line, pos.col, path, message)
    })?;
    let findings = check(&parsed.codec);
    if !findings.is_empty() {
        return Err(ConfigErrors {
            issues: findings
                .into_iter()
                .map(|f| {
                    let pos = index.find(&f.path);
                    ConfigIssue {
                        file: file.clone(),
                        line: pos.line,
                        col: pos.col,
                        path: f.path,
                        message: f.message,
                    }
                })
                .collect(),
        });
    }
    Ok(CodecFile {
        codec: Some(parsed.codec),
        namespaces: Vec::new(),
        path: path.to_path_buf(),
        warnings: Vec::new(),
    })
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
    fn kms_kinds_and_key_forms_are_checked() {
        let parse = |kms: serde_json::Value, key: serde_json::Value| -> CodecConfig {
            serde_json::from_value(serde_json::json!({
                "kms": kms,
                "keys": [key],
                "access": {"tokens": [{"name": "ops", "token": "env:T", "decode": ["payments"]}]},
            }))
            .unwrap()
        };
        let transit = serde_json::json!({"kind": "vault-transit",
            "address": "https://bao.example.com:8200", "key": "temporal-codec", "token": "env:VAULT_TOKEN"});
        let wrapped =
            serde_json::json!({"id": "k1", "wrapped": "file:k1.wrapped", "current": true});
        let c = parse(transit.clone(), wrapped.clone());
        assert!(check(&c).is_empty(), "{:?}", check(&c));
        let Some(KmsConfig::VaultTransit(v)) = &c.kms else {
            panic!("{:?}", c.kms)
        };
        assert_eq!(v.mount, "transit");

        let paths = |c: &CodecConfig| -> Vec<(String, String)> {
            check(c).into_iter().map(|f| (f.path, f.message)).collect()
        };
        let f = paths(&parse(serde_json::json!({"kind": "file"}), wrapped.clone()));
        assert_eq!(f[0].0, "codec.keys[0].wrapped", "{f:?}");
        let both = serde_json::json!({"id": "k1", "secret": "env:K", "wrapped": "file:w", "current": true});
        let f = paths(&parse(transit.clone(), both));
        assert!(f[0].1.contains("exactly one of `secret`"), "{f:?}");
        let mut plain_http = transit.clone();
        plain_http["address"] = "http://bao.example.com:8200".into();
        let f = paths(&parse(plain_http, wrapped.clone()));
        assert!(
            f[0].0 == "codec.kms.address" && f[0].1.contains("plain http"),
            "{f:?}"
        );
        let mut loopback = transit.clone();
        loopback["address"] = "http://127.0.0.1:8200".into();
        assert!(check(&parse(loopback, wrapped.clone())).is_empty());
        let aws = serde_json::json!({"kind": "aws-kms", "region": "EU West", "key_id": ""});
        let f = paths(&parse(aws, wrapped.clone()));
        let fields: Vec<&str> = f.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(fields, ["codec.kms.region", "codec.kms.key_id"], "{f:?}");
        // Unknown fields and kinds are refused by the parser, naming them.
        let e = serde_json::from_value::<CodecConfig>(serde_json::json!({
            "kms": {"kind": "gcp-kms"}, "keys": [wrapped], "access": {}}))
        .unwrap_err()
        .to_string();
        assert!(e.contains("gcp-kms") && e.contains("vault-transit"), "{e}");
    }

    #[test]
    fn no_caller_at_all_is_an_error() {
        let mut c = base();
        c.access.tokens.clear();
        assert!(check(&c)[0].message.contains("nobody could call"));
    }

    #[test]
    fn limits_default_and_out_of_range_values_name_the_field() {
        let c = base();
        assert_eq!(c.limits, CodecLimits::default());
        assert_eq!(c.limits.max_body_bytes, 32 * 1024 * 1024);
        assert_eq!(c.limits.max_connections, 256);
        assert_eq!(c.limits.header_read_timeout, HumanDuration::from_secs(10));
        assert_eq!(c.limits.body_read_timeout, HumanDuration::from_secs(60));
        assert_eq!(c.limits.write_timeout, HumanDuration::from_secs(60));
        let c: CodecConfig = serde_json::from_value(serde_json::json!({
            "keys": [{"id": "k1", "secret": "env:K1", "current": true}],
            "access": {"tokens": [{"name": "ops", "token": "env:T", "decode": ["payments"]}]},
            "limits": {"max_body_bytes": 10, "max_connections": 0,
                       "header_read_timeout": "10ms", "body_read_timeout": "2h",
                       "write_timeout": "0s"}
        }))
        .unwrap();
        let f = check(&c);
        let paths: Vec<&str> = f.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "codec.limits.max_body_bytes",
                "codec.limits.max_connections",
                "codec.limits.header_read_timeout",
                "codec.limits.body_read_timeout",
                "codec.limits.write_timeout"
            ],
            "{f:?}"
        );
        assert!(f[2].message.contains("expected 100ms to 5m"), "{f:?}");
        let r: Result<CodecConfig, _> = serde_json::from_value(serde_json::json!({
            "keys": [], "access": {}, "limits": {"max_body": 1}
        }));
        assert!(r.is_err());
    }

    #[test]
    fn two_callers_with_one_token_reference_are_refused() {
        let mut c = base();
        let mut second = c.access.tokens[0].clone();
        second.name = "ops-2".into();
        c.access.tokens.push(second);
        let f = check(&c);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].path, "codec.access.tokens[1].token");
        assert!(
            f[0].message
                .contains("`env:T` is also the token of access.tokens[0]"),
            "{f:?}"
        );
    }

    #[test]
    fn a_codec_only_file_loads_on_its_own_with_positions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("codec.yaml");
        std::fs::write(
            &p,
            "codec:\n  keys:\n    - { id: k1, secret: env:K1, current: true }\n  access:\n    tokens:\n      - { name: ops, token: env:T, decode: [payments] }\n  limits: { max_connections: 8 }\n",
        )
        .unwrap();
        let f = load_codec_file(&p).unwrap();
        let c = f.codec.unwrap();
        assert_eq!(c.limits.max_connections, 8);
        assert!(f.namespaces.is_empty());
        // Cross-field errors keep FILE:LINE:COL and the field path.
        std::fs::write(
            &p,
            "codec:\n  keys:\n    - { id: k1, secret: env:K1, current: true }\n  access:\n    tokens:\n      - { name: ops, token: env:T, decode: [payments] }\n      - { name: ops2, token: env:T, decode: [payments] }\n",
        )
        .unwrap();
        let e = load_codec_file(&p).unwrap_err().to_string();
        assert!(
            e.contains("codec.yaml:7:23: codec.access.tokens[1].token:"),
            "{e}"
        );
        // Inline secrets are refused without echoing them.
        std::fs::write(
            &p,
            "codec:\n  keys:\n    - { id: k1, secret: c2VjcmV0LXZhbHVl, current: true }\n  access: {}\n",
        )
        .unwrap();
        let e = load_codec_file(&p).unwrap_err().to_string();
        assert!(e.contains("codec.keys[0].secret"), "{e}");
        assert!(!e.contains("c2VjcmV0LXZhbHVl"), "{e}");
        // Another top-level key beside `codec:` only.
        std::fs::write(&p, "codec: { keys: [], access: {} }\ncodex: 1\n").unwrap();
        let e = load_codec_file(&p).unwrap_err().to_string();
        assert!(
            e.contains("unknown field `codex`") && e.contains("codec-only"),
            "{e}"
        );
        // A complete platform.yaml is validated as a whole (its errors name other sections).
        std::fs::write(
            &p,
            "cluster: { name: x }\ncodec: { keys: [], access: {} }\n",
        )
        .unwrap();
        let e = load_codec_file(&p).unwrap_err().to_string();
        assert!(e.contains("cluster"), "{e}");
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
