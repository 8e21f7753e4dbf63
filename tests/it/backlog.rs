//! A backlog too long to list at Slack's pace is summarised: oldest first, each event counted
//! in exactly one message, every message within Slack's limits, and the newest still listed.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::Env;
use crate::relay::{
    carried_ids, deliver, event_body, now, signature, start, stop, wait_stats, SECRET,
};
use crate::support::fake_slack::{Answer, FakeSlack};

/// `N Vast.ai notifications, summarised` and `--range A-B` from a summary's fallback text.
fn summary_of(message: &Value) -> Option<(usize, i64, i64)> {
    let text = message["text"].as_str()?;
    let count = text.split(" Vast.ai notifications, summarised").next()?;
    let count: usize = count.replace(',', "").trim().parse().ok()?;
    let range = text.split("--range ").nth(1)?.split('`').next()?;
    let (a, b) = range.split_once('-')?;
    Some((count, a.parse().ok()?, b.parse().ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_beyond_what_can_be_listed_in_time_is_summarised_and_counted_once() {
    let slack = FakeSlack::start();
    // The first message is held: everything after it waits, as during an outage.
    slack.script(vec![Answer::Hold]);
    // 20 ms pace and 200 ms to list in: 10 digests of 49, so 490 events can be listed.
    let h = start(&slack.url(), |o| {
        o.forward.pace = Duration::from_millis(20);
        o.forward.list_within = Duration::from_millis(200);
        // The held post must outlast the deliveries below.
        o.forward.slack_timeout = Duration::from_secs(120);
    })
    .await;
    let first = deliver(&h.url, "evt-head", "instance_stopped").await;
    assert_eq!(first, 204);
    let start_wait = Instant::now();
    while slack.requests().is_empty() {
        assert!(
            start_wait.elapsed() < Duration::from_secs(10),
            "Slack never asked"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let kinds = ["instance_stopped", "low_credit", "machine_offline"];
    let ids: Vec<String> = (0..3000).map(|i| format!("evt-b{i}")).collect();
    // One client for all (building one per request costs more than the relay does).
    let client = vslack::http::client();
    for chunk in ids.chunks(50) {
        let sends = chunk.iter().enumerate().map(|(i, id)| {
            let (url, client) = (h.url.clone(), client.clone());
            let body = event_body(id, kinds[i % 3]);
            async move {
                let ts = now();
                let r = client
                    .post(&url)
                    .header("X-Vast-Timestamp", ts.to_string())
                    .header("X-Vast-Signature-256", signature(SECRET, ts, &body))
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                r.status().as_u16()
            }
        });
        for status in futures_join(sends).await {
            assert_eq!(status, 204);
        }
    }
    slack.release();
    let stats = wait_stats(&h.relay, |s| s.pending == 0).await;
    assert_eq!((stats.pending, stats.dead), (0, 0), "{stats:?}");
    assert_eq!(stats.delivered, 3001);

    let messages = slack.delivered();
    // Every message passed the stand-in's checks of Slack's limits (blocks, lengths).
    let refused: Vec<String> = slack
        .received()
        .iter()
        .filter(|r| r.status_returned != 200)
        .map(|r| format!("{} {}", r.status_returned, String::from_utf8_lossy(&r.raw)))
        .collect();
    assert!(refused.is_empty(), "refused: {refused:#?}");
    let mut summarised: HashSet<String> = HashSet::new();
    let mut last_range_end = 0;
    let mut listed_after = false;
    for m in &messages {
        if let Some((count, a, b)) = summary_of(m) {
            assert!(!listed_after, "a summary came after the newest were listed");
            assert!(a > last_range_end, "summaries in arrival order");
            last_range_end = b;
            let rows = h.relay.spool.list_range(a, b, usize::MAX).await.unwrap();
            assert_eq!(rows.len(), count, "the count is what the range holds");
            for r in rows {
                assert_eq!(r.state, "delivered");
                assert!(summarised.insert(r.event.event_id), "counted twice");
            }
        } else if !summarised.is_empty() {
            listed_after = true;
        }
    }
    assert!(
        summarised.len() >= 2000,
        "most of the backlog was summarised: {} of 3,000 in {} messages",
        summarised.len(),
        messages.len()
    );
    // The rest is listed one by one, each once, and none of them was also summarised.
    let listed: Vec<String> = ids
        .iter()
        .filter(|id| !summarised.contains(*id))
        .cloned()
        .collect();
    let carried = carried_ids(&messages, &listed);
    assert!(
        carried.iter().all(|&n| n == 1),
        "each listed event in exactly one message"
    );
    let shapes: Vec<String> = messages
        .iter()
        .map(|m| match summary_of(m) {
            Some((n, a, b)) => format!("summary {n} {a}-{b}"),
            None => format!("{} blocks", m["blocks"].as_array().map_or(0, Vec::len)),
        })
        .collect();
    assert!(listed.len() <= 490, "{} listed: {shapes:?}", listed.len());
    assert!(
        messages.len() <= 2 + listed.len().div_ceil(49) + 1,
        "{} messages for 3,001 events",
        messages.len()
    );
    // The command a summary names lists what it stood for.
    let (count, a, b) = messages.iter().find_map(summary_of).unwrap();
    let mut env = Env::new();
    env.set("VSLACK_DATA_DIR", h.data_dir().to_str().unwrap());
    let out = env.run(&["queue", "list", "--range", &format!("{a}-{b}"), "--json"]);
    let listed: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(listed["events"].as_array().unwrap().len(), count);
    let out = env.run(&["queue", "list", "--range", &format!("{a}-{b}")]);
    assert!(
        out.stdout
            .starts_with(&format!("{count} events numbered {a} to {b}")),
        "{}",
        out.stdout
    );
    let out = env.run_raw(&["queue", "list", "--range", "9-3"], None);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("FROM is after TO"), "{}", out.stderr);
    stop(h.relay).await;
}

async fn futures_join<F: std::future::Future<Output = u16> + Send + 'static>(
    futs: impl Iterator<Item = F>,
) -> Vec<u16> {
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
