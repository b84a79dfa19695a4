use clap::Parser as _;
use ntp_agent::model::SourceRole;
use ntp_agent::{
    cli::{Cli, Command},
    cmd,
    model::AclRule,
};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("NTP_AGENT_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = match with_config_file(Cli::parse()) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("ntp-agent: error: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if !matches!(cli.command, Command::Run(_)) {
        // `ntp-agent status | head` should end quietly when the reader
        // goes away, like other command-line tools. Not for `run`: the
        // agent must get EPIPE from a client that hung up, not die of it.
        // SAFETY: called before any other thread exists; SIG_DFL is a
        // valid disposition for SIGPIPE.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let result = match cli.command {
        Command::CheckConfig { file } => cmd::check_config::check_config(&file),
        Command::Run(args) => cmd::run::run(*args),
        Command::Detach(args) => cmd::detach::detach(args),
        Command::Status(args) => cmd::status::status(args),
        Command::Server(c) => cmd::change::source(SourceRole::Server, c),
        Command::Peer(c) => cmd::change::source(SourceRole::Peer, c),
        Command::Pool(c) => cmd::change::source(SourceRole::Pool, c),
        Command::Mode(c) => cmd::change::role(c),
        Command::Allow(c) => cmd::change::acl(AclRule::allow(c.cidr), c),
        Command::Deny(c) => cmd::change::acl(AclRule::deny(c.cidr), c),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ntp-agent: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `run --config FILE`: parse again with the file's settings in front of
/// the command line's, so flags override the file.
fn with_config_file(cli: Cli) -> anyhow::Result<Cli> {
    use clap::Parser as _;
    let Command::Run(args) = &cli.command else {
        return Ok(cli);
    };
    let Some(path) = &args.config else {
        return Ok(cli);
    };
    let file = ntp_agent::config::load(path)?;
    let raw: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let run = raw
        .iter()
        .position(|a| a == "run")
        .ok_or_else(|| anyhow::anyhow!("no `run` on the command line"))?;
    let mut argv = raw[..=run].to_vec();
    argv.extend(ntp_agent::config::merge(file, &raw[run + 1..]));
    Ok(Cli::try_parse_from(argv)?)
}
