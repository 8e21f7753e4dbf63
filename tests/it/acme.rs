//! Automatic certificates from Pebble, Let's Encrypt's ACME test server, validating for real
//! (TLS-ALPN-01 on the relay's HTTPS port, HTTP-01 on its port-80 stand-in): the certificate
//! chains to Pebble's root and names the domain, and a restart reuses it without a new order.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::Env;
use crate::https::{addr_of, deliver_https, free_port, handshake_ok, make_cert, wait_until};
use crate::relay::SECRET;
use crate::relay_process::serve_on;
use crate::support::fake_slack::FakeSlack;

/// A Pebble ACME server on free ports, with its own HTTPS certificate made here.
/// A child process killed when dropped (so a failed start leaks nothing).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Pebble {
    _child: Killed,
    _dns: Option<Killed>,
    dir: String,
    mgmt: u16,
    ca_pem: String,
    log: PathBuf,
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
        let child = Killed(child);
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
    let child = Killed(
        cmd.stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap(),
    );
    wait_until("pebble listens", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    Some(Pebble {
        _child: child,
        _dns: dns.map(|d| d.0),
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
        vslack::http::builder()
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
