//! The official `temporal` CLI against the stack's real server (scripts/dev-services env).

/// The `--tls-*` flags for the stack's mTLS frontend: its CA bundle, the client certificate and
/// key (TB_TEMPORAL_TLS_CA/CERT/KEY), and the name on the frontend certificate.
pub fn tls_flags([ca, cert, key]: &[String; 3]) -> [&str; 8] {
    [
        "--tls-ca-path",
        ca,
        "--tls-cert-path",
        cert,
        "--tls-key-path",
        key,
        "--tls-server-name",
        "localhost",
    ]
}
