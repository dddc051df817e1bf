//! Files fetched over HTTP(S) by the node: the update server's list and bundles, OS
//! templates named by URL. One client (ureq, rustls): the public CAs or one CA of
//! the configuration, an optional account (HTTP basic authentication), a bound on
//! the time and on the bytes, and each failure said in words without the password.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;

/// How long connecting may take.
const CONNECT: Duration = Duration::from_secs(30);

/// Why a fetch failed; its words name the server and the URL, never the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The CA certificate given is not one.
    #[error("the CA certificate is not a PEM certificate: {0}")]
    BadCa(String),
    /// No answer (connection, TLS, time).
    #[error("{what} {url} cannot be reached: {why}")]
    Unreachable {
        /// The server, in words.
        what: String,
        /// The URL.
        url: String,
        /// The client's words.
        why: String,
    },
    /// The account was refused, or one is needed.
    #[error("{what} {url} {} (HTTP {status})", refused(user.as_deref()))]
    Refused {
        /// The server, in words.
        what: String,
        /// The URL.
        url: String,
        /// The account presented.
        user: Option<String>,
        /// 401 or 403.
        status: u16,
    },
    /// Nothing at the URL.
    #[error("{what} has nothing at {url} (HTTP 404)")]
    NotFound {
        /// The server, in words.
        what: String,
        /// The URL.
        url: String,
    },
    /// Another answer.
    #[error("{what} {url} answered HTTP {status}")]
    Status {
        /// The server, in words.
        what: String,
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// More bytes than allowed.
    #[error("{url} is larger than {max} bytes: not kept")]
    TooLarge {
        /// The URL.
        url: String,
        /// The bound.
        max: u64,
    },
    /// Reading the answer or writing the file failed.
    #[error("{0}")]
    Io(String),
}

fn refused(user: Option<&str>) -> String {
    match user {
        Some(u) => format!("refused the account \"{u}\""),
        None => "asks for an account".to_owned(),
    }
}

/// Where to fetch from and as whom.
#[derive(Clone, Default)]
pub struct Fetch {
    /// The account, when the server asks for one.
    pub account: Option<(String, String)>,
    /// The CA the server's certificate must come from (PEM); `None`: the public CAs.
    pub ca: Option<String>,
}

impl std::fmt::Debug for Fetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetch")
            .field("user", &self.account.as_ref().map(|a| &a.0))
            .field("ca", &self.ca.is_some())
            .finish()
    }
}

impl Fetch {
    fn agent(&self, timeout: Duration) -> Result<ureq::Agent, FetchError> {
        use ureq::tls::{Certificate, RootCerts, TlsConfig};
        let roots = match &self.ca {
            None => RootCerts::WebPki,
            Some(pem) => {
                let cert = Certificate::from_pem(pem.as_bytes())
                    .map_err(|e| FetchError::BadCa(e.to_string()))?;
                RootCerts::Specific(std::sync::Arc::new(vec![cert]))
            }
        };
        Ok(ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .timeout_connect(Some(CONNECT))
            .http_status_as_error(false)
            .tls_config(TlsConfig::builder().root_certs(roots).build())
            .build()
            .new_agent())
    }

    /// GETs `url`; only a 200 answer is returned. `what` names the server in errors
    /// (`the update server`).
    ///
    /// # Errors
    /// Not reached, the account refused, nothing there, another answer: in words.
    pub fn get(
        &self,
        url: &str,
        what: &str,
        timeout: Duration,
    ) -> Result<ureq::http::Response<ureq::Body>, FetchError> {
        let mut request = self.agent(timeout)?.get(url);
        if let Some((user, password)) = &self.account {
            let auth =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            request = request.header("Authorization", &format!("Basic {auth}"));
        }
        let (what, url) = (what.to_owned(), url.to_owned());
        let response = request.call().map_err(|e| FetchError::Unreachable {
            what: what.clone(),
            url: url.clone(),
            why: e.to_string(),
        })?;
        match response.status().as_u16() {
            200 => Ok(response),
            status @ (401 | 403) => Err(FetchError::Refused {
                what,
                url,
                user: self.account.as_ref().map(|a| a.0.clone()),
                status,
            }),
            404 => Err(FetchError::NotFound { what, url }),
            status => Err(FetchError::Status { what, url, status }),
        }
    }

    /// GETs `url` into the new file `part` (removed again on any failure), at most
    /// `max` bytes; `chunk` sees every piece and the bytes so far. Returns the size.
    ///
    /// # Errors
    /// As [`Fetch::get`], more than `max` bytes, or the file cannot be written.
    pub fn to_file(
        &self,
        url: &str,
        what: &str,
        timeout: Duration,
        part: &Path,
        max: u64,
        chunk: &mut dyn FnMut(&[u8], u64),
    ) -> Result<u64, FetchError> {
        let io = |what: &dyn std::fmt::Display, e: std::io::Error| {
            FetchError::Io(format!("{what}: {e}"))
        };
        let result = (|| {
            let mut response = self.get(url, what, timeout)?;
            let mut reader = response.body_mut().as_reader();
            let mut out = std::fs::File::create(part).map_err(|e| io(&part.display(), e))?;
            let mut got: u64 = 0;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = reader
                    .read(&mut buf)
                    .map_err(|e| io(&format_args!("fetching {url}"), e))?;
                if n == 0 {
                    break;
                }
                got += n as u64;
                if got > max {
                    return Err(FetchError::TooLarge {
                        url: url.to_owned(),
                        max,
                    });
                }
                out.write_all(&buf[..n])
                    .map_err(|e| io(&part.display(), e))?;
                chunk(&buf[..n], got);
            }
            out.sync_all().map_err(|e| io(&part.display(), e))?;
            Ok(got)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(part);
        }
        result
    }
}
