//! clusterd's control service of a test, served on a socket of the test on a thread
//! of its own (shared by the test files that drive `tandem` against it).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem_runtime::control::{self, Service};

/// Serves `service` on `sock`; returns once the socket is there.
///
/// # Panics
/// The socket cannot be bound, or does not appear within 10 s.
pub fn serve(service: Arc<Service>, sock: &Path) {
    let path = sock.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the control service");
        rt.block_on(async move {
            let l = control::bind(&path, None).expect("binding the control socket");
            control::serve(l, service).await;
        });
    });
    let t = Instant::now();
    while !sock.exists() {
        assert!(t.elapsed() < Duration::from_secs(10), "no control socket");
        std::thread::sleep(Duration::from_millis(20));
    }
}
