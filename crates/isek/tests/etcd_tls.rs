//! etcd over TLS: a real etcd serving clients with a certificate issued by a CA the
//! test generates; `EtcdRegistry` trusts that CA through `EtcdTls` and registers,
//! lists and deregisters, refuses to connect without the CA; and `from_client` wraps
//! a client the caller connected itself.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use isek::etcd::{EtcdConfig, EtcdRegistry, EtcdTls};
use isek::identity::NodeIdentity;
use isek::{Error, Metadata, Registry};
use isek_testkit::etcd::{EtcdNamespace, EtcdServer};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

/// A fresh CA, and a certificate for 127.0.0.1 it issued: (CA PEM, cert PEM, key PEM).
fn ca_and_server_certificate() -> (String, String, String) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
    (ca_cert.pem(), server_cert.pem(), server_key.serialize_pem())
}

fn tls_config(etcd: &EtcdServer, ca: Option<&str>) -> EtcdConfig {
    let mut config = EtcdConfig::new([etcd.endpoint()]).timeout(Duration::from_secs(3));
    config.tls = Some(EtcdTls {
        ca_pem: ca.map(|ca| ca.as_bytes().to_vec()),
        ..EtcdTls::default()
    });
    config
}

#[tokio::test]
async fn a_registry_trusting_the_ca_works_over_tls_and_one_without_it_does_not() {
    let (ca, cert, key) = ca_and_server_certificate();
    let etcd = EtcdServer::start_tls(&cert, &key).await.unwrap();
    assert!(
        etcd.endpoint().starts_with("https://"),
        "{}",
        etcd.endpoint()
    );

    let registry = EtcdRegistry::connect(tls_config(&etcd, Some(&ca)), NodeIdentity::generate())
        .await
        .unwrap();
    registry
        .register_node("tls-node", "10.0.0.1", 9000, Metadata::new())
        .await
        .unwrap();
    registry.lease_refresh("tls-node").await.unwrap();
    let nodes = registry.get_available_nodes().await.unwrap();
    assert_eq!(nodes["tls-node"].port, 9000);
    assert!(nodes["tls-node"].public_key.is_some());

    // Without the CA the server's certificate is not trusted: no connection.
    let untrusting = EtcdRegistry::connect(tls_config(&etcd, None), NodeIdentity::generate()).await;
    match untrusting {
        Err(Error::Unavailable(_)) => {}
        Ok(registry) => match registry.get_available_nodes().await {
            Err(Error::Unavailable(_)) => {}
            other => panic!("an untrusted etcd answered: {other:?}"),
        },
        Err(other) => panic!("{other:?}"),
    }
    registry.deregister_node("tls-node").await.unwrap();
    assert!(registry.get_available_nodes().await.unwrap().is_empty());
}

#[tokio::test]
async fn from_client_wraps_a_client_the_caller_connected() {
    let etcd = EtcdNamespace::new().await.unwrap();
    let client = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .unwrap();
    let config = etcd.config().ttl(Duration::from_secs(30));
    let registry =
        EtcdRegistry::from_client(client.clone(), NodeIdentity::generate(), &config).unwrap();
    registry
        .register_node("wrapped", "10.0.0.2", 9001, Metadata::new())
        .await
        .unwrap();
    // The entry is in etcd, under the configured parent, with a lease.
    let mut raw = client;
    let got = raw.get(etcd.key("wrapped"), None).await.unwrap();
    let kv = got.kvs().first().expect("the key of the node");
    assert!(kv.lease() != 0, "registered without a lease");
    assert_eq!(
        registry.get_available_nodes().await.unwrap()["wrapped"].port,
        9001
    );
    // Its settings are checked as connect checks them.
    let zero_ttl = EtcdConfig::new([etcd.endpoint()]).ttl(Duration::ZERO);
    let client = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .unwrap();
    assert!(matches!(
        EtcdRegistry::from_client(client, NodeIdentity::generate(), &zero_ttl),
        Err(Error::InvalidArgument(_))
    ));
}
