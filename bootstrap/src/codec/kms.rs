//! Envelope keys: the data keys that encrypt payloads are stored wrapped by a key-encryption key
//! in a KMS, and unwrapped into memory only (at start, and when a payload names a key id the
//! server has not loaded yet).
//!
//! Two KMSs speak here: OpenBao / Vault Transit (`POST MOUNT/decrypt/KEY`,
//! `POST MOUNT/datakey/wrapped/KEY`) and AWS KMS (`TrentService.Decrypt`,
//! `GenerateDataKeyWithoutPlaintext`, Signature Version 4). `codec keygen --kms` asks the KMS to
//! generate the data key and receives only its wrapped form, so no plaintext key is ever
//! written anywhere.
//!
//! Errors never hold key material, tokens or AWS secrets; a KMS's own error text is kept (it
//! names policies and keys, which is what the operator needs), cut to 300 characters.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::config::codec::{AwsKmsConfig, KmsConfig, VaultTransitConfig};
use crate::config::types::SecretRef;

/// A KMS call may take this long before it counts as unavailable.
const KMS_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a KMS call failed. Never carries key material or credentials.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    #[error("{kms}: configuration: {0}", kms = .1)]
    Config(String, &'static str),
    #[error("{kms} at {endpoint} could not be reached: {detail}")]
    Unreachable {
        kms: &'static str,
        endpoint: String,
        detail: String,
    },
    #[error("{kms} refused {operation} (HTTP {status}): {detail}")]
    Refused {
        kms: &'static str,
        operation: &'static str,
        status: u16,
        detail: String,
    },
    #[error("{kms} answered {operation} without {field}")]
    Protocol {
        kms: &'static str,
        operation: &'static str,
        field: &'static str,
    },
}

/// A configured KMS that unwraps (and, for `codec keygen --kms`, generates) data keys.
pub enum Kms {
    VaultTransit(Transit),
    AwsKms(AwsKms),
}

impl Kms {
    /// `None` for `kind: file` (no KMS). Resolves the token or the AWS credentials now.
    pub fn from_config(cfg: &KmsConfig, base: &Path) -> Result<Option<Self>, KmsError> {
        crate::ensure_crypto_provider();
        Ok(match cfg {
            KmsConfig::File => None,
            KmsConfig::VaultTransit(v) => Some(Kms::VaultTransit(Transit::new(v, base)?)),
            KmsConfig::AwsKms(a) => Some(Kms::AwsKms(AwsKms::new(a)?)),
        })
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Kms::VaultTransit(_) => "vault-transit",
            Kms::AwsKms(_) => "aws-kms",
        }
    }

    /// The data key (32 bytes) inside `wrapped`. The caller clears it after use.
    pub async fn unwrap_key(&self, wrapped: &str) -> Result<Vec<u8>, KmsError> {
        match self {
            Kms::VaultTransit(t) => t.unwrap_key(wrapped.trim()).await,
            Kms::AwsKms(a) => a.unwrap_key(wrapped.trim()).await,
        }
    }

    /// A new 256-bit data key generated inside the KMS, returned only wrapped (one line).
    pub async fn generate_wrapped_key(&self) -> Result<String, KmsError> {
        match self {
            Kms::VaultTransit(t) => t.generate_wrapped_key().await,
            Kms::AwsKms(a) => a.generate_wrapped_key().await,
        }
    }
}

fn http_client(ca: Option<&[u8]>, kms: &'static str) -> Result<reqwest::Client, KmsError> {
    let mut b = reqwest::Client::builder()
        .timeout(KMS_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("temporal-bootstrap/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = ca {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
            KmsError::Config(format!("kms.ca_file: no usable PEM certificate: {e}"), kms)
        })?;
        b = b.tls_certs_only(certs);
    }
    b.build()
        .map_err(|e| KmsError::Config(format!("cannot build the HTTP client: {e}"), kms))
}

/// A KMS's error text, bounded and printable.
fn detail(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(300).collect()
}

async fn post_json(
    req: reqwest::RequestBuilder,
    kms: &'static str,
    operation: &'static str,
    endpoint: &str,
) -> Result<Value, KmsError> {
    let resp = req.send().await.map_err(|e| KmsError::Unreachable {
        kms,
        endpoint: endpoint.to_string(),
        detail: detail(&e.to_string()),
    })?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| KmsError::Unreachable {
        kms,
        endpoint: endpoint.to_string(),
        detail: detail(&e.to_string()),
    })?;
    if !(200..300).contains(&status) {
        return Err(KmsError::Refused {
            kms,
            operation,
            status,
            detail: detail(&text),
        });
    }
    serde_json::from_str(&text).map_err(|_| KmsError::Protocol {
        kms,
        operation,
        field: "a JSON body",
    })
}

fn b64_field(
    v: &Value,
    pointer: &str,
    kms: &'static str,
    operation: &'static str,
    field: &'static str,
) -> Result<Vec<u8>, KmsError> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .ok_or(KmsError::Protocol {
            kms,
            operation,
            field,
        })
}

fn str_field(
    v: &Value,
    pointer: &str,
    kms: &'static str,
    operation: &'static str,
    field: &'static str,
) -> Result<String, KmsError> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(String::from)
        .ok_or(KmsError::Protocol {
            kms,
            operation,
            field,
        })
}

/// OpenBao / Vault, Transit secrets engine.
pub struct Transit {
    http: reqwest::Client,
    address: String,
    mount: String,
    key: String,
    token: crate::config::types::Secret,
    namespace: Option<String>,
}

const TRANSIT: &str = "vault-transit";

impl Transit {
    fn new(c: &VaultTransitConfig, base: &Path) -> Result<Self, KmsError> {
        let token = match &c.token {
            SecretRef::File(p) if p.is_relative() => SecretRef::File(base.join(p)),
            other => other.clone(),
        }
        .resolve()
        .map_err(|e| KmsError::Config(format!("kms.token: {e}"), TRANSIT))?;
        let ca = match &c.ca_file {
            Some(p) => {
                let p = if p.is_relative() {
                    base.join(p)
                } else {
                    p.clone()
                };
                Some(
                    crate::fsutil::read_limited(&p, crate::fsutil::FileKind::Pem)
                        .map_err(|e| KmsError::Config(format!("kms.ca_file: {e}"), TRANSIT))?,
                )
            }
            None => None,
        };
        Ok(Self {
            http: http_client(ca.as_deref(), TRANSIT)?,
            address: c.address.trim_end_matches('/').to_string(),
            mount: c.mount.trim_matches('/').to_string(),
            key: c.key.clone(),
            token,
            namespace: c.namespace.clone(),
        })
    }

    async fn call(
        &self,
        operation: &'static str,
        path: &str,
        body: Value,
    ) -> Result<Value, KmsError> {
        let url = format!("{}/v1/{}/{path}/{}", self.address, self.mount, self.key);
        let mut req = self
            .http
            .post(&url)
            .header("X-Vault-Token", self.token.expose())
            .json(&body);
        if let Some(ns) = &self.namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        post_json(req, TRANSIT, operation, &self.address).await
    }

    async fn unwrap_key(&self, wrapped: &str) -> Result<Vec<u8>, KmsError> {
        let v = self
            .call("decrypt", "decrypt", json!({ "ciphertext": wrapped }))
            .await?;
        b64_field(&v, "/data/plaintext", TRANSIT, "decrypt", "data.plaintext")
    }

    async fn generate_wrapped_key(&self) -> Result<String, KmsError> {
        let v = self
            .call("datakey/wrapped", "datakey/wrapped", json!({ "bits": 256 }))
            .await?;
        str_field(
            &v,
            "/data/ciphertext",
            TRANSIT,
            "datakey/wrapped",
            "data.ciphertext",
        )
    }
}

/// AWS KMS over its JSON protocol, signed with Signature Version 4.
pub struct AwsKms {
    http: reqwest::Client,
    endpoint: String,
    host: String,
    region: String,
    key_id: String,
    credentials: AwsCredentials,
}

const AWS: &str = "aws-kms";

/// From the standard environment variables (an instance or pod role is exposed the same way by
/// the AWS credential agents; IRSA users export them from the web identity exchange).
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: crate::config::types::Secret,
    pub session_token: Option<crate::config::types::Secret>,
}

impl AwsCredentials {
    pub fn from_env() -> Result<Self, KmsError> {
        let get = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        let (Some(id), Some(secret)) = (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY"))
        else {
            return Err(KmsError::Config(
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set (and AWS_SESSION_TOKEN for temporary credentials)".into(),
                AWS,
            ));
        };
        Ok(Self {
            access_key_id: id,
            secret_access_key: crate::config::types::Secret::new(secret),
            session_token: get("AWS_SESSION_TOKEN").map(crate::config::types::Secret::new),
        })
    }
}

impl AwsKms {
    fn new(c: &AwsKmsConfig) -> Result<Self, KmsError> {
        let endpoint = c
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://kms.{}.amazonaws.com", c.region))
            .trim_end_matches('/')
            .to_string();
        let host = endpoint
            .split_once("://")
            .map_or(endpoint.as_str(), |(_, h)| h)
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        Ok(Self {
            http: http_client(None, AWS)?,
            endpoint,
            host,
            region: c.region.clone(),
            key_id: c.key_id.clone(),
            credentials: AwsCredentials::from_env()?,
        })
    }

    async fn call(&self, target: &'static str, body: Value) -> Result<Value, KmsError> {
        let payload = body.to_string();
        let amz_date = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .unwrap_or_default();
        let amz_target = format!("TrentService.{target}");
        let content_type = "application/x-amz-json-1.1";
        let mut headers = vec![
            ("content-type", content_type.to_string()),
            ("host", self.host.clone()),
            ("x-amz-date", amz_date.clone()),
            ("x-amz-target", amz_target.clone()),
        ];
        if let Some(t) = &self.credentials.session_token {
            headers.push(("x-amz-security-token", t.expose().to_string()));
        }
        let authorization = sigv4::authorization(&sigv4::Request {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            payload: payload.as_bytes(),
            region: &self.region,
            service: "kms",
            amz_date: &amz_date,
            access_key_id: &self.credentials.access_key_id,
            secret_access_key: self.credentials.secret_access_key.expose(),
        });
        let mut req = self
            .http
            .post(format!("{}/", self.endpoint))
            .header("Content-Type", content_type)
            .header("X-Amz-Date", amz_date)
            .header("X-Amz-Target", amz_target)
            .header("Authorization", authorization)
            .body(payload);
        if let Some(t) = &self.credentials.session_token {
            req = req.header("X-Amz-Security-Token", t.expose());
        }
        post_json(req, AWS, target, &self.endpoint).await
    }

    async fn unwrap_key(&self, wrapped: &str) -> Result<Vec<u8>, KmsError> {
        // KeyId is optional for symmetric keys; sending it makes KMS refuse a blob wrapped by
        // any other key instead of decrypting it.
        let v = self
            .call(
                "Decrypt",
                json!({ "CiphertextBlob": wrapped, "KeyId": self.key_id }),
            )
            .await?;
        b64_field(&v, "/Plaintext", AWS, "Decrypt", "Plaintext")
    }

    async fn generate_wrapped_key(&self) -> Result<String, KmsError> {
        let v = self
            .call(
                "GenerateDataKeyWithoutPlaintext",
                json!({ "KeyId": self.key_id, "KeySpec": "AES_256" }),
            )
            .await?;
        str_field(
            &v,
            "/CiphertextBlob",
            AWS,
            "GenerateDataKeyWithoutPlaintext",
            "CiphertextBlob",
        )
    }
}

/// AWS Signature Version 4 (docs.aws.amazon.com, "Create a signed AWS API request"): canonical
/// request, string to sign, derived signing key, signature.
pub mod sigv4 {
    use ring::hmac;
    use sha2::{Digest, Sha256};

    pub struct Request<'a> {
        pub method: &'a str,
        pub path: &'a str,
        /// Already canonical: sorted, URI-encoded `k=v` pairs joined by `&`.
        pub query: &'a str,
        /// Lower-case names; every header listed here is signed.
        pub headers: &'a [(&'a str, String)],
        pub payload: &'a [u8],
        pub region: &'a str,
        pub service: &'a str,
        /// `YYYYMMDDTHHMMSSZ`
        pub amz_date: &'a str,
        pub access_key_id: &'a str,
        pub secret_access_key: &'a str,
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
            .as_ref()
            .to_vec()
    }

    /// The derived key for one day, region and service.
    pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
        let k_date = mac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
        let k_region = mac(&k_date, region.as_bytes());
        let k_service = mac(&k_region, service.as_bytes());
        mac(&k_service, b"aws4_request")
    }

    /// The value of the `Authorization` header.
    pub fn authorization(r: &Request) -> String {
        let mut headers: Vec<(&str, String)> = r
            .headers
            .iter()
            .map(|(n, v)| (*n, v.split_whitespace().collect::<Vec<_>>().join(" ")))
            .collect();
        headers.sort_by(|a, b| a.0.cmp(b.0));
        let canonical_headers: String = headers.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
        let signed: Vec<&str> = headers.iter().map(|(n, _)| *n).collect();
        let signed = signed.join(";");
        let canonical_request = format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            r.method,
            r.path,
            r.query,
            canonical_headers,
            signed,
            hex(&Sha256::digest(r.payload))
        );
        let date = &r.amz_date[..r.amz_date.len().min(8)];
        let scope = format!("{date}/{}/{}/aws4_request", r.region, r.service);
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
            r.amz_date,
            hex(&Sha256::digest(canonical_request.as_bytes()))
        );
        let key = signing_key(r.secret_access_key, date, r.region, r.service);
        let signature = hex(&mac(&key, string_to_sign.as_bytes()));
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
            r.access_key_id
        )
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// The derived-key example of the AWS Signature Version 4 documentation.
        #[test]
        fn signing_key_matches_the_documented_example() {
            let k = signing_key(
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                "20120215",
                "us-east-1",
                "iam",
            );
            assert_eq!(
                hex(&k),
                "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
            );
        }

        /// The IAM ListUsers request of the AWS Signature Version 4 documentation.
        #[test]
        fn signature_matches_the_documented_example() {
            let headers = [
                (
                    "content-type",
                    "application/x-www-form-urlencoded; charset=utf-8".to_string(),
                ),
                ("host", "iam.amazonaws.com".to_string()),
                ("x-amz-date", "20150830T123600Z".to_string()),
            ];
            let auth = authorization(&Request {
                method: "GET",
                path: "/",
                query: "Action=ListUsers&Version=2010-05-08",
                headers: &headers,
                payload: b"",
                region: "us-east-1",
                service: "iam",
                amz_date: "20150830T123600Z",
                access_key_id: "AKIDEXAMPLE",
                secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            });
            assert_eq!(
                auth,
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date, \
                 Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
            );
        }
    }
}
