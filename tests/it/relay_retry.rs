//! The relay in-process against Slack's answers: retries, 429s and 410s, wall-clock steps,
//! digests of a backlog, workflow triggers, and routes sharing a pace.

use std::time::Duration;

use serde_json::Value;
use vslack::relay::forward::Destination;
use vslack::relay::message::Format;
use vslack::secret::Secret;

use crate::relay::*;
use crate::support::fake_slack::{Answer, FakeSlack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_500_three_times_then_ok_delivers_once() {
    let slack = FakeSlack::start();
    slack.script(vec![
        Answer::Status(500, "rollup_error"),
        Answer::Status(500, "rollup_error"),
        Answer::Status(500, "rollup_error"),
    ]);
    let h = start(&slack.url(), |_| {}).await;
    assert_eq!(deliver(&h.url, "evt-500", "outbid").await, 204);
    let got = wait_delivered(&slack, 1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(slack.received().len(), 4, "three failures, one success");
    // Counters move once the relay has the answer; the store records it last.
    wait_stats(&h.relay, |s| s.delivered >= 1).await;
    assert_metrics(
        &endpoint(&h, "metrics").await,
        &[
            "vslack_retried_total 3",
            "vslack_slack_request_seconds_count 4",
        ],
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(slack.delivered().len(), 1);
    stop(h.relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_429_is_waited_out_for_retry_after() {
    let slack = FakeSlack::start();
    slack.script(vec![Answer::RateLimited(1)]);
    let h = start(&slack.url(), |_| {}).await;
    assert_eq!(deliver(&h.url, "evt-429", "outbid").await, 204);
    wait_delivered(&slack, 1, Duration::from_secs(10)).await;
    let r = slack.received();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].status_returned, 429);
    let gap = r[1].at.duration_since(r[0].at);
    assert!(
        gap >= Duration::from_millis(950),
        "retried after {gap:?}, before Retry-After"
    );
    stop(h.relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_429s_back_off_above_retry_after_and_count_toward_max_age() {
    let slack = FakeSlack::start();
    slack.script(vec![Answer::RateLimited(1); 50]);
    let h = start(&slack.url(), |o| {
        o.forward.max_age = Duration::from_secs(3);
        o.forward.retry_max = Duration::from_secs(30);
    })
    .await;
    assert_eq!(deliver(&h.url, "evt-429-forever", "outbid").await, 204);
    let s = tokio::time::timeout(
        Duration::from_secs(20),
        wait_stats(&h.relay, |s| s.dead == 1),
    )
    .await
    .expect("an event only ever answered 429 was never dead-lettered");
    // What is left pending is the relay's alert about it (never given up on).
    let pending = h.relay.spool.list(0, 10).await.unwrap();
    assert_eq!(pending.len() as i64, s.pending);
    assert!(
        pending.iter().all(|q| q.event.alert.is_some()),
        "{pending:?}"
    );
    let r = slack.received();
    assert!(r.iter().all(|x| x.status_returned == 429));
    let gaps: Vec<Duration> = r
        .windows(2)
        .map(|w| w[1].at.duration_since(w[0].at))
        .collect();
    assert!(
        gaps.iter().all(|g| *g >= Duration::from_millis(950)),
        "never before Retry-After: {gaps:?}"
    );
    assert!(
        gaps.iter().any(|g| *g >= Duration::from_millis(1900)),
        "the waits grow beyond Retry-After: {gaps:?}"
    );
    stop(h.relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wall_clock_steps_neither_hold_retries_nor_dead_letter_young_events() {
    let slack = FakeSlack::start();
    slack.script(vec![Answer::Status(500, "rollup_error"); 2]);
    let clock = std::sync::Arc::new(vslack::relay::clock::Clock::default());
    let c = clock.clone();
    let h = start(&slack.url(), move |o| {
        o.forward.clock = c;
        o.forward.retry_initial = Duration::from_millis(300);
        o.forward.retry_max = Duration::from_millis(600);
    })
    .await;
    // Accepted (signed with the real time), then the first post fails and a retry is due in
    // well under a second; now the wall clock is stepped back 240 s.
    assert_eq!(deliver(&h.url, "evt-step-back", "outbid").await, 204);
    wait_arrived(&slack, 1).await;
    clock.step_wall(-240_000);
    let s = wait_stats(&h.relay, |s| s.delivered == 1).await;
    assert_eq!(
        s.delivered, 1,
        "the retry waited for the stepped-back wall clock"
    );
    let health = endpoint(&h, "health").await;
    assert!(
        !health.contains("\"oldest_pending_age_secs\":-"),
        "{health}"
    );
    // Forward 25 h with an event waiting: it is young, whatever the wall clock says.
    clock.step_wall(240_000);
    slack.script(vec![Answer::Status(500, "rollup_error"); 2]);
    assert_eq!(deliver(&h.url, "evt-step-fwd", "outbid").await, 204);
    wait_arrived(&slack, 4).await;
    clock.step_wall(25 * 3600 * 1000);
    let s = wait_stats(&h.relay, |s| s.delivered == 2).await;
    assert_eq!(
        (s.delivered, s.dead),
        (2, 0),
        "dead-lettered by a clock step"
    );
    stop(h.relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_410_dead_letters_while_later_events_flow() {
    let slack = FakeSlack::start();
    slack.script(vec![Answer::Status(410, "channel_is_archived")]);
    let h = start(&slack.url(), |_| {}).await;
    assert_eq!(deliver(&h.url, "evt-dead", "low_credit").await, 204);
    wait_stats(&h.relay, |s| s.dead >= 1).await;
    assert_eq!(deliver(&h.url, "evt-after", "low_credit").await, 204);
    let got = wait_delivered(&slack, 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    assert!(got[0].to_string().contains("evt-after"));
    let stats = wait_stats(&h.relay, |s| s.pending == 0).await;
    assert_eq!((stats.dead, stats.delivered, stats.pending), (1, 1, 0));
    let dead = h
        .relay
        .spool
        .list(vslack::relay::spool::DEAD, 10)
        .await
        .unwrap();
    assert_eq!(dead[0].event.event_id, "evt-dead");
    assert!(dead[0].last_error.as_deref().unwrap().contains("410"));
    let health: Value = serde_json::from_str(&endpoint(&h, "health").await).unwrap();
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["dead_letters"], 1);
    assert_metrics(
        &endpoint(&h, "metrics").await,
        &[
            "vslack_dead_lettered_total 1",
            "vslack_dead_letters 1",
            "vslack_delivered_total 1",
        ],
    );
    stop(h.relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_sent_as_digests_within_slack_limits() {
    let slack = FakeSlack::start();
    let h = start(&slack.url(), |o| {
        o.forward.pace = Duration::from_millis(300)
    })
    .await;
    let ids: Vec<String> = (0..120).map(|i| format!("evt-backlog-{i:04}")).collect();
    for id in &ids {
        assert_eq!(deliver(&h.url, id, "instance_stopped").await, 204);
    }
    wait_stats(&h.relay, |s| s.pending == 0).await;
    let messages = slack.delivered();
    assert!(
        messages.len() < ids.len() / 2,
        "{} messages for {} events: not digested",
        messages.len(),
        ids.len()
    );
    assert!(
        carried_ids(&messages, &ids).iter().all(|&n| n == 1),
        "every id exactly once"
    );
    // Every message fitted Slack's limits the first time: none was refused (a refused digest
    // would be split and delivered anyway, hiding an oversize one).
    let r = slack.received();
    for m in &r {
        assert_eq!(m.status_returned, 200, "refused: {}", m.body);
        assert!(m.body["blocks"].as_array().unwrap().len() <= 50);
        assert!(m.body["text"].as_str().unwrap().chars().count() <= 4000);
    }
    // Paced: consecutive messages at least ~the pace apart.
    for w in r.windows(2) {
        assert!(w[1].at.duration_since(w[0].at) >= Duration::from_millis(250));
    }
    stop(h.relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_triggers_get_flat_string_variables_and_routes_apply() {
    let slack = FakeSlack::start();
    let trigger = slack.trigger_url();
    let h = start(&slack.url(), |o| {
        o.destinations.insert(
            0,
            Destination::new(
                "instance_*",
                Some(glob::Pattern::new("instance_*").unwrap()),
                Some(Secret::new(&trigger)),
                Format::for_url(&trigger).unwrap(),
            ),
        );
    })
    .await;
    assert_eq!(deliver(&h.url, "evt-inst", "instance_started").await, 204);
    assert_eq!(deliver(&h.url, "evt-bill", "low_credit").await, 204);
    wait_delivered(&slack, 2, Duration::from_secs(5)).await;
    let r = slack.received();
    let wf = r
        .iter()
        .find(|x| x.path.contains("/triggers/"))
        .expect("routed to the trigger");
    assert!(wf.body["vast_notification_message"]
        .as_str()
        .unwrap()
        .contains("evt-inst"));
    assert!(wf.body.as_object().unwrap().values().all(Value::is_string));
    let svc = r
        .iter()
        .find(|x| x.path.contains("/services/"))
        .expect("default destination");
    assert!(svc.body.to_string().contains("evt-bill"));
    stop(h.relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_slack_refuses_is_split_and_nothing_is_dead_lettered() {
    let slack = FakeSlack::start();
    let h = start(&slack.url(), |o| {
        o.forward.pace = Duration::from_millis(300)
    })
    .await;
    let ids: Vec<String> = (0..6).map(|i| format!("evt-split-{i}")).collect();
    // Slack holds the first message while the backlog arrives; the next message (a digest of
    // that backlog) is refused as a bad payload.
    slack.script(vec![Answer::Hold, Answer::Status(400, "invalid_blocks")]);
    assert_eq!(deliver(&h.url, &ids[0], "low_credit").await, 204);
    wait_arrived(&slack, 1).await;
    for id in &ids[1..] {
        assert_eq!(deliver(&h.url, id, "low_credit").await, 204);
    }
    slack.release();
    let stats = wait_stats(&h.relay, |s| s.pending == 0).await;
    assert_eq!((stats.dead, stats.pending, stats.delivered), (0, 0, 6));
    let refused = slack
        .received()
        .into_iter()
        .find(|r| r.status_returned == 400)
        .expect("a refused digest");
    assert!(
        refused.body["blocks"].as_array().unwrap().len() > 4,
        "the refused message was a digest"
    );
    assert!(carried_ids(&slack.delivered(), &ids)
        .iter()
        .all(|&n| n == 1));
    stop(h.relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_sharing_a_slack_url_share_its_pace() {
    let slack = FakeSlack::start();
    let url = slack.url();
    let h = start(&url, |o| {
        o.forward.pace = Duration::from_millis(400);
        o.destinations.insert(
            0,
            Destination::new(
                "instance_*",
                Some(glob::Pattern::new("instance_*").unwrap()),
                Some(Secret::new(&url)),
                Format::Text,
            ),
        );
    })
    .await;
    assert_eq!(
        deliver(&h.url, "evt-route-a", "instance_started").await,
        204
    );
    assert_eq!(deliver(&h.url, "evt-route-b", "low_credit").await, 204);
    let got = wait_delivered(&slack, 2, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 2);
    let r = slack.received();
    let gap = r[1].at.duration_since(r[0].at);
    assert!(
        gap >= Duration::from_millis(350),
        "two messages to one URL {gap:?} apart"
    );
    stop(h.relay).await;
}
