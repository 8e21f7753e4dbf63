//! Tunnels: start a tunnel program (tmole, cloudflared, ngrok, or any command with `{port}`),
//! read the public https URL it prints (or, for ngrok, ask its local API), and stop it together
//! with anything it spawned (it runs in its own process group).
//!
//! A command is split into words like a shell would split it (quotes and backslashes), but no
//! shell runs it: no `$VAR`, `~`, pipes or globs. The program gets this process's environment
//! minus every vslack secret (see [`SCRUBBED_ENV`]): it is third-party code and needs none.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

mod spec;

use spec::scrubbed;
pub use spec::{TunnelSpec, SCRUBBED_ENV};

/// How many of the tunnel's last output lines are kept to explain an exit.
const KEPT_LINES: usize = 8;
/// A tunnel must still be running this long after printing its URL for the URL to be used:
/// a program that prints a link ("see https://dashboard…/get-started") and exits is not a
/// tunnel.
const SETTLE: Duration = Duration::from_millis(500);

pub enum TunnelEvent {
    NewUrl(String),
    Exited(String),
}

/// A running tunnel.
pub struct Tunnel {
    child: Child,
    /// The process group the tunnel runs in (its pid at spawn), signalled as a whole.
    pgid: Option<i32>,
    /// Public https URLs as the tunnel prints them (the first, and any new one later).
    urls: mpsc::Receiver<String>,
    spec: TunnelSpec,
    /// The last lines it printed (stdout and stderr), to show when it dies.
    recent: Arc<Mutex<VecDeque<String>>>,
    /// The tasks reading its output; they end at end of output.
    readers: Vec<tokio::task::JoinHandle<()>>,
}

/// Find the first public URL in a line that the spec accepts: https, or plain http to a
/// loopback address (a local forwarder, as used in tests).
fn url_in(line: &str, spec: &TunnelSpec) -> Option<String> {
    let usable = |w: &&str| {
        (w.starts_with("https://") && w.len() > "https://".len())
            || w.starts_with("http://127.0.0.1:")
            || w.starts_with("http://localhost:")
    };
    line.split(|c: char| {
        c.is_whitespace() || c == '"' || c == '\'' || c == '|' || c == '<' || c == '>'
    })
    .filter(usable)
    .map(|w| w.trim_end_matches(['.', ',', ';', ')']).to_owned())
    .find(|w| spec.url_contains.is_none_or(|c| w.contains(c)))
}

impl Tunnel {
    pub fn start(spec: &TunnelSpec, port: u16) -> Result<Tunnel> {
        let argv = spec.argv(port);
        let Some((program, args)) = argv.split_first() else {
            bail!(crate::exit::usage("the tunnel command is empty"));
        };
        let mut child = Command::new(program);
        child.args(args);
        for (name, _) in std::env::vars_os() {
            if scrubbed(&name) {
                child.env_remove(name);
            }
        }
        child
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // If vslack dies without cleaning up (SIGKILL), the tunnel gets SIGTERM from the kernel.
        // SAFETY: prctl is async-signal-safe and touches only the child being set up.
        unsafe {
            child.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = child.spawn().with_context(|| {
            format!(
                "cannot start the tunnel program `{program}` (is it installed? --tunnel-cmd is not run by a shell)"
            )
        })?;
        let (tx, urls) = mpsc::channel(8);
        let recent = Arc::new(Mutex::new(VecDeque::with_capacity(KEPT_LINES)));
        let mut readers = Vec::new();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            let spec = spec.clone();
            let recent = recent.clone();
            readers.push(tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                let mut last = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::debug!(target: "tunnel", "{line}");
                    if let Ok(mut r) = recent.lock() {
                        if r.len() == KEPT_LINES {
                            r.pop_front();
                        }
                        r.push_back(line.chars().take(300).collect());
                    }
                    if let Some((url, ready)) = &spec.fixed {
                        if last.is_none() && line.contains(ready) {
                            last = Some(url.clone());
                            let _ = tx.send(url.clone()).await;
                        }
                        continue;
                    }
                    if let Some(url) = url_in(&line, &spec) {
                        if last.as_ref() != Some(&url) {
                            last = Some(url.clone());
                            let _ = tx.send(url).await;
                        }
                    }
                }
            }));
        }
        if spec.ngrok_api {
            let tx = tx.clone();
            tokio::spawn(async move {
                for _ in 0..60 {
                    if let Ok(resp) = crate::http::get("http://127.0.0.1:4040/api/tunnels").await {
                        if let Ok(v) = resp.json::<serde_json::Value>().await {
                            let url = v["tunnels"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(|t| t["public_url"].as_str())
                                .find(|u| u.starts_with("https://"));
                            if let Some(u) = url {
                                let _ = tx.send(u.to_owned()).await;
                                return;
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            });
        }
        let pgid = child.id().map(|p| p as i32);
        Ok(Tunnel {
            child,
            pgid,
            urls,
            spec: spec.clone(),
            recent,
            readers,
        })
    }

    /// Once it has exited: its last output lines, indented, for an error message ("" when it
    /// printed nothing). Waits (briefly, in case something it started keeps the pipes open)
    /// for the readers to take in the end of its output.
    pub async fn last_lines(&mut self) -> String {
        let readers = std::mem::take(&mut self.readers);
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            for r in readers {
                let _ = r.await;
            }
        })
        .await;
        let lines = self.recent.lock().map(|r| r.clone()).unwrap_or_default();
        if lines.is_empty() {
            return String::new();
        }
        let shown: Vec<String> = lines
            .iter()
            .map(|l| format!("    {}", crate::output::printable(l)))
            .collect();
        format!("; its last output:\n{}", shown.join("\n"))
    }

    /// Wait for the first public URL, or fail if the program exits or the time runs out. A
    /// URL counts only if the program is still running [`SETTLE`] after printing it.
    pub async fn first_url(&mut self, timeout: Duration) -> Result<String> {
        let program = self.spec.program();
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let status = tokio::select! {
            biased;
            Some(url) = self.urls.recv() => {
                match tokio::time::timeout(SETTLE, self.child.wait()).await {
                    Err(_) => return Ok(url),
                    Ok(status) => bail!(
                        "{program} printed {url} and then exited ({}), so that is not a tunnel's URL; run it on its own to see why{}",
                        describe(status),
                        self.last_lines().await
                    ),
                }
            }
            s = self.child.wait() => s,
            _ = &mut deadline => bail!("{program} printed no public https URL within {}s; check that it works on its own{}", timeout.as_secs(), self.last_lines().await),
        };
        // Let the readers take in the last of its output before quoting it: a URL printed
        // just before the exit is no tunnel's either.
        if let Ok(Some(url)) =
            tokio::time::timeout(Duration::from_millis(200), self.urls.recv()).await
        {
            bail!(
                "{program} printed {url} and then exited ({}), so that is not a tunnel's URL; run it on its own to see why{}",
                describe(status),
                self.last_lines().await
            );
        }
        match status.as_ref().ok().and_then(|s| s.code()) {
            Some(127) => bail!(
                "`{program}` was not found on PATH: install it (or pick another with --tunnel / --tunnel-cmd)"
            ),
            Some(126) => bail!("`{program}` is not executable"),
            _ => bail!(
                "{program} exited ({}) before printing a public URL; run it on its own to see why{}",
                describe(status),
                self.last_lines().await
            ),
        }
    }

    /// The next thing the tunnel does: print a new URL, or exit.
    pub async fn next_event(&mut self) -> TunnelEvent {
        tokio::select! {
            Some(url) = self.urls.recv() => TunnelEvent::NewUrl(url),
            status = self.child.wait() => TunnelEvent::Exited(describe(status)),
        }
    }

    /// SIGTERM the whole process group (also what the tunnel started, even after the tunnel
    /// itself exited), then SIGKILL after a grace period.
    pub async fn stop(mut self) {
        let Some(pgid) = self.pgid else { return };
        // SAFETY: kill(2) with a negative pid signals the process group we created.
        unsafe {
            libc::kill(-pgid, libc::SIGTERM);
        }
        if tokio::time::timeout(Duration::from_secs(3), self.child.wait())
            .await
            .is_err()
        {
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
            let _ = self.child.wait().await;
        }
        // Stragglers in the group that ignored SIGTERM.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

fn describe(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tunnel_urls() {
        let tmole = TunnelSpec::named("tmole").unwrap();
        assert_eq!(
            url_in(
                "https://abc123.tunnelmole.net is forwarding to localhost:8787",
                &tmole
            )
            .as_deref(),
            Some("https://abc123.tunnelmole.net")
        );
        assert_eq!(
            url_in("http://abc.tunnelmole.net is forwarding", &tmole),
            None
        );
        let cf = TunnelSpec::named("cloudflared").unwrap();
        assert_eq!(
            url_in("see https://www.cloudflare.com/website-terms/", &cf),
            None
        );
        assert_eq!(
            url_in("|  https://quiet-fog-1234.trycloudflare.com  |", &cf).as_deref(),
            Some("https://quiet-fog-1234.trycloudflare.com")
        );
        assert!(TunnelSpec::named("nope").is_err());
        assert!(TunnelSpec::custom("echo hi").is_err());
    }

    #[tokio::test]
    async fn a_url_printed_by_a_program_that_then_exits_is_not_used() {
        let spec = TunnelSpec::custom(
            "sh -c 'echo see https://dashboard.example/get-started {port}; echo bye >&2; exit 1'",
        )
        .unwrap();
        let mut t = Tunnel::start(&spec, 8787).unwrap();
        let err = t.first_url(Duration::from_secs(10)).await.unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("and then exited"), "{msg}");
        assert!(msg.contains("    bye"), "its last lines are shown: {msg}");
        t.stop().await;
        let spec = TunnelSpec::custom("sh -c 'exit 3; echo {port}'").unwrap();
        let mut t = Tunnel::start(&spec, 8787).unwrap();
        let err = t.first_url(Duration::from_secs(10)).await.unwrap_err();
        assert!(
            err.to_string().contains("before printing a public URL"),
            "{err}"
        );
        t.stop().await;
    }

    #[test]
    fn commands_are_split_without_a_shell() {
        let spec = TunnelSpec::custom("my-tunnel --name 'a b' --port={port} $HOME").unwrap();
        assert_eq!(
            spec.argv(9),
            ["my-tunnel", "--name", "a b", "--port=9", "$HOME"]
        );
        assert!(TunnelSpec::custom("x 'unclosed {port}").is_err());
    }
}
