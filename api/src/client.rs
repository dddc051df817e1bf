//! A blocking client of the control socket.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::wire::{self, MAX_PAYLOAD, MAX_REPLY_LINE, ReplyLine};
use crate::{API_VERSION, Reply, Request, Token};

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

    /// Waits for replies without a read timeout (for `events` with `follow`).
    ///
    /// # Errors
    /// IO failures.
    pub fn wait_forever(&mut self) -> Result<(), ClientError> {
        self.reader.get_ref().set_read_timeout(None)?;
        Ok(())
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
