//! Bearer-token authentication and namespace authorisation. Deny by default.
//!
//! - Static tokens: compared as SHA-256 digests in constant time; each maps to a caller name.
//! - JWTs: RS256 or ES256 only (never `none` or HMAC), verified with ring against a JWKS file;
//!   `iss` and `aud` must match, `exp` is required, `nbf` is honoured (60 s leeway for both).

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: i64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Encode,
    Decode,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Encode => "encode",
            Operation::Decode => "decode",
        }
    }
}

/// Namespaces a caller may use; `"*"` grants all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rights {
    pub decode: BTreeSet<String>,
    pub encode: BTreeSet<String>,
}

impl Rights {
    pub fn new(decode: &[String], encode: &[String]) -> Self {
        Self {
            decode: decode.iter().cloned().collect(),
            encode: encode.iter().cloned().collect(),
        }
    }
    fn merge(&mut self, o: &Rights) {
        self.decode.extend(o.decode.iter().cloned());
        self.encode.extend(o.encode.iter().cloned());
    }
    pub fn allows(&self, op: Operation, namespace: &str) -> bool {
        let set = match op {
            Operation::Encode => &self.encode,
            Operation::Decode => &self.decode,
        };
        set.contains("*") || set.contains(namespace)
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Name for audit logs and metrics (token rule name, or `jwt:<caller claim>`).
    pub name: String,
    pub rights: Rights,
}

/// Why a request is not authenticated (401). Never includes the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing `Authorization: Bearer <token>` header")]
    Missing,
    #[error("the Authorization header is not `Bearer <token>`")]
    NotBearer,
    #[error("unknown token")]
    Unknown,
    #[error("invalid JWT: {0}")]
    Jwt(&'static str),
}

struct StaticToken {
    digest: [u8; 32],
    caller: Caller,
}

pub struct JwtRule {
    pub claim: String,
    pub value: String,
    pub rights: Rights,
}

pub struct JwtVerifier {
    keys: Vec<Jwk>,
    issuer: String,
    audience: String,
    caller_claim: String,
    rules: Vec<JwtRule>,
}

#[derive(Debug, Clone)]
enum JwkKey {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    P256 { point: Vec<u8> },
}

#[derive(Debug, Clone)]
struct Jwk {
    kid: Option<String>,
    key: JwkKey,
}

/// The authenticator built from the configuration.
#[derive(Default)]
pub struct Authenticator {
    tokens: Vec<StaticToken>,
    jwt: Option<JwtVerifier>,
}

pub(crate) fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// Constant-time equality of two digests.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Authenticator {
    pub fn add_token(&mut self, token: &str, caller: Caller) {
        self.tokens.push(StaticToken {
            digest: sha256(token.as_bytes()),
            caller,
        });
    }

    pub fn set_jwt(&mut self, v: JwtVerifier) {
        self.jwt = Some(v);
    }

    /// Authenticates the `Authorization` header value at time `now` (Unix seconds).
    pub fn authenticate(&self, header: Option<&str>, now: i64) -> Result<Caller, AuthError> {
        let header = header.ok_or(AuthError::Missing)?.trim();
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::NotBearer)?;
        let digest = sha256(token.as_bytes());
        // Compare against every token so timing does not reveal which one matched.
        let mut found = None;
        for t in &self.tokens {
            if ct_eq(&t.digest, &digest) && found.is_none() {
                found = Some(&t.caller);
            }
        }
        if let Some(c) = found {
            return Ok(c.clone());
        }
        match &self.jwt {
            Some(v) if token.matches('.').count() == 2 => v.verify(token, now),
            _ => Err(AuthError::Unknown),
        }
    }
}

/// Latest NumericDate accepted: 9999-12-31T23:59:59Z.
pub const MAX_NUMERIC_DATE: i64 = 253_402_300_799;

/// A NumericDate claim (`exp`, `nbf`, `iat`): absent, or seconds since 1970 up to the year 9999.
/// Anything else (a string, a negative number, `1e30`) is refused with the claim's name rather
/// than converted: `1e30 as i64` saturates, and adding the leeway to it overflowed.
fn numeric_date(claims: &Value, name: &'static str) -> Result<Option<i64>, AuthError> {
    let Some(v) = claims.get(name) else {
        return Ok(None);
    };
    let out_of_range = match name {
        "exp" => "`exp` is not a date between 1970 and 9999 (seconds since 1970)",
        "nbf" => "`nbf` is not a date between 1970 and 9999 (seconds since 1970)",
        _ => "`iat` is not a date between 1970 and 9999 (seconds since 1970)",
    };
    let secs = v.as_f64().ok_or(AuthError::Jwt(out_of_range))?;
    if !(0.0..=MAX_NUMERIC_DATE as f64).contains(&secs) {
        return Err(AuthError::Jwt(out_of_range));
    }
    // In [0, MAX_NUMERIC_DATE]: the cast is exact for the integer part.
    Ok(Some(secs.trunc() as i64))
}

impl JwtVerifier {
    /// Parses a JWKS document (`{"keys": [...]}`); RSA and EC P-256 keys are kept, others ignored.
    pub fn new(
        jwks: &str,
        issuer: String,
        audience: String,
        caller_claim: String,
        rules: Vec<JwtRule>,
    ) -> Result<Self, String> {
        let doc: Value =
            serde_json::from_str(jwks).map_err(|e| format!("the JWKS is not JSON: {e}"))?;
        let list = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("the JWKS has no `keys` array")?;
        let b64 = |v: Option<&Value>, what: &str| -> Result<Vec<u8>, String> {
            v.and_then(Value::as_str)
                .and_then(|s| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok())
                .ok_or_else(|| format!("JWKS key: `{what}` missing or not base64url"))
        };
        let mut keys = Vec::new();
        for k in list {
            if k.get("use")
                .and_then(Value::as_str)
                .is_some_and(|u| u != "sig")
            {
                continue;
            }
            let kid = k.get("kid").and_then(Value::as_str).map(String::from);
            let key = match (
                k.get("kty").and_then(Value::as_str),
                k.get("crv").and_then(Value::as_str),
            ) {
                (Some("RSA"), _) => JwkKey::Rsa {
                    n: b64(k.get("n"), "n")?,
                    e: b64(k.get("e"), "e")?,
                },
                (Some("EC"), Some("P-256")) => {
                    let (x, y) = (b64(k.get("x"), "x")?, b64(k.get("y"), "y")?);
                    if x.len() != 32 || y.len() != 32 {
                        return Err("JWKS key: P-256 `x` and `y` must be 32 bytes each".into());
                    }
                    let mut point = vec![4u8];
                    point.extend_from_slice(&x);
                    point.extend_from_slice(&y);
                    JwkKey::P256 { point }
                }
                _ => continue,
            };
            keys.push(Jwk { kid, key });
        }
        if keys.is_empty() {
            return Err("the JWKS holds no RSA or EC P-256 signing key".into());
        }
        Ok(Self {
            keys,
            issuer,
            audience,
            caller_claim,
            rules,
        })
    }

    fn verify(&self, token: &str, now: i64) -> Result<Caller, AuthError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Jwt("not three dot-separated parts"));
        };
        let decode = |x: &str| {
            URL_SAFE_NO_PAD
                .decode(x)
                .map_err(|_| AuthError::Jwt("bad base64url"))
        };
        let header: Value = serde_json::from_slice(&decode(h)?)
            .map_err(|_| AuthError::Jwt("header is not JSON"))?;
        let sig = decode(s)?;
        let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
        let kid = header.get("kid").and_then(Value::as_str);
        let signed = &token.as_bytes()[..h.len() + 1 + p.len()];
        let candidates = self.keys.iter().filter(|k| match kid {
            Some(kid) => k.kid.as_deref() == Some(kid),
            None => true,
        });
        let mut verified = false;
        let mut any_key = false;
        for k in candidates {
            let ok = match (alg, &k.key) {
                ("RS256", JwkKey::Rsa { n, e }) => {
                    any_key = true;
                    RsaPublicKeyComponents { n, e }
                        .verify(&signature::RSA_PKCS1_2048_8192_SHA256, signed, &sig)
                        .is_ok()
                }
                ("ES256", JwkKey::P256 { point }) => {
                    any_key = true;
                    UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                        .verify(signed, &sig)
                        .is_ok()
                }
                _ => false,
            };
            if ok {
                verified = true;
                break;
            }
        }
        if !matches!(alg, "RS256" | "ES256") {
            return Err(AuthError::Jwt("algorithm not allowed (RS256 or ES256)"));
        }
        if !any_key {
            return Err(AuthError::Jwt(
                "no JWKS key matches the token's kid and alg",
            ));
        }
        if !verified {
            return Err(AuthError::Jwt("signature verification failed"));
        }
        let claims: Value = serde_json::from_slice(&decode(p)?)
            .map_err(|_| AuthError::Jwt("payload is not JSON"))?;
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(AuthError::Jwt("wrong issuer"));
        }
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => *a == self.audience,
            Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(&self.audience)),
            _ => false,
        };
        if !aud_ok {
            return Err(AuthError::Jwt("wrong audience"));
        }
        let exp = numeric_date(&claims, "exp")?.ok_or(AuthError::Jwt("no exp claim"))?;
        let nbf = numeric_date(&claims, "nbf")?;
        // Checked for range only (an `iat` in the future is the issuer's business).
        numeric_date(&claims, "iat")?;
        // In range (see numeric_date), so these never overflow; saturate anyway.
        if exp.saturating_add(LEEWAY_SECS) <= now {
            return Err(AuthError::Jwt("expired"));
        }
        if let Some(nbf) = nbf
            && nbf.saturating_sub(LEEWAY_SECS) > now
        {
            return Err(AuthError::Jwt("not valid yet (nbf)"));
        }
        let mut rights = Rights::default();
        for r in &self.rules {
            let matched = match claims.get(&r.claim) {
                Some(Value::String(v)) => *v == r.value,
                Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(&r.value)),
                _ => false,
            };
            if matched {
                rights.merge(&r.rights);
            }
        }
        let who: String = claims
            .get(&self.caller_claim)
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .chars()
            .filter(|c| !c.is_control())
            .take(128)
            .collect();
        Ok(Caller {
            name: format!("jwt:{who}"),
            rights,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    struct Issuer {
        pair: EcdsaKeyPair,
        rng: SystemRandom,
    }

    impl Issuer {
        fn new() -> Self {
            let rng = SystemRandom::new();
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .unwrap();
            Self { pair, rng }
        }
        fn jwks(&self, kid: &str) -> String {
            let pt = self.pair.public_key().as_ref();
            json!({"keys": [
                {"kty": "RSA", "kid": "other", "n": "AQAB", "e": "AQAB"},
                {"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
                 "x": URL_SAFE_NO_PAD.encode(&pt[1..33]), "y": URL_SAFE_NO_PAD.encode(&pt[33..])}
            ]})
            .to_string()
        }
        fn sign(&self, header: Value, claims: Value) -> String {
            let h = URL_SAFE_NO_PAD.encode(header.to_string());
            let p = URL_SAFE_NO_PAD.encode(claims.to_string());
            let msg = format!("{h}.{p}");
            let sig = self.pair.sign(&self.rng, msg.as_bytes()).unwrap();
            format!("{msg}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
        }
    }

    fn verifier(jwks: &str) -> Authenticator {
        let mut a = Authenticator::default();
        a.add_token(
            "static-token-1",
            Caller {
                name: "ops".into(),
                rights: Rights::new(&["payments".into()], &[]),
            },
        );
        a.set_jwt(
            JwtVerifier::new(
                jwks,
                "https://idp.test".into(),
                "codec".into(),
                "sub".into(),
                vec![
                    JwtRule {
                        claim: "groups".into(),
                        value: "payments-oncall".into(),
                        rights: Rights::new(&["payments".into()], &[]),
                    },
                    JwtRule {
                        claim: "sub".into(),
                        value: "alice".into(),
                        rights: Rights::new(&[], &["orders".into()]),
                    },
                ],
            )
            .unwrap(),
        );
        a
    }

    fn claims() -> Value {
        json!({"iss": "https://idp.test", "aud": ["x", "codec"], "sub": "alice",
               "exp": NOW + 300, "groups": ["payments-oncall", "dev"]})
    }

    #[test]
    fn static_tokens_and_bearer_parsing() {
        let a = verifier(&Issuer::new().jwks("k1"));
        let c = a.authenticate(Some("Bearer static-token-1"), NOW).unwrap();
        assert_eq!(c.name, "ops");
        assert!(c.rights.allows(Operation::Decode, "payments"));
        assert!(!c.rights.allows(Operation::Encode, "payments"));
        assert!(!c.rights.allows(Operation::Decode, "orders"));
        assert_eq!(a.authenticate(None, NOW), Err(AuthError::Missing));
        assert_eq!(
            a.authenticate(Some("Basic abc"), NOW),
            Err(AuthError::NotBearer)
        );
        assert_eq!(
            a.authenticate(Some("Bearer static-token-2"), NOW),
            Err(AuthError::Unknown)
        );
    }

    #[test]
    fn es256_jwt_grants_the_union_of_matching_rules() {
        let iss = Issuer::new();
        let a = verifier(&iss.jwks("k1"));
        let t = iss.sign(json!({"alg": "ES256", "kid": "k1"}), claims());
        let c = a.authenticate(Some(&format!("Bearer {t}")), NOW).unwrap();
        assert_eq!(c.name, "jwt:alice");
        assert!(c.rights.allows(Operation::Decode, "payments"));
        assert!(c.rights.allows(Operation::Encode, "orders"));
        assert!(!c.rights.allows(Operation::Decode, "orders"));
    }

    /// `claims` signed by `iss` with ES256 under kid `k1`, presented to `a` at NOW.
    fn signed_es256(a: &Authenticator, iss: &Issuer, claims: Value) -> Result<Caller, AuthError> {
        let h = json!({"alg": "ES256", "kid": "k1"});
        a.authenticate(Some(&format!("Bearer {}", iss.sign(h, claims))), NOW)
    }

    #[test]
    fn jwt_claims_are_enforced() {
        let iss = Issuer::new();
        let a = verifier(&iss.jwks("k1"));
        let check = |claims: Value| signed_es256(&a, &iss, claims);
        let mut c = claims();
        c["exp"] = json!(NOW - 61);
        assert_eq!(check(c), Err(AuthError::Jwt("expired")));
        let mut c = claims();
        c.as_object_mut().unwrap().remove("exp");
        assert_eq!(check(c), Err(AuthError::Jwt("no exp claim")));
        let mut c = claims();
        c["iss"] = json!("https://evil");
        assert_eq!(check(c), Err(AuthError::Jwt("wrong issuer")));
        let mut c = claims();
        c["aud"] = json!("other");
        assert_eq!(check(c), Err(AuthError::Jwt("wrong audience")));
        let mut c = claims();
        c["nbf"] = json!(NOW + 3600);
        assert_eq!(check(c), Err(AuthError::Jwt("not valid yet (nbf)")));
    }

    /// `exp: 1e30` used to panic in debug builds (`attempt to add with overflow`) and, wrapped
    /// in release builds, to be reported as expired; huge or negative `nbf` and `iat` likewise.
    #[test]
    fn out_of_range_dates_are_refused_with_the_claim_name() {
        let iss = Issuer::new();
        let a = verifier(&iss.jwks("k1"));
        let check = |claims: Value| signed_es256(&a, &iss, claims);
        for (claim, value) in [
            ("exp", json!(1e30)),
            ("exp", json!(i64::MAX)),
            ("exp", json!(-1e30)),
            ("exp", json!(i64::MIN)),
            ("exp", json!("tomorrow")),
            ("nbf", json!(-1e30)),
            ("nbf", json!(i64::MIN)),
            ("nbf", json!(1e30)),
            ("iat", json!(1e30)),
            ("iat", json!(-5)),
        ] {
            let mut c = claims();
            c[claim] = value.clone();
            let err = check(c).unwrap_err();
            let AuthError::Jwt(why) = err else {
                panic!("{claim}={value}: {err:?}")
            };
            assert!(
                why.starts_with(&format!("`{claim}` is not a date")),
                "{claim}={value}: {why}"
            );
        }
        // The largest accepted values still work.
        let mut c = claims();
        c["exp"] = json!(MAX_NUMERIC_DATE);
        c["nbf"] = json!(0);
        c["iat"] = json!(NOW);
        assert_eq!(check(c).unwrap().name, "jwt:alice");
    }

    #[test]
    fn forged_and_unsupported_tokens_are_refused() {
        let iss = Issuer::new();
        let other = Issuer::new();
        let a = verifier(&iss.jwks("k1"));
        // Signed by another key.
        let t = other.sign(json!({"alg": "ES256", "kid": "k1"}), claims());
        assert_eq!(
            a.authenticate(Some(&format!("Bearer {t}")), NOW),
            Err(AuthError::Jwt("signature verification failed"))
        );
        // alg none and HS256 are never accepted.
        for alg in ["none", "HS256"] {
            let h = URL_SAFE_NO_PAD.encode(json!({"alg": alg}).to_string());
            let p = URL_SAFE_NO_PAD.encode(claims().to_string());
            let t = format!("{h}.{p}.");
            assert!(a.authenticate(Some(&format!("Bearer {t}")), NOW).is_err());
        }
        // Tampered claims.
        let t = iss.sign(json!({"alg": "ES256", "kid": "k1"}), claims());
        let mut parts: Vec<String> = t.split('.').map(String::from).collect();
        let mut c = claims();
        c["groups"] = json!(["admins"]);
        parts[1] = URL_SAFE_NO_PAD.encode(c.to_string());
        assert!(
            a.authenticate(Some(&format!("Bearer {}", parts.join("."))), NOW)
                .is_err()
        );
        // Unknown kid.
        let t = iss.sign(json!({"alg": "ES256", "kid": "k9"}), claims());
        assert!(a.authenticate(Some(&format!("Bearer {t}")), NOW).is_err());
    }

    #[test]
    fn rs256_with_a_fixed_vector() {
        // A 2048-bit RSA key made with openssl for this test; the token expires in 2100.
        let jwks = include_str!("testdata/rs256-jwks.json");
        let token = include_str!("testdata/rs256-token.txt").trim();
        let a = verifier(jwks);
        let c = a
            .authenticate(Some(&format!("Bearer {token}")), NOW)
            .unwrap();
        assert_eq!(c.name, "jwt:bob");
        assert!(c.rights.allows(Operation::Decode, "payments"));
        // Flip one character inside the signature.
        let mut bad: Vec<char> = token.chars().collect();
        let i = bad.len() - 10;
        bad[i] = if bad[i] == 'A' { 'B' } else { 'A' };
        let bad: String = bad.into_iter().collect();
        assert!(a.authenticate(Some(&format!("Bearer {bad}")), NOW).is_err());
    }
}
