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
    fn agent(&self, timeout: Duration) -> Result<ureq::Agent, String> {
        use ureq::tls::{Certificate, RootCerts, TlsConfig};
        let roots = match &self.ca {
            None => RootCerts::WebPki,
            Some(pem) => {
                let cert = Certificate::from_pem(pem.as_bytes())
                    .map_err(|e| format!("the CA certificate is not a PEM certificate: {e}"))?;
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
    ) -> Result<ureq::http::Response<ureq::Body>, String> {
        let mut request = self.agent(timeout)?.get(url);
        if let Some((user, password)) = &self.account {
            let auth =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            request = request.header("Authorization", &format!("Basic {auth}"));
        }
        let response = request
            .call()
            .map_err(|e| format!("{what} {url} cannot be reached: {e}"))?;
        let status = response.status().as_u16();
        let user = self.account.as_ref().map(|a| a.0.as_str());
        match (status, user) {
            (200, _) => Ok(response),
            (401 | 403, Some(user)) => Err(format!(
                "{what} {url} refused the account \"{user}\" (HTTP {status})"
            )),
            (401 | 403, None) => Err(format!("{what} {url} asks for an account (HTTP {status})")),
            (404, _) => Err(format!("{what} has nothing at {url} (HTTP 404)")),
            (other, _) => Err(format!("{what} {url} answered HTTP {other}")),
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
    ) -> Result<u64, String> {
        let result = (|| {
            let mut response = self.get(url, what, timeout)?;
            let mut reader = response.body_mut().as_reader();
            let mut out =
                std::fs::File::create(part).map_err(|e| format!("{}: {e}", part.display()))?;
            let mut got: u64 = 0;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = reader
                    .read(&mut buf)
                    .map_err(|e| format!("fetching {url}: {e}"))?;
                if n == 0 {
                    break;
                }
                got += n as u64;
                if got > max {
                    return Err(format!("{url} is larger than {max} bytes: not kept"));
                }
                out.write_all(&buf[..n])
                    .map_err(|e| format!("{}: {e}", part.display()))?;
                chunk(&buf[..n], got);
            }
            out.sync_all()
                .map_err(|e| format!("{}: {e}", part.display()))?;
            Ok(got)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(part);
        }
        result
    }
}
