//! One event, several destinations: everything to Slack, `machine_*` also to PagerDuty, each
//! delivered, retried and dead-lettered on its own, through the real relay and store.

use std::time::Duration;

use vslack::relay::forward::Destination;
use vslack::relay::message::Format;
use vslack::relay::spool::{DEAD, PENDING};
use vslack::secret::Secret;

use crate::relay::{carried_ids, deliver, start, wait_stats, Harness};
use crate::support::fake_chat::{FakeChat, Script, Service};
use crate::support::fake_slack::FakeSlack;

/// Slack takes every event; PagerDuty also takes `machine_*`.
async fn slack_and_pager(slack: &FakeSlack, pager: &FakeChat) -> Harness {
    let (s, p) = (slack.url(), pager.url());
    start(&s, |o| {
        o.destinations = vec![
            Destination::new("pager", None, Some(Secret::new(&p)), Format::Pagerduty)
                .additionally(vec![glob::Pattern::new("machine_*").unwrap()]),
            Destination::new("default", None, Some(Secret::new(&s)), Format::Blocks),
        ];
    })
    .await
}

fn pager_ids(pager: &FakeChat) -> Vec<String> {
    pager
        .accepted()
        .iter()
        .map(|r| {
            r.json()["payload"]["custom_details"]["event_id"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_destination_retries_on_its_own_and_never_resends_to_the_other() {
    let slack = FakeSlack::start();
    let pager = FakeChat::start(Service::PagerDuty);
    pager.script(vec![Script::ServerError, Script::ServerError]);
    let h = slack_and_pager(&slack, &pager).await;
    assert_eq!(deliver(&h.url, "evt-machine", "machine_offline").await, 204);
    assert_eq!(deliver(&h.url, "evt-credit", "low_credit").await, 204);
    let stats = wait_stats(&h.relay, |s| s.delivered == 2).await;
    assert_eq!(
        (stats.delivered, stats.pending, stats.dead),
        (2, 0, 0),
        "{stats:?}"
    );
    let ids = ["evt-machine".to_owned(), "evt-credit".to_owned()];
    let slack_seen: Vec<_> = slack.received().iter().map(|r| r.body.clone()).collect();
    assert_eq!(
        carried_ids(&slack_seen, &ids),
        [1, 1],
        "Slack had each once: {slack_seen:?}"
    );
    // PagerDuty: two 500s, then the page; the credit event never went there.
    let statuses: Vec<u16> = pager.seen().iter().map(|s| s.status).collect();
    assert_eq!(statuses, [500, 500, 202]);
    assert_eq!(pager_ids(&pager), ["evt-machine"]);
    // Slack was not held back by PagerDuty's retries.
    let slack_at = slack.received()[0].at;
    assert!(slack_at < pager.seen()[2].at, "Slack waited for PagerDuty");
    assert!(pager.invalid().is_empty(), "{:?}", pager.invalid());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_dead_letters_for_one_destination_and_a_retry_sends_only_there() {
    let slack = FakeSlack::start();
    let pager = FakeChat::start(Service::PagerDuty);
    pager.script(vec![Script::Gone]);
    let h = slack_and_pager(&slack, &pager).await;
    assert_eq!(deliver(&h.url, "evt-m1", "machine_offline").await, 204);
    let stats = wait_stats(&h.relay, |s| s.dead == 1).await;
    assert_eq!((stats.dead, stats.pending), (1, 0), "{stats:?}");
    let dead = h.relay.spool.list(DEAD, 10).await.unwrap();
    assert_eq!(
        dead[0].event.legs.sent.len(),
        1,
        "Slack has it: {:?}",
        dead[0].event.legs
    );
    assert_eq!(dead[0].event.legs.dead.len(), 1);
    assert!(dead[0]
        .last_error
        .as_deref()
        .unwrap_or("")
        .contains("HTTP 400"));
    // Later events still reach both.
    assert_eq!(deliver(&h.url, "evt-m2", "machine_error").await, 204);
    wait_stats(&h.relay, |s| s.delivered == 1).await;
    // The dead letter retried (the key fixed): only PagerDuty is asked again.
    assert_eq!(h.relay.spool.requeue(None).await.unwrap(), 1);
    let stats = wait_stats(&h.relay, |s| s.delivered == 2).await;
    assert_eq!(
        (stats.delivered, stats.dead, stats.pending),
        (2, 0, 0),
        "{stats:?}"
    );
    let ids = ["evt-m1".to_owned(), "evt-m2".to_owned()];
    let slack_seen: Vec<_> = slack.received().iter().map(|r| r.body.clone()).collect();
    assert_eq!(
        carried_ids(&slack_seen, &ids),
        [1, 1],
        "never re-sent to Slack"
    );
    let mut paged = pager_ids(&pager);
    paged.sort();
    assert_eq!(paged, ["evt-m1", "evt-m2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_keeps_failing_never_delays_the_others() {
    let slack = FakeSlack::start();
    let pager = FakeChat::start(Service::PagerDuty);
    pager.script(vec![Script::ServerError; 200]);
    let h = slack_and_pager(&slack, &pager).await;
    for i in 0..5 {
        assert_eq!(
            deliver(&h.url, &format!("evt-{i}"), "machine_offline").await,
            204
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let ids: Vec<String> = (0..5).map(|i| format!("evt-{i}")).collect();
    let start = std::time::Instant::now();
    loop {
        let seen: Vec<_> = slack.received().iter().map(|r| r.body.clone()).collect();
        if carried_ids(&seen, &ids).iter().all(|&n| n == 1) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "Slack did not get all five: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every event still waits for PagerDuty, with Slack done: pending, Slack in its legs.
    let pending = h.relay.spool.list(PENDING, 10).await.unwrap();
    assert_eq!(pending.len(), 5);
    assert!(
        pending.iter().all(|q| q.event.legs.sent.len() == 1),
        "{pending:?}"
    );
    assert!(pager.accepted().is_empty());
}
