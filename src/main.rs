//! The `vslack` binary: parse arguments, set up logging, run, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = vslack::cli::Cli::parse();
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
    vslack::commands::init_tracing(&cli);
    match vslack::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(vslack::exit::code(&err))
        }
    }
}
