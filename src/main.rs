//! The `vslack` binary: parse arguments, set up logging, run, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = vslack::cli::Cli::parse();
    vslack::commands::init_tracing(&cli);
    match vslack::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(vslack::exit::code(&err))
        }
    }
}
