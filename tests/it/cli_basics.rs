//! Commands that need no Vast.ai: help, completions, config, slack, demo, send.

use crate::common::{mode, Env};

#[test]
fn committed_completions_are_up_to_date() {
    let env = Env::new();
    for (shell, file) in [
        ("bash", "vslack.bash"),
        ("zsh", "_vslack"),
        ("fish", "vslack.fish"),
        ("powershell", "_vslack.ps1"),
        ("elvish", "vslack.elv"),
    ] {
        let out = env.run(&["completions", shell]);
        assert_eq!(out.code, 0);
        let path = format!("{}/completions/{file}", env!("CARGO_MANIFEST_DIR"));
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == out.stdout,
            "{path} is out of date: run `cargo run -- completions {shell} > completions/{file}`"
        );
    }
}

#[test]
fn committed_man_pages_are_up_to_date() {
    let env = Env::new();
    let out = env.run(&["man"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.starts_with(".ie \\n(.g .ds Aq"),
        "roff: {}",
        &out.stdout[..80]
    );
    let fresh = env.dir.path().join("man");
    let out = env.run(&["man", "--dir", fresh.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    let names = |dir: &std::path::Path| {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".1"))
            .collect();
        v.sort();
        v
    };
    let committed = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/man"));
    let fix = "run `sh completions/regenerate.sh` (after `cargo build`)";
    assert_eq!(
        names(&fresh),
        names(committed),
        "man/ is out of date: {fix}"
    );
    // Every page the SUBCOMMANDS sections name exists.
    assert!(names(committed).contains(&"vslack-webhook-create.1".to_string()));
    for name in names(&fresh) {
        let a = std::fs::read_to_string(fresh.join(&name)).unwrap();
        let b = std::fs::read_to_string(committed.join(&name)).unwrap();
        assert!(a == b, "man/{name} is out of date: {fix}");
    }
    let out = env.run(&["man", "webhook", "create"]);
    assert!(
        out.stdout.contains("vslack\\-webhook\\-create"),
        "{}",
        &out.stdout[..200]
    );
}

#[test]
fn every_command_has_help_with_an_example() {
    use clap::CommandFactory;
    // Every command path in the real CLI, found by walking clap's tree.
    fn paths(cmd: &clap::Command, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let mut p = prefix.clone();
            p.push(sub.get_name().to_owned());
            out.push(p.clone());
            paths(sub, p, out);
        }
    }
    let mut all = Vec::new();
    paths(&vslack::cli::Cli::command(), Vec::new(), &mut all);
    assert!(all.len() > 25, "{all:?}");
    let env = Env::new();
    for args in all {
        let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
        a.push("--help");
        let out = env.run(&a);
        assert_eq!(out.code, 0, "{args:?}");
        assert!(
            out.stdout.contains("\nExample"),
            "{args:?} --help has no example:\n{}",
            out.stdout
        );
    }
}

#[test]
fn slack_url_is_saved_privately_and_config_show_redacts_it() {
    let env = Env::new();
    let url = "https://hooks.slack.com/services/T0001/B0001/supersecrettoken";
    env.secret("supersecrettoken");
    let out = env.run_in(&["slack", "set"], Some(&format!("{url}\n")));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(mode(&env.config_file()), 0o600);
    assert_eq!(mode(&env.config_dir()), 0o700);
    assert!(env.config_text().contains(url));
    let out = env.run(&["config", "show"]);
    assert_eq!(out.code, 0);
    assert!(out.stdout.contains("(redacted)"), "{out:?}");
    let out = env.run(&["config", "show", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["slack"]["url"], "(redacted)");
    let out = env.run(&["config", "path", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["config_file"], env.config_file().display().to_string());
    // Something that is not https is refused; clear forgets.
    let out = env.run_in(
        &["slack", "set"],
        Some("http://hooks.slack.com/services/x\n"),
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert_eq!(env.run(&["slack", "clear"]).code, 0);
    assert!(!env.config_text().contains("supersecrettoken"));
}

#[test]
fn a_config_file_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    assert_eq!(
        env.run_in(
            &["slack", "set"],
            Some("https://hooks.slack.com/services/A/B/C\n")
        )
        .code,
        0
    );
    std::fs::set_permissions(env.config_file(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = env.run(&["config", "show"]);
    assert_eq!(out.code, 6, "{out:?}");
    assert!(out.stderr.contains("chmod 600"), "{out:?}");
}

#[test]
fn demo_runs_the_pipeline_and_reports_every_outcome() {
    let mut env = Env::new();
    // Its temporary store and secret go under TMPDIR; nothing may be left there.
    let tmp = env.dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    env.set("TMPDIR", &tmp.display().to_string());
    let out = env.run(&["demo", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "demo left files in TMPDIR"
    );
    assert!(!env.config_dir().exists() && !env.data_dir().exists());
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["events_delivered_once"], true);
    assert_eq!(v["duplicates_dropped"], 1);
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.iter().all(|c| c["as_expected"] == true));
    assert!(cases.iter().any(|c| c["reason"] == "bad_signature"));
    let outcomes = |o: &str| cases.iter().filter(|c| c["outcome"] == o).count();
    assert_eq!(
        (outcomes("stored"), outcomes("duplicate")),
        (vslack::sample::SAMPLES.len(), 1),
        "{v}"
    );
    assert!(cases.iter().any(|c| c["reason"] == "stale_timestamp"));
    // Slack and a second kind: the two machine_* samples page someone.
    assert_eq!(v["pagerduty_events"], 2, "{v}");
    let human = env.run(&["demo"]);
    assert_eq!(human.code, 0);
    assert!(human.stdout.contains("All good"), "{human:?}");
    assert!(human.stdout.contains("Low credit balance"));
    assert!(
        human.stdout.contains(
            "trigger critical Machine offline (machine_offline) (dedup_key vast:machine:4321)"
        ),
        "{human:?}"
    );
}

#[test]
fn a_broken_config_file_is_reported_without_quoting_it() {
    let env = Env::new();
    env.secret("hunter2secret");
    vslack::secret::write_private(
        &env.config_file(),
        b"default_webhook = 1\napi_key = hunter2secret\n",
    )
    .unwrap();
    let out = env.run(&["config", "show"]);
    assert_eq!(out.code, 6, "{out:?}");
    assert!(
        out.stderr.contains("line 2") && out.stderr.contains("not a valid vslack config"),
        "{out:?}"
    );
}

#[test]
fn service_install_writes_a_hardened_unit_and_creates_its_directories() {
    let mut env = Env::new();
    let xdg = env.dir.path().join("xdg");
    env.set("XDG_CONFIG_HOME", &xdg.display().to_string());
    let out = env.run(&["service", "install", "--print"]);
    assert_eq!(out.code, 0);
    for line in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "Restart=on-failure",
        "serve",
    ] {
        assert!(out.stdout.contains(line), "missing {line}: {}", out.stdout);
    }
    assert!(out.stdout.contains(&format!(
        "ReadWritePaths={} {}",
        env.config_dir().display(),
        env.data_dir().display()
    )));
    // The unit's relay would not start (nothing configured): --print says so on stderr.
    assert!(out.stderr.contains("would not start"), "{out:?}");
    let exec = out
        .stdout
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .unwrap();
    assert!(exec.ends_with(" serve"), "no trailing space: {exec:?}");
    let nofile: usize = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("LimitNOFILE="))
        .expect("LimitNOFILE")
        .parse()
        .unwrap();
    assert!(
        nofile > 1024,
        "above the default --max-connections: {nofile}"
    );
    let out = env.run(&[
        "service",
        "install",
        "--print",
        "--serve-args",
        "--max-connections 9000",
    ]);
    let nofile: usize = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("LimitNOFILE="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(nofile > 9000, "{nofile}");
    let doc = out
        .stdout
        .lines()
        .find(|l| l.starts_with("Documentation="))
        .unwrap();
    // The man page only where it is installed: `systemd-analyze verify` checks each link.
    let man = std::process::Command::new("man")
        .args(["-w", "vslack"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        doc.contains("README.md") && doc.contains("man:vslack(1)") == man,
        "{doc}"
    );
    // Nothing configured: the unit's relay would exit at once, so nothing is written. This
    // shell's environment does not reach the unit, so it does not count.
    env.set(
        "SLACK_WEBHOOK_URL",
        "https://hooks.slack.com/services/T/B/envonly",
    );
    env.set("VAST_WEBHOOK_SECRET", "env-only-secret");
    env.secret("envonly");
    env.secret("env-only-secret");
    let out = env.run(&["service", "install"]);
    assert_eq!(out.code, 6, "{out:?}");
    assert!(
        out.stderr.contains("no webhook signing secret")
            && out.stderr.contains("no Slack URL")
            && out.stderr.contains("--force"),
        "{out:?}"
    );
    assert!(!xdg.join("systemd/user/vslack.service").exists());
    for bad in ["--no-such-flag", "--help"] {
        let out = env.run(&["service", "install", "--serve-args", bad]);
        assert_eq!(out.code, 2, "{bad}: {out:?}");
        assert!(out.stderr.contains("--serve-args is not valid"), "{out:?}");
    }
    // With a secret in the config and the Slack URL from a file named in the unit, it is written.
    vslack::secret::write_private(
        &env.config_file(),
        b"[webhooks.1]\nsecret = \"cfg-secret\"\n",
    )
    .unwrap();
    env.secret("cfg-secret");
    let out = env.run(&[
        "service",
        "install",
        "--serve-args",
        "--slack-url-file /etc/vslack/slack-url",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let unit = std::fs::read_to_string(xdg.join("systemd/user/vslack.service")).unwrap();
    assert!(
        unit.contains("serve --slack-url-file /etc/vslack/slack-url"),
        "{unit}"
    );
    assert!(unit.contains("ExecStart="));
    assert!(env.config_dir().is_dir() && env.data_dir().is_dir());
    assert!(out.stderr.contains("systemctl --user enable --now vslack"));
}

/// Settings that would make the relay refuse or forget everything are refused at the start,
/// and a value that is not a duration is explained, not quoted from the parser.
#[test]
fn serve_refuses_limits_that_would_break_it() {
    let env = Env::new();
    for (flag, value, says) in [
        ("--max-body", "0", "1024"),
        ("--max-connections", "0", "is not in 1.."),
        ("--signature-window", "0", "is not in 1.."),
        ("--retention", "0s", "more than zero"),
        ("--idle-timeout", "0s", "more than zero"),
        ("--idle-timeout", "banana", "such as 30s"),
    ] {
        let out = env.run(&["serve", flag, value]);
        assert_eq!(out.code, 2, "{flag} {value}: {out:?}");
        assert!(out.stderr.contains(flag), "{flag} {value}: {out:?}");
        assert!(out.stderr.contains(says), "{flag} {value}: {out:?}");
        assert!(!out.stderr.contains("at 0"), "{flag} {value}: {out:?}");
    }
    // A bad address is named with where it came from, before the missing secret and URL.
    let mut env = env;
    env.set("PORT", "abc");
    let out = env.run(&["serve"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("(from PORT)"), "{out:?}");
}
