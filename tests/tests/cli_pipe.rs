//! The command-line tools end quietly when their reader goes away
//! (`ntp-agent status | head`), instead of panicking on EPIPE.

use std::process::Command;

fn a_closed_pipe_ends_the_output_quietly() {
    let dir = std::env::temp_dir().join(format!("ntp-agent-pipe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("agent.toml");
    std::fs::write(&config, "iface = [\"lo\"]\nserver = [\"192.0.2.10\"]\n").unwrap();
    let bin = ntp_filter_tests::agent_bin().unwrap();
    let bin = bin.display();
    // `head -c0` exits at once, so the agent's first write finds the pipe
    // closed; a few rounds make the race with its start-up irrelevant.
    for _ in 0..5 {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "'{bin}' check-config '{}' | head -c0; '{bin}' --help | head -c0",
                config.display()
            ))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() -> std::process::ExitCode {
    use ntp_filter_tests::trial;
    ntp_filter_tests::runner::run(vec![trial!(a_closed_pipe_ends_the_output_quietly, Agent)])
}
