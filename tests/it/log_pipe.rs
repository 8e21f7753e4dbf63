//! A relay whose log goes nowhere keeps working: its stderr is a pipe whose reader went away
//! (a `| tee` that exited, a journal that restarted). Before, every log line made tracing
//! report the failed write with `eprintln!`, which panics on a closed pipe: each delivery's
//! connection was dropped after the event was stored, so nothing was ever acknowledged.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use crate::common::Env;
use crate::relay::{event_body, now, signature, SECRET};
use crate::relay_process::post_blocking;
use crate::support::fake_slack::FakeSlack;

#[test]
fn a_closed_log_pipe_does_not_stop_acknowledgements_or_delivery() {
    let slack = FakeSlack::start();
    let mut env = Env::new();
    env.set("VAST_WEBHOOK_SECRET", SECRET);
    env.set("SLACK_WEBHOOK_URL", &slack.url());
    env.secret(SECRET);
    let mut child = env
        .command(&["serve", "--listen", "127.0.0.1:0", "--pace", "10ms"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("serve exited before listening")
            .unwrap();
        if let Some(rest) = line.strip_prefix("listening on ") {
            break rest.to_owned();
        }
    };
    // The log's reader goes away: every line the relay logs from now on fails to be written.
    drop(lines);
    let ts = now();
    for i in 0..3 {
        let body = event_body(&format!("evt-nolog-{i}"), "low_credit");
        let status = post_blocking(&url, &body, ts, &signature(SECRET, ts, &body));
        assert_eq!(
            status, 204,
            "delivery {i} acknowledged with the log pipe closed"
        );
    }
    let body = event_body("evt-nolog-forged", "low_credit");
    let forged = post_blocking(&url, &body, ts, &signature("not-the-secret", ts, &body));
    assert_eq!(
        forged, 401,
        "a forged delivery is still refused (and logged nowhere)"
    );
    // And the forwarder still posts all three (its log lines fail too).
    let posted = |i: usize| {
        let text = serde_json::to_string(&slack.delivered()).unwrap();
        text.contains(&format!("Message for evt-nolog-{i}"))
    };
    let start = std::time::Instant::now();
    while !(0..3).all(posted) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            slack.delivered()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the relay is still running"
    );
    let _ = child.kill();
    let _ = child.wait();
}
