//! The remote codec server (`temporal-bootstrap codec-server`) and `codec keygen`.
//!
//! Flow: load the `codec:` section -> resolve keys and tokens (secret references) and the JWKS ->
//! bind (HTTPS when `codec.tls` is set) -> serve `/encode`, `/decode`, `/healthz`, `/metrics` until
//! SIGTERM/SIGINT.
//!
//! Guarantees: the encryption format is the SDK samples' (docs/payload-encryption.md), so payloads
//! written by any SDK using it decode here and vice versa; every key configured decrypts, only the
//! current key encrypts; deny by default (no token: 401, namespace not granted: 403); one audit
//! line (tracing target `audit`) and one metric increment per request, never with plaintext, keys
//! or tokens; payloads we did not encrypt pass through unchanged.
//!
//! Assumptions: keys are 32 random bytes in base64 (`codec keygen`); the caller sends the
//! namespace in `X-Namespace` (the Web UI and the `temporal` CLI do).
//!
//! Limits (`codec.limits`, see `conn` and `server`): connections are capped, headers and bodies
//! must arrive in bounded time, and a body is read only for an authorised caller, up to
//! `max_body_bytes`.
//!
//! Caveats: keys, tokens, the JWKS and the TLS certificate are read at start: restart the server
//! to rotate them (a Deployment rolls on a Secret checksum change). `/metrics` and `/healthz` are
//! unauthenticated: expose them on the cluster network only.

pub mod auth;
mod conn;
pub mod crypto;
pub mod keys;
pub mod kms;
pub mod payload;
pub mod server;
mod tls;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::codec::{CodecConfig, MIN_TOKEN_CHARS};
use crate::config::types::SecretRef;
use crate::error::ErrorKind;
use auth::{Authenticator, Caller, JwtRule, JwtVerifier, Rights};
use crypto::Keyring;
use server::{CodecState, Limits};

/// Errors of the codec server and keygen. Never contain key material or tokens.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("platform.yaml has no `codec:` section (see docs/payload-encryption.md)")]
    NotConfigured,
    #[error("{0}")]
    Invalid(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("`{0}` exists already; refusing to overwrite a key (choose another --out)")]
    Exists(PathBuf),
    #[error("cannot write `{path}`: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
    /// The KMS could not unwrap a key at start (or generate one for keygen): exit 1.
    #[error(
        "{0}; the codec server does not start without every configured key (check codec.kms, the network path and the token's policy)"
    )]
    Kms(String),
}

impl CodecError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            CodecError::NotConfigured | CodecError::Invalid(_) | CodecError::Listen { .. } => {
                ErrorKind::Invalid
            }
            CodecError::Exists(_) => ErrorKind::Refused,
            CodecError::Write { .. } | CodecError::Serve(_) => ErrorKind::Failed,
            CodecError::Kms(_) => ErrorKind::Unreachable,
        }
    }
}

fn resolve_path(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn resolve_secret(base: &Path, r: &SecretRef, what: &str) -> Result<String, CodecError> {
    keys::resolve(base, r, what).map_err(|e| CodecError::Invalid(e.to_string()))
}

/// The KMS of `codec.kms`; `None` without one or with `kind: file`.
fn configured_kms(c: &CodecConfig, base: &Path) -> Result<Option<kms::Kms>, CodecError> {
    match &c.kms {
        Some(k) => kms::Kms::from_config(k, base)
            .map_err(|e| CodecError::Invalid(format!("codec.kms: {e}"))),
        None => Ok(None),
    }
}

fn key_error(e: keys::KeyError) -> CodecError {
    match e {
        keys::KeyError::Invalid(m) => CodecError::Invalid(m),
        kms @ keys::KeyError::Kms { .. } => CodecError::Kms(kms.to_string()),
    }
}

/// Builds the request state from the `codec:` section of `config_path`. `base` is the directory
/// of platform.yaml; `namespaces` are those a complete platform.yaml declares (metrics label them
/// by name). Wrapped keys are unwrapped through `codec.kms` now: a KMS that does not answer
/// stops the start.
pub async fn build_state(
    c: &CodecConfig,
    config_path: &Path,
    base: &Path,
    namespaces: &[String],
) -> Result<CodecState, CodecError> {
    let kms = configured_kms(c, base)?.map(Arc::new);
    let (mut loaded, current, probe) = keys::load(c, base, kms.as_deref(), &BTreeSet::new())
        .await
        .map_err(key_error)?;
    let keyring = Keyring::new(std::mem::take(&mut loaded), &current)
        .map_err(|e| CodecError::Invalid(e.to_string()))?;
    let mut source = keys::KeySource::new(config_path.to_path_buf(), base.to_path_buf(), kms);
    source.probe = probe;

    let mut auth = Authenticator::default();
    let mut digests: Vec<[u8; 32]> = Vec::new();
    for (i, t) in c.access.tokens.iter().enumerate() {
        let field = format!("codec.access.tokens[{i}].token");
        let token = resolve_secret(base, &t.token, &field)?;
        // Messages name the field and the reference, never the value (nor its length).
        if token.trim().chars().count() < MIN_TOKEN_CHARS {
            return Err(CodecError::Invalid(format!(
                "{field}: the token behind `{}` is shorter than {MIN_TOKEN_CHARS} characters; use a random one (e.g. `openssl rand -hex 24`)",
                t.token
            )));
        }
        let digest = auth::sha256(token.trim().as_bytes());
        if let Some(first) = digests.iter().position(|d| *d == digest) {
            return Err(CodecError::Invalid(format!(
                "{field}: `{}` holds the same token as codec.access.tokens[{first}]; each caller needs its own token",
                t.token
            )));
        }
        digests.push(digest);
        auth.add_token(
            &token,
            Caller {
                name: t.name.clone(),
                rights: Rights::new(&t.decode, &t.encode),
            },
        );
    }
    if let Some(j) = &c.access.jwt {
        let path = resolve_path(base, &j.jwks_file);
        let text = crate::fsutil::read_limited_string(&path, crate::fsutil::FileKind::Pem)
            .map_err(|e| CodecError::Invalid(format!("codec.access.jwt.jwks_file: {e}")))?;
        let rules = j
            .rules
            .iter()
            .map(|r| JwtRule {
                claim: r.claim.clone(),
                value: r.value.clone(),
                rights: Rights::new(&r.decode, &r.encode),
            })
            .collect();
        let v = JwtVerifier::new(
            &text,
            j.issuer.clone(),
            j.audience.clone(),
            j.caller_claim.clone(),
            rules,
        )
        .map_err(|e| CodecError::Invalid(format!("codec.access.jwt.jwks_file: {e}")))?;
        auth.set_jwt(v);
    }
    // Namespaces the configuration names: a bounded set, so metric series stay bounded.
    let rights = c
        .access
        .tokens
        .iter()
        .flat_map(|t| t.decode.iter().chain(&t.encode))
        .chain(c.access.jwt.iter().flat_map(|j| {
            j.rules
                .iter()
                .flat_map(|r| r.decode.iter().chain(&r.encode))
        }));
    let named = rights
        .chain(namespaces)
        .filter(|n| n.as_str() != "*")
        .cloned()
        .collect();
    Ok(CodecState::new(
        keyring,
        source,
        auth,
        c.cors_origins.iter().cloned().collect::<BTreeSet<_>>(),
        Limits::from(&c.limits),
        named,
    ))
}

/// Serves until SIGTERM/SIGINT.
pub async fn serve(
    c: &CodecConfig,
    config_path: &Path,
    base: &Path,
    namespaces: &[String],
) -> Result<(), CodecError> {
    let state = Arc::new(build_state(c, config_path, base, namespaces).await?);
    let probe = tokio::spawn(server::watch_kms(state.clone()));
    let acceptor = match &c.tls {
        Some(t) => {
            crate::ensure_crypto_provider();
            Some(
                tls::acceptor(&resolve_path(base, &t.cert), &resolve_path(base, &t.key))
                    .map_err(CodecError::Invalid)?,
            )
        }
        None => None,
    };
    let app = server::router(state.clone());
    let listener = tokio::net::TcpListener::bind(c.listen)
        .await
        .map_err(|source| CodecError::Listen {
            addr: c.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(CodecError::Serve)?;
    let shutdown = async {
        crate::serve::wait_for_signal().await;
        tracing::info!("codec server: stop requested");
    };
    let l = state.limits;
    tracing::info!(
        listen = %local,
        tls = acceptor.is_some(),
        current_key = state.keyring().current_id(),
        kms = c.kms.as_ref().map_or("file", |k| k.kind()),
        max_body_bytes = l.max_body_bytes,
        max_connections = l.max_connections,
        header_read_timeout_ms = l.header_read_timeout.as_millis() as u64,
        body_read_timeout_ms = l.body_read_timeout.as_millis() as u64,
        write_timeout_ms = l.write_timeout.as_millis() as u64,
        "codec server started"
    );
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    eprintln!("codec server listening on {scheme}://{local}");
    conn::serve(listener, acceptor, app, state, shutdown).await;
    probe.abort();
    Ok(())
}

/// Asks `codec.kms` for a new data key and writes only its wrapped form (one line) to `out`
/// (mode 0600, never overwritten). The plaintext key never leaves the KMS here.
pub async fn keygen_wrapped(
    c: &CodecConfig,
    base: &Path,
    out: &Path,
) -> Result<String, CodecError> {
    let kms = configured_kms(c, base)?.ok_or_else(|| {
        CodecError::Invalid(
            "--kms needs codec.kms with kind `vault-transit` or `aws-kms` in the file given with -f".into(),
        )
    })?;
    if out.exists() {
        return Err(CodecError::Exists(out.to_path_buf()));
    }
    let wrapped = kms
        .generate_wrapped_key()
        .await
        .map_err(|e| CodecError::Kms(e.to_string()))?;
    write_new_0600(out, format!("{}\n", wrapped.trim()).as_bytes())?;
    Ok(kms.kind().to_string())
}

/// Writes a new random 32-byte key (base64, one line) to `out`, created with mode 0600.
/// Refuses to overwrite an existing file.
pub fn keygen(out: &Path) -> Result<(), CodecError> {
    let key = crypto::generate_key_b64().map_err(CodecError::Invalid)?;
    write_new_0600(out, key.as_bytes())
}

fn write_new_0600(out: &Path, content: &[u8]) -> Result<(), CodecError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(out).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            CodecError::Exists(out.to_path_buf())
        } else {
            CodecError::Write {
                path: out.to_path_buf(),
                source,
            }
        }
    })?;
    f.write_all(content)
        .and_then(|_| f.sync_all())
        .map_err(|source| CodecError::Write {
            path: out.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn keygen_writes_0600_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.b64");
        keygen(&p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .unwrap();
        assert_eq!(bytes.len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert!(matches!(keygen(&p), Err(CodecError::Exists(_))));
        assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
    }
}
