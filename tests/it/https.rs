//! `vslack serve` on HTTPS, as a real process: certificate files (made here with rcgen) with a
//! signed delivery end to end, a replaced certificate picked up without a restart, plain HTTP
//! refused on the TLS port and a stalled handshake cut off, and doctor's certificate check.
//! (Automatic certificates: `acme.rs`.)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::Env;
use crate::relay::{event_body, now, signature, SECRET};
use crate::relay_process::{serve_on, Serving};
use crate::support::fake_slack::FakeSlack;

/// A self-signed certificate for `names`, written as `<stem>.pem` and `<stem>-key.pem` (0600).
pub(crate) fn make_cert(dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf, String) {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let c = rcgen::generate_simple_self_signed(names).unwrap();
    let (cert, key) = (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}-key.pem")),
    );
    let pem = c.cert.pem();
    std::fs::write(&cert, &pem).unwrap();
    std::fs::write(&key, c.key_pair.serialize_pem()).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    (cert, key, pem)
}

pub(crate) fn addr_of(url: &str) -> SocketAddr {
    let rest = url.split_once("://").unwrap().1;
    rest.trim_end_matches('/').parse().unwrap()
}

/// A signed delivery to `https://<name>:<port>/`, trusting `root_pem` only.
pub(crate) fn deliver_https(name: &str, addr: SocketAddr, root_pem: &str, id: &str) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = vslack::http::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(root_pem.as_bytes()).unwrap()])
            .resolve(name, addr)
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let body = event_body(id, "instance_stopped");
        let ts = now();
        client
            .post(format!("https://{name}:{}/", addr.port()))
            .header("Content-Type", "application/json")
            .header("X-Vast-Timestamp", ts.to_string())
            .header("X-Vast-Signature-256", signature(SECRET, ts, &body))
            .body(body)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or_else(|e| panic!("HTTPS delivery failed: {e:?}"))
    })
}

/// Whether a TLS handshake with `addr` as `name` succeeds when only `root_pem` is trusted.
pub(crate) fn handshake_ok(name: &str, addr: SocketAddr, root_pem: &str) -> bool {
    use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let server = ServerName::try_from(name.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), server).unwrap();
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    while conn.is_handshaking() {
        if conn.complete_io(&mut tcp).is_err() {
            return false;
        }
    }
    true
}

pub(crate) fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn https_with_certificate_files_delivers_reloads_and_refuses_plain_or_stalled_clients() {
    let slack = FakeSlack::start();
    let mut env = Env::new();
    env.set("VAST_WEBHOOK_SECRET", SECRET);
    env.set("SLACK_WEBHOOK_URL", &slack.url());
    env.secret(SECRET);
    let dir = env.dir.path().to_owned();
    let (cert, key, first) = make_cert(&dir, "relay", &["localhost"]);
    let relay: Serving = serve_on(
        &env,
        "127.0.0.1:0",
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--header-timeout",
            "1s",
        ],
    );
    assert!(relay.url.starts_with("https://"), "{}", relay.url);
    let addr = addr_of(&relay.url);
    // A signed delivery over HTTPS, end to end.
    assert_eq!(deliver_https("localhost", addr, &first, "evt-tls-1"), 204);
    let got = slack.wait_for_delivered(1, Duration::from_secs(10));
    assert!(got[0].to_string().contains("evt-tls-1"), "{got:?}");
    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !String::from_utf8_lossy(&answer).contains("HTTP/1.1"),
        "plain HTTP was answered: {:?}",
        String::from_utf8_lossy(&answer)
    );
    // A client that opens a connection and never starts the handshake is cut off.
    let mut stalled = TcpStream::connect(addr).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 16];
    let n = stalled.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the stalled connection was closed");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "cut off after the 1 s header timeout, not {:?}",
        start.elapsed()
    );
    // A renewal replaces both files (as certbot does): the next handshake has the new
    // certificate, without a restart.
    let (new_cert, new_key, second) = make_cert(&dir, "renewed", &["localhost"]);
    std::fs::rename(&new_key, &key).unwrap();
    std::fs::rename(&new_cert, &cert).unwrap();
    wait_until("the new certificate is served", || {
        handshake_ok("localhost", addr, &second)
    });
    assert!(
        !handshake_ok("localhost", addr, &first),
        "the old one is gone"
    );
    assert!(relay.logged("reloaded the TLS certificate"));
    assert_eq!(deliver_https("localhost", addr, &second, "evt-tls-2"), 204);
    relay.assert_logs_free_of(&[SECRET]);
}

#[test]
fn a_certificate_that_is_not_the_keys_is_refused_at_start() {
    let mut env = Env::new();
    env.set("VAST_WEBHOOK_SECRET", SECRET);
    env.set(
        "SLACK_WEBHOOK_URL",
        "https://hooks.slack.com/services/T/B/x",
    );
    let dir = env.dir.path().to_owned();
    let (cert, _, _) = make_cert(&dir, "one", &["localhost"]);
    let (_, other_key, _) = make_cert(&dir, "two", &["localhost"]);
    let out = env.run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        other_key.to_str().unwrap(),
    ]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("is not the key of --tls-cert"),
        "{out:?}"
    );
}

#[test]
fn https_from_the_config_and_doctor_checks_the_served_certificate() {
    let slack = FakeSlack::start();
    let mut env = Env::new();
    env.set("VAST_WEBHOOK_SECRET", SECRET);
    env.set("SLACK_WEBHOOK_URL", &slack.url());
    let dir = env.dir.path().to_owned();
    let (cert, key, pem) = make_cert(&dir, "relay", &["localhost"]);
    let port = free_port();
    let write = |host: &str| {
        let text = format!(
            "[relay]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"https://{host}:{port}/\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            key.display()
        );
        let path = env.config_file();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
    };
    write("localhost");
    // No TLS flag: the config's certificate files are used.
    let relay = serve_on(&env, &format!("127.0.0.1:{port}"), &[]);
    assert!(relay.url.starts_with("https://"), "{}", relay.url);
    assert_eq!(
        deliver_https("localhost", addr_of(&relay.url), &pem, "evt-cfg"),
        204
    );
    // `status` finds the relay over HTTPS where the config says it listens.
    let st = env.run(&["--json", "status"]);
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(v["relay_status"], "ok", "{v}");
    let check = |env: &Env| {
        let out = env.run(&["--json", "doctor"]);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "certificate")
            .cloned()
            .unwrap_or_else(|| panic!("no certificate check: {v}"))
    };
    // Named right, but self-signed: Vast.ai would refuse it, and doctor says so.
    let c = check(&env);
    assert_eq!(c["level"], "fail", "{c}");
    let detail = c["detail"].as_str().unwrap();
    assert!(
        detail.contains("names localhost") && detail.contains("days left"),
        "{c}"
    );
    assert!(
        c["fix"]
            .as_str()
            .unwrap()
            .contains("not trusted by the public roots"),
        "{c}"
    );
    // Reached under a name the certificate does not hold: doctor says Vast.ai will refuse it.
    write("other.test");
    let c = check(&env);
    assert_eq!(c["level"], "fail", "{c}");
    assert!(
        c["fix"]
            .as_str()
            .unwrap()
            .contains("does not name other.test"),
        "{c}"
    );
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
