//! Choosing and moving the store from the command line: `--store` refuses a password in argv,
//! `store set` keeps the URL as a secret, `store migrate` copies a SQLite store (pending,
//! dead letters, dedup history) into PostgreSQL, and a relay on it delivers what was pending
//! once and still recognises what was delivered before.

use std::time::{Duration, Instant};

use vslack::relay::spool::{Spool, SpoolOptions, PENDING};

use crate::common::{mode, Env};
use crate::relay::{event_body, now, signature, SECRET};
use crate::relay_process::serve;
use crate::support::fake_slack::FakeSlack;
use crate::support::postgres::Postgres;

#[test]
fn a_store_url_with_a_password_is_refused_on_the_command_line() {
    let mut env = Env::new();
    env.set("VAST_WEBHOOK_SECRET", SECRET);
    env.set("SLACK_WEBHOOK_URL", "http://127.0.0.1:1/services/T/B/x");
    env.secret("pw-in-argv");
    let out = env.run(&["serve", "--store", "postgres://u:pw-in-argv@127.0.0.1:1/db"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("VSLACK_STORE_URL"), "{}", out.stderr);
    let out = env.run(&["serve", "--store", "mysql://127.0.0.1/db"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("`sqlite` or a postgres:// URL"),
        "{}",
        out.stderr
    );
    // Nothing to migrate into yet.
    let out = env.run(&["store", "migrate"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("vslack store set"), "{}", out.stderr);
    // An unreachable server is named (host and port only) with what to check.
    env.set("VSLACK_STORE_URL", "postgres://u:pw-in-argv@127.0.0.1:1/db");
    let out = env.run(&["status"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("postgres://127.0.0.1:1/db"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("Connection refused"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_copies_the_sqlite_store_and_a_relay_on_postgres_carries_on() {
    let Some(pg) = Postgres::start() else {
        return; // said loudly by `start`
    };
    // The test server trusts loopback, so this password is accepted and must never show.
    let url = pg
        .fresh_database()
        .await
        .replace("vslack@", "vslack:pw-Secret-1@");
    let slack = FakeSlack::start();
    let mut env = Env::new();
    env.set("VAST_WEBHOOK_SECRET", SECRET);
    env.set("SLACK_WEBHOOK_URL", &slack.url());
    env.secret("pw-Secret-1");
    // A SQLite store holding one event of each kind.
    let file = env.data_dir().join("spool.sqlite3");
    {
        let s = Spool::open(&file, &SpoolOptions::default()).unwrap();
        for id in ["evt-done", "evt-dead", "evt-waiting"] {
            let ev = vslack::relay::event::Event::parse(&event_body(id, "low_credit"), None, now())
                .unwrap();
            s.insert(ev, vec![]).await.unwrap();
        }
        let rows = s.list(PENDING, 10).await.unwrap();
        s.mark_delivered(vec![rows[0].seq], now()).await.unwrap();
        s.mark_dead(vec![rows[1].seq], "HTTP 404 no_service".into(), now())
            .await
            .unwrap();
    }
    let out = env.run_in(&["store", "set"], Some(&url));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("vslack store migrate"),
        "{}",
        out.stdout
    );
    assert!(env.config_text().contains("[store]"));
    assert_eq!(mode(&env.config_file()), 0o600);
    let out = env.run(&["store", "migrate", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let copied = &v["copied"];
    assert_eq!(
        (
            copied["pending"].as_u64(),
            copied["dead"].as_u64(),
            copied["delivered"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{v}"
    );
    assert!(
        !file.exists(),
        "the SQLite file is moved aside, never forwarded again"
    );
    assert!(std::path::Path::new(v["sqlite_kept_at"].as_str().unwrap()).exists());
    let out = env.run(&["store", "migrate"]);
    assert_eq!(out.code, 4, "nothing left to migrate: {out:?}");
    // queue and store check read the database.
    let out = env.run(&["queue", "--json"]);
    let q: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(q["pending"][0]["event"]["event_id"], "evt-waiting", "{q}");
    assert_eq!(q["dead"][0]["event"]["event_id"], "evt-dead", "{q}");
    let out = env.run(&["store", "check", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("\"schema\": 1"), "{}", out.stdout);
    // A relay on the database delivers the pending event once, and a redelivery of the event
    // delivered before the migration is still a duplicate.
    let relay = serve(&env, &[]);
    let got = slack.wait_for_delivered(1, Duration::from_secs(15));
    assert_eq!(got.len(), 1);
    assert!(got[0].to_string().contains("evt-waiting"));
    let body = event_body("evt-done", "low_credit");
    let ts = now();
    let sig = signature(SECRET, ts, &body);
    assert_eq!(
        crate::relay::post(&relay.url, &body, Some(ts), Some(sig))
            .await
            .0,
        204
    );
    let start = Instant::now();
    while !relay.logged("duplicate delivery, already stored") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the old id was not recognised"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = env.run(&["doctor"]);
    assert!(
        out.stdout.contains("schema v1, 1 relay(s) active"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("(forwarding)"), "{}", out.stdout);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(slack.delivered().len(), 1, "nothing else was posted");
    relay.assert_logs_free_of(&["pw-Secret-1"]);
}
