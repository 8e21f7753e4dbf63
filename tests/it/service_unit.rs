//! `vslack service install --system`: a unit that starts at boot, runs as the installing user
//! (never root), may bind 443 with one capability, and passes `systemd-analyze verify`.

#[test]
fn a_system_unit_runs_as_its_user_binds_443_with_one_capability_and_verifies() {
    // Installed by a user, never root: run the command as `nobody` (tests run as root here).
    let as_nobody =
        unsafe { libc::geteuid() } == 0 && std::path::Path::new("/usr/bin/setpriv").exists();
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        root.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let d = root.path();
    // A copy nobody can run, wherever the checkout is.
    let exe = d.join("vslack");
    std::fs::copy(env!("CARGO_BIN_EXE_vslack"), &exe).unwrap();
    std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let run = |args: &[&str]| {
        let mut cmd = if as_nobody {
            let mut c = std::process::Command::new("/usr/bin/setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
            c.arg(&exe);
            c
        } else {
            std::process::Command::new(&exe)
        };
        cmd.args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", d.join("h"))
            .env("VSLACK_CONFIG_DIR", d.join("c"))
            .env("VSLACK_DATA_DIR", d.join("d"));
        cmd.output().unwrap()
    };
    if unsafe { libc::geteuid() } == 0 && !as_nobody {
        eprintln!("\n*** SKIPPED the system unit test: running as root without setpriv ***\n");
        return;
    }
    let out = run(&[
        "service",
        "install",
        "--system",
        "--print",
        "--serve-args",
        "--listen 0.0.0.0:443 --domain relay.example.com",
    ]);
    assert!(out.status.success(), "{out:?}");
    let unit = String::from_utf8(out.stdout).unwrap();
    for line in [
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "WantedBy=multi-user.target",
        "serve --listen 0.0.0.0:443 --domain relay.example.com",
    ] {
        assert!(unit.contains(line), "missing {line}: {unit}");
    }
    let user = unit.lines().find(|l| l.starts_with("User=")).unwrap();
    assert_ne!(user, "User=root", "{unit}");
    // On a high port it needs no capability at all.
    let out = run(&["service", "install", "--system", "--print"]);
    let high = String::from_utf8(out.stdout).unwrap();
    assert!(!high.contains("AmbientCapabilities"), "{high}");
    assert!(high.contains("CapabilityBoundingSet=\n"), "{high}");
    // systemd's own check of the unit.
    if std::path::Path::new("/usr/bin/systemd-analyze").exists() {
        let file = d.join("vslack.service");
        std::fs::write(&file, &unit).unwrap();
        let v = std::process::Command::new("/usr/bin/systemd-analyze")
            .arg("verify")
            .arg(&file)
            .output()
            .unwrap();
        assert!(v.status.success(), "systemd-analyze verify: {v:?}\n{unit}");
    } else {
        eprintln!(
            "\n*** systemd-analyze is not installed: the unit was not verified by systemd ***\n"
        );
    }
    // As root it refuses: the relay must not run as root.
    if unsafe { libc::geteuid() } == 0 {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vslack"))
            .args(["service", "install", "--system", "--print"])
            .env("VSLACK_CONFIG_DIR", d.join("c2"))
            .env("VSLACK_DATA_DIR", d.join("d2"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("must not run as root"));
    }
}
