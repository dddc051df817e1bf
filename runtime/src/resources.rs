//! The ordered resource chain run on takeover (forward) and release (backwards), and
//! the resources of this issue: service addresses with gratuitous ARP (R4.4).
//!
//! Later resources (fencing, replication, filesystem, links, VEs) implement
//! [`Resource`] and are inserted before the service addresses, as the architecture's
//! chain order says.

use std::fmt::Debug;
use std::future::Future;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::net::{self, ArpError, NetlinkError};

/// A boxed future, as trait methods returning futures must be object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A resource failed.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    /// The netlink part of a service address failed.
    #[error("service address {address}/{prefix} on {interface}")]
    Address {
        /// Address.
        address: Ipv4Addr,
        /// Prefix length.
        prefix: u8,
        /// Interface.
        interface: String,
        /// Cause.
        #[source]
        source: NetlinkError,
    },
    /// Sending the gratuitous ARP failed.
    #[error("gratuitous arp for {address} on {interface}")]
    Arp {
        /// Address.
        address: Ipv4Addr,
        /// Interface.
        interface: String,
        /// Cause.
        #[source]
        source: ArpError,
    },
    /// A step of the data area (filesystem, links).
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// The VE step.
    #[error(transparent)]
    Ve(#[from] crate::ve::manager::VeError),
    /// The replication step.
    #[error(transparent)]
    Replication(#[from] crate::replication::ReplicationError),
    /// The thread running a blocking step ended without an answer (it panicked).
    #[error("the task of a resource step ended abnormally: {0}")]
    Task(String),
    /// A step of the chain failed; which one, and why.
    #[error("step {index} of {total} ({step})")]
    Step {
        /// The step's resource name.
        step: String,
        /// 1-based position in the chain.
        index: usize,
        /// Steps in the chain.
        total: usize,
        /// Why.
        #[source]
        source: Box<ResourceError>,
    },
    /// A simulated failure (tests).
    #[error("simulated failure of {name}")]
    Simulated {
        /// Resource name.
        name: String,
    },
}

/// Runs a step's blocking work (commands, file systems) off the daemon's loop.
pub(crate) async fn blocking<E>(
    f: impl FnOnce() -> Result<(), E> + Send + 'static,
) -> Result<(), ResourceError>
where
    E: Into<ResourceError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(Into::into),
        Err(e) => Err(ResourceError::Task(e.to_string())),
    }
}

/// One step of the chain. `acquire` and `release` must be idempotent: the chain may
/// release a resource that was never (fully) acquired.
pub trait Resource: Send + Debug {
    /// Name for status and errors.
    fn name(&self) -> String;
    /// Brings the resource up on this node.
    fn acquire(&mut self) -> BoxFuture<'_, Result<(), ResourceError>>;
    /// Takes the resource down on this node.
    fn release(&mut self) -> BoxFuture<'_, Result<(), ResourceError>>;
    /// Whether a failed release of this step leaves something behind that still uses
    /// the steps before it (a VE that did not stop still runs from the data area):
    /// the chain's release then stops there and takes none of them down. The default
    /// is false: the chain tries every step.
    fn failed_release_holds_earlier(&self) -> bool {
        false
    }
    /// Tells the network again that this node holds the resource (after a split brain,
    /// when routers may have learnt the peer's MAC). Called only while acquired; the
    /// default does nothing.
    fn announce(&mut self) -> BoxFuture<'_, Result<(), ResourceError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Resources in takeover order.
#[derive(Debug, Default)]
pub struct Chain {
    resources: Vec<Box<dyn Resource>>,
    /// How long each step of the last acquire or release took.
    timings: Vec<(String, std::time::Duration)>,
}

impl Chain {
    /// An empty chain.
    #[must_use]
    pub fn new() -> Chain {
        Chain::default()
    }

    /// Appends a resource (acquired after, released before the ones already there).
    pub fn push(&mut self, r: Box<dyn Resource>) {
        self.resources.push(r);
    }

    /// Names in chain order.
    #[must_use]
    pub fn names(&self) -> Vec<String> {
        self.resources.iter().map(|r| r.name()).collect()
    }

    /// Acquires in order; stops at the first failure and returns it, naming the
    /// step. The caller releases afterwards (release is idempotent, in reverse order),
    /// so nothing stays half up.
    ///
    /// # Errors
    /// [`ResourceError::Step`]: the first resource's failure.
    pub async fn acquire(&mut self) -> Result<(), ResourceError> {
        self.timings.clear();
        let total = self.resources.len();
        for (i, r) in self.resources.iter_mut().enumerate() {
            let t = std::time::Instant::now();
            let done = r.acquire().await;
            self.timings.push((r.name(), t.elapsed()));
            done.map_err(|e| ResourceError::Step {
                step: r.name(),
                index: i + 1,
                total,
                source: Box::new(e),
            })?;
        }
        Ok(())
    }

    /// The steps of the last acquire or release with their times, e.g.
    /// `2.1 s: replication r0 primary 0.3 s, data area /vz 1.2 s, …`.
    #[must_use]
    pub fn timings(&self) -> String {
        let total: std::time::Duration = self.timings.iter().map(|(_, d)| *d).sum();
        let steps: Vec<String> = self
            .timings
            .iter()
            .map(|(n, d)| format!("{n} {:.2} s", d.as_secs_f64()))
            .collect();
        format!("{:.2} s: {}", total.as_secs_f64(), steps.join(", "))
    }

    /// Releases in reverse order, trying every resource; returns the first failure,
    /// naming the step. A step whose failed release holds the ones before it
    /// ([`Resource::failed_release_holds_earlier`]) ends the release there: those
    /// stay up, and its failure is the one returned, as it is why they are up.
    ///
    /// # Errors
    /// [`ResourceError::Step`]: the first resource's failure (the others were still
    /// attempted), or the failure of the step that held the ones before it.
    pub async fn release(&mut self) -> Result<(), ResourceError> {
        self.timings.clear();
        let mut first = None;
        let total = self.resources.len();
        for (i, r) in self.resources.iter_mut().enumerate().rev() {
            let t = std::time::Instant::now();
            let done = r.release().await;
            self.timings.push((r.name(), t.elapsed()));
            if let Err(e) = done {
                let failed = ResourceError::Step {
                    step: r.name(),
                    index: i + 1,
                    total,
                    source: Box::new(e),
                };
                if r.failed_release_holds_earlier() {
                    return Err(failed);
                }
                first.get_or_insert(failed);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Announces every resource again, in order, trying every resource; returns the
    /// first failure.
    ///
    /// # Errors
    /// The first resource's failure (the others were still attempted).
    pub async fn announce(&mut self) -> Result<(), ResourceError> {
        let mut first = None;
        for r in &mut self.resources {
            if let Err(e) = r.announce().await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// Announcements still to be repeated in the background, with the handle that stops
/// them. Whoever gives the address away must [`Repeats::cancel`] them first: a repeat
/// from the old owner after a quick switchover would point routers back at it.
#[derive(Debug)]
pub struct Repeats {
    task: JoinHandle<()>,
}

impl Repeats {
    /// Calls `send` `count - 1` more times, `gap` apart (the caller sent the first),
    /// stopping early when it returns false. Needs a tokio runtime.
    pub fn spawn(
        count: u32,
        gap: Duration,
        mut send: impl FnMut() -> bool + Send + 'static,
    ) -> Repeats {
        let task = tokio::spawn(async move {
            for _ in 1..count {
                tokio::time::sleep(gap).await;
                if !send() {
                    break;
                }
            }
        });
        Repeats { task }
    }

    /// Stops the repeats. When this returns the task has ended: nothing more is sent,
    /// even on a multi-threaded runtime where it may have been running just then.
    pub async fn cancel(self) {
        self.task.abort();
        // Err(cancelled) is the expected outcome; a finished task is fine too.
        let _ = self.task.await;
    }

    /// True once every repeat has been sent (or they were stopped).
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// A service address on the external interface, announced by gratuitous ARP.
#[derive(Debug)]
pub struct ServiceAddress {
    /// Interface name.
    pub interface: String,
    /// Address.
    pub address: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
    /// Gratuitous ARPs sent on takeover (the first at once, then one per `garp_gap`).
    pub garp_count: u32,
    /// Gap between gratuitous ARPs.
    pub garp_gap: Duration,
    /// The repeats of the last announcement, stopped by release.
    repeats: Option<Repeats>,
}

impl Resource for ServiceAddress {
    fn name(&self) -> String {
        format!(
            "address {}/{} on {}",
            self.address, self.prefix, self.interface
        )
    }

    fn acquire(&mut self) -> BoxFuture<'_, Result<(), ResourceError>> {
        Box::pin(async move {
            let link = net::link_info(&self.interface)
                .await
                .map_err(|source| self.addr_err(source))?;
            net::add_address(link.index, self.address, self.prefix)
                .await
                .map_err(|source| self.addr_err(source))?;
            self.announce_on(link).await
        })
    }

    fn release(&mut self) -> BoxFuture<'_, Result<(), ResourceError>> {
        Box::pin(async move {
            // First silence the announcements, then give the address up.
            self.stop_repeats().await;
            let link = net::link_info(&self.interface)
                .await
                .map_err(|source| self.addr_err(source))?;
            net::del_address(link.index, self.address, self.prefix)
                .await
                .map_err(|source| self.addr_err(source))
        })
    }

    fn announce(&mut self) -> BoxFuture<'_, Result<(), ResourceError>> {
        Box::pin(async move {
            let link = net::link_info(&self.interface)
                .await
                .map_err(|source| self.addr_err(source))?;
            self.announce_on(link).await
        })
    }
}

impl ServiceAddress {
    /// A service address announced `garp_count` times, `garp_gap` apart, on takeover.
    #[must_use]
    pub fn new(
        interface: String,
        address: Ipv4Addr,
        prefix: u8,
        garp_count: u32,
        garp_gap: Duration,
    ) -> ServiceAddress {
        ServiceAddress {
            interface,
            address,
            prefix,
            garp_count,
            garp_gap,
            repeats: None,
        }
    }

    async fn stop_repeats(&mut self) {
        if let Some(r) = self.repeats.take() {
            r.cancel().await;
        }
    }

    /// Sends one gratuitous ARP now and the rest in the background: a router that
    /// missed the first learns from the next; the takeover does not wait for them.
    async fn announce_on(&mut self, link: net::LinkInfo) -> Result<(), ResourceError> {
        self.stop_repeats().await;
        net::send_gratuitous_arp(link.index, link.mac, self.address).map_err(|source| {
            ResourceError::Arp {
                address: self.address,
                interface: self.interface.clone(),
                source,
            }
        })?;
        let (idx, mac, addr) = (link.index, link.mac, self.address);
        self.repeats = Some(Repeats::spawn(self.garp_count, self.garp_gap, move || {
            net::send_gratuitous_arp(idx, mac, addr).is_ok()
        }));
        Ok(())
    }

    fn addr_err(&self, source: NetlinkError) -> ResourceError {
        ResourceError::Address {
            address: self.address,
            prefix: self.prefix,
            interface: self.interface.clone(),
            source,
        }
    }
}

/// Fault knobs and observations of a [`SimResource`], shared with the test.
#[derive(Debug, Default)]
pub struct SimKnobs {
    /// The next acquire fails.
    pub fail_acquire: AtomicBool,
    /// The next release fails.
    pub fail_release: AtomicBool,
    /// Currently held.
    pub held: AtomicBool,
    /// Acquire calls so far.
    pub acquires: AtomicU32,
    /// Announce calls so far.
    pub announces: AtomicU32,
    /// Log of `+name` / `-name` in call order, shared by all sim resources of a chain.
    pub log: Mutex<Vec<String>>,
}

/// A resource that only records what happens to it, with fault knobs.
#[derive(Debug)]
pub struct SimResource {
    /// Name.
    pub name: String,
    /// Time an acquire or release takes.
    pub delay: Duration,
    /// Knobs.
    pub knobs: Arc<SimKnobs>,
}

impl SimResource {
    fn record(&self, what: String) {
        if let Ok(mut l) = self.knobs.log.lock() {
            l.push(what);
        }
    }
}

impl Resource for SimResource {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn acquire(&mut self) -> BoxFuture<'_, Result<(), ResourceError>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            self.knobs.acquires.fetch_add(1, Ordering::SeqCst);
            if self.knobs.fail_acquire.swap(false, Ordering::SeqCst) {
                self.record(format!("!{}", self.name));
                return Err(ResourceError::Simulated {
                    name: self.name.clone(),
                });
            }
            self.knobs.held.store(true, Ordering::SeqCst);
            self.record(format!("+{}", self.name));
            Ok(())
        })
    }

    fn release(&mut self) -> BoxFuture<'_, Result<(), ResourceError>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            self.record(format!("-{}", self.name));
            if self.knobs.fail_release.swap(false, Ordering::SeqCst) {
                return Err(ResourceError::Simulated {
                    name: self.name.clone(),
                });
            }
            self.knobs.held.store(false, Ordering::SeqCst);
            Ok(())
        })
    }

    fn announce(&mut self) -> BoxFuture<'_, Result<(), ResourceError>> {
        Box::pin(async move {
            self.knobs.announces.fetch_add(1, Ordering::SeqCst);
            self.record(format!("~{}", self.name));
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(name: &str, knobs: &Arc<SimKnobs>) -> Box<dyn Resource> {
        Box::new(SimResource {
            name: name.to_string(),
            delay: Duration::from_millis(1),
            knobs: Arc::clone(knobs),
        })
    }

    #[tokio::test(flavor = "current_thread")]
    async fn chain_acquires_in_order_and_releases_in_reverse() {
        let k = Arc::new(SimKnobs::default());
        let mut c = Chain::new();
        for n in ["fence", "drbd", "mount", "address"] {
            c.push(sim(n, &k));
        }
        c.acquire().await.unwrap();
        c.release().await.unwrap();
        assert_eq!(
            *k.log.lock().unwrap(),
            [
                "+fence", "+drbd", "+mount", "+address", "-address", "-mount", "-drbd", "-fence"
            ]
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn failure_stops_acquire_and_release_tries_everything() {
        let k1 = Arc::new(SimKnobs::default());
        let k2 = Arc::new(SimKnobs::default());
        let mut c = Chain::new();
        c.push(sim("a", &k1));
        c.push(sim("b", &k2));
        k2.fail_acquire.store(true, Ordering::SeqCst);
        let e = c.acquire().await.unwrap_err();
        assert_eq!(
            crate::error_chain(&e),
            "step 2 of 2 (b): simulated failure of b"
        );
        assert!(k1.held.load(Ordering::SeqCst));
        k2.fail_release.store(true, Ordering::SeqCst);
        assert!(c.release().await.is_err());
        // "a" was still released although "b" failed first.
        assert!(!k1.held.load(Ordering::SeqCst));
    }

    /// A takeover that fails at any step gives back what it took, in reverse order,
    /// and says which step failed.
    #[tokio::test(flavor = "current_thread")]
    async fn failure_at_each_step_releases_in_reverse_and_names_the_step() {
        let names = ["fence", "drbd", "mount", "links", "ves", "address"];
        for failing in 0..names.len() {
            // One log shared by every step; each step fails on its own knob.
            let k = Arc::new(SimKnobs::default());
            let mut chain = Chain::new();
            for (i, n) in names.iter().enumerate() {
                let kk = Arc::new(SimKnobs::default());
                kk.fail_acquire.store(i == failing, Ordering::SeqCst);
                chain.push(Box::new(SharedLog {
                    inner: SimResource {
                        name: (*n).to_string(),
                        delay: Duration::from_millis(1),
                        knobs: kk,
                    },
                    log: Arc::clone(&k),
                }));
            }
            let e = chain.acquire().await.unwrap_err();
            assert_eq!(
                crate::error_chain(&e),
                format!(
                    "step {} of {} ({}): simulated failure of {}",
                    failing + 1,
                    names.len(),
                    names[failing],
                    names[failing]
                )
            );
            chain.release().await.unwrap();
            let log = k.log.lock().unwrap().clone();
            let mut want: Vec<String> = names[..failing].iter().map(|n| format!("+{n}")).collect();
            want.push(format!("!{}", names[failing]));
            want.extend(names.iter().rev().map(|n| format!("-{n}")));
            assert_eq!(log, want, "failing step {failing}");
        }
    }

    /// A sim resource recording into a log shared with other resources.
    #[derive(Debug)]
    struct SharedLog {
        inner: SimResource,
        log: Arc<SimKnobs>,
    }

    impl Resource for SharedLog {
        fn name(&self) -> String {
            self.inner.name()
        }
        fn acquire(&mut self) -> BoxFuture<'_, Result<(), ResourceError>> {
            Box::pin(async move {
                let r = self.inner.acquire().await;
                let mark = if r.is_ok() { "+" } else { "!" };
                self.log
                    .log
                    .lock()
                    .unwrap()
                    .push(format!("{mark}{}", self.inner.name));
                r
            })
        }
        fn release(&mut self) -> BoxFuture<'_, Result<(), ResourceError>> {
            Box::pin(async move {
                let r = self.inner.release().await;
                self.log
                    .log
                    .lock()
                    .unwrap()
                    .push(format!("-{}", self.inner.name));
                r
            })
        }
    }

    /// A step whose failed release leaves something using the steps before it.
    #[derive(Debug)]
    struct Holding(SimResource);

    impl Resource for Holding {
        fn name(&self) -> String {
            self.0.name()
        }
        fn acquire(&mut self) -> BoxFuture<'_, Result<(), ResourceError>> {
            self.0.acquire()
        }
        fn release(&mut self) -> BoxFuture<'_, Result<(), ResourceError>> {
            self.0.release()
        }
        fn failed_release_holds_earlier(&self) -> bool {
            true
        }
    }

    /// VEs that do not stop keep the data area (and what it needs) up; what comes
    /// after them is released first, and a later release goes on from them.
    #[tokio::test(flavor = "current_thread")]
    async fn a_holding_step_that_fails_keeps_the_steps_before_it() {
        let k = Arc::new(SimKnobs::default());
        let ves = Arc::new(SimKnobs::default());
        let mut c = Chain::new();
        c.push(sim("drbd", &k));
        c.push(sim("mount", &k));
        c.push(Box::new(Holding(SimResource {
            name: "ves".to_string(),
            delay: Duration::from_millis(1),
            knobs: Arc::clone(&ves),
        })));
        c.push(sim("address", &k));
        c.acquire().await.unwrap();
        ves.fail_release.store(true, Ordering::SeqCst);
        k.fail_release.store(true, Ordering::SeqCst);
        let e = c.release().await.unwrap_err();
        assert_eq!(
            crate::error_chain(&e),
            "step 3 of 4 (ves): simulated failure of ves"
        );
        assert!(ves.held.load(Ordering::SeqCst));
        assert!(k.held.load(Ordering::SeqCst));
        assert_eq!(
            *k.log.lock().unwrap(),
            ["+drbd", "+mount", "+address", "-address"]
        );
        c.release().await.unwrap();
        assert!(!ves.held.load(Ordering::SeqCst));
        assert_eq!(k.log.lock().unwrap()[4..], ["-address", "-mount", "-drbd"]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn announce_reaches_every_resource_in_order() {
        let k = Arc::new(SimKnobs::default());
        let mut c = Chain::new();
        c.push(sim("drbd", &k));
        c.push(sim("address", &k));
        c.acquire().await.unwrap();
        c.announce().await.unwrap();
        assert_eq!(k.announces.load(Ordering::SeqCst), 2);
        assert_eq!(
            *k.log.lock().unwrap(),
            ["+drbd", "+address", "~drbd", "~address"]
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn cancelled_repeats_send_nothing_more() {
        let sent = Arc::new(AtomicU32::new(0));
        let s = Arc::clone(&sent);
        let r = Repeats::spawn(100, Duration::from_millis(10), move || {
            s.fetch_add(1, Ordering::SeqCst);
            true
        });
        while sent.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        r.cancel().await;
        let at_cancel = sent.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(sent.load(Ordering::SeqCst), at_cancel);
        assert!(at_cancel < 99, "repeats ran to the end before the cancel");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn repeats_stop_after_count_or_on_failure() {
        let sent = Arc::new(AtomicU32::new(0));
        let s = Arc::clone(&sent);
        let r = Repeats::spawn(3, Duration::from_millis(1), move || {
            s.fetch_add(1, Ordering::SeqCst);
            true
        });
        while !r.is_finished() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // The caller sent the first; two repeats follow.
        assert_eq!(sent.load(Ordering::SeqCst), 2);
        let sent = Arc::new(AtomicU32::new(0));
        let s = Arc::clone(&sent);
        let r = Repeats::spawn(10, Duration::from_millis(1), move || {
            s.fetch_add(1, Ordering::SeqCst);
            false
        });
        while !r.is_finished() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(sent.load(Ordering::SeqCst), 1);
    }
}
