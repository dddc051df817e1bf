//! A blocking client of the control socket.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::wire::{self, MAX_PAYLOAD, MAX_REPLY_LINE, ReplyLine};
use crate::{API_VERSION, EventJson, FactsJson, Refusal, Reply, Request, StatusJson, Token};

/// Errors of the control client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Could not connect to the daemon.
    #[error("cannot connect to control socket {path}")]
    Connect {
        /// Socket path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Lost the connection.
    #[error("control connection failed")]
    Io(#[from] std::io::Error),
    /// The daemon answered something that is not a reply.
    #[error("malformed reply from the daemon")]
    Malformed(#[from] serde_json::Error),
    /// The daemon answered with another API version.
    #[error("the daemon speaks api version {0}, this program {API_VERSION}")]
    Version(u32),
    /// A reply line or payload beyond the limits.
    #[error("the daemon's reply is larger than {0} bytes")]
    TooLong(usize),
    /// The payload to send is beyond the limit.
    #[error("the payload of {0} bytes is larger than the {MAX_PAYLOAD} bytes accepted")]
    PayloadTooLarge(usize),
    /// The daemon closed the connection without answering.
    #[error("daemon closed the connection without answering")]
    NoAnswer,
    /// The daemon refused the request.
    #[error("clusterd refused: {0}")]
    Refused(Refusal),
    /// The daemon answered something else than the request asks for.
    #[error("unexpected answer from clusterd: {0}")]
    Unexpected(String),
}

impl ClientError {
    fn unexpected(r: &Reply) -> ClientError {
        match r {
            Reply::Refused(r) => ClientError::Refused(r.clone()),
            other => ClientError::Unexpected(format!("{other:?}")),
        }
    }
}

/// A connection to clusterd's control socket. Requests go one at a time; each waits
/// for its reply (at most 30 s without a byte, unless [`Client::wait_forever`]).
#[derive(Debug)]
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    token: Option<Token>,
}

impl Client {
    /// Connects to `path`.
    ///
    /// # Errors
    /// [`ClientError::Connect`] when nobody listens there.
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let s = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.display().to_string(),
            source,
        })?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let writer = s.try_clone()?;
        Ok(Client {
            reader: BufReader::new(s),
            writer,
            token: None,
        })
    }

    /// Sends `token` with every request from now on.
    #[must_use]
    pub fn with_token(mut self, token: Option<Token>) -> Client {
        self.token = token;
        self
    }

    /// Sends `request` and reads its reply.
    ///
    /// # Errors
    /// IO or decoding failures.
    pub fn call(&mut self, request: &Request) -> Result<Reply, ClientError> {
        self.call_with(request, &[]).map(|(r, _)| r)
    }

    /// Sends `request` with `payload` and reads its reply and the reply's payload.
    ///
    /// # Errors
    /// IO or decoding failures, a payload beyond [`MAX_PAYLOAD`].
    pub fn call_with(
        &mut self,
        request: &Request,
        payload: &[u8],
    ) -> Result<(Reply, Vec<u8>), ClientError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(ClientError::PayloadTooLarge(payload.len()));
        }
        let line = wire::request_line(self.token.as_ref(), request, payload.len())?;
        self.writer.write_all(&line)?;
        self.writer.write_all(payload)?;
        self.writer.flush()?;
        self.next_with_payload()
    }

    /// Reads the next reply (the streamed events of `events`).
    ///
    /// # Errors
    /// IO or decoding failures, [`ClientError::NoAnswer`] at end of stream.
    pub fn read_reply(&mut self) -> Result<Reply, ClientError> {
        self.next_with_payload().map(|(r, _)| r)
    }

    fn next_with_payload(&mut self) -> Result<(Reply, Vec<u8>), ClientError> {
        let mut line = Vec::new();
        let limit = u64::try_from(MAX_REPLY_LINE + 1).unwrap_or(u64::MAX);
        let n = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Err(ClientError::NoAnswer);
        }
        if line.last() != Some(&b'\n') {
            return Err(if line.len() > MAX_REPLY_LINE {
                ClientError::TooLong(MAX_REPLY_LINE)
            } else {
                ClientError::NoAnswer
            });
        }
        let r: ReplyLine = serde_json::from_slice(&line)?;
        if r.version != API_VERSION {
            return Err(ClientError::Version(r.version));
        }
        let len = usize::try_from(r.payload).unwrap_or(usize::MAX);
        if len > MAX_PAYLOAD {
            return Err(ClientError::TooLong(MAX_PAYLOAD));
        }
        let mut payload = vec![0u8; len];
        self.reader.read_exact(&mut payload)?;
        Ok((r.reply, payload))
    }

    /// The cluster's state.
    ///
    /// # Errors
    /// IO, decoding, or a refusal (recovery mode).
    pub fn status(&mut self) -> Result<StatusJson, ClientError> {
        match self.call(&Request::Status)? {
            Reply::Status(s) => Ok(*s),
            other => Err(ClientError::unexpected(&other)),
        }
    }

    /// This node's and the other node's facts.
    ///
    /// # Errors
    /// IO, decoding, or a refusal.
    pub fn facts(&mut self) -> Result<FactsJson, ClientError> {
        match self.call(&Request::Facts)? {
            Reply::Facts(f) => Ok(*f),
            other => Err(ClientError::unexpected(&other)),
        }
    }

    /// The recent events (the backlog), oldest first, at most `limit` of them read.
    ///
    /// # Errors
    /// IO, decoding, or a refusal.
    pub fn events(&mut self, limit: usize) -> Result<Vec<EventJson>, ClientError> {
        let mut out = Vec::new();
        let mut r = self.call(&Request::Events { follow: false })?;
        loop {
            match r {
                Reply::Event(e) => {
                    if out.len() < limit {
                        out.push(e);
                    }
                }
                Reply::Done => return Ok(out),
                other => return Err(ClientError::unexpected(&other)),
            }
            r = self.read_reply()?;
        }
    }

    /// Waits for replies without a read timeout (for `events` with `follow`).
    ///
    /// # Errors
    /// IO failures.
    pub fn wait_forever(&mut self) -> Result<(), ClientError> {
        self.reader.get_ref().set_read_timeout(None)?;
        Ok(())
    }
}

/// The way to clusterd's control API: blocking calls, each with the session's token.
/// [`Socket`] is the real one; tests of a client may serve it in-process.
pub trait Api: Send + Sync {
    /// Sends `request` (with `payload`) and returns the reply and its payload.
    ///
    /// # Errors
    /// The request could not be sent or its reply not read.
    fn call(
        &self,
        token: Option<&Token>,
        request: &Request,
        payload: &[u8],
    ) -> Result<(Reply, Vec<u8>), ClientError>;

    /// The recent events, oldest first, at most `limit`.
    ///
    /// # Errors
    /// As [`Api::call`], or a refusal.
    fn events(&self, limit: usize) -> Result<Vec<EventJson>, ClientError>;
}

/// The control socket at a path: a connection per call.
///
/// A program started together with clusterd (the web console at boot) is made
/// [`Socket::patient_until`] its start-up is over: until then a socket that is not
/// there yet, or not yet listened on, is waited for (at most [`PATIENCE_PER_CALL`]
/// per call) instead of failing the operator's first request.
#[derive(Debug, Clone)]
pub struct Socket {
    path: std::path::PathBuf,
    patient_until: Option<std::time::Instant>,
}

/// The longest one call waits for a starting daemon.
pub const PATIENCE_PER_CALL: Duration = Duration::from_secs(10);

impl Socket {
    /// The socket at `path`; a call fails at once when nobody listens there.
    #[must_use]
    pub fn new(path: impl Into<std::path::PathBuf>) -> Socket {
        Socket {
            path: path.into(),
            patient_until: None,
        }
    }

    /// Waits for a daemon that is not listening yet, until `until`.
    #[must_use]
    pub fn patient_until(mut self, until: std::time::Instant) -> Socket {
        self.patient_until = Some(until);
        self
    }

    /// The socket's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn connect(&self) -> Result<Client, ClientError> {
        let start = std::time::Instant::now();
        loop {
            match Client::connect(&self.path) {
                Err(ClientError::Connect { source, .. })
                    if matches!(
                        source.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                    ) && self
                        .patient_until
                        .is_some_and(|u| std::time::Instant::now() < u)
                        && start.elapsed() < PATIENCE_PER_CALL =>
                {
                    std::thread::sleep(Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }
}

impl Api for Socket {
    fn call(
        &self,
        token: Option<&Token>,
        request: &Request,
        payload: &[u8],
    ) -> Result<(Reply, Vec<u8>), ClientError> {
        self.connect()?
            .with_token(token.cloned())
            .call_with(request, payload)
    }

    fn events(&self, limit: usize) -> Result<Vec<EventJson>, ClientError> {
        self.connect()?.events(limit)
    }
}

/// One request on a connection of its own.
///
/// # Errors
/// See [`Client::call`].
pub fn ask(path: &Path, token: Option<&Token>, request: &Request) -> Result<Reply, ClientError> {
    Client::connect(path)?
        .with_token(token.cloned())
        .call(request)
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;
    use std::time::Instant;

    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tandem-api-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("control.sock")
    }

    #[test]
    fn a_patient_socket_waits_for_a_starting_daemon() {
        let path = scratch("patient");
        let later = path.clone();
        let daemon = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(700));
            let l = UnixListener::bind(&later).unwrap();
            l.accept().unwrap()
        });
        let t = Instant::now();
        let socket = Socket::new(&path).patient_until(Instant::now() + Duration::from_secs(10));
        socket.connect().expect("connected once the daemon listens");
        assert!(
            t.elapsed() >= Duration::from_millis(600),
            "{:?}",
            t.elapsed()
        );
        daemon.join().unwrap();
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_socket_past_its_patience_fails_at_once() {
        let path = scratch("impatient");
        for socket in [
            Socket::new(&path),
            Socket::new(&path).patient_until(Instant::now()),
        ] {
            let t = Instant::now();
            let e = socket.connect().unwrap_err();
            assert!(matches!(e, ClientError::Connect { .. }), "{e}");
            assert!(
                t.elapsed() < Duration::from_millis(150),
                "{:?}",
                t.elapsed()
            );
        }
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
