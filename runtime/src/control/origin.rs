//! Where root's request came from: the address of the SSH client whose login runs
//! the command that connected to the control socket. The kernel names the process
//! (`SO_PEERCRED`); its environment as it started (`/proc/PID/environ`) holds
//! `SSH_CONNECTION`, which sshd sets for every session. clusterd reads it itself:
//! nothing the client sends is taken for it.

use std::net::IpAddr;

/// Where a command of root's came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A login over SSH from this address.
    Ssh(IpAddr),
    /// A login over SSH through the remote-support tunnel (it arrives on loopback).
    SupportTunnel,
    /// Not over SSH (the local console), or not known.
    Node,
}

impl Origin {
    /// The origin of the process `pid`.
    #[must_use]
    pub fn of_process(pid: i32) -> Origin {
        std::fs::read(format!("/proc/{pid}/environ"))
            .ok()
            .and_then(|env| ssh_client(&env))
            .map_or(Origin::Node, |ip| {
                if ip.is_loopback() {
                    Origin::SupportTunnel
                } else {
                    Origin::Ssh(ip)
                }
            })
    }

    /// Who did it, for the support tunnel's record and its mails.
    #[must_use]
    pub fn root(self) -> String {
        match self {
            Origin::Ssh(ip) => format!("root (SSH from {ip})"),
            Origin::SupportTunnel => "root (SSH through the support tunnel)".to_owned(),
            Origin::Node => "root (on the node)".to_owned(),
        }
    }
}

/// The client address of `SSH_CONNECTION` (`CLIENT_IP CLIENT_PORT SERVER_IP
/// SERVER_PORT`) in an environment block (`NAME=VALUE` entries separated by NUL).
#[must_use]
pub fn ssh_client(environ: &[u8]) -> Option<IpAddr> {
    environ
        .split(|b| *b == 0)
        .find_map(|e| e.strip_prefix(b"SSH_CONNECTION="))
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.split_whitespace().next())
        .and_then(|ip| ip.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_address_of_the_ssh_session() {
        let env = b"PATH=/bin\0SSH_CONNECTION=192.0.2.7 50122 192.0.2.11 22\0TERM=xterm\0";
        assert_eq!(ssh_client(env), "192.0.2.7".parse().ok());
        assert_eq!(
            ssh_client(b"SSH_CONNECTION=2001:db8::7 50122 2001:db8::1 22"),
            "2001:db8::7".parse().ok()
        );
        assert_eq!(ssh_client(b"PATH=/bin\0"), None);
        assert_eq!(ssh_client(b"SSH_CONNECTION=\0"), None);
        assert_eq!(ssh_client(b"SSH_CONNECTION=not-an-address 1 2 3"), None);
        assert_eq!(ssh_client(b"XSSH_CONNECTION=192.0.2.7 1 2 3"), None);
        assert_eq!(ssh_client(&[0xff, 0, 0xfe]), None);
    }

    #[test]
    fn a_process_started_from_an_ssh_login_names_its_client() {
        let started = |conn: Option<&str>| {
            let mut c = std::process::Command::new("sleep");
            c.arg("10").env_clear();
            if let Some(v) = conn {
                c.env("SSH_CONNECTION", v);
            }
            c.spawn().expect("sleep")
        };
        for (conn, want) in [
            (
                Some("198.51.100.4 40000 192.0.2.11 22"),
                Origin::Ssh("198.51.100.4".parse().unwrap()),
            ),
            (Some("127.0.0.1 40000 127.0.0.1 22"), Origin::SupportTunnel),
            (None, Origin::Node),
        ] {
            let mut child = started(conn);
            let pid = i32::try_from(child.id()).unwrap();
            let got = Origin::of_process(pid);
            let _ = child.kill();
            let _ = child.wait();
            assert_eq!(got, want, "{conn:?}");
        }
        assert_eq!(
            Origin::Ssh("198.51.100.4".parse().unwrap()).root(),
            "root (SSH from 198.51.100.4)"
        );
        assert_eq!(Origin::of_process(i32::MAX), Origin::Node);
    }
}
