//! The `vslack` binary: parse arguments, set up logging, run, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match vslack::cli::Cli::try_parse() {
        Ok(cli) => cli,
        // Usage errors are errors like any other under --json; help and version print as usual.
        Err(e) if e.use_stderr() && std::env::args().any(|a| a == "--json") => {
            // The message up to clap's usage line, on one line (so "required arguments: --url
            // <URL>" keeps the argument it names).
            let text = e.to_string();
            let message: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .filter(|l| !l.is_empty())
                .collect();
            let message = message.join(" ");
            eprintln!(
                "{}",
                vslack::output::json_error(
                    vslack::exit::USAGE,
                    message.trim_start_matches("error: ")
                )
            );
            return ExitCode::from(vslack::exit::USAGE);
        }
        Err(e) => e.exit(),
    };
    // `vslack completions bash | head` should end quietly, like other Unix tools. Long-running
    // commands keep Rust's default (SIGPIPE ignored) so a closed log pipe cannot kill a relay.
    use vslack::cli::Command;
    if !matches!(
        cli.command,
        Command::Serve(_) | Command::Up(_) | Command::Demo
    ) {
        // SAFETY: restoring the default disposition before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // glibc gives each thread that allocates an arena of its own (up to 8 per core) and, as
    // large blocks come and go, raises the size under which freed memory is kept: a relay's
    // RSS after a burst of 60,000 events was 39–58 MB with the defaults, 27 MB with two arenas
    // and a fixed 128 KiB trim threshold (README, Benchmarks).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets tunables; called before any thread is started.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
    }
    let log = vslack::commands::init_tracing(&cli);
    let json = cli.global.json;
    let result = vslack::run(cli);
    // The log's last lines come before the error that ends it.
    drop(log);
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let code = vslack::exit::code(&err);
            if json {
                eprintln!("{}", vslack::output::json_error(code, &format!("{err:#}")));
            } else {
                eprintln!("error: {err:#}");
            }
            ExitCode::from(code)
        }
    }
}
