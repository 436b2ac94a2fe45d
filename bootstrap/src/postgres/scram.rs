//! SCRAM-SHA-256 password verifiers (RFC 5802 / RFC 7677), computed client-side.
//!
//! `ALTER ROLE ... PASSWORD '<verifier>'` stores the verifier as is, so the clear-text password
//! never travels to the server and never appears in its statement log (`log_statement = ddl`
//! would otherwise record it). This is what `psql`'s `\password` does.

use base64::Engine;
use sha2::{Digest, Sha256};

const ITERATIONS: u32 = 4096;

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// PBKDF2-HMAC-SHA256 with one output block (32 bytes), as SCRAM's `Hi()`.
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut msg = salt.to_vec();
    msg.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac(password, &msg);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac(password, &u);
        for (o, x) in out.iter_mut().zip(u.iter()) {
            *o ^= x;
        }
    }
    out
}

/// The verifier `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>` for `password`.
/// The password is used as UTF-8 bytes (PostgreSQL applies SASLprep, which leaves ASCII and
/// most passwords unchanged).
pub fn verifier(password: &str, salt: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let salted = hi(password.as_bytes(), salt, ITERATIONS);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${ITERATIONS}:{}${}:{}",
        b64.encode(salt),
        b64.encode(stored_key),
        b64.encode(server_key)
    )
}

/// 16 random bytes for a salt, from the operating system.
pub fn random_salt() -> std::io::Result<[u8; 16]> {
    use std::io::Read;
    let mut salt = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut salt)?;
    Ok(salt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn pbkdf2_matches_the_published_vector() {
        // PBKDF2-HMAC-SHA256("password", "salt", 4096), first 32 bytes.
        let out = hi(b"password", b"salt", 4096);
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a"
        );
    }

    #[test]
    fn verifier_has_postgres_format_and_hides_the_password() {
        let v = verifier("s3cr3t", &[7u8; 16]);
        assert!(v.starts_with("SCRAM-SHA-256$4096:"), "{v}");
        assert!(!v.contains("s3cr3t"));
        assert_eq!(v.matches('$').count(), 2);
        assert_eq!(random_salt().unwrap().len(), 16);
    }
}
