//! The `tandem-config` binary end to end: exit codes (0 ok, 1 refused, 2 usage) and the
//! exact refusal lines.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

fn run(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tandem-config"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("TANDEM_PASSPHRASE")
        .env_remove("TANDEM_CONFIG_DIR")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn init_validate_export_import_show() {
    let d = tempfile::tempdir().unwrap();
    let store = d.path().join("store");
    let cfg = d.path().join("cluster.toml");
    let cfg_s = cfg.to_str().unwrap();

    let o = run(
        &store,
        &[
            "init",
            "--out",
            cfg_s,
            "--cluster-name",
            "lab",
            "--node1-address",
            "10.1.1.11",
            "--node2-address",
            "10.1.1.12",
            "--gateway",
            "10.1.1.1",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("admin "));
    assert_eq!(
        fs::metadata(&cfg).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let written = fs::read_to_string(&cfg).unwrap();
    assert!(written.contains("# Interval between heartbeats.\nkeepalive = \"5s\""));
    assert!(written.contains("gateway = \"10.1.1.1\""));

    let o = run(&store, &["init", "--out", cfg_s]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("exists (use --force to overwrite)"));

    let o = run(&store, &["validate", cfg_s]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), format!("{cfg_s}: valid\n"));

    // No passphrase: a usage error, nothing written.
    let out = d.path().join("out");
    fs::create_dir(&out).unwrap();
    let out_s = out.to_str().unwrap();
    let o = run(&store, &["export", "--config", cfg_s, "--out", out_s]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        text(&o.stderr),
        "usage error: a passphrase is needed (--passphrase-file or TANDEM_PASSPHRASE), or --no-encrypt\n"
    );
    assert_eq!(fs::read_dir(&out).unwrap().count(), 0);

    let pass = d.path().join("pass");
    fs::write(&pass, "a long pass phrase\n").unwrap();
    let pass_s = pass.to_str().unwrap();
    let o = run(
        &store,
        &[
            "export",
            "--config",
            cfg_s,
            "--out",
            out_s,
            "--passphrase-file",
            pass_s,
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let archive = text(&o.stdout).trim().to_owned();
    let name = Path::new(&archive)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        name.starts_with("tkcluster_2500_") && name.ends_with(".tar.age"),
        "{name}"
    );
    assert_eq!(name.len(), "tkcluster_2500_20070510_174309.tar.age".len());
    assert_eq!(
        fs::metadata(&archive).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let wrong = d.path().join("wrong");
    fs::write(&wrong, "not it\n").unwrap();
    let o = run(
        &store,
        &[
            "import",
            &archive,
            "--passphrase-file",
            wrong.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        text(&o.stderr),
        format!("{archive}: archive: wrong passphrase\n")
    );
    assert!(!store.join("config.toml").exists());

    let o = run(&store, &["show"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("the node is not configured"));

    let o = run(
        &store,
        &["import", &archive, "--dry-run", "--passphrase-file", pass_s],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("checked (dry run, nothing written)"));
    assert!(!store.join("config.toml").exists());

    let o = run(&store, &["import", &archive, "--passphrase-file", pass_s]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains(": imported: cluster lab ("));

    let o = run(&store, &["show"]);
    assert_eq!(o.status.code(), Some(0));
    let shown = text(&o.stdout);
    assert!(
        shown.contains("auth-key = \"[redacted]\"") && shown.contains("admin = \"[redacted]\"")
    );
    assert!(!shown.contains("argon2id") && !shown.contains("PRIVATE KEY"));
    assert!(shown.contains("address = \"10.1.1.11\""));

    // Export from the store, unencrypted: warns, and the result imports again.
    let o = run(&store, &["export", "--out", out_s, "--no-encrypt"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stderr).starts_with("warning: writing an unencrypted archive"));
    let plain = text(&o.stdout).trim().to_owned();
    let o = run(&store, &["import", &plain]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("same as the current configuration"));
    assert!(text(&o.stderr).starts_with("warning: the archive was not encrypted"));
}

#[test]
fn refusals_name_file_and_field() {
    let d = tempfile::tempdir().unwrap();
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fail/many-problems.toml");
    let expected = fs::read_to_string(case.with_extension("err")).unwrap();
    let o = run(d.path(), &["validate", case.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let prefixed: String = expected
        .lines()
        .map(|l| format!("{}: {l}\n", case.display()))
        .collect();
    assert_eq!(text(&o.stderr), prefixed);

    let junk = d.path().join("junk.tar");
    fs::write(&junk, b"not an archive").unwrap();
    let o = run(&d.path().join("store"), &["import", junk.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        text(&o.stderr),
        format!(
            "{}: archive: is not a tar archive or is truncated (14 bytes, expected whole 512-byte blocks)\n",
            junk.display()
        )
    );
}

#[test]
fn usage_errors_exit_2() {
    let d = tempfile::tempdir().unwrap();
    assert_eq!(run(d.path(), &["frobnicate"]).status.code(), Some(2));
    assert_eq!(run(d.path(), &["import"]).status.code(), Some(2));
    assert_eq!(
        run(d.path(), &["import", "x", "--dry-run", "--stage"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(run(d.path(), &["--help"]).status.code(), Some(0));
}

#[test]
fn commit_over_a_staged_configuration_names_discard() {
    let d = tempfile::tempdir().unwrap();
    let store = d.path().join("store");
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let out = d.path().join("out");
    fs::create_dir(&out).unwrap();
    let export = |name: &str| {
        let dir = out.join(name);
        fs::create_dir(&dir).unwrap();
        let o = run(
            &store,
            &[
                "export",
                "--config",
                cases.join(name).to_str().unwrap(),
                "--out",
                dir.to_str().unwrap(),
                "--no-encrypt",
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        text(&o.stdout).trim().to_owned()
    };
    let minimal = export("minimal.toml");
    let full = export("full.toml");

    let o = run(&store, &["import", "--stage", &minimal]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains(": staged: cluster lab-cluster ("));

    let o = run(&store, &["import", &full]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        text(&o.stderr),
        format!(
            "{full}: another configuration is staged in {} and committing this archive would drop it (drop it with `tandem config discard`, then import again)\n",
            store.join("pending.toml").display()
        )
    );
    assert!(!store.join("config.toml").exists());

    let o = run(&store, &["import", "--stage", &full]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains(": staged, replacing the configuration staged before: "));

    let o = run(&store, &["discard"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let pending = store.join("pending.toml");
    assert_eq!(
        text(&o.stdout),
        format!("{}: discarded\n", pending.display())
    );
    let o = run(&store, &["discard"]);
    assert_eq!(
        text(&o.stdout),
        format!("{}: nothing staged\n", pending.display())
    );

    let o = run(&store, &["import", &minimal]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains(": imported: cluster lab-cluster ("));
}

#[test]
fn hash_password_prints_argon2id_or_sha512_crypt() {
    use std::io::Write as _;
    let d = tempfile::tempdir().unwrap();
    let hash = |args: &[&str]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tandem-config"))
            .arg("--store")
            .arg(d.path())
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"lab password\n")
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0));
        text(&o.stdout).trim().to_owned()
    };
    let argon: tandem_config::PasswordHash = hash(&["hash-password"]).parse().unwrap();
    assert!(tandem_config::secrets::verify_password(
        "lab password",
        &argon
    ));
    let crypt: tandem_config::CryptHash = hash(&["hash-password", "--crypt"]).parse().unwrap();
    assert!(crypt.as_str().starts_with("$6$"));
    assert!(tandem_config::secrets::verify_crypt("lab password", &crypt));
    assert!(!tandem_config::secrets::verify_crypt(
        "lab passwort",
        &crypt
    ));
}
