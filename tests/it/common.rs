//! Running the real binary hermetically: a temp HOME, config and data dir, a cleared
//! environment, and a leak check on every run's stdout and stderr.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

pub const BIN: &str = env!("CARGO_BIN_EXE_vslack");
pub const API_KEY: &str = "test-api-key-0123456789abcdef";

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub vars: Vec<(String, String)>,
    /// Strings that must never appear in any output.
    pub secrets: Mutex<Vec<String>>,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let vars = vec![
            ("HOME".into(), home.display().to_string()),
            (
                "VSLACK_CONFIG_DIR".into(),
                dir.path().join("config").display().to_string(),
            ),
            (
                "VSLACK_DATA_DIR".into(),
                dir.path().join("data").display().to_string(),
            ),
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
            ("NO_COLOR".into(), "1".into()),
            ("VSLACK_RETRY_BASE_MS".into(), "20".into()),
        ];
        Env {
            dir,
            vars,
            secrets: Mutex::new(vec![API_KEY.into()]),
        }
    }

    /// An environment pointed at a Vast.ai stand-in with the test key in VAST_API_KEY.
    pub fn with_vast(vast_url: &str) -> Env {
        let mut env = Env::new();
        env.set("VAST_URL", vast_url);
        env.set("VAST_API_KEY", API_KEY);
        env
    }

    pub fn set(&mut self, k: &str, v: &str) {
        self.vars.retain(|(name, _)| name != k);
        self.vars.push((k.into(), v.into()));
    }

    pub fn unset(&mut self, k: &str) {
        self.vars.retain(|(name, _)| name != k);
    }

    pub fn secret(&self, s: &str) {
        self.secrets.lock().unwrap().push(s.into());
    }

    /// Write `url` to a file for `--slack-url-file`, register its token as a secret, return the
    /// file's path.
    pub fn slack_url_file(&self, url: &str) -> String {
        let path = self.dir.path().join("slack.txt");
        std::fs::write(&path, format!("{url}\n")).unwrap();
        // The token alone must not leak either.
        self.secret(url.rsplit('/').next().unwrap());
        path.display().to_string()
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }
    pub fn config_file(&self) -> PathBuf {
        self.config_dir().join("config.toml")
    }
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
    pub fn config_text(&self) -> String {
        std::fs::read_to_string(self.config_file()).unwrap_or_default()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args).env_clear();
        for (k, v) in &self.vars {
            c.env(k, v);
        }
        c
    }

    /// Run to completion with `stdin` (empty when None); asserts no secret leaked.
    pub fn run_in(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let out = self.run_raw(args, stdin);
        for s in self.secrets.lock().unwrap().iter() {
            assert!(
                !out.stdout.contains(s.as_str()),
                "secret leaked on stdout of {args:?}: {}",
                out.stdout
            );
            assert!(
                !out.stderr.contains(s.as_str()),
                "secret leaked on stderr of {args:?}: {}",
                out.stderr
            );
        }
        out
    }

    pub fn run(&self, args: &[&str]) -> Out {
        self.run_in(args, None)
    }

    /// `vslack setup --no-input` for `low_credit` in tunnel mode (tmole), the Slack URL read
    /// from `slack_file`, after the flags in `extra`.
    pub fn setup_tunnel(&self, slack_file: &str, extra: &[&str]) -> Out {
        let mut args = vec!["setup", "--no-input"];
        args.extend_from_slice(extra);
        args.extend(["--slack-url-file", slack_file, "--event", "low_credit"]);
        args.extend(["--tunnel", "tmole"]);
        self.run(&args)
    }

    /// Run without the leak check (for `--print-secret`).
    pub fn run_raw(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vslack");
        {
            let mut input = child.stdin.take().unwrap();
            if let Some(s) = stdin {
                // A command that fails before reading its input (`dest add` of a name that
                // exists) may have exited already: a closed pipe is its answer, not an error.
                if let Err(e) = input.write_all(s.as_bytes()) {
                    assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
                }
            }
        }
        let o = child.wait_with_output().unwrap();
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}
