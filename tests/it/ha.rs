//! Several relays on one PostgreSQL store (#11), as real `vslack serve` processes: signed load
//! with redeliveries sent to both, the forwarding relay SIGKILLed mid-load and restarted; and
//! the database itself restarted under load.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::common::Env;
use crate::relay::{carried_ids, event_body, now, signature, SECRET};
use crate::relay_process::{serve, Serving};
use crate::support::fake_slack::FakeSlack;
use crate::support::postgres::Postgres;

/// POST a signed event; `None` when the relay cannot be reached (killed).
async fn post(client: &reqwest::Client, url: &str, id: &str) -> Option<u16> {
    let body = event_body(id, "instance_offline");
    let ts = now();
    let r = client
        .post(url)
        .header("Content-Type", "application/json")
        .header("X-Vast-Timestamp", ts.to_string())
        .header("X-Vast-Signature-256", signature(SECRET, ts, &body))
        .body(body)
        .send()
        .await
        .ok()?;
    Some(r.status().as_u16())
}

fn relay_env(slack: &FakeSlack, store: &str) -> Env {
    let mut env = Env::new();
    env.set("VAST_WEBHOOK_SECRET", SECRET);
    env.set("SLACK_WEBHOOK_URL", &slack.url());
    env.set("VSLACK_STORE_URL", store);
    env.secret(SECRET);
    env
}

fn start(env: &Env) -> Serving {
    serve(env, &["--pace", "1200ms"])
}

/// The pid of the relay that holds the forwarding lock now, once one does.
async fn forwarder(store: &str) -> u32 {
    let (client, conn) = tokio_postgres::connect(store, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let row = client
            .query_opt(
                "SELECT pid FROM vslack_relays WHERE forwarding AND seen_at >= $1",
                &[&(now() - 5)],
            )
            .await
            .unwrap();
        if let Some(r) = row {
            return r.get::<_, i64>(0) as u32;
        }
        assert!(
            Instant::now() < deadline,
            "no relay took the forwarding lock"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_share_a_store_and_survive_a_sigkill_mid_load() {
    let Some(pg) = Postgres::start() else {
        return; // said loudly by `start`
    };
    let store = pg.fresh_database().await;
    let slack = FakeSlack::start();
    slack.set_rate_limit(1.0);
    let (env_a, env_b) = (relay_env(&slack, &store), relay_env(&slack, &store));
    let mut a = start(&env_a);
    let mut b = start(&env_b);
    let holder = forwarder(&store).await;
    let client = vslack::http::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut acked: HashSet<String> = HashSet::new();
    let mut killed_at = None;
    for i in 0..120 {
        let id = format!("evt-ha-{i}");
        let (first, other) = if i % 2 == 0 {
            (&a.url, &b.url)
        } else {
            (&b.url, &a.url)
        };
        // A relay that cannot be reached is retried at the other, as Vast.ai retries.
        let mut ok = post(&client, first, &id).await == Some(204);
        if !ok {
            ok = post(&client, other, &id).await == Some(204);
        }
        // One in ten is redelivered, to the other relay: a duplicate, acknowledged again.
        if i % 10 == 3 {
            let again = post(&client, other, &id).await;
            assert!(matches!(again, Some(204) | None), "a redelivery: {again:?}");
        }
        if ok {
            acked.insert(id);
        }
        if i == 40 {
            // Kill the relay that forwards, mid-load, then start it again a little later.
            let victim = if a.child.id() == holder {
                &mut a
            } else {
                &mut b
            };
            assert_eq!(victim.child.id(), holder, "the forwarder is one of ours");
            victim.child.kill().unwrap();
            victim.child.wait().unwrap();
            killed_at = Some(Instant::now());
        }
        if i == 80 {
            if a.child.id() == holder {
                a = start(&env_a);
            } else {
                b = start(&env_b);
            }
        }
        // About 10 s of load, so several paced messages go out before and after the kill.
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    assert!(acked.len() >= 115, "acknowledged {} of 120", acked.len());
    let ids: Vec<String> = acked.iter().cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    while carried_ids(&slack.delivered(), &ids).contains(&0) {
        assert!(
            Instant::now() < deadline,
            "not every acknowledged event was shown"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let killed_at = killed_at.unwrap();
    let received = slack.received();
    eprintln!(
        "{} acknowledged, {} messages, first after the kill at +{:?}",
        acked.len(),
        received.len(),
        received
            .iter()
            .find(|r| r.at > killed_at)
            .map(|r| r.at - killed_at)
    );
    // The survivor took over the destination within 10 s of the kill.
    let first_after = received
        .iter()
        .find(|r| r.at > killed_at)
        .expect("a message after the kill");
    assert!(
        first_after.at - killed_at < Duration::from_secs(10),
        "took over after {:?}",
        first_after.at - killed_at
    );
    // Pacing held across the cluster: never two relays sending at once.
    let limited: Vec<_> = received
        .iter()
        .filter(|r| r.status_returned == 429)
        .collect();
    assert!(
        limited.is_empty(),
        "{} messages were rate limited",
        limited.len()
    );
    // Every acknowledged event shown exactly once, but for the one message in flight at the
    // kill (the killed relay may have posted it without recording that it did).
    let delivered = slack.delivered();
    let counts = carried_ids(&delivered, &ids);
    let twice: Vec<&String> = ids
        .iter()
        .zip(&counts)
        .filter(|(_, n)| **n > 1)
        .map(|p| p.0)
        .collect();
    assert!(
        counts.iter().all(|&n| n <= 2),
        "shown more than twice: {counts:?}"
    );
    if !twice.is_empty() {
        let in_one = delivered.iter().any(|m| {
            carried_ids(
                std::slice::from_ref(m),
                &twice.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
            .iter()
            .all(|&n| n == 1)
        });
        assert!(in_one, "repeats beyond one in-flight message: {twice:?}");
    }
    let by_pid: HashMap<u32, &Serving> = [(a.child.id(), &a), (b.child.id(), &b)].into();
    assert_eq!(by_pid.len(), 2);
    a.assert_logs_free_of(&[SECRET]);
    b.assert_logs_free_of(&[SECRET]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_under_load_refuses_with_503_and_recovers_by_itself() {
    let Some(pg) = Postgres::start() else {
        return; // said loudly by `start`
    };
    if !pg.is_own() {
        eprintln!(
            "\n*** SKIPPED: VSLACK_TEST_DATABASE_URL is a server this test cannot restart ***\n"
        );
        return;
    }
    let store = pg.fresh_database().await;
    let slack = FakeSlack::start();
    let env = relay_env(&slack, &store);
    let relay = serve(&env, &[]);
    forwarder(&store).await;
    let client = vslack::http::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut acked = Vec::new();
    let mut refused_while_down = 0;
    for i in 0..60 {
        if i == 20 {
            pg.stop();
        }
        if i == 40 {
            pg.start_again();
        }
        let id = format!("evt-pg-{i}");
        let status = post(&client, &relay.url, &id).await;
        match status {
            Some(204) => acked.push(id),
            Some(503) => {
                assert!((20..40).contains(&i), "503 while the database was up ({i})");
                refused_while_down += 1;
            }
            other => panic!("event {i}: {other:?}"),
        }
        if (20..40).contains(&i) {
            assert_ne!(
                status,
                Some(204),
                "acknowledged while the database was down ({i})"
            );
        }
    }
    assert_eq!(
        refused_while_down, 20,
        "every delivery refused while the database was down"
    );
    // After the restart the relay stores again (the last 20 were acknowledged) with no restart.
    assert_eq!(acked.len(), 40);
    let deadline = Instant::now() + Duration::from_secs(60);
    while carried_ids(&slack.delivered(), &acked).contains(&0) {
        assert!(
            Instant::now() < deadline,
            "not every acknowledged event was shown"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(carried_ids(&slack.delivered(), &acked)
        .iter()
        .all(|&n| n == 1));
    assert!(
        relay.logged("lost the store connection"),
        "the relay said it lost the database"
    );
    let status = env.run(&["status", "--json"]);
    assert!(
        status.stdout.contains("postgres://127.0.0.1:"),
        "{}",
        status.stdout
    );
    assert!(
        !status.stdout.contains("vslack@"),
        "the user is not shown: {}",
        status.stdout
    );
}

/// Two relays, the heartbeat on in both, and Vast.ai's test event always reaching the one
/// that does not forward (as behind round-robin DNS): the forwarding relay runs the heartbeat,
/// recognises its test event in the shared store, never posts it, and raises no alarm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_is_recognised_when_its_test_event_reaches_another_relay() {
    use crate::common::API_KEY;
    use crate::never_silent::messages;
    use crate::support::fake_vast::FakeVast;
    let Some(pg) = Postgres::start() else {
        return; // said loudly by `start`
    };
    let store = pg.fresh_database().await;
    let vast = FakeVast::start(API_KEY);
    let slack = FakeSlack::start();
    let port_b = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url_b = format!("http://127.0.0.1:{port_b}/");
    let (id, secret) = vast.insert_webhook("vslack", &url_b, &["client:low_credit"]);
    let env = |url: &str| {
        let mut env = Env::with_vast(&vast.url());
        env.set("VSLACK_STORE_URL", &store);
        env.secret(&secret);
        let text = format!(
            "[slack]\nurl = \"{}\"\n\n[relay]\npublic_url = \"{url}\"\n\n[webhooks.{id}]\nsecret = \"{secret}\"\nevents = [\"client:low_credit\"]\n",
            slack.url()
        );
        std::fs::create_dir_all(env.config_dir()).unwrap();
        std::fs::write(env.config_file(), text).unwrap();
        std::fs::set_permissions(
            env.config_file(),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        env
    };
    let beat = ["--heartbeat", "1s", "--heartbeat-timeout", "3s"];
    let (env_a, env_b) = (env(&url_b), env(&url_b));
    let a = serve(&env_a, &beat);
    assert_eq!(
        forwarder(&store).await,
        a.child.id(),
        "the first relay forwards"
    );
    let b = crate::relay_process::serve_on(&env_b, &format!("127.0.0.1:{port_b}"), &beat);
    // Several beats, every test event delivered to B, recognised by A.
    let deadline = Instant::now() + Duration::from_secs(20);
    while a
        .logs
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("heartbeat: the test event arrived"))
        .count()
        < 3
    {
        assert!(
            Instant::now() < deadline,
            "the heartbeat did not succeed: {:#?}",
            a.logs.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        b.logged("stored"),
        "the test events reached the standby relay"
    );
    assert!(
        !b.logged("heartbeat: the test event arrived"),
        "only the forwarding relay beats"
    );
    assert!(a.logged("heartbeat test event recorded (not posted)"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        messages(&slack, "webhook_test").is_empty() && messages(&slack, "vslack-alert:").is_empty(),
        "a test event or an alarm was posted: {:#?}",
        slack.delivered()
    );
}
