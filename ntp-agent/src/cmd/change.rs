//! `ntp-agent server|peer|mode|allow|deny`: one change to the running
//! agent over its control socket, and what the agent says it did.

use std::path::Path;

use anyhow::Result;

use crate::{
    cli::{AclCommand, ModeCommand, Op, SourceCommand},
    control,
    model::{AclRule, SourceRole},
    protocol::Command,
};

/// `server|peer|pool add|del ADDR|NAME[,OPTIONS]`.
pub fn source(role: SourceRole, c: SourceCommand) -> Result<()> {
    let cmd = match c.op {
        Op::Add => {
            c.target.check_role(role).map_err(anyhow::Error::msg)?;
            Command::Add(role, c.target)
        }
        Op::Del if c.target.options != Default::default() => anyhow::bail!(
            "{}: source options go with `add`; `del` takes only the address or name",
            c.target
        ),
        Op::Del => Command::Del(role, c.target.spec),
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
