//! What a tunnel is: a named one (tmole, cloudflared, ngrok) or a `--tunnel-cmd`, split into
//! words without a shell, checked to be installed before anything starts, and the environment
//! variables it never gets.

use anyhow::{bail, Result};

/// How to start a tunnel and recognise its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelSpec {
    /// The command line, split into words without a shell; `{port}` is replaced by the
    /// relay's port.
    pub command: String,
    /// Only URLs containing this are the tunnel's (cloudflared also prints links to its docs).
    pub url_contains: Option<&'static str>,
    /// ngrok: ask its local API instead of reading output.
    pub ngrok_api: bool,
    /// A tunnel with a fixed hostname (a named cloudflared tunnel): its URL, known in
    /// advance, and the output line that says it is connected.
    pub fixed: Option<(String, &'static str)>,
}

impl TunnelSpec {
    /// `tmole`, `cloudflared` or `ngrok`; anything else is a usage error.
    pub fn named(name: &str) -> Result<TunnelSpec> {
        Ok(match name {
            "tmole" | "tunnelmole" => TunnelSpec { command: "tmole {port}".into(), url_contains: None, ngrok_api: false, fixed: None },
            "cloudflared" => TunnelSpec {
                command: "cloudflared tunnel --no-autoupdate --url http://127.0.0.1:{port}".into(),
                url_contains: Some("trycloudflare.com"),
                ngrok_api: false,
                fixed: None,
            },
            "ngrok" => TunnelSpec { command: "ngrok http {port} --log stdout".into(), url_contains: Some("ngrok"), ngrok_api: true, fixed: None },
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
        if shlex::split(command).is_none_or(|w| w.is_empty()) {
            bail!(crate::exit::UsageError(
                "--tunnel-cmd has an unclosed quote (it is split into words like a shell would, but not run by one)".into()
            ));
        }
        Ok(TunnelSpec {
            command: command.into(),
            url_contains: None,
            ngrok_api: false,
            fixed: None,
        })
    }

    /// The same tunnel with a URL that stays the same across runs: a named cloudflared tunnel
    /// (`tunnel_name`, routed to `domain`), or ngrok on a reserved `domain`. Without either,
    /// the tunnel as it is.
    pub fn stable(self, tunnel_name: Option<&str>, domain: Option<&str>) -> Result<TunnelSpec> {
        let program = self.program();
        let domain = domain.map(|d| {
            d.trim()
                .trim_start_matches("https://")
                .trim_end_matches('/')
                .to_owned()
        });
        match (program.as_str(), tunnel_name, domain) {
            (_, None, None) => Ok(self),
            ("cloudflared", Some(name), Some(domain)) => {
                let name = shlex::try_quote(name)
                    .map_err(|_| crate::exit::usage("--tunnel-name holds a character that cannot be passed on"))?;
                Ok(TunnelSpec {
                    command: format!("cloudflared tunnel --no-autoupdate run --url http://127.0.0.1:{{port}} {name}"),
                    url_contains: None,
                    ngrok_api: false,
                    fixed: Some((format!("https://{domain}"), "Registered tunnel connection")),
                })
            }
            ("cloudflared", Some(_), None) => bail!(crate::exit::UsageError(
                "--tunnel-name needs --domain HOST: the hostname routed to the tunnel (`cloudflared tunnel route dns NAME HOST`)".into()
            )),
            ("cloudflared", None, Some(_)) => bail!(crate::exit::UsageError(
                "a fixed cloudflared hostname needs its named tunnel: add --tunnel-name NAME (`cloudflared tunnel create NAME`)".into()
            )),
            ("ngrok", None, Some(domain)) => {
                let quoted = shlex::try_quote(&domain)
                    .map_err(|_| crate::exit::usage("--domain holds a character that cannot be passed on"))?;
                Ok(TunnelSpec {
                    command: format!("ngrok http {{port}} --domain {quoted} --log stdout"),
                    url_contains: None,
                    ngrok_api: true,
                    fixed: None,
                })
            }
            ("ngrok", Some(_), _) => bail!(crate::exit::UsageError(
                "--tunnel-name is for cloudflared; ngrok keeps a reserved domain with --domain NAME.ngrok.app".into()
            )),
            _ => bail!(crate::exit::UsageError(format!(
                "{program} cannot keep the same URL across runs: use --tunnel cloudflared --tunnel-name NAME --domain HOST, or --tunnel ngrok --domain NAME.ngrok.app"
            ))),
        }
    }

    /// A tunnel as saved in the config: a command if it holds `{port}`, else a tunnel's name.
    pub fn from_config(saved: &str) -> Result<TunnelSpec> {
        if saved.contains("{port}") {
            TunnelSpec::custom(saved)
        } else {
            TunnelSpec::named(saved)
        }
    }

    /// The command's words with `{port}` filled in (checked to split in `custom`).
    pub(super) fn argv(&self, port: u16) -> Vec<String> {
        shlex::split(&self.command)
            .unwrap_or_default()
            .into_iter()
            .map(|w| w.replace("{port}", &port.to_string()))
            .collect()
    }

    /// The first word of the command, for messages.
    pub fn program(&self) -> String {
        self.argv(0)
            .into_iter()
            .next()
            .unwrap_or_else(|| "tunnel".into())
    }

    /// Fail before anything starts when the program is not installed, saying how to get it
    /// (for tmole, cloudflared and ngrok) or how the command was read.
    pub fn check_installed(&self) -> Result<()> {
        let program = self.program();
        if find_program(&program) {
            return Ok(());
        }
        let how = match program.as_str() {
            "tmole" => "install Tunnelmole with `npm install -g tunnelmole` (see https://tunnelmole.com)",
            "cloudflared" => "install cloudflared (see https://developers.cloudflare.com/cloudflare-one/connections/connect-networks/downloads/)",
            "ngrok" => "install ngrok and add your authtoken (see https://ngrok.com/download)",
            _ => "--tunnel-cmd is split into words without a shell, so its first word must be a program on PATH or a path to one (for shell syntax, use --tunnel-cmd 'sh -c \"...\"')",
        };
        bail!(crate::exit::SetupError(format!(
            "the tunnel program `{program}` was not found{}: {how}; or pick another with --tunnel / --tunnel-cmd, or use --public-url",
            if program.contains('/') { "" } else { " on PATH" }
        )))
    }
}

/// Environment variables a tunnel never sees: vslack's secrets (and every `VSLACK_*`).
pub const SCRUBBED_ENV: [&str; 4] = [
    "VAST_API_KEY",
    "VAST_WEBHOOK_SECRET",
    "SLACK_WEBHOOK_URL",
    "VSLACK_STORE_URL",
];

pub(super) fn scrubbed(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    SCRUBBED_ENV.contains(&name.as_ref()) || name.starts_with("VSLACK_")
}

/// Whether `program` names an executable: a path (with a `/`) to one, or a name on PATH.
fn find_program(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return executable(std::path::Path::new(program));
    }
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| executable(&dir.join(program)))
    })
}

#[cfg(test)]
mod tests {
    use super::TunnelSpec;

    #[test]
    fn stable_tunnels_keep_their_url() {
        let ngrok = TunnelSpec::named("ngrok")
            .unwrap()
            .stable(None, Some("https://vslack.ngrok-free.app/"))
            .unwrap();
        assert_eq!(
            ngrok.argv(8787),
            [
                "ngrok",
                "http",
                "8787",
                "--domain",
                "vslack.ngrok-free.app",
                "--log",
                "stdout"
            ]
        );
        assert!(ngrok.ngrok_api && ngrok.fixed.is_none());
        let cf = TunnelSpec::named("cloudflared")
            .unwrap()
            .stable(Some("my tunnel"), Some("relay.example.com"))
            .unwrap();
        assert_eq!(
            cf.argv(9000),
            [
                "cloudflared",
                "tunnel",
                "--no-autoupdate",
                "run",
                "--url",
                "http://127.0.0.1:9000",
                "my tunnel"
            ]
        );
        assert_eq!(
            cf.fixed,
            Some((
                "https://relay.example.com".into(),
                "Registered tunnel connection"
            ))
        );
        let plain = TunnelSpec::named("tmole").unwrap();
        assert_eq!(plain.clone().stable(None, None).unwrap(), plain);
        assert!(plain.stable(None, Some("x.example.com")).is_err());
    }
}
