//! The control API's server: clusterd's unix socket, where the `tandem` CLI, the web
//! console and the local console ask for everything (see `tandem_api` for the
//! requests and the wire format, [`service`] for who may ask what).
//!
//! The socket is root's (mode 0600), or with a group (`--control-group`, the web
//! console's) mode 0660. Each connection: one request line (at most
//! [`tandem_api::wire::MAX_REQUEST_LINE`] bytes; a longer one is refused and the
//! connection closed), the payload it declares (at most
//! [`tandem_api::wire::MAX_PAYLOAD`], within [`PAYLOAD_TIMEOUT`]), one reply line and
//! its payload; `events` with `follow` streams. At most [`MAX_CONNECTIONS`] connections
//! at once: one more is answered that it must wait and closed.

pub mod origin;
pub mod service;
pub mod session;
pub mod throttle;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tandem_api::wire::{self, MAX_REQUEST_LINE};
use tandem_api::{Refusal, Reply};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::broadcast;

pub use service::{ClusterCall, ClusterLink, Handled, Service};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// How long the declared payload may take to arrive.
pub const PAYLOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Binds the control socket at `path` (replacing a stale one), for root only or, with
/// `group`, also for that group.
///
/// # Errors
/// The directory, the bind or the permissions failed.
pub fn bind(path: &Path, group: Option<u32>) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating control socket directory {}", dir.display()))?;
    }
    // A socket left by a killed daemon would make bind fail.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("removing stale socket {}", path.display()));
        }
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("binding control socket {}", path.display()))?;
    // The web console runs unprivileged; its group may connect, nobody else but root.
    let mode = if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid))
            .with_context(|| format!("giving control socket {} to group {gid}", path.display()))?;
        0o660
    } else {
        0o600
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of control socket {}", path.display()))?;
    Ok(listener)
}

/// Serves `listener` with `service` until the task is dropped.
pub async fn serve(listener: UnixListener, service: Arc<Service>) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (_, mut w) = stream.into_split();
                let r = Reply::Refused(Refusal::Failed(format!(
                    "clusterd serves {MAX_CONNECTIONS} connections at once: try again in a moment"
                )));
                let _ = tokio::time::timeout(Duration::from_secs(1), write_reply(&mut w, &r, &[]))
                    .await;
            });
            continue;
        }
        let (service, open) = (Arc::clone(&service), Arc::clone(&open));
        tokio::spawn(async move {
            connection(stream, &service).await;
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

async fn write_reply(w: &mut OwnedWriteHalf, r: &Reply, payload: &[u8]) -> bool {
    let Ok(line) = wire::reply_line(r, payload.len()) else {
        return false;
    };
    w.write_all(&line).await.is_ok() && w.write_all(payload).await.is_ok()
}

async fn connection(stream: UnixStream, service: &Arc<Service>) {
    // Root is told by the kernel, never by the client.
    let cred = stream.peer_cred().ok();
    let uid = cred.map_or(u32::MAX, |c| c.uid());
    let pid = cred.and_then(|c| c.pid());
    let (r, mut w) = stream.into_split();
    let mut reader = BufReader::new(r);
    let mut line = Vec::new();
    loop {
        match read_request_line(&mut reader, &mut line).await {
            Ok(RequestLine::Line) => {}
            Ok(RequestLine::End) | Err(_) => return,
            Ok(RequestLine::TooLong) => {
                // The rest of the line is never read: the connection ends here.
                service.count_bad_request();
                let r = Reply::Refused(Refusal::TooLong(MAX_REQUEST_LINE));
                let _ = write_reply(&mut w, &r, &[]).await;
                return;
            }
        }
        let req = match wire::parse_request(&line) {
            Ok(r) => r,
            Err(bad) => {
                service.count_bad_request();
                if !write_reply(&mut w, &Reply::Refused(bad.refusal), &[]).await || bad.payload > 0
                {
                    // Where a payload of a request not understood ends is unknown.
                    return;
                }
                continue;
            }
        };
        let len = usize::try_from(req.payload).unwrap_or(usize::MAX);
        let mut payload = vec![0u8; len];
        match tokio::time::timeout(PAYLOAD_TIMEOUT, reader.read_exact(&mut payload)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                let r = Reply::Refused(Refusal::Payload(format!(
                    "{len} bytes declared did not arrive within {} s",
                    PAYLOAD_TIMEOUT.as_secs()
                )));
                let _ = write_reply(&mut w, &r, &[]).await;
                return;
            }
        }
        match service.handle_from(uid, pid, req, payload).await {
            Handled::One(reply, out) => {
                if !write_reply(&mut w, &reply, &out).await {
                    return;
                }
            }
            Handled::Events { follow } => {
                if !stream_events(&mut w, service, follow).await {
                    return;
                }
            }
        }
    }
}

/// The backlog, then (with `follow`) every new event until the reader goes.
async fn stream_events(w: &mut OwnedWriteHalf, service: &Service, follow: bool) -> bool {
    let Some(link) = service.cluster() else {
        let r = Reply::Refused(Refusal::RecoveryMode("events".into()));
        return write_reply(w, &r, &[]).await;
    };
    let (backlog, mut rx) = link.events.subscribe();
    for e in backlog {
        if !write_reply(w, &Reply::Event(e), &[]).await {
            return false;
        }
    }
    if !follow {
        return write_reply(w, &Reply::Done, &[]).await;
    }
    loop {
        let r = match rx.recv().await {
            Ok(e) => Reply::Event(e),
            Err(broadcast::error::RecvError::Lagged(n)) => Reply::EventsDropped(n),
            Err(broadcast::error::RecvError::Closed) => return false,
        };
        if !write_reply(w, &r, &[]).await {
            return false;
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum RequestLine {
    /// `line` holds the next request (newline stripped).
    Line,
    /// The client closed the connection.
    End,
    /// More than [`MAX_REQUEST_LINE`] bytes without a newline; what was read is
    /// discarded.
    TooLong,
}

/// Reads one request line into `line`, buffering at most [`MAX_REQUEST_LINE`] + 1
/// bytes whatever the client sends: a client that never sends a newline costs a
/// bounded buffer, not memory without end.
async fn read_request_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
) -> std::io::Result<RequestLine> {
    line.clear();
    let limit = u64::try_from(MAX_REQUEST_LINE + 1).unwrap_or(u64::MAX);
    let n = (&mut *reader).take(limit).read_until(b'\n', line).await?;
    if n == 0 {
        return Ok(RequestLine::End);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    } else if line.len() > MAX_REQUEST_LINE {
        line.clear();
        return Ok(RequestLine::TooLong);
    }
    // Otherwise the last line of a client that closed without a newline.
    Ok(RequestLine::Line)
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::{AsyncRead, ReadBuf};

    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn control_socket_admits_root_or_the_given_group_only() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let gid = rustix::process::getgid().as_raw();
        let l = bind(&path, Some(gid)).expect("bind with a group");
        let meta = std::fs::metadata(&path).expect("socket exists");
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        assert_eq!(meta.gid(), gid);
        drop(l);
        let l = bind(&path, None).expect("bind again, replacing the old socket");
        let meta = std::fs::metadata(&path).expect("socket exists");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        drop(l);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn request_lines_are_split_and_stripped() {
        let mut input: &[u8] = b"{\"a\":1}\n{\"b\":2}\r\nlast";
        let mut line = Vec::new();
        let mut got = Vec::new();
        while read_request_line(&mut input, &mut line).await.unwrap() == RequestLine::Line {
            got.push(String::from_utf8(line.clone()).unwrap());
        }
        assert_eq!(got, ["{\"a\":1}", "{\"b\":2}", "last"]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn request_line_limit_is_exact() {
        let mut line = Vec::new();
        let mut ok = vec![b'x'; MAX_REQUEST_LINE];
        ok.push(b'\n');
        let mut input = &ok[..];
        let r = read_request_line(&mut input, &mut line).await.unwrap();
        assert_eq!((r, line.len()), (RequestLine::Line, MAX_REQUEST_LINE));
        let mut long = vec![b'x'; MAX_REQUEST_LINE + 1];
        long.push(b'\n');
        let mut input = &long[..];
        let r = read_request_line(&mut input, &mut line).await.unwrap();
        assert_eq!(r, RequestLine::TooLong);
        assert!(line.is_empty());
    }

    /// A client that sends bytes forever and never a newline.
    struct Endless {
        given: usize,
    }

    impl AsyncRead for Endless {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let n = buf.remaining();
            buf.put_slice(&vec![b'x'; n]);
            self.given += n;
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn endless_line_is_refused_after_a_bounded_read() {
        let mut reader = BufReader::with_capacity(1024, Endless { given: 0 });
        let mut line = Vec::new();
        let r = read_request_line(&mut reader, &mut line).await.unwrap();
        assert_eq!(r, RequestLine::TooLong);
        // At most the limit plus one buffer refill was ever read.
        assert!(reader.get_ref().given <= MAX_REQUEST_LINE + 1 + 1024);
        assert!(line.capacity() < 4 * MAX_REQUEST_LINE);
    }
}
