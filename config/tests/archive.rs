//! The configuration archive: round trips, the store around an import, and the refusals
//! that need a passphrase or a store (encrypted archives, another cluster, an upload over
//! the size limit). The hostile archives themselves are a corpus of files, checked by
//! `hostile.rs`.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::fs;

use common::*;
use tandem_config::archive::{self, ProblemKind};
use tandem_config::{ImportError, ImportMode, ImportOptions, Store, import_archive};

#[test]
fn round_trip_encrypted_into_an_empty_store() {
    let cfg = config();
    let bytes = export(&cfg, Some(PASS));
    assert!(archive::is_encrypted(&bytes));
    // Nothing of the configuration is readable without the passphrase.
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains("argon2id") && !text.contains("OPENSSH") && !text.contains("alpha"));

    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path().join("store")).unwrap();
    assert!(!store.is_configured());

    let dry = ImportOptions {
        mode: ImportMode::DryRun,
        ..ImportOptions::default()
    };
    let before = snapshot(root.path());
    let r = import_archive(&bytes, Some(PASS), &store, &dry).unwrap();
    assert_eq!(r.config, cfg);
    assert_eq!(snapshot(root.path()), before, "a dry run wrote something");

    let staged = ImportOptions {
        mode: ImportMode::Stage,
        ..ImportOptions::default()
    };
    import_archive(&bytes, Some(PASS), &store, &staged).unwrap();
    assert!(!store.is_configured());
    assert_eq!(store.pending().unwrap().as_ref(), Some(&cfg));

    let r = import_archive(&bytes, Some(PASS), &store, &ImportOptions::default()).unwrap();
    assert!(r.encrypted && r.warnings.is_empty() && r.previous_cluster.is_none());
    assert_eq!(r.manifest.created, "2007-05-10T17:43:09Z");
    assert!(store.is_configured());
    assert_eq!(store.current().unwrap().as_ref(), Some(&cfg));
    assert_eq!(store.pending().unwrap(), None);
}

#[test]
fn unencrypted_archive_is_accepted_with_a_warning() {
    let cfg = config();
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path().join("store")).unwrap();
    let r = import_archive(&export(&cfg, None), None, &store, &ImportOptions::default()).unwrap();
    assert!(!r.encrypted);
    assert_eq!(r.warnings.len(), 1);
    assert_eq!(store.current().unwrap(), Some(cfg));
}

#[test]
fn commit_keeps_the_previous_configuration() {
    let root = tempfile::tempdir().unwrap();
    let store = configured_store(root.path());
    let first = store.current().unwrap().unwrap();
    let second = store.commit().unwrap();
    assert_ne!(first, second);
    assert_eq!(store.current().unwrap().as_ref(), Some(&second));
    assert_eq!(store.previous().unwrap().as_ref(), Some(&first));
}

#[test]
fn staged_configuration_can_be_inspected_and_discarded() {
    let root = tempfile::tempdir().unwrap();
    let store = configured_store(root.path());
    let pending = store.pending().unwrap().unwrap();
    assert_eq!(pending.network.gateway.to_string(), "10.20.30.254");
    store.discard().unwrap();
    assert_eq!(store.pending().unwrap(), None);
    assert_eq!(store.current().unwrap(), Some(config()));
    assert!(matches!(
        store.commit(),
        Err(tandem_config::StoreError::NothingStaged { .. })
    ));
    // An invalid configuration is never staged.
    let mut bad = config();
    bad.heartbeat.deadtime = bad.heartbeat.keepalive;
    assert!(store.stage(&bad).is_err());
    assert_eq!(store.pending().unwrap(), None);
}

#[test]
fn commit_is_refused_while_another_configuration_is_staged() {
    let root = tempfile::tempdir().unwrap();
    let store = configured_store(root.path());
    let staged = store.pending().unwrap().unwrap();
    let mut third = config();
    third.network.dns_servers = vec!["10.20.30.54".parse().unwrap()];
    let bytes = export(&third, None);

    // Commit: refused, naming the way forward; nothing changes.
    let before = snapshot(root.path());
    let err = import_archive(&bytes, None, &store, &ImportOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "another configuration is staged in {} and committing this archive would drop it (drop it with `tandem config discard`, then import again)",
            store.dir().join("pending.toml").display()
        )
    );
    assert_eq!(snapshot(root.path()), before);

    // A dry run says the same as a warning.
    let dry = ImportOptions {
        mode: ImportMode::DryRun,
        ..ImportOptions::default()
    };
    let r = import_archive(&bytes, None, &store, &dry).unwrap();
    assert!(
        r.warnings
            .iter()
            .any(|w| w.starts_with("another configuration is staged in ")),
        "{:?}",
        r.warnings
    );
    assert_eq!(snapshot(root.path()), before);

    // Staging again replaces the staged configuration, and says so.
    let stage = ImportOptions {
        mode: ImportMode::Stage,
        ..ImportOptions::default()
    };
    let r = import_archive(&bytes, None, &store, &stage).unwrap();
    assert!(r.replaced_staged);
    assert_ne!(store.pending().unwrap().unwrap(), staged);
    assert_eq!(store.pending().unwrap(), Some(third.clone()));
    assert_eq!(store.current().unwrap(), Some(config()));

    // Committing the configuration that is staged goes ahead and clears it.
    let r = import_archive(&bytes, None, &store, &ImportOptions::default()).unwrap();
    assert!(r.replaced_staged);
    assert_eq!(store.current().unwrap(), Some(third));
    assert_eq!(store.previous().unwrap(), Some(config()));
    assert_eq!(store.pending().unwrap(), None);
}

#[test]
fn interrupted_write_leaves_the_previous_configuration() {
    let root = tempfile::tempdir().unwrap();
    let store = configured_store(root.path());
    let dir = store.dir().to_owned();
    let committed = fs::read(dir.join("config.toml")).unwrap();
    drop(store);
    // A crash between writing and renaming leaves half-written temporaries behind.
    fs::write(dir.join("config.toml.tmp"), b"schema-version = 1\n[clus").unwrap();
    fs::write(dir.join("pending.toml.tmp"), b"").unwrap();
    let store = Store::open(&dir).unwrap();
    assert_eq!(fs::read(dir.join("config.toml")).unwrap(), committed);
    assert!(!dir.join("config.toml.tmp").exists() && !dir.join("pending.toml.tmp").exists());
    assert_eq!(store.current().unwrap(), Some(config()));
}

#[test]
fn passphrase_problems() {
    let bytes = export(&config(), Some(PASS));
    let (text, kinds) = refusal(&bytes, Some("Tr0ub4dor&3"));
    assert_eq!(text, "archive: wrong passphrase");
    assert_eq!(kinds, [ProblemKind::Passphrase]);
    assert_eq!(
        refusal(&bytes, None).0,
        "archive: is encrypted (expected a passphrase)"
    );
    assert_eq!(
        refusal(&bytes, Some("")).0,
        "archive: is encrypted (expected a passphrase)"
    );
}

#[test]
fn tampered_ciphertext() {
    let mut bytes = export(&config(), Some(PASS));
    let n = bytes.len();
    bytes[n - 100] ^= 1;
    let (text, kinds) = refusal(&bytes, Some(PASS));
    assert_eq!(
        text,
        "archive: encrypted data is damaged or was altered (payload authentication failed or data truncated)"
    );
    assert_eq!(kinds, [ProblemKind::Integrity]);
    let bytes = export(&config(), Some(PASS));
    assert_eq!(
        refusal(&bytes[..bytes.len() - 10], Some(PASS)).0,
        "archive: encrypted data is damaged or was altered (payload authentication failed or data truncated)"
    );
}

#[test]
fn upload_over_the_size_limit() {
    // Too large to keep in the corpus.
    let big = vec![0u8; archive::MAX_ARCHIVE_BYTES + 1];
    let (text, kinds) = refusal(&big, None);
    assert_eq!(
        text,
        "archive: 3145729 bytes is too large (expected at most 3145728)"
    );
    assert_eq!(kinds, [ProblemKind::TooLarge]);
}

#[test]
fn archive_of_another_cluster() {
    let bytes = export(&other_cluster(), Some(PASS));
    let (text, kinds) = refusal(&bytes, Some(PASS));
    assert_eq!(
        text,
        format!(
            "manifest.toml: cluster-id: 42424242-4242-4242-4242-424242424242 is another cluster (this node belongs to {})",
            config().cluster.id
        )
    );
    assert_eq!(kinds, [ProblemKind::OtherCluster]);

    // Deliberately re-purposing the node is possible, never by default (and not over a
    // staged configuration).
    let root = tempfile::tempdir().unwrap();
    let store = configured_store(root.path());
    let opts = ImportOptions {
        allow_other_cluster: true,
        ..ImportOptions::default()
    };
    assert!(matches!(
        import_archive(&bytes, Some(PASS), &store, &opts),
        Err(ImportError::Staged { .. })
    ));
    assert!(store.discard().unwrap());
    let r = import_archive(&bytes, Some(PASS), &store, &opts).unwrap();
    assert_eq!(r.previous_cluster, Some(config().cluster.id));
    assert_eq!(store.current().unwrap(), Some(other_cluster()));
}

#[test]
fn nothing_is_written_outside_the_store() {
    // Whatever the archive says, import only ever writes the store's own files.
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path().join("store")).unwrap();
    import_archive(
        &export(&config(), Some(PASS)),
        Some(PASS),
        &store,
        &ImportOptions::default(),
    )
    .unwrap();
    let names: Vec<String> = snapshot(root.path()).into_keys().collect();
    assert_eq!(names, ["store/config.toml", "store/lock"]);
}
