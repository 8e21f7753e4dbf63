//! A throwaway PostgreSQL for tests: `VSLACK_TEST_DATABASE_URL` when set, else a cluster of its
//! own from the Debian server binaries (`pg_config --bindir`, or /usr/lib/postgresql/*/bin):
//! `initdb` into a temp directory, run as `nobody` when the tests run as root (PostgreSQL
//! refuses root), on a free loopback port, trust authentication for loopback only, stopped
//! and deleted when dropped. `.ci/run` installs `postgresql` when `initdb` is missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Postgres {
    /// `postgres://…` for the test database.
    pub url: String,
    own: Option<Own>,
}

struct Own {
    bindir: PathBuf,
    data: PathBuf,
    _dir: tempfile::TempDir,
    as_nobody: bool,
    /// The server's options and log, to start it again after [`Postgres::stop`].
    opts: String,
    log: PathBuf,
    port: u16,
}

fn bindir() -> Option<PathBuf> {
    let from_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let candidates = from_config.into_iter().chain(
        std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin")),
    );
    candidates
        .into_iter()
        .find(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
}

/// Run a server binary, as `nobody` when we are root.
fn run(as_nobody: bool, program: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = if as_nobody {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args).env_remove("PGDATA");
    cmd.output().expect("run a PostgreSQL binary")
}

impl Postgres {
    /// A database to use, or `None` (said loudly) when no PostgreSQL is installed.
    pub fn start() -> Option<Postgres> {
        if let Ok(url) = std::env::var("VSLACK_TEST_DATABASE_URL") {
            return Some(Postgres { url, own: None });
        }
        Postgres::launch(None)
    }

    /// A cluster of our own that speaks TLS with this certificate and key (PEM); `None`
    /// (said) when there is no PostgreSQL to start.
    pub fn start_tls(cert: &str, key: &str) -> Option<Postgres> {
        Postgres::launch(Some((cert, key)))
    }

    fn launch(tls: Option<(&str, &str)>) -> Option<Postgres> {
        let Some(bindir) = bindir() else {
            eprintln!("\n*** PostgreSQL is not installed (no initdb): apt-get install -y postgresql, or set VSLACK_TEST_DATABASE_URL; .ci/run installs it ***\n");
            return None;
        };
        let as_nobody = unsafe { libc::geteuid() } == 0;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(m)).unwrap()
        };
        let data = dir.path().join("data");
        let sock = dir.path().join("sock");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::create_dir_all(&sock).unwrap();
        if as_nobody {
            mode(dir.path(), 0o755);
            for p in [&data, &sock] {
                std::os::unix::fs::chown(p, Some(65534), Some(65534)).unwrap();
            }
        }
        mode(&data, 0o700);
        let init = run(
            as_nobody,
            &bindir.join("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "vslack",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        assert!(init.status.success(), "initdb failed: {init:?}");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
            sock.display()
        );
        if let Some((cert, key)) = tls {
            for (name, pem) in [("server.crt", cert), ("server.key", key)] {
                let p = dir.path().join(name);
                std::fs::write(&p, pem).unwrap();
                mode(&p, 0o600);
                if as_nobody {
                    std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
                }
            }
            opts.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={0}/server.crt -c ssl_key_file={0}/server.key",
                dir.path().display()
            ));
        }
        let log = dir.path().join("log");
        if as_nobody {
            std::fs::write(&log, "").unwrap();
            std::os::unix::fs::chown(&log, Some(65534), Some(65534)).unwrap();
        }
        let own = Own {
            bindir,
            data,
            _dir: dir,
            as_nobody,
            opts,
            log,
            port,
        };
        own.start();
        Some(Postgres {
            url: format!("postgres://vslack@127.0.0.1:{port}/postgres"),
            own: Some(own),
        })
    }

    /// A new, empty database on the same server; its URL.
    pub async fn fresh_database(&self) -> String {
        let name = format!("t{}", rand::random::<u32>());
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test server");
        let task = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create a test database");
        drop(client);
        let _ = task.await;
        let (base, _) = self.url.rsplit_once('/').expect("a URL with a database");
        format!("{base}/{name}")
    }

    /// Stop the server (fast shutdown: connections are cut), to be started again.
    pub fn stop(&self) {
        let o = self.own.as_ref().expect("a cluster of our own to stop");
        o.ctl(&["-m", "fast", "-w", "stop"]);
    }

    /// Start it again after [`Postgres::stop`], on the same port.
    pub fn start_again(&self) {
        self.own.as_ref().expect("a cluster of our own").start();
    }

    /// Whether the server is ours (and so can be stopped).
    pub fn is_own(&self) -> bool {
        self.own.is_some()
    }
}

impl Own {
    fn ctl(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["-D", self.data.to_str().unwrap()];
        all.extend_from_slice(args);
        run(self.as_nobody, &self.bindir.join("pg_ctl"), &all)
    }

    fn start(&self) {
        let started = self.ctl(&[
            "-o",
            &self.opts,
            "-l",
            self.log.to_str().unwrap(),
            "-w",
            "-t",
            "30",
            "start",
        ]);
        assert!(
            started.status.success(),
            "pg_ctl start failed: {started:?}\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "PostgreSQL did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(o) = &self.own {
            o.ctl(&["-m", "immediate", "-w", "stop"]);
        }
    }
}
