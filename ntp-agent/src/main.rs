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
        Command::CheckConfig { file } => check_config(&file),
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
        Op::Del if c.target.poll != Default::default() => anyhow::bail!(
            "{}: poll options go with `add`; `del` takes only the address or name",
            c.target
        ),
        Op::Del => sync::Command::Del(kind, c.target.spec),
    };
    control::command(&c.control.control_socket, &cmd)
}

fn acl_command(rule: AclRule, c: AclCommand) -> anyhow::Result<()> {
    control::command(
        &c.control.control_socket,
        &sync::Command::Acl { rule, del: c.del },
    )
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

fn check_config(file: &std::path::Path) -> anyhow::Result<()> {
    use clap::Parser as _;
    let settings = ntp_agent::config::load(file)?;
    let mut argv: Vec<std::ffi::OsString> = vec!["ntp-agent".into(), "run".into()];
    argv.extend(ntp_agent::config::merge(settings, &[]));
    let cli = Cli::try_parse_from(argv)?;
    let Command::Run(args) = cli.command else {
        unreachable!("parsed as run");
    };
    ntp_agent::run::check(&args).map_err(|e| anyhow::anyhow!("{}: {e:#}", file.display()))?;
    println!(
        "{}: ok ({} interface(s), {} server(s), {} peer(s), {:?} mode)",
        file.display(),
        args.ifaces.len(),
        args.servers.len(),
        args.peers.len(),
        args.mode
    );
    Ok(())
}
