use ntp_agent::{
    cli::{Cli, Command},
    cmd, config,
    model::{AclRule, SourceRole},
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
    let (cli, matches) = Cli::parse_with_matches();
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
        Command::Run(args) => {
            let given = matches.subcommand_matches("run").expect("parsed as run");
            config::with_file(*args, given).and_then(cmd::run::run)
        }
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
