//! Tunnels: start a tunnel program (tmole, cloudflared, ngrok, or any command with `{port}`),
//! read the public https URL it prints (or, for ngrok, ask its local API), and stop it together
//! with anything it spawned (it runs in its own process group).

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// How to start a tunnel and recognise its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelSpec {
    /// Shell command; `{port}` is replaced by the relay's port.
    pub command: String,
    /// Only URLs containing this are the tunnel's (cloudflared also prints links to its docs).
    pub url_contains: Option<&'static str>,
    /// ngrok: ask its local API instead of reading output.
    pub ngrok_api: bool,
}

impl TunnelSpec {
    /// `tmole`, `cloudflared` or `ngrok`; anything else is a usage error.
    pub fn named(name: &str) -> Result<TunnelSpec> {
        Ok(match name {
            "tmole" | "tunnelmole" => TunnelSpec { command: "tmole {port}".into(), url_contains: None, ngrok_api: false },
            "cloudflared" => TunnelSpec {
                command: "cloudflared tunnel --no-autoupdate --url http://127.0.0.1:{port}".into(),
                url_contains: Some("trycloudflare.com"),
                ngrok_api: false,
            },
            "ngrok" => TunnelSpec { command: "ngrok http {port} --log stdout".into(), url_contains: Some("ngrok"), ngrok_api: true },
            other => bail!(crate::exit::UsageError(format!(
                "unknown tunnel {other:?}: use tmole, cloudflared or ngrok, or --tunnel-cmd '<command with {{port}}>'"
            ))),
        })
    }

    pub fn custom(command: &str) -> Result<TunnelSpec> {
        if !command.contains("{port}") {
            bail!(crate::exit::UsageError(
                "--tunnel-cmd must contain {port}, e.g. 'tmole {port}'".into()
            ));
        }
        Ok(TunnelSpec {
            command: command.into(),
            url_contains: None,
            ngrok_api: false,
        })
    }

    /// A tunnel as saved in the config: a command if it holds `{port}`, else a tunnel's name.
    pub fn from_config(saved: &str) -> Result<TunnelSpec> {
        if saved.contains("{port}") {
            TunnelSpec::custom(saved)
        } else {
            TunnelSpec::named(saved)
        }
    }

    /// The first word of the command, for messages.
    pub fn program(&self) -> &str {
        self.command.split_whitespace().next().unwrap_or("tunnel")
    }

    /// For tmole, cloudflared and ngrok: fail before anything starts when the program is not
    /// on PATH, saying how to get it. A `--tunnel-cmd` is left to the shell that runs it (it
    /// may start with `~`, `$VAR`, a quoted path or a builtin); if its program is missing, the
    /// shell's exit status 127 is reported as "not found on PATH" once it runs.
    pub fn check_installed(&self) -> Result<()> {
        let program = self.program();
        let how = match program {
            "tmole" => "install Tunnelmole with `npm install -g tunnelmole` (see https://tunnelmole.com)",
            "cloudflared" => "install cloudflared (see https://developers.cloudflare.com/cloudflare-one/connections/connect-networks/downloads/)",
            "ngrok" => "install ngrok and add your authtoken (see https://ngrok.com/download)",
            _ => return Ok(()),
        };
        if find_program(program) {
            return Ok(());
        }
        bail!(crate::exit::SetupError(format!(
            "the tunnel program `{program}` was not found on PATH: {how}; or pick another with --tunnel / --tunnel-cmd, or use --public-url"
        )))
    }
}

/// Whether an executable file named `program` is on PATH.
fn find_program(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| executable(&dir.join(program)))
    })
}

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
        let command = spec.command.replace("{port}", &port.to_string());
        let mut child = Command::new("sh");
        child
            .arg("-c")
            .arg(format!("exec {command}"))
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
        let mut child = child
            .spawn()
            .with_context(|| format!("cannot start the tunnel program `{}`", spec.program()))?;
        let (tx, urls) = mpsc::channel(8);
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
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                let mut last = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::debug!(target: "tunnel", "{line}");
                    if let Some(url) = url_in(&line, &spec) {
                        if last.as_ref() != Some(&url) {
                            last = Some(url.clone());
                            let _ = tx.send(url).await;
                        }
                    }
                }
            });
        }
        if spec.ngrok_api {
            let tx = tx.clone();
            tokio::spawn(async move {
                for _ in 0..60 {
                    if let Ok(resp) = reqwest::get("http://127.0.0.1:4040/api/tunnels").await {
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
        })
    }

    /// Wait for the first public URL, or fail if the program exits or the time runs out.
    pub async fn first_url(&mut self, timeout: Duration) -> Result<String> {
        let program = self.spec.program().to_owned();
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        tokio::select! {
            biased;
            Some(url) = self.urls.recv() => return Ok(url),
            _ = self.child.wait() => {}
            _ = &mut deadline => bail!("{program} printed no public https URL within {}s; check that it works on its own", timeout.as_secs()),
        }
        // It exited. A URL it printed just before may still be in its output pipe: the
        // readers finish at end of output, so wait for that (bounded, in case something it
        // started keeps the pipe open) and take the URL rather than claim it printed none. The
        // caller then sees the exit and restarts the tunnel.
        if let Ok(Some(url)) = tokio::time::timeout(Duration::from_secs(5), self.urls.recv()).await
        {
            return Ok(url);
        }
        // The exit status says why.
        let status = self.child.wait().await.ok();
        match status.and_then(|s| s.code()) {
            Some(127) => bail!(
                "`{program}` was not found on PATH: install it (or pick another with --tunnel / --tunnel-cmd)"
            ),
            Some(126) => bail!("`{program}` is not executable"),
            _ => bail!(
                "{program} exited ({}) before printing a public URL; run it on its own to see why",
                status.map(|s| s.to_string()).unwrap_or_else(|| "unknown status".into())
            ),
        }
    }

    /// The next thing the tunnel does: print a new URL, or exit.
    pub async fn next_event(&mut self) -> TunnelEvent {
        tokio::select! {
            Some(url) = self.urls.recv() => TunnelEvent::NewUrl(url),
            status = self.child.wait() => TunnelEvent::Exited(match status {
                Ok(s) => s.to_string(),
                Err(e) => e.to_string(),
            }),
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
    async fn a_url_printed_just_before_exiting_is_still_reported() {
        // The exit and the URL are ready together; the URL must win over "exited before
        // printing a public URL".
        for _ in 0..20 {
            let spec =
                TunnelSpec::custom("sh -c 'echo https://t.example.com {port}; exit 1'").unwrap();
            let mut t = Tunnel::start(&spec, 8787).unwrap();
            let url = t.first_url(Duration::from_secs(10)).await.unwrap();
            assert_eq!(url, "https://t.example.com");
            assert!(matches!(t.next_event().await, TunnelEvent::Exited(_)));
            t.stop().await;
        }
        let spec = TunnelSpec::custom("sh -c 'exit 3; echo {port}'").unwrap();
        let mut t = Tunnel::start(&spec, 8787).unwrap();
        let err = t.first_url(Duration::from_secs(10)).await.unwrap_err();
        assert!(
            err.to_string().contains("before printing a public URL"),
            "{err}"
        );
        t.stop().await;
    }
}
