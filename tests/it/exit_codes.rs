//! Every exit code in the README's table, produced by the real binary, and `--json` errors:
//! one object on stderr with the same code. `--json` output keeps one key order (sorted).

use crate::common::{Env, API_KEY};
use crate::support::fake_vast::FakeVast;

/// The codes listed in README.md's "Exit codes" table.
fn readme_codes() -> Vec<i32> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table = readme.split("## Exit codes").nth(1).unwrap();
    table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| {
            l.trim_start_matches('|')
                .split('|')
                .next()?
                .trim()
                .parse()
                .ok()
        })
        .collect()
}

/// Whether every object's keys appear in sorted order in the raw JSON text.
fn keys_sorted(text: &str) -> Result<(), String> {
    let mut stack: Vec<Option<String>> = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' => stack.push(None),
            '[' => stack.push(None),
            '}' | ']' => {
                stack.pop();
            }
            '"' => {
                let mut s = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            s.push(chars.next().unwrap_or_default());
                        }
                        '"' => break,
                        c => s.push(c),
                    }
                }
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if chars.peek() == Some(&':') {
                    let last = stack.last_mut().ok_or("key outside an object")?;
                    if let Some(prev) = last.as_ref() {
                        if *prev > s {
                            return Err(format!("{prev:?} before {s:?}"));
                        }
                    }
                    *last = Some(s);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[test]
fn every_exit_code_in_the_readme_is_what_the_binary_returns() {
    let vast = FakeVast::start(API_KEY);
    let mut env = Env::with_vast(&vast.url());
    env.set("VAST_WEBHOOK_SECRET", "exit-code-secret");
    env.secret("exit-code-secret");
    let mut unreachable = Env::with_vast("http://127.0.0.1:1");
    unreachable.set("VSLACK_RETRY_BASE_MS", "1");
    let corrupt = Env::with_vast(&vast.url());
    vslack::secret::write_private(&corrupt.config_file(), b"default_webhook = [\n").unwrap();
    let cases: Vec<(i32, &Env, Vec<&str>)> = vec![
        (0, &env, vec!["config", "path"]),
        (
            1,
            &env,
            vec![
                "send",
                "--to",
                "http://127.0.0.1:1/",
                "--type",
                "low_credit",
            ],
        ),
        (
            2,
            &env,
            vec![
                "webhook",
                "create",
                "--url",
                "http://relay.example.com/",
                "--event",
                "low_credit",
            ],
        ),
        (
            3,
            &env,
            vec!["--api-key-file", "/nonexistent/key", "webhook", "list"],
        ),
        (4, &env, vec!["webhook", "show", "99"]),
        (5, &unreachable, vec!["webhook", "list"]),
        (6, &corrupt, vec!["webhook", "list"]),
    ];
    let mut seen: Vec<i32> = cases.iter().map(|c| c.0).collect();
    // 130 (Ctrl-C at a prompt) is produced through a terminal in `prompts`.
    seen.push(130);
    assert_eq!(
        readme_codes(),
        seen,
        "the README's table and the codes tested differ"
    );
    for (code, e, args) in &cases {
        let out = e.run(args);
        assert_eq!(out.code, *code, "{args:?}: {out:?}");
        let mut json_args = vec!["--json"];
        json_args.extend(args.iter());
        let out = e.run(&json_args);
        assert_eq!(out.code, *code, "{json_args:?}: {out:?}");
        if *code != 0 && *code != 1 {
            let v: serde_json::Value =
                serde_json::from_str(out.stderr.trim()).unwrap_or_else(|err| {
                    panic!("{json_args:?}: stderr is not one JSON object ({err}): {out:?}")
                });
            assert_eq!(v["error"]["exit_code"], *code, "{out:?}");
            assert!(v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()));
        }
    }
    // A usage error from the parser itself is JSON too.
    let out = env.run(&["--json", "webhook", "show", "not-a-number"]);
    assert_eq!(out.code, 2, "{out:?}");
    let v: serde_json::Value = serde_json::from_str(out.stderr.trim()).unwrap();
    assert_eq!(v["error"]["exit_code"], 2);
}

#[test]
fn json_output_has_sorted_keys_everywhere() {
    let vast = FakeVast::start(API_KEY);
    let env = Env::with_vast(&vast.url());
    let out = env.run(&[
        "webhook",
        "create",
        "--url",
        "https://relay.example.com/",
        "--event",
        "low_credit",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    for w in vast.webhooks() {
        env.secret(w["webhook_secret"].as_str().unwrap());
    }
    for args in [
        &["config", "path"][..],
        &["webhook", "list"],
        &["webhook", "show"],
        &["webhook", "default", "1"],
        &["webhook", "types"],
        &["status"],
        &["doctor"],
        &["slack", "clear"],
        &["service", "install", "--print", "--force"],
    ] {
        let mut a = vec!["--json"];
        a.extend(args);
        let out = env.run(&a);
        assert!(out.code == 0 || args == ["doctor"], "{a:?}: {out:?}");
        serde_json::from_str::<serde_json::Value>(&out.stdout)
            .unwrap_or_else(|e| panic!("{a:?} printed no JSON ({e}): {out:?}"));
        keys_sorted(&out.stdout).unwrap_or_else(|e| panic!("{a:?}: {e}: {}", out.stdout));
    }
}
