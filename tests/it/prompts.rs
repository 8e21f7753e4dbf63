//! Prompts through a real terminal (a pty): a yes/no answer needs Enter, Ctrl-C restores the
//! terminal and exits 130, and a wrong answer is asked for again.

use std::time::Duration;

use crate::common::{Env, API_KEY};
use crate::support::fake_slack::FakeSlack;
use crate::support::fake_vast::FakeVast;

/// dialoguer switches the terminal to raw mode just after drawing; a key sent earlier would
/// wait in the line buffer.
fn settle() {
    std::thread::sleep(Duration::from_millis(300));
}

fn pty(env: &Env, args: &[&str]) -> rexpect::session::PtySession {
    let mut cmd = env.command(args);
    cmd.env("TERM", "xterm");
    rexpect::session::spawn_command(cmd, Some(20_000)).expect("spawn in a pty")
}

fn exit_code(p: &mut rexpect::session::PtySession) -> i32 {
    match p.process().wait().unwrap() {
        rexpect::process::WaitStatus::Exited(_, c) => c,
        other => panic!("not a normal exit: {other:?}"),
    }
}

#[test]
fn y_then_enter_answers_one_question_not_two() {
    let vast = FakeVast::start(API_KEY);
    let slack = FakeSlack::start();
    let env = Env::with_vast(&vast.url());
    env.secret(slack.url().rsplit('/').next().unwrap());
    let out = env.run_in(&["slack", "set"], Some(&slack.url()));
    assert_eq!(out.code, 0, "{out:?}");
    let mut p = pty(&env, &["setup"]);
    p.exp_string("Keep the saved Slack URL").unwrap();
    settle();
    p.send("y\r").unwrap();
    p.flush().unwrap();
    p.exp_string("Post a \"vslack is connected\" message")
        .unwrap();
    settle();
    assert!(
        slack.requests().is_empty(),
        "the Enter after `y` answered the next question too"
    );
    p.send("n\r").unwrap();
    p.flush().unwrap();
    p.exp_string("Events to send to Slack").unwrap();
    settle();
    // Ctrl-C at a raw-mode prompt: cursor shown again, exit 130.
    p.send_control('c').unwrap();
    let rest = p.exp_eof().unwrap();
    assert!(rest.contains("\x1b[?25h"), "cursor restored: {rest:?}");
    assert_eq!(exit_code(&mut p), 130);
    assert!(slack.requests().is_empty());
}

#[test]
fn ctrl_c_at_a_hidden_prompt_restores_the_terminal_and_exits_130() {
    let vast = FakeVast::start(API_KEY);
    let mut env = Env::with_vast(&vast.url());
    env.unset("VAST_API_KEY");
    let mut p = pty(&env, &["setup"]);
    p.exp_string("Vast.ai API key").unwrap();
    settle();
    p.send_control('c').unwrap();
    let rest = p.exp_eof().unwrap();
    assert!(rest.contains("\x1b[?25h"), "cursor restored: {rest:?}");
    assert_eq!(exit_code(&mut p), 130);
}

#[test]
fn a_rejected_key_or_malformed_url_is_asked_for_again() {
    let vast = FakeVast::start(API_KEY);
    let mut env = Env::with_vast(&vast.url());
    env.unset("VAST_API_KEY");
    let mut p = pty(&env, &["setup"]);
    p.exp_string("Vast.ai API key").unwrap();
    settle();
    p.send_line("not-the-key").unwrap();
    p.exp_string("rejected the API key").unwrap();
    p.exp_string("Please try again (2 tries left)").unwrap();
    p.exp_string("Vast.ai API key").unwrap();
    settle();
    p.send_line(API_KEY).unwrap();
    p.exp_string("API key: accepted and saved").unwrap();
    p.exp_string("Slack incoming webhook URL").unwrap();
    settle();
    p.send_line("hooks.slack.com/services/no-scheme").unwrap();
    p.exp_string("Please try again (2 tries left)").unwrap();
    p.exp_string("Slack incoming webhook URL").unwrap();
    settle();
    p.send_line("https://hooks.slack.com/services/T1/B1/again")
        .unwrap();
    p.exp_string("Slack URL: saved").unwrap();
    settle();
    p.send_control('c').unwrap();
    p.exp_eof().unwrap();
    assert!(env.config_text().contains("T1/B1/again"));
}
