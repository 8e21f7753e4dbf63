//! `vslack service install`: a hardened systemd user unit for a deployed relay.

use anyhow::{Context, Result};

use clap::error::ErrorKind;
use clap::Parser;

use super::Ctx;
use crate::cli::{Cli, Command, ServeArgs, ServiceCmd};
use crate::config::Config;

/// A system unit's extras: who it runs as, and whether it binds a port below 1024.
pub struct System {
    pub user: String,
    pub low_port: bool,
}

/// The unit text. Only the config and data directories are writable; the open-file limit
/// leaves room above `max_connections` for the store, the Slack client and the logs. A system
/// unit runs as `system.user`, with CAP_NET_BIND_SERVICE (and no other capability) only when
/// it binds a low port.
pub fn unit(
    exe: &str,
    ctx: &Ctx,
    serve_args: &str,
    max_connections: usize,
    system: Option<&System>,
) -> String {
    let cfg = ctx.paths.config_dir.display();
    let data = ctx.paths.data_dir.display();
    let args = match serve_args.trim() {
        "" => String::new(),
        a => format!(" {a}"),
    };
    let nofile = (max_connections + 1024).max(4096);
    // The man page (`vslack man`), and the README of the checkout this binary was built
    // from while it is still there (`cargo install --path .` installs no copy of its own).
    let readme = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    // Only what exists: `systemd-analyze verify` checks each link (a man page not installed
    // fails it).
    let man_installed = std::process::Command::new("man")
        .args(["-w", "vslack"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let mut docs = Vec::new();
    if man_installed {
        docs.push("man:vslack(1)".to_owned());
    }
    if std::path::Path::new(readme).is_file() {
        docs.push(format!("file://{readme}"));
    }
    let docs = match docs.is_empty() {
        true => String::new(),
        false => format!("Documentation={}\n", docs.join(" ")),
    };
    let (who, wanted) = match system {
        None => (String::new(), "default.target"),
        Some(s) => {
            let caps = if s.low_port {
                "AmbientCapabilities=CAP_NET_BIND_SERVICE\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\n"
            } else {
                "CapabilityBoundingSet=\n"
            };
            (format!("User={}\n{caps}", s.user), "multi-user.target")
        }
    };
    format!(
        "[Unit]\n\
Description=vslack relay: Vast.ai notifications to Slack\n\
{docs}\
After=network-online.target\n\
Wants=network-online.target\n\
\n\
[Service]\n\
Type=simple\n\
{who}\
ExecStart={exe} --config-dir {cfg} --data-dir {data} serve{args}\n\
LimitNOFILE={nofile}\n\
Restart=on-failure\n\
RestartSec=2\n\
# vslack finishes requests in flight on SIGTERM; queued events stay stored.\n\
KillSignal=SIGTERM\n\
TimeoutStopSec=20\n\
NoNewPrivileges=yes\n\
ProtectSystem=strict\n\
ProtectHome=read-only\n\
ReadWritePaths={cfg} {data}\n\
PrivateTmp=yes\n\
PrivateDevices=yes\n\
ProtectKernelTunables=yes\n\
ProtectKernelModules=yes\n\
ProtectControlGroups=yes\n\
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n\
RestrictNamespaces=yes\n\
LockPersonality=yes\n\
MemoryDenyWriteExecute=yes\n\
SystemCallArchitectures=native\n\
UMask=0077\n\
\n\
[Install]\n\
WantedBy={wanted}\n"
    )
}

/// Who a system unit runs as (this user; never root) and whether it binds a low port.
fn system_extras(ctx: &Ctx, serve: &ServeArgs) -> Result<System> {
    // SAFETY: geteuid cannot fail; getpwuid returns a static record or null.
    let (uid, name) = unsafe {
        let uid = libc::geteuid();
        let pw = libc::getpwuid(uid);
        let name = (!pw.is_null()).then(|| {
            std::ffi::CStr::from_ptr((*pw).pw_name)
                .to_string_lossy()
                .into_owned()
        });
        (uid, name)
    };
    if uid == 0 {
        return Err(crate::exit::usage(
            "a system unit runs as the user who installs it, and the relay must not run as root: run this as that user, with --print, and install the output with sudo tee",
        ));
    }
    let user = name.ok_or_else(|| crate::exit::usage("cannot find this user's name"))?;
    let addr = super::serve::listen_addr(serve.listen.as_deref(), &ctx.config()?)?;
    // HTTP-01 answers on its own port (80 by default).
    let http01 = serve.acme_challenge.as_deref() == Some("http-01")
        && crate::listen::parse(&serve.acme_http_listen).is_some_and(|a| a.port() < 1024);
    Ok(System {
        user,
        low_port: addr.port() < 1024 || http01,
    })
}

/// Why the unit's `vslack serve` would exit at once. The unit gets none of this shell's
/// environment, so only the config file and the unit's own arguments count.
fn would_not_start(config: &Config, serve: &ServeArgs) -> Vec<&'static str> {
    let mut missing = Vec::new();
    if config.webhooks.is_empty() {
        missing.push(
            "no webhook signing secret in the config: run `vslack setup` or `vslack webhook create` \
             (VAST_WEBHOOK_SECRET in this shell does not reach the unit)",
        );
    }
    if config.slack.url.is_none() && serve.slack_url_file.is_none() && !serve.dry_run {
        missing.push(
            "no Slack URL in the config: run `vslack slack set` (SLACK_WEBHOOK_URL in this shell \
             does not reach the unit), or pass --serve-args '--slack-url-file PATH'",
        );
    }
    missing
}

pub fn run(ctx: &Ctx, cmd: ServiceCmd) -> Result<()> {
    let ServiceCmd::Install {
        system,
        print,
        serve_args,
        force,
    } = cmd;
    // Split like a shell would (quotes for a path with a space), then quoted again for
    // systemd, which understands the same quotes in ExecStart.
    let words: Vec<String> = shlex::split(&serve_args)
        .ok_or_else(|| crate::exit::usage("--serve-args has an unclosed quote"))?;
    let argv = ["vslack", "serve"]
        .into_iter()
        .chain(words.iter().map(String::as_str));
    let serve = match Cli::try_parse_from(argv) {
        Ok(Cli {
            command: Command::Serve(serve),
            ..
        }) => serve,
        Ok(_) => unreachable!("parsed as `vslack serve`"),
        Err(e) => {
            let why = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    "--help and --version do not run a relay".to_owned()
                }
                _ => e
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim_start_matches("error: ")
                    .to_owned(),
            };
            return Err(crate::exit::usage(format!(
                "--serve-args is not valid for `vslack serve`: {why}"
            )));
        }
    };
    let exe = std::env::current_exe().context("cannot find the vslack executable")?;
    let quoted = shlex::try_join(words.iter().map(String::as_str)).map_err(|e| {
        crate::exit::usage(format!("--serve-args cannot be written into a unit: {e}"))
    })?;
    let system = match system {
        false => None,
        true => Some(system_extras(ctx, &serve)?),
    };
    let text = unit(
        &exe.display().to_string(),
        ctx,
        &quoted,
        serve.max_connections,
        system.as_ref(),
    );
    let mut missing = would_not_start(&ctx.config()?, &serve);
    if system.is_none() {
        let addr = super::serve::listen_addr(serve.listen.as_deref(), &ctx.config()?)?;
        if addr.port() < 1024 {
            missing.push("it listens on a port below 1024, which a user unit cannot bind: use `vslack service install --system` (it runs as you, with only that capability)");
        }
    }
    if print {
        for m in &missing {
            ctx.note(format!("warning: this unit's relay would not start: {m}"));
        }
        if ctx.global.json {
            return crate::output::json(
                &serde_json::json!({"unit": text, "written": null, "would_start": missing.is_empty(), "problems": missing}),
            );
        }
        print!("{text}");
        return Ok(());
    }
    if !missing.is_empty() && !force {
        return Err(crate::exit::SetupError(format!(
            "the unit's relay would not start:\n  - {}\nFix this first (or pass --force to write the unit anyway)",
            missing.join("\n  - ")
        ))
        .into());
    }
    // systemd refuses to start a unit whose ReadWritePaths do not exist.
    crate::secret::ensure_private_dir(&ctx.paths.config_dir)?;
    crate::secret::ensure_private_dir(&ctx.paths.data_dir)?;
    if system.is_some() {
        let path = std::path::Path::new("/etc/systemd/system/vslack.service");
        std::fs::write(path, &text).map_err(|e| {
            crate::exit::SetupError(format!(
                "cannot write {} ({e}): install it with `vslack service install --system --print [--serve-args …] | sudo tee {}`",
                path.display(),
                path.display()
            ))
        })?;
        ctx.note(format!("Wrote {}\nEnable it with:\n  sudo systemctl daemon-reload\n  sudo systemctl enable --now vslack\nLogs: journalctl -u vslack -f", path.display()));
        return Ok(());
    }
    // systemd's user units live under the XDG config directory ($XDG_CONFIG_HOME or ~/.config).
    let base = directories::BaseDirs::new().context("cannot find the home directory")?;
    let dir = base.config_dir().join("systemd/user");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("vslack.service");
    std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    if ctx.global.json {
        crate::output::json(
            &serde_json::json!({"unit": text, "written": path, "would_start": missing.is_empty(), "problems": missing}),
        )?;
    }
    for m in &missing {
        ctx.note(format!(
            "warning: the relay will not start until this is fixed: {m}"
        ));
    }
    ctx.note(format!(
        "Wrote {}\nEnable it with:\n  systemctl --user daemon-reload\n  systemctl --user enable --now vslack\n  loginctl enable-linger $USER   # keep it running after logout\nLogs: journalctl --user -u vslack -f",
        path.display()
    ));
    Ok(())
}
