//! `vslack service install`: a hardened systemd user unit for a deployed relay.

use anyhow::{Context, Result};

use super::Ctx;
use crate::cli::ServiceCmd;

/// The unit text. Only the config and data directories are writable.
pub fn unit(exe: &str, ctx: &Ctx, serve_args: &str) -> String {
    let cfg = ctx.paths.config_dir.display();
    let data = ctx.paths.data_dir.display();
    format!(
        "[Unit]\n\
Description=vslack relay: Vast.ai notifications to Slack\n\
Documentation=https://crates.io/crates/vslack\n\
After=network-online.target\n\
Wants=network-online.target\n\
\n\
[Service]\n\
Type=simple\n\
ExecStart={exe} --config-dir {cfg} --data-dir {data} serve {serve_args}\n\
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
WantedBy=default.target\n"
    )
}

pub fn run(ctx: &Ctx, cmd: ServiceCmd) -> Result<()> {
    let ServiceCmd::Install { print, serve_args } = cmd;
    let exe = std::env::current_exe().context("cannot find the vslack executable")?;
    let text = unit(&exe.display().to_string(), ctx, serve_args.trim());
    if print {
        print!("{text}");
        return Ok(());
    }
    // systemd refuses to start a unit whose ReadWritePaths do not exist.
    crate::secret::ensure_private_dir(&ctx.paths.config_dir)?;
    crate::secret::ensure_private_dir(&ctx.paths.data_dir)?;
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(home).join(".config"));
    let dir = base.join("systemd/user");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("vslack.service");
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    ctx.note(format!(
        "Wrote {}\nEnable it with:\n  systemctl --user daemon-reload\n  systemctl --user enable --now vslack\n  loginctl enable-linger $USER   # keep it running after logout\nLogs: journalctl --user -u vslack -f",
        path.display()
    ));
    Ok(())
}
