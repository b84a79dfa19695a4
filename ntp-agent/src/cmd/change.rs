//! `ntp-agent server|peer|mode|allow|deny`: one change to the running
//! agent over its control socket, and what the agent says it did.

use std::path::Path;

use anyhow::Result;
use ntp_proto::SourceKind;

use crate::{
    cli::{AclCommand, ModeCommand, Op, SourceCommand},
    control,
    model::AclRule,
    protocol::Command,
};

/// `server|peer add|del ADDR|NAME[,OPTIONS]`.
pub fn source(kind: SourceKind, c: SourceCommand) -> Result<()> {
    let cmd = match c.op {
        Op::Add => Command::Add(kind, c.target),
        Op::Del if c.target.options != Default::default() => anyhow::bail!(
            "{}: poll options go with `add`; `del` takes only the address or name",
            c.target
        ),
        Op::Del => Command::Del(kind, c.target.spec),
    };
    print(&c.control.control_socket, cmd)
}

/// `mode client|server`.
pub fn role(c: ModeCommand) -> Result<()> {
    print(&c.control.control_socket, Command::Mode(c.role))
}

/// `allow|deny [--del] CIDR`.
pub fn acl(rule: AclRule, c: AclCommand) -> Result<()> {
    print(&c.control.control_socket, Command::Acl { rule, del: c.del })
}

/// Sends the change and prints what the agent did.
fn print(socket: &Path, cmd: Command) -> Result<()> {
    println!("{}", control::change(socket, cmd)?);
    Ok(())
}
