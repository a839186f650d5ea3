//! TLS, mTLS and bearer tokens on both sides, and hot reload. Certificates are made in
//! the test (rcgen): a CA, a server certificate for localhost / 127.0.0.1 and a client
//! certificate. TLS runs the server in-process; the token test reads the binary's log,
//! and hot reload sends SIGHUP and counts reloads in `/metrics`, so both run the real
//! binary.

use std::sync::Arc;
use std::time::{Duration, Instant};

use oodgate_e2e::{Endpoints, InProcessServer, Server, digit_request, http_agent, runtime, write};
use oodgate_proto::v1;
use oodgate_replay::replay::{ClientTls, Target, connect};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tonic::Code;

struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["localhost".into(), "127.0.0.1".into()]);
    let (client_cert, client_key) = leaf(vec!["client.oodgate.test".into()]);
    Pki {
        ca: ca.pem(),
        server_cert,
        server_key,
        client_cert,
        client_key,
    }
}

fn https_agent(pki: &Pki, with_client_cert: bool) -> ureq::Agent {
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
    let ca = Certificate::from_pem(pki.ca.as_bytes()).unwrap();
    let mut tls = TlsConfig::builder().root_certs(RootCerts::Specific(Arc::new(vec![ca])));
    if with_client_cert {
        let cert = Certificate::from_pem(pki.client_cert.as_bytes()).unwrap();
        let key = PrivateKey::from_pem(pki.client_key.as_bytes()).unwrap();
        tls = tls.client_cert(Some(ClientCert::new_with_certs(&[cert], key)));
    }
    http_agent(Some(tls.build()))
}

fn grpc_target(server: &Endpoints, pki: &Pki, with_client_cert: bool) -> Target {
    Target {
        endpoint: server.endpoint.replace("http://", "https://"),
        tls: Some(ClientTls {
            ca: pki.ca.clone().into_bytes(),
            identity: with_client_cert.then(|| {
                (
                    pki.client_cert.clone().into_bytes(),
                    pki.client_key.clone().into_bytes(),
                )
            }),
            domain: Some("localhost".into()),
        }),
        token: None,
    }
}

#[test]
fn tls_and_client_certificates_on_grpc_and_http() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let cert = write(dir.path(), "server.pem", &pki.server_cert);
    let key = write(dir.path(), "server.key", &pki.server_key);
    let ca = write(dir.path(), "ca.pem", &pki.ca);

    // TLS only: any client that trusts the CA gets in.
    let server =
        InProcessServer::start(&[("OODGATE_TLS__CERT", &cert), ("OODGATE_TLS__KEY", &key)]);
    runtime().block_on(async {
        let mut client = connect(grpc_target(&server, &pki, false)).await.unwrap();
        let info = client
            .get_model_info(v1::GetModelInfoRequest::default())
            .await
            .unwrap();
        assert_eq!(info.into_inner().k, 20);
        // Plaintext against a TLS port fails.
        let plain = connect(server.endpoint.as_str()).await;
        let failed = match plain {
            Err(_) => true,
            Ok(mut c) => c
                .get_model_info(v1::GetModelInfoRequest::default())
                .await
                .is_err(),
        };
        assert!(failed, "a plaintext client got an answer from the TLS port");
    });
    let response = https_agent(&pki, false)
        .get(&format!("https://localhost:{}/readyz", port(&server.http)))
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);
    drop(server);

    // mTLS: a client certificate signed by the CA is required on both sides.
    let server = InProcessServer::start(&[
        ("OODGATE_TLS__CERT", &cert),
        ("OODGATE_TLS__KEY", &key),
        ("OODGATE_TLS__CLIENT_CA", &ca),
    ]);
    runtime().block_on(async {
        let mut client = connect(grpc_target(&server, &pki, true)).await.unwrap();
        client
            .get_model_info(v1::GetModelInfoRequest::default())
            .await
            .unwrap();
        let without = connect(grpc_target(&server, &pki, false)).await;
        let refused = match without {
            Err(_) => true,
            Ok(mut c) => c
                .get_model_info(v1::GetModelInfoRequest::default())
                .await
                .is_err(),
        };
        assert!(refused, "a client without a certificate got an answer");
    });
    let url = format!("https://localhost:{}/healthz", port(&server.http));
    assert_eq!(
        https_agent(&pki, true).get(&url).call().unwrap().status(),
        200
    );
    assert!(
        https_agent(&pki, false).get(&url).call().is_err(),
        "HTTPS without a client certificate got an answer"
    );
}

fn port(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap()
}

#[test]
fn bearer_tokens_guard_the_api_and_optionally_metrics() {
    let token = "correct-horse-battery-staple";
    let server = Server::start(&[
        ("OODGATE_AUTH__TOKEN", token),
        ("OODGATE_AUTH__PROTECT_METRICS", "true"),
        ("OODGATE_AUTH__PROTECT_HEALTH", "false"),
    ]);
    let with = |t: Option<&str>| Target {
        endpoint: server.endpoint.clone(),
        tls: None,
        token: t.map(str::to_owned),
    };
    runtime().block_on(async {
        for wrong in [None, Some("wrong"), Some("correct-horse-battery-stapl")] {
            let mut client = connect(with(wrong)).await.unwrap();
            let refused = client
                .get_model_info(v1::GetModelInfoRequest::default())
                .await
                .unwrap_err();
            assert_eq!(refused.code(), Code::Unauthenticated, "{wrong:?}");
        }
        let mut client = connect(with(Some(token))).await.unwrap();
        client
            .get_model_info(v1::GetModelInfoRequest::default())
            .await
            .unwrap();
        // Health is configured open.
        oodgate_replay::wait_until_serving(with(None), Duration::from_secs(5))
            .await
            .unwrap();
    });

    let agent = http_agent(None);
    let get = |path: &str, t: Option<&str>| {
        let mut request = agent.get(&format!("http://{}{path}", server.http));
        if let Some(t) = t {
            request = request.header("authorization", &format!("Bearer {t}"));
        }
        request.call().unwrap().status().as_u16()
    };
    assert_eq!(get("/healthz", None), 200);
    assert_eq!(get("/readyz", None), 200);
    assert_eq!(get("/metrics", None), 401);
    assert_eq!(get("/metrics", Some("nope")), 401);
    assert_eq!(get("/metrics", Some(token)), 200);
    assert_eq!(get("/v1/model", None), 401);
    assert_eq!(get("/v1/model", Some(token)), 200);
    // The secret is never logged.
    let log = server.log_text();
    assert!(log.contains("effective configuration"), "{log}");
    assert!(!log.contains(token), "the token appears in the log:\n{log}");
}

fn default_threshold(server: &Server) -> (f64, f64) {
    runtime().block_on(async {
        let mut client = connect(server.endpoint.as_str()).await.unwrap();
        let info = client
            .get_model_info(v1::GetModelInfoRequest::default())
            .await
            .unwrap()
            .into_inner();
        (info.default_contamination, info.default_threshold)
    })
}

/// Reload through the Admin RPC and SIGHUP: the config file is read again, the new
/// settings serve new requests, an open stream keeps the model it started with, and a
/// failed reload leaves the current model serving.
#[test]
fn hot_reload_swaps_models_and_keeps_open_streams_on_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("oodgate.toml");
    std::fs::write(&config, "[index]\ncontamination = 0.001\n").unwrap();
    let config_arg = config.display().to_string();
    let server = Server::start(&[("OODGATE_CONFIG", &config_arg)]);
    let (c0, t0) = default_threshold(&server);
    assert_eq!(c0, 0.001);

    runtime().block_on(async {
        let mut client = connect(server.endpoint.as_str()).await.unwrap();
        // A stream opened before the reload.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut answers = client
            .detect_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        tx.send(digit_request()).await.unwrap();
        let before = answers.message().await.unwrap().unwrap();
        assert_eq!(before.verdicts[0].lof.as_ref().unwrap().threshold, t0);

        std::fs::write(&config, "[index]\ncontamination = 0.01\n").unwrap();
        let mut admin = oodgate_proto::v1::admin_client::AdminClient::new(
            Target::from(server.endpoint.as_str())
                .channel()
                .await
                .unwrap(),
        );
        let reloaded = admin
            .reload(v1::ReloadRequest::default())
            .await
            .unwrap()
            .into_inner();
        let model = reloaded.model.unwrap();
        assert_eq!(model.default_contamination, 0.01);
        assert!(
            model.default_threshold > t0,
            "a larger contamination raises the threshold"
        );

        // The open stream still judges with the model it started with ...
        tx.send(digit_request()).await.unwrap();
        let after = answers.message().await.unwrap().unwrap();
        assert_eq!(after.verdicts[0].lof.as_ref().unwrap().threshold, t0);
        drop(tx);
        assert!(answers.message().await.unwrap().is_none());
        // ... and new requests use the new one.
        let fresh = client.detect(digit_request()).await.unwrap().into_inner();
        assert_eq!(
            fresh.verdicts[0].lof.as_ref().unwrap().threshold,
            model.default_threshold
        );

        // A failing reload reports why and leaves the current model serving.
        let failed = admin
            .reload(v1::ReloadRequest {
                model_dir: "/nonexistent/model".into(),
                gate: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(failed.code(), Code::FailedPrecondition);
        assert!(
            failed.message().contains("/nonexistent/model"),
            "{}",
            failed.message()
        );
        let still = client.detect(digit_request()).await.unwrap().into_inner();
        assert_eq!(
            still.verdicts[0].lof.as_ref().unwrap().threshold,
            model.default_threshold
        );
    });
    let readyz = ureq::get(&format!("http://{}/readyz", server.http))
        .call()
        .unwrap();
    assert_eq!(readyz.status(), 200);

    // SIGHUP does the same with the configured model.
    std::fs::write(&config, "[index]\ncontamination = 0.05\n").unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while default_threshold(&server).0 != 0.05 {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let metrics = server.metrics();
    assert!(
        metrics.contains(r#"oodgate_reloads_total{gate="digits",result="ok"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"oodgate_reloads_total{gate="digits",result="error"} 1"#),
        "{metrics}"
    );
}
