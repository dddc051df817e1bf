//! The outbox on disk, driven through `run_once` with the simulated sender.

use tandem_notify::{Event, Outbox, OutboxError, Plan, Policy, SimSender, UnixSecs, run_once};

fn ev(kind: &str, old: &str, new: &str, at: u64) -> Event {
    Event {
        node: "node2".into(),
        kind: kind.into(),
        old: old.into(),
        new: new.into(),
        text: "details".into(),
        at: UnixSecs(at),
    }
}

#[test]
fn survives_restart_and_retries_with_backoff() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = Policy::default();
    {
        let ob = Outbox::open(dir.path(), policy).expect("open");
        ob.push(&ev("failover", "passive", "active", 100), UnixSecs(100))
            .expect("push");
        let sim = SimSender::default();
        sim.set_failure(Some("relay down"));
        let r = run_once(&ob, &sim, UnixSecs(100)).expect("run");
        assert_eq!(r.failed.len(), 1);
        assert!(r.failed[0].1.contains("relay down"), "{:?}", r.failed);
    }
    // A new instance over the same directory: the message and its error are still there.
    let ob = Outbox::open(dir.path(), policy).expect("reopen");
    let p = ob.pending().expect("pending");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].attempts, 1);
    assert!(
        p[0].last_error
            .as_deref()
            .is_some_and(|e| e.contains("relay down"))
    );
    assert_eq!(p[0].next_attempt, UnixSecs(100 + policy.retry.initial_secs));

    let sim = SimSender::default();
    sim.set_failure(Some("still down"));
    // Not due yet: nothing is attempted.
    let r = run_once(&ob, &sim, UnixSecs(100 + policy.retry.initial_secs - 1)).expect("run");
    assert!(r.failed.is_empty() && r.delivered.is_empty());
    // Second failure doubles the wait.
    let t = 100 + policy.retry.initial_secs;
    run_once(&ob, &sim, UnixSecs(t)).expect("run");
    let p = ob.pending().expect("pending");
    assert_eq!(
        p[0].next_attempt,
        UnixSecs(t + 2 * policy.retry.initial_secs)
    );

    sim.set_failure(None);
    let r = run_once(&ob, &sim, UnixSecs(t + 2 * policy.retry.initial_secs)).expect("run");
    assert_eq!(r.delivered.len(), 1);
    assert_eq!(sim.sent().len(), 1);
    assert_eq!(
        sim.sent()[0].subject(),
        "[tandem node2] failover: passive -> active"
    );
    assert!(ob.pending().expect("pending").is_empty());
    // Delivered once; another pass sends nothing.
    let r = run_once(&ob, &sim, UnixSecs(100_000)).expect("run");
    assert!(r.delivered.is_empty());
}

#[test]
fn duplicates_suppressed_across_restart_even_after_delivery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = ev("link", "up", "down", 50);
    let ob = Outbox::open(dir.path(), Policy::default()).expect("open");
    assert!(matches!(
        ob.push(&e, UnixSecs(50)).expect("push"),
        Plan::New(_)
    ));
    let sim = SimSender::default();
    run_once(&ob, &sim, UnixSecs(50)).expect("run");
    let ob = Outbox::open(dir.path(), Policy::default()).expect("reopen");
    assert_eq!(ob.push(&e, UnixSecs(51)).expect("push"), Plan::Duplicate);
    assert!(ob.pending().expect("pending").is_empty());
    assert_eq!(sim.sent().len(), 1);
}

#[test]
fn flapping_on_disk_becomes_one_summary_sent_at_window_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = Policy::default();
    let ob = Outbox::open(dir.path(), policy).expect("open");
    let sim = SimSender::default();
    for i in 0..20u64 {
        let (o, n) = if i % 2 == 0 {
            ("up", "down")
        } else {
            ("down", "up")
        };
        ob.push(&ev("peer", o, n, 1000 + i), UnixSecs(1000 + i))
            .expect("push");
        run_once(&ob, &sim, UnixSecs(1000 + i)).expect("run");
    }
    assert_eq!(sim.sent().len(), policy.flap.threshold);
    let r = run_once(&ob, &sim, UnixSecs(1003 + policy.flap.window_secs)).expect("run");
    assert_eq!(r.delivered.len(), 1);
    let sent = sim.sent();
    let summary = sent.last().expect("summary");
    assert!(summary.summary);
    assert_eq!(summary.events.len(), 20 - policy.flap.threshold);
    assert!(
        summary.subject().contains("flapping: 17 changes"),
        "{}",
        summary.subject()
    );
}

#[test]
fn damaged_file_is_reported_by_name_and_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ob = Outbox::open(dir.path(), Policy::default()).expect("open");
    ob.push(&ev("failover", "a", "b", 1), UnixSecs(1))
        .expect("push");
    let bad = dir.path().join("msg-00000000000000000099.json");
    std::fs::write(&bad, b"{not json").expect("write");
    let err = ob.pending().expect_err("damaged file");
    match &err {
        OutboxError::Corrupt { path, .. } => assert_eq!(path, &bad),
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("msg-00000000000000000099.json"));
    assert_eq!(std::fs::read(&bad).expect("read"), b"{not json");
}

#[test]
fn leftover_temp_files_are_removed_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tmp = dir.path().join("msg-00000000000000000007.json.tmp");
    std::fs::write(&tmp, b"half").expect("write");
    let ob = Outbox::open(dir.path(), Policy::default()).expect("open");
    assert!(!tmp.exists());
    assert!(ob.pending().expect("pending").is_empty());
}

#[test]
fn event_without_node_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ob = Outbox::open(dir.path(), Policy::default()).expect("open");
    let mut e = ev("failover", "a", "b", 1);
    e.node = " ".into();
    let err = ob.push(&e, UnixSecs(1)).expect_err("empty node");
    assert!(err.to_string().contains("node"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).expect("read dir").count(), 0);
}

#[test]
fn summary_counts_the_queue_its_oldest_and_the_latest_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = Outbox::open(dir.path().join("ob"), Policy::default()).expect("open");
    std::fs::remove_dir(missing.dir()).expect("remove");
    assert_eq!(
        missing.summary().expect("a missing outbox is empty"),
        tandem_notify::OutboxSummary::default()
    );
    let ob = Outbox::open(dir.path().join("ob"), Policy::default()).expect("open");
    ob.push(&ev("failover", "passive", "active", 100), UnixSecs(100))
        .expect("push");
    ob.push(&ev("link", "up", "down", 160), UnixSecs(160))
        .expect("push");
    let s = ob.summary().expect("summary");
    assert_eq!(
        (s.queued, s.oldest, s.last_error),
        (2, Some(UnixSecs(100)), None)
    );
    let sim = SimSender::default();
    sim.set_failure(Some("relay down"));
    run_once(&ob, &sim, UnixSecs(200)).expect("run");
    sim.set_failure(Some("relay refuses"));
    run_once(
        &ob,
        &sim,
        UnixSecs(200 + Policy::default().retry.initial_secs),
    )
    .expect("run");
    let s = ob.summary().expect("summary");
    assert_eq!(s.queued, 2);
    assert!(
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains("relay refuses")),
        "{s:?}"
    );
    sim.set_failure(None);
    run_once(&ob, &sim, UnixSecs(100_000)).expect("run");
    assert_eq!(ob.summary().expect("summary").queued, 0);
}
