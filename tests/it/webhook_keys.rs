//! `vslack login` and the webhook commands' failures through the real binary: where the API
//! key is found, advice for a rejected one, exit codes, and concurrent commands that never
//! lose a stored secret.

use crate::common::{mode, Env, API_KEY};
use crate::support::fake_vast::FakeVast;

use crate::webhook::*;

#[test]
fn errors_map_to_exit_codes_with_actionable_messages() {
    let (vast, mut env) = vast();
    let out = env.run(&["webhook", "show", "42"]);
    assert_eq!(out.code, 4, "{out:?}");
    assert!(out
        .stderr
        .contains("webhook 42 not found; run `vslack webhook list`"));
    let out = env.run(&["webhook", "delete", "42", "--yes"]);
    assert_eq!(out.code, 4, "{out:?}");
    // 400 carries Vast.ai's own message.
    vast.fail_next(
        400,
        r#"{"success":false,"error":"bad_request","msg":"webhook_url must be public"}"#,
        1,
    );
    let out = env.run(&["webhook", "list"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("webhook_url must be public"), "{out:?}");
    // 429 then 200: retried, succeeds.
    vast.fail_next(429, "Too Many Requests", 1);
    let before = vast.count("GET", "/api/v0/webhooks/");
    let out = env.run(&["webhook", "list", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(vast.count("GET", "/api/v0/webhooks/") - before, 2);
    // 429 three times: gives up and says so.
    vast.fail_next(429, "Too Many Requests", 3);
    let out = env.run(&["webhook", "list"]);
    assert_eq!(out.code, 5, "{out:?}");
    assert!(out.stderr.contains("rate limiting"), "{out:?}");
    let out = env.run(&["webhook", "types", "--json"]);
    assert_eq!(out.code, 0);
    assert!(json(&out)
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["key"] == "client:low_credit"));
    // Wrong key: exit 3, says where the key came from.
    env.set("VAST_API_KEY", "wrong-key");
    let out = env.run(&["webhook", "list"]);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr.contains("rejected") && out.stderr.contains("VAST_API_KEY"),
        "{out:?}"
    );
    // Nothing listening (port 1 is never handed out as an ephemeral port): exit 5 naming
    // the host.
    env.set("VAST_URL", "http://127.0.0.1:1");
    env.set("VAST_API_KEY", API_KEY);
    let out = env.run(&["webhook", "list"]);
    assert_eq!(out.code, 5, "{out:?}");
    assert!(
        out.stderr.contains("cannot reach Vast.ai at 127.0.0.1"),
        "{out:?}"
    );
}

#[test]
fn api_key_lookup_order_and_login() {
    let vast = FakeVast::start(API_KEY);
    let mut env = Env::new();
    env.set("VAST_URL", &vast.url());
    // Nothing anywhere: exit 3 listing every place looked at.
    let out = env.run(&["webhook", "list"]);
    assert_eq!(out.code, 3, "{out:?}");
    for place in [
        "VAST_API_KEY",
        "vslack login",
        ".config/vastai/vast_api_key",
        ".vast_api_key",
    ] {
        assert!(
            out.stderr.contains(place),
            "should mention {place}: {out:?}"
        );
    }
    // The legacy ~/.vast_api_key (trimmed) works.
    std::fs::write(env.home().join(".vast_api_key"), format!("  {API_KEY}\n")).unwrap();
    assert_eq!(env.run(&["webhook", "list"]).code, 0);
    // ~/.config/vastai/vast_api_key wins over the legacy file.
    std::fs::create_dir_all(env.home().join(".config/vastai")).unwrap();
    std::fs::write(
        env.home().join(".config/vastai/vast_api_key"),
        "bad-from-config\n",
    )
    .unwrap();
    env.secret("bad-from-config");
    let out = env.run(&["webhook", "list"]);
    assert_eq!(out.code, 3);
    assert!(
        out.stderr.contains(".config/vastai/vast_api_key"),
        "{out:?}"
    );
    // $XDG_CONFIG_HOME/vastai/vast_api_key wins over ~/.config.
    let xdg = env.dir.path().join("xdg");
    std::fs::create_dir_all(xdg.join("vastai")).unwrap();
    std::fs::write(xdg.join("vastai/vast_api_key"), API_KEY).unwrap();
    env.set("XDG_CONFIG_HOME", &xdg.display().to_string());
    assert_eq!(env.run(&["webhook", "list"]).code, 0);
    // login: a rejected key is not saved; an accepted one is, and beats the vastai files.
    let out = env.run_in(&["login"], Some("wrong-key\n"));
    assert_eq!(out.code, 3, "{out:?}");
    assert!(!env.config_file().exists() || !env.config_text().contains("wrong-key"));
    std::fs::write(xdg.join("vastai/vast_api_key"), "bad-from-xdg").unwrap();
    env.secret("bad-from-xdg");
    let out = env.run_in(&["login"], Some(&format!("{API_KEY}\n")));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(mode(&env.config_file()), 0o600);
    assert_eq!(
        env.run(&["webhook", "list"]).code,
        0,
        "saved key beats the vastai files"
    );
    // VAST_API_KEY beats the saved key.
    env.set("VAST_API_KEY", "bad-from-env");
    env.secret("bad-from-env");
    let out = env.run(&["webhook", "list"]);
    assert_eq!(out.code, 3);
    assert!(out.stderr.contains("VAST_API_KEY"));
    // --api-key-file beats everything.
    let f = env.dir.path().join("key.txt");
    std::fs::write(&f, API_KEY).unwrap();
    assert_eq!(
        env.run(&[
            "webhook",
            "list",
            "--api-key-file",
            &f.display().to_string()
        ])
        .code,
        0
    );
    // logout forgets the saved key.
    env.unset("VAST_API_KEY");
    assert_eq!(env.run(&["logout"]).code, 0);
    assert!(!env.config_text().contains(API_KEY));
    let out = env.run(&["webhook", "list"]);
    assert_eq!(out.code, 3, "back to the (bad) vastai file: {out:?}");
}

#[test]
fn concurrent_commands_never_lose_a_stored_secret() {
    let (vast, env) = vast();
    // Three webhooks have their secrets rotated while `setup` creates (first round) and then
    // reuses (later rounds) a fourth: every command's write must survive the others'.
    let ids: Vec<i64> = (0..3)
        .map(|i| {
            vast.insert_webhook(
                &format!("w{i}"),
                "https://a.example.com/",
                &["client:low_credit"],
            )
            .0
        })
        .collect();
    let slack_arg = env.slack_url_file("https://hooks.slack.com/services/T1/B1/racesecret");
    let setup = [
        "setup",
        "--no-input",
        "--slack-url-file",
        &slack_arg,
        "--event",
        "low_credit",
        "--public-url",
        "https://relay.example.com",
    ];
    for _round in 0..3 {
        let children: Vec<_> = ids
            .iter()
            .map(|id| vec!["webhook".to_owned(), "rotate-secret".into(), id.to_string()])
            .chain(std::iter::once(setup.map(str::to_owned).to_vec()))
            .map(|args| {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                env.command(&args)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success());
        }
    }
    let webhooks = vast.webhooks();
    assert_eq!(
        webhooks.len(),
        4,
        "setup created its webhook once, then reused it"
    );
    let cfg: toml::Value = toml::from_str(&env.config_text()).unwrap();
    let created = webhooks.iter().map(|w| w["id"].as_i64().unwrap()).max();
    assert_eq!(
        cfg["default_webhook"].as_integer(),
        created,
        "setup's default was lost"
    );
    assert_eq!(
        cfg["slack"]["url"].as_str(),
        Some("https://hooks.slack.com/services/T1/B1/racesecret")
    );
    for w in webhooks {
        let id = w["id"].as_i64().unwrap().to_string();
        assert_eq!(
            cfg["webhooks"][&id]["secret"].as_str(),
            w["webhook_secret"].as_str(),
            "webhook {id}'s current secret was lost"
        );
    }
}

#[test]
fn a_rejected_key_gets_advice_for_where_it_came_from() {
    let (vast, mut env) = vast();
    env.set("VAST_API_KEY", "revoked-key-000");
    env.secret("revoked-key-000");
    let out = env.run(&["webhook", "list"]);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr.contains("VAST_API_KEY") && out.stderr.contains("unset VAST_API_KEY"),
        "{out:?}"
    );
    assert!(!out.stderr.contains("run `vslack login`"), "{out:?}");
    env.unset("VAST_API_KEY");
    let out = env.run_in(&["login"], Some("revoked-key-000\n"));
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.contains("from standard input"), "{out:?}");
    // setup --api-key-file saves the key, so the next command (without the flag) works.
    let key = env.dir.path().join("key.txt");
    std::fs::write(&key, format!("{API_KEY}\n")).unwrap();
    let slack = env.slack_url_file("https://hooks.slack.com/services/T/B/setupfile");
    let out = env.setup_tunnel(&slack, &["--api-key-file", key.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("saved in"), "{out:?}");
    let out = env.run(&["webhook", "list"]);
    assert_eq!(out.code, 0, "{out:?}");
    drop(vast);
}
