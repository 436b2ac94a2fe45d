//! The running server version, read over the frontend HTTP API.
//!
//! Flow: `GET {http_address}/api/v1/system-info` -> JSON `serverVersion` -> parsed release.
//! Guarantees: read-only; bounded by a 10 s timeout per request.
//! Assumptions: the frontend serves the HTTP API (server 1.22+, `cluster.frontend.http_address`);
//! with `cluster.frontend.tls` set, the HTTP API is served with the same TLS settings.
//! Caveats: the gRPC adapter (`GetSystemInfo`) is not merged yet, hence HTTP; `server_name` is
//! not honoured over HTTP (the certificate must name the address host).

use std::path::Path;
use std::time::Duration;

use super::{ClusterProbe, UpgradeError};
use crate::config::model::FrontendConfig;
use crate::config::types::TemporalVersion;

/// Reads `serverVersion` from `/api/v1/system-info`.
#[derive(Debug, Clone)]
pub struct HttpClusterProbe {
    base: String,
    client: reqwest::Client,
}

impl HttpClusterProbe {
    /// A probe for `base` (e.g. `http://127.0.0.1:7243`), plaintext.
    pub fn plaintext(base: impl Into<String>) -> Result<Self, UpgradeError> {
        let base = base.into();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| UpgradeError::Probe {
                address: base.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self { base, client })
    }

    /// A probe for the configured frontend; relative TLS paths resolve against `base_dir`.
    pub fn from_config(frontend: &FrontendConfig, base_dir: &Path) -> Result<Self, UpgradeError> {
        let Some(http) = &frontend.http_address else {
            return Err(UpgradeError::Invalid(
                "cluster.frontend.http_address is not set: set it (the frontend HTTP API, port 7243 by default) or pass --from VERSION".into(),
            ));
        };
        let Some(tls) = &frontend.tls else {
            return Self::plaintext(format!("http://{http}"));
        };
        let base = format!("https://{http}");
        let err = |reason: String| UpgradeError::Probe {
            address: base.clone(),
            reason,
        };
        let read = |p: &Path| {
            let full = if p.is_absolute() {
                p.to_path_buf()
            } else {
                base_dir.join(p)
            };
            crate::fsutil::read_limited(&full, crate::fsutil::FileKind::Pem)
                .map_err(|e| err(e.to_string()))
        };
        let ca = reqwest::Certificate::from_pem(&read(&tls.ca)?)
            .map_err(|e| err(format!("CA is not PEM: {e}")))?;
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .add_root_certificate(ca);
        if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
            let mut pem = read(cert)?;
            pem.push(b'\n');
            pem.extend(read(key)?);
            let id = reqwest::Identity::from_pem(&pem)
                .map_err(|e| err(format!("client certificate/key: {e}")))?;
            builder = builder.identity(id);
        }
        let client = builder.build().map_err(|e| err(e.to_string()))?;
        Ok(Self { base, client })
    }
}

/// Parses the `/api/v1/system-info` body.
pub fn parse_system_info(body: &str) -> Result<TemporalVersion, String> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("response is not JSON: {e}"))?;
    let raw = v
        .get("serverVersion")
        .and_then(|s| s.as_str())
        .ok_or("response has no `serverVersion`")?;
    // Pre-release or build suffixes (1.32.0-156.0) are not releases we plan from.
    raw.parse::<TemporalVersion>()
}

impl ClusterProbe for HttpClusterProbe {
    fn address(&self) -> String {
        format!("{}/api/v1/system-info", self.base)
    }

    async fn server_version(&self) -> Result<TemporalVersion, UpgradeError> {
        let url = self.address();
        let err = |reason: String| UpgradeError::Probe {
            address: url.clone(),
            reason,
        };
        let resp = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| err(format!("{e}")))?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| err(e.to_string()))?;
        if !status.is_success() {
            return Err(err(format!(
                "HTTP {status}: {}",
                body.chars().take(200).collect::<String>()
            )));
        }
        parse_system_info(&body).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_system_info_body() {
        let body = r#"{"serverVersion":"1.32.0","capabilities":{"nexus":true}}"#;
        assert_eq!(
            parse_system_info(body).unwrap(),
            TemporalVersion::new(1, 32, 0)
        );
        assert!(
            parse_system_info("{}")
                .unwrap_err()
                .contains("serverVersion")
        );
        assert!(parse_system_info(r#"{"serverVersion":"1.32.0-156.0"}"#).is_err());
    }
}
