//! Where the relay listens: parsing `--listen` (an IP or a host name such as `localhost`,
//! with a port) and, when the port is taken, finding out by whom (Linux `/proc`), so the error
//! can say "another vslack relay, pid 1234" instead of "address in use"; binding, and fitting
//! the connection cap to the open-file limit.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, Result};

/// `text` as an address to listen on: `IP:PORT`, or `HOST:PORT` resolved (IPv4 first).
pub fn parse(text: &str) -> Option<SocketAddr> {
    if let Ok(a) = text.parse() {
        return Some(a);
    }
    let addrs: Vec<SocketAddr> = text.to_socket_addrs().ok()?.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
}

/// The `/health` of a vslack relay answering at `addr` (a local address), if one does:
/// within 0.8 s, and JSON carrying vslack's `version` (a failing relay answers too).
pub async fn relay_health(addr: SocketAddr) -> Option<serde_json::Value> {
    // Plain HTTP, else HTTPS (a relay serving TLS itself). Only this machine's relay is asked,
    // and only for `/health`, so its certificate is not what is checked here (`doctor` checks
    // it as Vast.ai would).
    for scheme in ["http", "https"] {
        let http = crate::http::builder()
            .timeout(Duration::from_millis(800))
            .tls_danger_accept_invalid_certs(scheme == "https")
            .build()
            .ok()?;
        let Ok(resp) = http.get(format!("{scheme}://{addr}/health")).send().await else {
            continue;
        };
        let health: serde_json::Value = resp.json().await.ok()?;
        return health.get("version").is_some().then_some(health);
    }
    None
}

/// The process listening on TCP `port` (pid and command name), when this user may see it.
pub fn owner(port: u16) -> Option<(u32, String)> {
    let inode = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .find_map(|table| listening_inode(&table, port))?;
    holder(&format!("socket:[{inode}]"))
}

/// Another process (pid and command name) that holds `target` open: a file's path, or a
/// socket as `socket:[inode]`. This process is never the answer.
pub fn holder(target: &str) -> Option<(u32, String)> {
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
            .filter(|p| *p != me)
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target));
        if holds {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            return Some((pid, comm.trim().to_owned()));
        }
    }
    None
}

/// The inode of the socket listening on `port` in a `/proc/net/tcp` table.
fn listening_inode(table: &str, port: u16) -> Option<String> {
    const LISTEN: &str = "0A";
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let local_port = f.get(1)?.rsplit(':').next()?;
        (u16::from_str_radix(local_port, 16).ok()? == port && *f.get(3)? == LISTEN)
            .then(|| f.get(9).map(|s| (*s).to_owned()))
            .flatten()
    })
}

/// Descriptors the relay needs beside its connections (store, Slack client, logs, tunnel).
const SPARE_FILES: u64 = 64;

/// Raise the open-file soft limit to the hard one, and keep `--max-connections` within it
/// (with room to spare), so a connection flood never ends in "Too many open files" for the
/// store or Slack. Returns the connection cap and how many refused connections may be held
/// unread (`relay::conns::Parked`) in what is left, at most the cap.
pub fn fit_open_files(wanted: usize) -> (usize, usize) {
    let cap = fit_connections(wanted);
    let room = open_file_limit().saturating_sub(SPARE_FILES) as usize;
    (cap, room.saturating_sub(cap).min(cap))
}

fn open_file_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit with a valid pointer to an rlimit we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return u64::MAX;
    }
    lim.rlim_cur
}

fn fit_connections(wanted: usize) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return wanted;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    let room = lim.rlim_cur.saturating_sub(SPARE_FILES).max(1) as usize;
    if wanted > room {
        tracing::warn!(
            max_connections = wanted,
            open_file_limit = lim.rlim_cur,
            using = room,
            "--max-connections does not fit the open-file limit; using fewer (raise `ulimit -n` or LimitNOFILE)"
        );
        return room;
    }
    wanted
}

/// The listen backlog asked for.
const BACKLOG: u32 = 4096;

/// Bind, warning loudly when the address is reachable from other machines.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    bind_for(addr, false).await
}

/// `bind`; `public` when listening publicly is the point (HTTPS served by the relay itself,
/// an ACME challenge), which needs no warning.
pub async fn bind_for(addr: SocketAddr, public: bool) -> Result<tokio::net::TcpListener> {
    if !addr.ip().is_loopback() && !public {
        tracing::warn!(
            %addr,
            "listening on a non-loopback address: anyone who can reach it can send requests (signatures are still checked); prefer 127.0.0.1 behind a tunnel or reverse proxy"
        );
    }
    // A deep accept queue (the kernel caps it at net.core.somaxconn): under a connection
    // flood a new client's SYN waits there for a moment instead of being dropped (a 1 s
    // retransmit).
    let listen = || {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(BACKLOG)
    };
    match listen() {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(in_use(addr).await),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && addr.port() < 1024 => {
            Err(crate::exit::SetupError(format!(
                "cannot listen on {addr}: a port below 1024 needs the CAP_NET_BIND_SERVICE capability; run it as a system unit (`vslack service install --system`), or once `sudo setcap cap_net_bind_service=+ep $(command -v vslack)`"
            ))
            .into())
        }
        Err(e) => Err(e).with_context(|| format!("cannot listen on {addr}")),
    }
}

/// Why `addr` is taken, and what to do: another vslack relay (stop it, or use it), or
/// another program (pick another port).
async fn in_use(addr: SocketAddr) -> anyhow::Error {
    let mut local = addr;
    if local.ip().is_unspecified() {
        local.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let owner = crate::listen::owner(addr.port());
    let pid = owner
        .as_ref()
        .map(|(pid, name)| format!(" ({name}, pid {pid})"))
        .unwrap_or_default();
    let is_relay = relay_health(local).await.is_some();
    let other_port = "or pick another address with --listen 127.0.0.1:PORT (or PORT=…)";
    let msg = if is_relay {
        format!(
            "another vslack relay is already listening on {addr}{pid}: `vslack status` shows it; stop it first (Ctrl-C where it runs, `systemctl --user stop vslack`, or `kill` the pid) {other_port}"
        )
    } else {
        format!("{addr} is already in use by another program{pid}; stop it, {other_port}")
    };
    crate::exit::SetupError(msg).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_and_the_owner_of_a_port_is_found() {
        assert_eq!(
            parse("localhost:8787"),
            Some("127.0.0.1:8787".parse().unwrap())
        );
        assert_eq!(parse("[::1]:9"), Some("[::1]:9".parse().unwrap()));
        assert_eq!(parse("nonsense"), None);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        // A port held by this very process is not "another process".
        assert_eq!(owner(port), None);
    }
}
