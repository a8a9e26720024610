//! berth's entry point: parse the command line, start logging, run.

use std::process::ExitCode;

use clap::Parser;

use berth::cli::{self, Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match cli.command {
        Command::Run { config } => cli::run(&config),
        Command::Check { config } => cli::check(&config),
        Command::Demo => berth::demo::main(),
    }
}
