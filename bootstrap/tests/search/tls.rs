//! TLS with a private CA: a TLS front (rustls) to the fake cluster.

use super::*;

pub(crate) struct TlsFront {
    pub(crate) url: String,
    pub(crate) ca_file: PathBuf,
    pub(crate) _dir: tempfile::TempDir,
}

pub(crate) async fn tls_front(backend: &MockServer) -> TlsFront {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let _ = rustls::crypto::ring::default_provider().install_default();

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "search test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();

    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let backend_addr = *backend.address();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut up) = tokio::net::TcpStream::connect(backend_addr).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    TlsFront {
        url: format!("https://localhost:{port}"),
        ca_file,
        _dir: dir,
    }
}

#[tokio::test]
async fn tls_with_a_private_ca_works_and_an_unknown_ca_is_refused() {
    let fake = FakeCluster::new(Flavour::Es8, Security::Es { denied: vec![] });
    let server = start(&fake).await;
    let front = tls_front(&server).await;

    let mut s = Setup::new(&front.url, "elasticsearch");
    s.ca = Some(front.ca_file.clone());
    let ctx = s.context();
    let step = SearchVisibilityStep::new();
    apply(&step, &ctx)
        .await
        .expect("apply over TLS with the CA");
    assert!(plan(&step, &ctx).await.unwrap().is_empty());

    let without = Setup::new(&front.url, "elasticsearch").context();
    let err = plan(&step, &without).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Runtime);
    assert!(
        err.message.contains("GET /") && err.message.to_lowercase().contains("certificate"),
        "{}",
        err.message
    );
}
