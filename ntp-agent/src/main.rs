use clap::Parser as _;
use ntp_agent::{
    cli::{AclCommand, Cli, Command, Op, SourceCommand},
    control,
    filter::AclRule,
    sync,
};
use ntp_proto::SourceKind;
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
        Command::Run(args) => ntp_agent::run::run(*args),
        Command::Detach(args) => ntp_agent::detach::detach(args),
        Command::Status(args) => ntp_agent::status::status(args),
        Command::Server(c) => source_command(SourceKind::Server, c),
        Command::Peer(c) => source_command(SourceKind::Peer, c),
        Command::Mode(c) => {
            control::command(&c.control.control_socket, &sync::Command::Mode(c.mode))
        }
        Command::Allow(c) => acl_command(AclRule::allow(c.cidr), c),
        Command::Deny(c) => acl_command(AclRule::deny(c.cidr), c),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ntp-agent: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn source_command(kind: SourceKind, c: SourceCommand) -> anyhow::Result<()> {
    let cmd = match c.op {
        Op::Add => sync::Command::Add(kind, c.target),
        Op::Del => sync::Command::Del(kind, c.target),
    };
    control::command(&c.control.control_socket, &cmd)
}

fn acl_command(rule: AclRule, c: AclCommand) -> anyhow::Result<()> {
    control::command(
        &c.control.control_socket,
        &sync::Command::Acl { rule, del: c.del },
    )
}
