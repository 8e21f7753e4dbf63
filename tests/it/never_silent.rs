//! The relay says when its own pipeline breaks: one alert when it does, one message when it
//! works again, for each failure mode, through the real `vslack serve` process against the
//! Vast.ai and Slack stand-ins. The heartbeat's test events are never posted.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Env, API_KEY};
use crate::relay_process::{serve_on, Serving};
use crate::support::fake_slack::FakeSlack;
use crate::support::fake_vast::FakeVast;

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A relay on a known port, with one webhook at the Vast.ai stand-in pointing at it, the API
/// key and secret in the config (so the test can change them), and a heartbeat every second.
struct Pipeline {
    vast: FakeVast,
    slack: FakeSlack,
    env: Env,
    relay: Option<Serving>,
    id: i64,
    secret: String,
    api_key: String,
    url: String,
    port: u16,
}

impl Pipeline {
    fn start() -> Pipeline {
        let vast = FakeVast::start(API_KEY);
        let slack = FakeSlack::start();
        let mut env = Env::with_vast(&vast.url());
        env.unset("VAST_API_KEY");
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}/");
        let (id, secret) = vast.insert_webhook("vslack", &url, &["client:low_credit"]);
        env.secret(&secret);
        let p = Pipeline {
            vast,
            slack,
            env,
            relay: None,
            id,
            secret,
            api_key: API_KEY.into(),
            url,
            port,
        };
        p.write_config();
        p
    }

    /// The config as this machine holds it: key, Slack URL, public URL, the webhook's secret.
    fn write_config(&self) {
        let text = format!(
            "api_key = \"{}\"\n\n[slack]\nurl = \"{}\"\n\n[relay]\npublic_url = \"{}\"\n\n[webhooks.{}]\nsecret = \"{}\"\nevents = [\"client:low_credit\"]\n",
            self.api_key,
            self.slack.url(),
            self.url,
            self.id,
            self.secret
        );
        let path = self.env.config_file();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }

    fn serve(&mut self, extra: &[&str]) {
        let mut args = vec![
            "--heartbeat",
            "1s",
            "--heartbeat-timeout",
            "2s",
            "--alert-window",
            "2s",
        ];
        args.extend_from_slice(extra);
        self.relay = Some(serve_on(
            &self.env,
            &format!("127.0.0.1:{}", self.port),
            &args,
        ));
    }

    fn relay(&self) -> &Serving {
        self.relay.as_ref().expect("serving")
    }

    fn health(&self) -> Value {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let r = vslack::http::get(format!("{}health", self.url))
                .await
                .unwrap();
            r.json().await.unwrap()
        })
    }

    fn metrics(&self) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let r = vslack::http::get(format!("{}metrics", self.url))
                .await
                .unwrap();
            r.text().await.unwrap()
        })
    }
}

/// Messages whose text holds `needle` (the alerts' and recoveries' event ids name them).
pub fn messages(slack: &FakeSlack, needle: &str) -> Vec<String> {
    slack
        .delivered()
        .iter()
        .map(Value::to_string)
        .filter(|m| m.contains(needle))
        .collect()
}

/// Wait (up to 20 s) until `slack` got a message holding `needle`, and return it.
pub fn wait_message(slack: &FakeSlack, needle: &str) -> String {
    let start = Instant::now();
    loop {
        if let Some(m) = messages(slack, needle).into_iter().next() {
            return m;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no message with {needle:?}; got {:#?}",
            slack.delivered()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The whole story: exactly one alert (holding `diagnosis`) and one recovery for `incident`,
/// after a few more heartbeats; and no heartbeat test event ever posted.
fn assert_one_alert_one_recovery(slack: &FakeSlack, incident: &str, diagnosis: &str) {
    // A few more heartbeats (one a second) and watchdog rounds: nothing more is said.
    std::thread::sleep(Duration::from_secs(3));
    let alerts = messages(slack, &format!("vslack-alert:{incident}:"));
    let recoveries = messages(slack, &format!("vslack-resolved:{incident}:"));
    assert_eq!(alerts.len(), 1, "one alert: {:#?}", slack.delivered());
    assert_eq!(
        recoveries.len(),
        1,
        "one recovery: {:#?}",
        slack.delivered()
    );
    assert!(alerts[0].contains(diagnosis), "{}", alerts[0]);
    assert!(
        messages(slack, "Vast.ai webhook test").is_empty()
            && messages(slack, "webhook_test").is_empty(),
        "a heartbeat test event was posted: {:#?}",
        slack.delivered()
    );
}

/// Wait until the heartbeat has succeeded at least once (so a later failure is news).
fn wait_healthy(p: &Pipeline) {
    p.relay().wait_log("heartbeat: the test event arrived");
}

#[test]
fn a_stale_webhook_url_alerts_once_and_recovers_once() {
    let mut p = Pipeline::start();
    // The webhook points at an old tunnel (nothing listens there).
    p.vast.set_webhook_url(p.id, "http://127.0.0.1:1/");
    p.serve(&[]);
    let alert = wait_message(&p.slack, "vslack-alert:heartbeat:");
    assert!(alert.contains(&format!("webhook {} points at http://127.0.0.1:1/", p.id)));
    assert!(alert.contains(&format!("this relay is reached at {}", p.url)));
    // While it lasts: /health says why, /metrics counts it, status and doctor show it.
    let h = p.health();
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(
        h["reason"].as_str().unwrap().contains("points elsewhere"),
        "{h}"
    );
    let m = p.metrics();
    assert!(m.contains("vslack_incidents 1"), "{m}");
    assert!(
        m.contains("vslack_heartbeat_last_success_timestamp_seconds 0"),
        "{m}"
    );
    let status = p.env.run(&["status"]);
    assert!(
        status.stdout.contains("incident") && status.stdout.contains("points elsewhere"),
        "{status:?}"
    );
    let doctor = p.env.run(&["--json", "doctor"]);
    let d: Value = serde_json::from_str(&doctor.stdout).unwrap();
    assert!(
        d["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "incident" && c["level"] == "fail"),
        "{d}"
    );
    // Fixed in the console: the next heartbeat gets through.
    p.vast.set_webhook_url(p.id, &p.url);
    wait_message(&p.slack, "vslack-resolved:heartbeat:");
    assert_one_alert_one_recovery(&p.slack, "heartbeat", "points at");
    assert_eq!(p.health()["status"], "ok");
    let m = p.metrics();
    assert!(m.contains("vslack_incidents 0"), "{m}");
    assert!(
        !m.contains("vslack_heartbeat_last_success_timestamp_seconds 0\n"),
        "{m}"
    );
    let status = p.env.run(&["status"]);
    assert!(status.stdout.contains("last arrived"), "{status:?}");
}

#[test]
fn a_revoked_api_key_alerts_once_and_recovers_once_even_across_a_restart() {
    let mut p = Pipeline::start();
    p.serve(&[]);
    wait_healthy(&p);
    // The key is revoked (a new one made in the console).
    p.vast.set_api_key("the-new-api-key-0123456789");
    p.env.secret("the-new-api-key-0123456789");
    let alert = wait_message(&p.slack, "vslack-alert:heartbeat:");
    assert!(alert.contains("Vast.ai answered 401"), "{alert}");
    assert!(alert.contains("vslack login"), "{alert}");
    // A restart while the incident is open: it is still open, and not alerted again.
    let mut old = p.relay.take().unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(old.child.id() as i32, libc::SIGTERM) };
    let _ = old.child.wait();
    p.serve(&[]);
    p.relay().wait_log("heartbeat on");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(messages(&p.slack, "vslack-alert:").len(), 1);
    assert_eq!(p.health()["status"], "degraded");
    // The new key saved on this machine: the next heartbeat uses it.
    p.api_key = "the-new-api-key-0123456789".into();
    p.write_config();
    wait_message(&p.slack, "vslack-resolved:heartbeat:");
    assert_one_alert_one_recovery(&p.slack, "heartbeat", "401");
    p.relay()
        .assert_logs_free_of(&[API_KEY, "the-new-api-key-0123456789", &p.secret]);
}

#[test]
fn a_webhook_deleted_at_vast_alerts_once_and_recovers_once() {
    let mut p = Pipeline::start();
    p.serve(&[]);
    wait_healthy(&p);
    p.vast.remove_webhook(p.id);
    let alert = wait_message(&p.slack, "vslack-alert:heartbeat:");
    assert!(
        alert.contains(&format!("webhook {} no longer exists", p.id)),
        "{alert}"
    );
    // A new webhook, its secret stored here (as `vslack webhook create` does).
    let (id, secret) = p
        .vast
        .insert_webhook("vslack", &p.url, &["client:low_credit"]);
    p.env.secret(&secret);
    (p.id, p.secret) = (id, secret);
    p.write_config();
    wait_message(&p.slack, "vslack-resolved:heartbeat:");
    assert_one_alert_one_recovery(&p.slack, "heartbeat", "no longer exists");
}

#[test]
fn a_secret_rotated_elsewhere_alerts_once_and_recovers_once() {
    let mut p = Pipeline::start();
    p.serve(&[]);
    wait_healthy(&p);
    let new = p.vast.rotate_secret_elsewhere(p.id);
    p.env.secret(&new);
    let alert = wait_message(&p.slack, "vslack-alert:bad_signature:");
    assert!(
        alert.contains("signature no stored secret matches"),
        "{alert}"
    );
    assert!(
        alert.contains(&format!("vslack webhook rotate-secret {}", p.id)),
        "{alert}"
    );
    p.secret = new;
    p.write_config();
    wait_message(&p.slack, "vslack-resolved:bad_signature:");
    assert_one_alert_one_recovery(&p.slack, "bad_signature", "rotate-secret");
    assert!(messages(&p.slack, "vslack-alert:heartbeat:").is_empty());
}

#[test]
fn a_clock_off_alerts_once_and_recovers_once() {
    let mut p = Pipeline::start();
    // Vast.ai's clock is 1000 s behind this machine's: its signatures look stale here.
    p.vast.set_clock_skew(-1000);
    p.serve(&[]);
    let alert = wait_message(&p.slack, "vslack-alert:stale_timestamp:");
    assert!(
        alert.contains("clock is 1000 s ahead of Vast.ai") || alert.contains("clock is 1001 s"),
        "{alert}"
    );
    p.vast.set_clock_skew(0);
    wait_message(&p.slack, "vslack-resolved:stale_timestamp:");
    assert_one_alert_one_recovery(&p.slack, "stale_timestamp", "Sync the clock");
}

#[test]
fn with_no_webhook_stored_the_heartbeat_says_so_and_claims_nothing() {
    let slack = FakeSlack::start();
    let vast = FakeVast::start(API_KEY);
    let mut env = Env::with_vast(&vast.url());
    env.set("VAST_WEBHOOK_SECRET", crate::relay::SECRET);
    env.set("SLACK_WEBHOOK_URL", &slack.url());
    let relay = serve_on(
        &env,
        "127.0.0.1:0",
        &["--heartbeat", "1s", "--heartbeat-timeout", "2s"],
    );
    relay.wait_log("nothing to test");
    std::thread::sleep(Duration::from_secs(2));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let m = rt.block_on(async {
        vslack::http::get(format!("{}metrics", relay.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    assert!(
        m.contains("vslack_heartbeat_last_success_timestamp_seconds 0"),
        "nothing was verified, so no success: {m}"
    );
    assert_eq!(vast.count("POST", "/api/v0/webhooks/1/test/"), 0);
    assert!(slack.delivered().is_empty());
}
