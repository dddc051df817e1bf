//! The store under failure: every file-system call an import makes is made to fail in turn
//! (an I/O error, with a write cut in half), or the process is made to "die" at that call
//! (it and every later call fail, so nothing is cleaned up). In every case the committed
//! `config.toml` is byte-identical to what it was, or — only once the commit point has
//! passed — the new file in full. Concurrent imports run one after the other.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use tandem_config::archive::{self, ExportOptions};
use tandem_config::store::{OsFs, StoreFs};
use tandem_config::{
    ApplianceConfig, ImportError, ImportMode, ImportOptions, Store, import_archive,
};

fn config() -> ApplianceConfig {
    let text =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/minimal.toml"))
            .unwrap();
    ApplianceConfig::from_toml(&text).unwrap()
}

/// The same cluster with another gateway and ping node.
fn next_config() -> ApplianceConfig {
    let mut c = config();
    c.network.gateway = "10.20.30.254".parse().unwrap();
    c.network.ping_nodes = vec!["10.20.30.254".parse().unwrap()];
    c
}

fn archive_of(cfg: &ApplianceConfig) -> Vec<u8> {
    archive::export(
        cfg,
        &ExportOptions {
            passphrase: None,
            created_unix: 1_178_818_989,
            work_factor: 1,
        },
    )
    .unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Call `n` fails; later calls work (the store cleans up after itself).
    Fail,
    /// The process dies at call `n`: it and every later call fail.
    Crash,
}

#[derive(Debug)]
struct State {
    fail_at: usize,
    fault: Fault,
    calls: AtomicUsize,
    log: Mutex<Vec<String>>,
}

/// A [`StoreFs`] that makes call number `fail_at` (counted from 0) fail.
#[derive(Debug, Clone)]
struct Faulty(Arc<State>);

impl Faulty {
    fn new(fail_at: usize, fault: Fault) -> Faulty {
        Faulty(Arc::new(State {
            fail_at,
            fault,
            calls: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
        }))
    }

    /// Counts a call; whether it must fail.
    fn hit(&self, op: &str, path: &Path) -> bool {
        let n = self.0.calls.fetch_add(1, Ordering::SeqCst);
        let name = path.file_name().unwrap().to_string_lossy();
        self.0.log.lock().unwrap().push(format!("{op} {name}"));
        match self.0.fault {
            Fault::Fail => n == self.0.fail_at,
            Fault::Crash => n >= self.0.fail_at,
        }
    }

    fn calls(&self) -> usize {
        self.0.calls.load(Ordering::SeqCst)
    }

    fn log(&self) -> Vec<String> {
        self.0.log.lock().unwrap().clone()
    }
}

fn injected() -> io::Error {
    io::Error::other("injected fault")
}

impl StoreFs for Faulty {
    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        if self.hit("write", path) {
            // A write cut short: half the data reaches the file.
            OsFs.write(path, &data[..data.len() / 2])?;
            return Err(injected());
        }
        OsFs.write(path, data)
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        if self.hit("sync_file", path) {
            return Err(injected());
        }
        OsFs.sync_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if self.hit("rename", from) {
            return Err(injected());
        }
        OsFs.rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if self.hit("sync_dir", dir) {
            return Err(injected());
        }
        OsFs.sync_dir(dir)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        if self.hit("remove", path) {
            return Err(injected());
        }
        OsFs.remove(path)
    }
}

/// A store with `config()` committed and, when `staged`, `next_config()` staged.
fn prepared(dir: &Path, staged: bool) {
    let store = Store::open(dir).unwrap();
    store.stage(&config()).unwrap();
    store.commit().unwrap();
    if staged {
        store.stage(&next_config()).unwrap();
    }
}

/// A file's text (the store's files are TOML), or `None` when absent.
fn read(dir: &Path, name: &str) -> Option<String> {
    fs::read(dir.join(name))
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn tmp_files(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "tmp"))
        .collect()
}

/// Runs the import with call `n` failing, for n = 0, 1, … until the import makes fewer
/// than n calls (it then ran without a fault); checks the store after each. Returns the
/// number of calls a fault-free import makes.
fn every_step(mode: ImportMode, staged: bool, fault: Fault) -> usize {
    let bytes = archive_of(&next_config());
    for n in 0.. {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("store");
        prepared(&dir, staged);
        let config_before = read(&dir, "config.toml").unwrap();
        let pending_before = read(&dir, "pending.toml");

        let fs_ = Faulty::new(n, fault);
        let store = Store::open_with(&dir, Box::new(fs_.clone())).unwrap();
        let opts = ImportOptions {
            mode,
            ..ImportOptions::default()
        };
        let r = import_archive(&bytes, None, &store, &opts);
        let log = fs_.log();
        let ctx = format!("{mode:?}, {fault:?} at call {n} of {log:?}");
        if n >= fs_.calls() {
            // No fault was injected: the import went through.
            let r = r.expect(&ctx);
            assert!(r.warnings.iter().all(|w| !w.contains("power cut")), "{ctx}");
            return n;
        }
        // The file-system calls an import makes, in order, are fixed: the commit point
        // is the rename of the new file over config.toml (or pending.toml when staging).
        let target = if mode == ImportMode::Commit {
            "config.toml.tmp"
        } else {
            "pending.toml.tmp"
        };
        let commit_point = log
            .iter()
            .position(|l| *l == format!("rename {target}"))
            .unwrap_or(usize::MAX);
        let new_text = next_config().to_toml();
        let committed_file = if mode == ImportMode::Commit {
            "config.toml"
        } else {
            "pending.toml"
        };

        match (fault, r) {
            (Fault::Fail, Err(e)) => {
                assert!(n <= commit_point, "{ctx}: error after the commit point");
                assert!(matches!(e, ImportError::Store(_)), "{ctx}: {e:?}");
                assert_eq!(read(&dir, "config.toml").unwrap(), config_before, "{ctx}");
                assert_eq!(read(&dir, "pending.toml"), pending_before, "{ctx}");
                assert_eq!(tmp_files(&dir), Vec::<PathBuf>::new(), "{ctx}");
            }
            (Fault::Fail, Ok(r)) => {
                // Only the directory fsync after the commit point may fail without
                // failing the import: the change has happened, and the report says that
                // its durability is in doubt.
                assert!(n > commit_point, "{ctx}");
                assert_eq!(log[n], "sync_dir store", "{ctx}");
                assert!(
                    r.warnings
                        .iter()
                        .any(|w| w.contains("may not survive a power cut")),
                    "{ctx}: {:?}",
                    r.warnings
                );
                assert_eq!(read(&dir, committed_file).unwrap(), new_text, "{ctx}");
            }
            (Fault::Crash, _) => {
                // Whatever the dying process returned, the store as it finds it on the
                // next start: the committed file is the old one or the new one, whole.
                drop(store);
                let store = Store::open(&dir).unwrap();
                let now = read(&dir, "config.toml").unwrap();
                if n <= commit_point || mode != ImportMode::Commit {
                    assert_eq!(now, config_before, "{ctx}");
                } else {
                    assert_eq!(now, new_text, "{ctx}");
                }
                if mode == ImportMode::Stage {
                    let pending = read(&dir, "pending.toml");
                    assert!(
                        pending == pending_before || pending.as_deref() == Some(new_text.as_str()),
                        "{ctx}"
                    );
                }
                assert_eq!(tmp_files(&dir), Vec::<PathBuf>::new(), "{ctx}");
                assert!(store.current().unwrap().is_some(), "{ctx}");
            }
        }
    }
    unreachable!()
}

#[test]
fn failed_commit_at_any_step_leaves_config_toml_byte_identical() {
    // write and fsync the new file, copy the old one to previous.toml (write, fsync,
    // rename), rename the new file over config.toml, fsync the directory.
    assert_eq!(every_step(ImportMode::Commit, false, Fault::Fail), 7);
}

#[test]
fn failed_staging_at_any_step_leaves_the_store_as_it_was() {
    assert_eq!(every_step(ImportMode::Stage, false, Fault::Fail), 4);
    assert_eq!(every_step(ImportMode::Stage, true, Fault::Fail), 4);
}

#[test]
fn import_interrupted_at_any_step_leaves_old_or_new_whole() {
    assert_eq!(every_step(ImportMode::Commit, false, Fault::Crash), 7);
    assert_eq!(every_step(ImportMode::Stage, true, Fault::Crash), 4);
}

/// A [`StoreFs`] whose first `write` waits until released, to hold an import mid-way.
#[derive(Debug, Clone)]
struct Paused {
    entered: Arc<Mutex<Option<mpsc::Sender<()>>>>,
    release: Arc<Mutex<mpsc::Receiver<()>>>,
    calls: Arc<AtomicUsize>,
    holding: Arc<AtomicBool>,
}

impl StoreFs for Paused {
    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(tx) = self.entered.lock().unwrap().take() {
            self.holding.store(true, Ordering::SeqCst);
            tx.send(()).unwrap();
            self.release.lock().unwrap().recv().unwrap();
            self.holding.store(false, Ordering::SeqCst);
        }
        OsFs.write(path, data)
    }
    fn sync_file(&self, path: &Path) -> io::Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        OsFs.sync_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        OsFs.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        OsFs.sync_dir(dir)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        OsFs.remove(path)
    }
}

#[test]
fn concurrent_imports_run_one_after_the_other() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("store");
    prepared(&dir, false);
    let mut third = config();
    third.network.dns_servers = vec!["10.20.30.54".parse().unwrap()];

    // The first import stops inside its first write, holding the lock.
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let first_fs = Paused {
        entered: Arc::new(Mutex::new(Some(entered_tx))),
        release: Arc::new(Mutex::new(release_rx)),
        calls: Arc::new(AtomicUsize::new(0)),
        holding: Arc::new(AtomicBool::new(false)),
    };
    let first_store = Store::open_with(&dir, Box::new(first_fs.clone())).unwrap();
    let first_bytes = archive_of(&next_config());
    let first = std::thread::spawn(move || {
        import_archive(&first_bytes, None, &first_store, &ImportOptions::default()).unwrap()
    });
    entered_rx.recv().unwrap();

    // The second import, through its own Store of the same directory, can do nothing
    // while the first holds the lock.
    let (_unused_tx, unused_rx) = mpsc::channel();
    let second_fs = Paused {
        entered: Arc::new(Mutex::new(None)),
        release: Arc::new(Mutex::new(unused_rx)),
        calls: Arc::new(AtomicUsize::new(0)),
        holding: Arc::new(AtomicBool::new(false)),
    };
    let second_calls = second_fs.calls.clone();
    let third_bytes = archive_of(&third);
    let dir2 = dir.clone();
    let second = std::thread::spawn(move || {
        // Opening takes the lock as well (to clean up temporary files).
        let store = Store::open_with(&dir2, Box::new(second_fs)).unwrap();
        import_archive(&third_bytes, None, &store, &ImportOptions::default()).unwrap()
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(first_fs.holding.load(Ordering::SeqCst));
    assert_eq!(second_calls.load(Ordering::SeqCst), 0);
    release_tx.send(()).unwrap();

    let r1 = first.join().unwrap();
    let r2 = second.join().unwrap();
    assert_eq!(r1.config, next_config());
    assert_eq!(r2.config, third);
    // The second saw what the first left: its previous is the first's configuration.
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.current().unwrap(), Some(third));
    assert_eq!(store.previous().unwrap(), Some(next_config()));
    assert_eq!(store.pending().unwrap(), None);
}
