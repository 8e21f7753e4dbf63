//! Commands: one module per group, each short: resolve settings, call the library, print.

mod account;
mod demo;
mod dest;
mod destinations;
mod doctor;
mod doctor_report;
mod doctor_tls;
mod events;
mod heartbeat;
mod queue;
mod reload;
mod send;
mod serve;
mod serve_tls;
mod service;
mod setup;
mod setup_checks;
mod status;
mod store;
mod store_pg;
mod up;
mod up_reach;
mod up_report;
mod up_webhook;
mod webhook;
mod webhook_view;

use std::io::IsTerminal;

use anyhow::Result;

use crate::cli::{Cli, Command, Global, LogFormat};
use crate::config::Config;
use crate::paths::Paths;
use crate::vast::{key, VastClient};

/// What every command needs: the global flags and resolved paths.
pub struct Ctx {
    pub global: Global,
    pub paths: Paths,
}

impl Ctx {
    pub fn config(&self) -> Result<Config> {
        Config::load(&self.paths)
    }

    /// A Vast.ai client with the key found by the documented lookup order.
    pub fn client(&self, config: &Config) -> Result<VastClient> {
        let key = key::find(
            self.global.api_key_file.as_deref(),
            config.api_key.as_ref(),
            &self.paths.config_file(),
        )?;
        VastClient::new(&self.global.vast_url(), key)
    }

    pub fn interactive(&self) -> bool {
        crate::output::interactive(self.global.no_input)
    }

    /// Tell the person something on stderr (suppressed by --quiet).
    pub fn note(&self, msg: impl AsRef<str>) {
        if !self.global.quiet {
            eprintln!("{}", msg.as_ref());
        }
    }
}

/// Set up `tracing` on stderr: `RUST_LOG` wins, else -v/-q pick the level. `demo` prints its
/// own report, so its relay logs only errors unless asked; `up` prints one line per event
/// itself, so its relay's per-event info lines show only with -v.
///
/// `serve` logs through a thread of its own (the returned guard flushes it when dropped): a
/// delivery only queues its line, and lines logged together reach stderr in one write, where
/// one `write` per line cost the request path about a tenth of its time. Up to 1024 lines
/// wait while stderr's reader is slow; past that the request path waits, as before, so no
/// line is dropped.
pub fn init_tracing(cli: &Cli) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    use tracing_subscriber::EnvFilter;
    let g = &cli.global;
    let quiet = g.quiet || (matches!(cli.command, Command::Demo) && g.verbose == 0);
    let own_lines = matches!(cli.command, Command::Up(_));
    let default = match (quiet, g.verbose) {
        (true, _) => "error",
        (false, 0) if own_lines => "warn",
        (false, 0) => "warn,vslack=info",
        (false, 1) => "info,vslack=debug",
        _ => "debug,vslack=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let (writer, guard) = if matches!(cli.command, Command::Serve(_)) {
        let (w, g) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            .lossy(false)
            .buffered_lines_limit(1024)
            .thread_name("vslack-log")
            .finish(LogOut(std::io::BufWriter::with_capacity(
                64 << 10,
                std::io::stderr(),
            )));
        (
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(w),
            Some(g),
        )
    } else {
        let w = tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr);
        (w, None)
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        // A log line that cannot be written is dropped. (By default tracing reports the
        // failure with `eprintln!`, which panics when stderr is a closed pipe: a relay whose
        // journal or `| tee` went away then dropped every connection it logged for.)
        .log_internal_errors(false)
        .with_target(false);
    let _ = match g.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder
            .with_ansi(crate::output::color_on(&std::io::stderr()))
            .try_init(),
    };
    guard
}

/// stderr, buffered, for the log thread, which flushes it whenever no more lines wait. A
/// line that cannot be written is dropped (see `log_internal_errors` above).
///
/// Once the relay listens ([`pace_log`]), the thread rests for [`LOG_PACE`] after each flush:
/// the lines logged meanwhile are written together in one `write`, and a request that logs
/// while the thread rests only queues its line (waking a thread that waits for lines is a
/// system call on the request path). A line reaches stderr at most that much later. (Not
/// before: what start-up logs comes out ahead of its `listening on` line.)
struct LogOut(std::io::BufWriter<std::io::Stderr>);

const LOG_PACE: std::time::Duration = std::time::Duration::from_millis(5);
static LOG_PACED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on the log thread writes at most every [`LOG_PACE`] (see `LogOut`).
pub fn pace_log() {
    LOG_PACED.store(true, std::sync::atomic::Ordering::Relaxed);
}

impl std::io::Write for LogOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.write_all(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let wrote = !self.0.buffer().is_empty();
        let _ = self.0.flush();
        if wrote && LOG_PACED.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(LOG_PACE);
        }
        Ok(())
    }
}

/// Run a parsed command line; returns the exit code for commands that report checks.
pub fn run(cli: Cli) -> Result<u8> {
    // Completions need neither directories nor a runtime (and work without a HOME).
    if let Command::Completions { shell } = cli.command {
        print!("{}", completions(shell));
        return Ok(crate::exit::OK);
    }
    if let Command::Man { command, dir } = &cli.command {
        return man(command, dir.as_deref());
    }
    let paths = Paths::resolve(
        cli.global.config_dir.as_deref(),
        cli.global.data_dir.as_deref(),
    )?;
    let ctx = Ctx {
        global: cli.global,
        paths,
    };
    // The relay's commands use every core; the others make a few requests, on one thread.
    let rt = match cli.command {
        Command::Serve(_) | Command::Up(_) | Command::Demo => {
            tokio::runtime::Builder::new_multi_thread()
        }
        _ => tokio::runtime::Builder::new_current_thread(),
    }
    .enable_all()
    .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Login => account::login(&ctx).await,
            Command::Logout => account::logout(&ctx),
            Command::Webhook(cmd) => webhook::run(&ctx, cmd).await,
            Command::Slack(cmd) => account::slack(&ctx, cmd).await,
            Command::Dest(cmd) => dest::run(&ctx, cmd).await,
            Command::Config(cmd) => account::config(&ctx, cmd),
            Command::Doctor { send } => return doctor::doctor(&ctx, send).await,
            Command::Status => status::status(&ctx).await,
            Command::Setup(args) => setup::run(&ctx, args).await,
            Command::Service(cmd) => service::run(&ctx, cmd),
            Command::Up(args) => return up::run(&ctx, args).await,
            Command::Serve(args) => serve::run(&ctx, args).await,
            Command::Demo => return demo::run(&ctx).await,
            Command::Send(args) => return send::run(&ctx, args).await,
            Command::Queue { cmd } => queue::run(&ctx, cmd).await,
            Command::Store(cmd) => return store::run(&ctx, cmd).await,
            Command::Completions { .. } | Command::Man { .. } => {
                unreachable!("handled before the runtime starts")
            }
        }
        .map(|()| crate::exit::OK)
    })
}

/// The completion script for `shell`, exactly as committed under `completions/`.
pub fn completions(shell: clap_complete::Shell) -> String {
    use clap::CommandFactory;
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "vslack", &mut out);
    String::from_utf8(out).expect("completions are UTF-8")
}

/// Every man page, as committed under `man/`: `vslack.1` and one per command
/// (`vslack-webhook-create.1`), named as the SEE ALSO and SUBCOMMANDS sections name them.
pub fn man_pages() -> Vec<(String, String)> {
    use clap::CommandFactory;
    fn walk(cmd: clap::Command, name: String, out: &mut Vec<(String, String)>) {
        let cmd = cmd.name(name.clone());
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .render(&mut page)
            .expect("rendering to memory");
        out.push((
            format!("{name}.1"),
            String::from_utf8(page).expect("man page is UTF-8"),
        ));
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            walk(sub.clone(), format!("{name}-{}", sub.get_name()), out);
        }
    }
    let mut out = Vec::new();
    let mut cmd = Cli::command();
    cmd.build();
    walk(cmd, "vslack".into(), &mut out);
    out
}

/// `vslack man [COMMAND…] [--dir DIR]`.
fn man(command: &[String], dir: Option<&std::path::Path>) -> Result<u8> {
    let pages = man_pages();
    if let Some(dir) = dir {
        use anyhow::Context;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for (file, text) in &pages {
            let path = dir.join(file);
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        eprintln!("{} man pages written to {}", pages.len(), dir.display());
        return Ok(crate::exit::OK);
    }
    let want = std::iter::once("vslack")
        .chain(command.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join("-")
        + ".1";
    match pages.iter().find(|(file, _)| *file == want) {
        Some((_, text)) => print!("{text}"),
        None => {
            return Err(crate::exit::usage(format!(
                "no man page for `vslack {}`; `vslack --help` lists the commands",
                command.join(" ")
            )))
        }
    }
    Ok(crate::exit::OK)
}

/// Read a secret: a hidden prompt on a terminal, else one line from stdin.
pub fn read_secret(ctx: &Ctx, prompt: &str, flag_hint: &str) -> Result<crate::secret::Secret> {
    use anyhow::Context;
    let value = if ctx.interactive() {
        crate::prompt::password(prompt)?
    } else if std::io::stdin().is_terminal() {
        let why = if ctx.global.no_input {
            "--no-input was given"
        } else {
            "stderr is not a terminal"
        };
        return Err(crate::exit::usage(format!(
            "{prompt}: cannot prompt ({why}); {flag_hint}"
        )));
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("could not read standard input")?;
        line
    };
    let value = value.trim();
    if value.is_empty() {
        return Err(crate::exit::usage(format!(
            "{prompt}: nothing was entered; {flag_hint}"
        )));
    }
    Ok(crate::secret::Secret::new(value))
}

pub use crate::relay::now_secs;

/// SIGINT and SIGTERM. Handlers are installed when this is created (before anything is
/// announced), so a signal that arrives early is not lost to the default action.
pub struct Shutdown {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Shutdown {
    pub fn install() -> Result<Shutdown> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Shutdown {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Resolves on the next SIGINT or SIGTERM.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}
