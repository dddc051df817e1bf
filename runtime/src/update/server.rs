//! The vendor's update server (`[updates]`): the list of its bundles, `index.json`
//! beside them as `cargo xtask bundle` writes it, fetched over HTTP(S) with the
//! configured account, and the newest version in it that this node may install.
//!
//! The list only tells that a newer system exists; whatever is installed is still a
//! bundle RAUC checks against the key the system trusts.

use std::io::Read as _;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tandem_api::UpdateOffer;

use super::{COMPATIBLE, UpdateError, fail};
use crate::fetch::{Fetch, FetchError};

/// The list's name under the server's URL.
pub const INDEX: &str = "index.json";

/// The longest list read.
const MAX_INDEX: u64 = 1 << 20;

/// How long one request may take, connection included.
const TIMEOUT: Duration = Duration::from_secs(30);

/// How long a bundle's download may take.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The server's list of bundles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// The system the bundles are for.
    pub compatible: String,
    /// The bundles.
    pub bundles: Vec<Offered>,
}

/// One bundle in the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offered {
    /// Its version.
    pub version: String,
    /// Its file name beside the list.
    pub file: String,
    /// SHA-256 of the file, hexadecimal.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// What changed.
    #[serde(default)]
    pub changes: String,
}

/// Reads a list as the server sent it.
///
/// # Errors
/// It is not a list of bundles: what is wrong, and where.
pub fn parse_index(bytes: &[u8]) -> Result<Index, UpdateError> {
    serde_json::from_slice(bytes).map_err(|e| {
        fail(format!(
            "the update server's {INDEX} is not a list of bundles: {e}"
        ))
    })
}

fn version(v: &str) -> Option<semver::Version> {
    semver::Version::parse(v.trim()).ok()
}

fn plain_file_name(f: &str) -> bool {
    !f.is_empty()
        && f.len() <= 255
        && f.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'+'))
        && !f.starts_with('.')
}

/// The newest bundle of `index` for this system that `running` should move to
/// (entries that name no version, a strange file name or a bad checksum are left
/// out): of the highest version (semantic-version precedence, which does not order
/// the build part after `+`), when that is higher than `running`'s, or when it is
/// the same version in another build and the list no longer holds the running
/// build itself (the vendor rebuilt it). `None`: nothing to move to.
#[must_use]
pub fn newest(index: &Index, running: &str) -> Option<UpdateOffer> {
    use std::cmp::Ordering;
    if index.compatible != COMPATIBLE {
        return None;
    }
    let running_text = running.trim();
    let running = version(running_text)?;
    let listed = |b: &Offered| b.version.trim() == running_text;
    let still_offered = index.bundles.iter().any(listed);
    index
        .bundles
        .iter()
        .filter(|b| plain_file_name(&b.file))
        .filter(|b| b.sha256.len() == 64 && b.sha256.bytes().all(|c| c.is_ascii_hexdigit()))
        .filter_map(|b| version(&b.version).map(|v| (v, b)))
        .max_by(|a, b| a.0.cmp_precedence(&b.0))
        .filter(|(v, b)| match v.cmp_precedence(&running) {
            Ordering::Greater => true,
            Ordering::Equal => !still_offered && !listed(b),
            Ordering::Less => false,
        })
        .map(|(_, b)| UpdateOffer {
            version: b.version.trim().to_owned(),
            file: b.file.clone(),
            size: b.size,
            sha256: b.sha256.to_ascii_lowercase(),
            changes: b.changes.chars().take(4000).collect(),
        })
}

/// Whether `[updates]` names a server to ask: a host of the names reserved for
/// examples (`example.com`, `example.net`, `example.org`, `*.example`, `*.invalid`,
/// as `tandem config init` writes) names none.
#[must_use]
pub fn configured(c: &tandem_config::schema::UpdatesConfig) -> bool {
    let url = c.url.as_str();
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(authority, |(h, _)| h)
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let reserved = ["example.com", "example.net", "example.org"];
    !(reserved
        .iter()
        .any(|r| host == *r || host.ends_with(&format!(".{r}")))
        || host.ends_with(".example")
        || host.ends_with(".invalid")
        || host == "example"
        || host == "invalid")
}

/// The configured server.
#[derive(Debug, Clone)]
pub struct Server {
    /// Its base URL.
    pub url: String,
    fetch: Fetch,
}

/// The operator's words for a failure to talk to the server: what to check.
fn hint(e: FetchError) -> UpdateError {
    match e {
        FetchError::Refused { .. } => fail(format!("{e}: check updates.user and updates.password")),
        FetchError::NotFound { .. } => fail(format!("{e}: check updates.url")),
        FetchError::BadCa(_) => fail(format!("updates.ca-certificate: {e}")),
        other => fail(other.to_string()),
    }
}

impl Server {
    /// The server of `[updates]`.
    #[must_use]
    pub fn new(c: &tandem_config::schema::UpdatesConfig) -> Server {
        Server {
            url: c.url.as_str().trim_end_matches('/').to_owned(),
            fetch: Fetch {
                account: Some((c.user.to_string(), c.password.expose().to_owned())),
                ca: c.ca_certificate.clone(),
            },
        }
    }

    /// Fetches the list.
    ///
    /// # Errors
    /// The server cannot be reached, refused the account, or sent no list: in words.
    pub fn fetch_index(&self) -> Result<Index, UpdateError> {
        let url = format!("{}/{INDEX}", self.url);
        let mut response = self
            .fetch
            .get(&url, "the update server", TIMEOUT)
            .map_err(hint)?;
        let mut bytes = Vec::new();
        response
            .body_mut()
            .as_reader()
            .take(MAX_INDEX + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| fail(format!("reading {url}: {e}")))?;
        if bytes.len() as u64 > MAX_INDEX {
            return Err(fail(format!(
                "the update server's {INDEX} is larger than {MAX_INDEX} bytes: not read"
            )));
        }
        parse_index(&bytes)
    }

    /// Downloads `offer` into `dir` (created, mode 0700) and returns its path; the
    /// file is there only complete, of the size and SHA-256 the list names.
    /// `progress` gets the percentage done.
    ///
    /// # Errors
    /// The server refused or went away, the file is larger than a bundle may be or
    /// than the list said, or its checksum differs: nothing is left in `dir` then.
    pub fn download(
        &self,
        offer: &UpdateOffer,
        dir: &Path,
        progress: &mut dyn FnMut(u8),
    ) -> Result<PathBuf, UpdateError> {
        use sha2::Digest as _;
        if !plain_file_name(&offer.file) {
            return Err(fail(format!(
                "the update server names the bundle {:?}: not a plain file name",
                offer.file
            )));
        }
        if offer.size > super::peer::MAX_BUNDLE {
            return Err(fail(format!(
                "{} is {} MiB, more than a bundle may be ({} MiB): not downloaded",
                offer.file,
                offer.size >> 20,
                super::peer::MAX_BUNDLE >> 20
            )));
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| fail(format!("{}: {e}", dir.display())))?;
        let part = dir.join(format!(".{}.part", offer.file));
        let done = dir.join(&offer.file);
        let url = format!("{}/{}", self.url, offer.file);
        let mut hash = sha2::Sha256::new();
        let mut shown = 0u8;
        progress(0);
        let got = self
            .fetch
            .to_file(
                &url,
                "the update server",
                DOWNLOAD_TIMEOUT,
                &part,
                offer.size,
                &mut |piece, got| {
                    hash.update(piece);
                    let pct = u8::try_from(got * 100 / offer.size.max(1)).unwrap_or(100);
                    if pct != shown {
                        shown = pct;
                        progress(pct);
                    }
                },
            )
            .map_err(|e| match e {
                FetchError::TooLarge { .. } => fail(format!(
                    "{} is larger than the {} bytes the update server's list names: not kept",
                    offer.file, offer.size
                )),
                other => hint(other),
            })?;
        let sha: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
        if got != offer.size || sha != offer.sha256 {
            let _ = std::fs::remove_file(&part);
            return Err(fail(format!(
                "{} arrived damaged ({got} of {} bytes, SHA-256 {sha} where the list names {}): not kept",
                offer.file, offer.size, offer.sha256
            )));
        }
        std::fs::rename(&part, &done).map_err(|e| {
            let _ = std::fs::remove_file(&part);
            fail(format!("{}: {e}", done.display()))
        })?;
        Ok(done)
    }

    /// Asks the server what it offers that is newer than `running`.
    ///
    /// # Errors
    /// As [`Server::fetch_index`].
    pub fn check(&self, running: &str) -> Result<Option<UpdateOffer>, UpdateError> {
        Ok(newest(&self.fetch_index()?, running))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered(version: &str, file: &str) -> Offered {
        Offered {
            version: version.into(),
            file: file.into(),
            sha256: "ab".repeat(32),
            size: 7,
            changes: "fixes".into(),
        }
    }

    #[test]
    fn the_newest_compatible_newer_bundle_is_offered() {
        let index = Index {
            compatible: COMPATIBLE.into(),
            bundles: vec![
                offered("0.2.0+b", "tandem-0.2.0+b.raucb"),
                offered("0.3.0+c", "tandem-0.3.0+c.raucb"),
                offered("0.1.0+a", "tandem-0.1.0+a.raucb"),
                offered("9.0.0", "../escape.raucb"),
                offered("not a version", "tandem-x.raucb"),
            ],
        };
        let o = newest(&index, "0.2.0+a").unwrap();
        assert_eq!(o.version, "0.3.0+c");
        assert_eq!(o.file, "tandem-0.3.0+c.raucb");
        assert_eq!(newest(&index, "0.3.0+c"), None, "the running build");
        assert_eq!(
            newest(&index, "0.3.0+z").map(|o| o.version),
            Some("0.3.0+c".to_owned()),
            "another build of the running version, the running one no longer listed"
        );
        let mut both = index.clone();
        both.bundles
            .push(offered("0.3.0+z", "tandem-0.3.0+z.raucb"));
        assert_eq!(
            newest(&both, "0.3.0+z"),
            None,
            "the running build still listed"
        );
        assert_eq!(newest(&index, "unknown"), None);
        let foreign = Index {
            compatible: "someone-else".into(),
            ..index
        };
        assert_eq!(newest(&foreign, "0.1.0"), None);
    }

    #[test]
    fn the_example_servers_name_none() {
        let mut c = tandem_config::init::new_cluster(&tandem_config::init::InitOptions::default())
            .unwrap()
            .0
            .updates;
        assert!(!configured(&c), "{}", c.url);
        for (url, yes) in [
            ("https://updates.vendor.de/tandem", true),
            ("http://127.0.0.1:8443/x", true),
            ("https://EXAMPLE.org:443/x", false),
            ("https://mirror.example/x", false),
            ("https://updates.invalid", false),
            ("https://example.com.vendor.de/", true),
        ] {
            c.url = url.parse().unwrap();
            assert_eq!(configured(&c), yes, "{url}");
        }
    }

    #[test]
    fn a_list_that_is_not_one_is_refused_in_words() {
        let e = parse_index(b"<html>login</html>").unwrap_err().0;
        assert!(e.contains("is not a list of bundles"), "{e}");
        let e = parse_index(br#"{"compatible":"tandem-sr2500"}"#)
            .unwrap_err()
            .0;
        assert!(e.contains("bundles"), "{e}");
        let good = serde_json::to_vec(&Index {
            compatible: COMPATIBLE.into(),
            bundles: vec![offered("0.2.0", "tandem-0.2.0.raucb")],
        })
        .unwrap();
        assert_eq!(parse_index(&good).unwrap().bundles.len(), 1);
    }
}
