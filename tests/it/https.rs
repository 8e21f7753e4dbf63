//! `vslack serve` on HTTPS, as a real process: certificate files (made here with rcgen) with a
//! signed delivery end to end, a replaced certificate picked up without a restart, plain HTTP
//! refused on the TLS port and a stalled handshake cut off; and automatic certificates from
//! Pebble, Let's Encrypt's ACME test server, cached across a restart.

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
fn make_cert(dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf, String) {
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

fn addr_of(url: &str) -> SocketAddr {
    let rest = url.split_once("://").unwrap().1;
    rest.trim_end_matches('/').parse().unwrap()
}

/// A signed delivery to `https://<name>:<port>/`, trusting `root_pem` only.
fn deliver_https(name: &str, addr: SocketAddr, root_pem: &str, id: &str) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder()
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
fn handshake_ok(name: &str, addr: SocketAddr, root_pem: &str) -> bool {
    use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
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

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
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

/// A Pebble ACME server on free ports, with its own HTTPS certificate made here.
struct Pebble {
    child: std::process::Child,
    dns: Option<std::process::Child>,
    dir: String,
    mgmt: u16,
    ca_pem: String,
    log: PathBuf,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for c in std::iter::once(&mut self.child).chain(self.dns.as_mut()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Pebble, validating for real: its DNS is pebble-challtestsrv answering 127.0.0.1 for every
/// name, and it connects to `tls_port` (TLS-ALPN-01) and `http_port` (HTTP-01), where the
/// relay answers. Without pebble-challtestsrv, every validation is taken as passed (said
/// loudly).
fn start_pebble(dir: &Path, tls_port: u16, http_port: u16) -> Option<Pebble> {
    let bin = ["/usr/bin/pebble", "/usr/local/bin/pebble"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let (cert, key, ca_pem) = make_cert(dir, "pebble", &["localhost", "127.0.0.1"]);
    let (port, mgmt) = (free_port(), free_port());
    let config = dir.join("pebble.json");
    std::fs::write(
        &config,
        serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt}"),
            "certificate": cert, "privateKey": key,
            "httpPort": http_port, "tlsPort": tls_port,
            "ocspResponderURL": "", "externalAccountBindingRequired": false,
        }})
        .to_string(),
    )
    .unwrap();
    let log = dir.join("pebble.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut cmd = std::process::Command::new(bin);
    cmd.args(["-config", config.to_str().unwrap()])
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0");
    let dns = Path::new("/usr/bin/pebble-challtestsrv").exists().then(|| {
        let dns_port = free_port();
        let child = std::process::Command::new("/usr/bin/pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{}", free_port())])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_until("pebble-challtestsrv answers DNS", || {
            TcpStream::connect(("127.0.0.1", dns_port)).is_ok()
        });
        (child, dns_port)
    });
    match &dns {
        Some((_, p)) => {
            cmd.args(["-dnsserver", &format!("127.0.0.1:{p}")]);
        }
        None => {
            eprintln!("\n*** pebble-challtestsrv is missing: Pebble takes every ACME validation as passed ***\n");
            cmd.env("PEBBLE_VA_ALWAYS_VALID", "1");
        }
    }
    let child = cmd
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    wait_until("pebble listens", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    Some(Pebble {
        child,
        dns: dns.map(|d| d.0),
        dir: format!("https://127.0.0.1:{port}/dir"),
        mgmt,
        ca_pem,
        log,
    })
}

/// Pebble's root, which the certificates it issues chain to.
fn pebble_root(p: &Pebble) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(p.ca_pem.as_bytes()).unwrap()])
            .no_proxy()
            .build()
            .unwrap()
            .get(format!("https://127.0.0.1:{}/roots/0", p.mgmt))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
}

/// The ACME test, with the challenge answered for real on the relay's HTTPS port (tls-alpn-01)
/// or on its http-01 listener.
fn acme_round(http01: bool) {
    let slack = FakeSlack::start();
    let mut env = Env::new();
    env.set("VAST_WEBHOOK_SECRET", SECRET);
    env.set("SLACK_WEBHOOK_URL", &slack.url());
    let dir = env.dir.path().to_owned();
    let (tls_port, http_port) = (free_port(), free_port());
    let Some(pebble) = start_pebble(&dir, tls_port, http_port) else {
        eprintln!("\n*** SKIPPED the ACME test: pebble is not installed (apt-get install -y pebble; .ci/run installs it) ***\n");
        return;
    };
    let ca = dir.join("pebble.pem");
    let http_listen = format!("127.0.0.1:{http_port}");
    let mut args = vec![
        "--domain",
        "relay.test",
        "--acme-email",
        "ops@example.com",
        "--acme-directory",
        &pebble.dir,
        "--acme-ca-file",
        ca.to_str().unwrap(),
    ];
    if http01 {
        args.extend_from_slice(&[
            "--acme-challenge",
            "http-01",
            "--acme-http-listen",
            &http_listen,
        ]);
    }
    let listen = format!("127.0.0.1:{tls_port}");
    let relay = serve_on(&env, &listen, &args);
    let addr = addr_of(&relay.url);
    relay.wait_log("obtained a new certificate");
    relay.wait_log(if http01 {
        "answering an ACME HTTP-01 validation"
    } else {
        "answering an ACME TLS-ALPN-01 validation"
    });
    let root = pebble_root(&pebble);
    // The served certificate chains to Pebble's root and names the domain.
    wait_until("the ACME certificate is served", || {
        handshake_ok("relay.test", addr, &root)
    });
    assert!(
        !handshake_ok("other.test", addr, &root),
        "it names relay.test only"
    );
    assert_eq!(deliver_https("relay.test", addr, &root, "evt-acme-1"), 204);
    slack.wait_for_delivered(1, Duration::from_secs(10));
    let orders = |log: &Path| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .matches("order-plz")
            .count()
    };
    let before = orders(&pebble.log);
    assert!(before >= 1, "pebble saw the order");
    // Cached privately, and reused by a restart without a new order.
    let cache = env.data_dir().join("acme");
    assert_eq!(crate::common::mode(&cache), 0o700);
    for f in std::fs::read_dir(&cache).unwrap() {
        assert_eq!(crate::common::mode(&f.unwrap().path()), 0o600);
    }
    drop(relay);
    let relay = serve_on(&env, &listen, &args);
    relay.wait_log("serving the cached certificate (no new order)");
    assert!(handshake_ok("relay.test", addr, &root));
    assert_eq!(deliver_https("relay.test", addr, &root, "evt-acme-2"), 204);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        orders(&pebble.log),
        before,
        "no new order after the restart"
    );
    assert!(!relay.logged("obtained a new certificate"));
}

#[test]
fn an_acme_certificate_from_pebble_is_served_and_reused_after_a_restart() {
    acme_round(false);
}

#[test]
fn an_acme_certificate_by_http_01_from_pebble() {
    acme_round(true);
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
