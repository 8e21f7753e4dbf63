//! Where the relay listens: parsing `--listen` (an IP or a host name such as `localhost`,
//! with a port) and, when the port is taken, finding out by whom (Linux `/proc`), so the error
//! can say "another vslack relay, pid 1234" instead of "address in use".

use std::net::{SocketAddr, ToSocketAddrs};

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
