use clap::Parser as _;
use ntp_agent::cli::{Cli, Command};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("NTP_AGENT_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => ntp_agent::run::run(args),
        Command::Detach(args) => ntp_agent::detach::detach(args),
        Command::Status(args) => ntp_agent::status::status(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ntp-agent: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
