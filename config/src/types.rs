//! Validated newtypes used by the schema.
//!
//! Every type here can only be built through `FromStr`/`TryFrom`, so a value that exists is a
//! valid value. Their serde form is the human-readable string; a bad string fails
//! deserialisation with a message that says what was expected, and the parser adds the path.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Implements `Serialize`/`Deserialize` through `Display`/`FromStr` (error = `String`).
macro_rules! string_serde {
    ($ty:ty, $what:literal) => {
        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$ty, E> {
                        v.parse::<$ty>().map_err(E::custom)
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

pub use tandem_proto::NodeId;

/// A duration in whole milliseconds, written `"500ms"`, `"5s"` or `"2m"` in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Millis(pub u64);

impl Millis {
    /// From whole seconds.
    #[must_use]
    pub const fn from_secs(s: u64) -> Millis {
        Millis(s * 1000)
    }

    /// The value in milliseconds.
    #[must_use]
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// As a standard duration.
    #[must_use]
    pub const fn as_duration(self) -> Duration {
        Duration::from_millis(self.0)
    }
}

impl From<Millis> for Duration {
    fn from(m: Millis) -> Duration {
        m.as_duration()
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1000) {
            write!(f, "{}s", self.0 / 1000)
        } else {
            write!(f, "{}ms", self.0)
        }
    }
}

impl FromStr for Millis {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a duration (expected e.g. \"500ms\", \"5s\" or \"2m\")");
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (num, unit) = s.split_at(split);
        if num.is_empty() || num.len() > 12 {
            return Err(bad());
        }
        let n: u64 = num.parse().map_err(|_| bad())?;
        let factor = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            _ => return Err(bad()),
        };
        Ok(Millis(n * factor))
    }
}
string_serde!(Millis, "a duration such as \"5s\"");

/// An IPv4 address (dotted quad, no leading zeros).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4(pub Ipv4Addr);

impl Ipv4 {
    /// The address.
    #[must_use]
    pub fn addr(self) -> Ipv4Addr {
        self.0
    }
}

impl From<Ipv4Addr> for Ipv4 {
    fn from(a: Ipv4Addr) -> Ipv4 {
        Ipv4(a)
    }
}

impl fmt::Display for Ipv4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Ipv4 {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.parse::<Ipv4Addr>()
            .map(Ipv4)
            .map_err(|_| format!("{s:?} is not an IPv4 address"))
    }
}
string_serde!(Ipv4, "an IPv4 address");

/// A netmask in dotted form (`"255.255.255.0"`), contiguous, prefix 8..=30.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Netmask(u8);

impl Netmask {
    /// From a prefix length (8..=30).
    ///
    /// # Errors
    /// When the prefix is outside 8..=30 (a node network needs room for at least two hosts
    /// and must not be a whole class-A-sized catch-all).
    pub fn from_prefix(prefix: u8) -> Result<Netmask, String> {
        if (8..=30).contains(&prefix) {
            Ok(Netmask(prefix))
        } else {
            Err(format!(
                "prefix length {prefix} is out of range (expected 8 to 30)"
            ))
        }
    }

    /// The prefix length.
    #[must_use]
    pub fn prefix(self) -> u8 {
        self.0
    }

    /// The mask as a 32-bit value.
    #[must_use]
    pub fn bits(self) -> u32 {
        u32::MAX << (32 - u32::from(self.0))
    }
}

impl fmt::Display for Netmask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Ipv4Addr::from(self.bits()).fmt(f)
    }
}

impl FromStr for Netmask {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a netmask (expected e.g. \"255.255.255.0\")");
        let a: Ipv4Addr = s.parse().map_err(|_| bad())?;
        let bits = u32::from(a);
        let ones = bits.leading_ones();
        if bits.checked_shl(ones).unwrap_or(0) != 0 {
            return Err(format!("{s:?} is not a contiguous netmask"));
        }
        let prefix = u8::try_from(ones).map_err(|_| bad())?;
        Netmask::from_prefix(prefix).map_err(|e| format!("{s:?}: {e}"))
    }
}
string_serde!(Netmask, "a netmask such as \"255.255.255.0\"");

/// An IPv4 address with its prefix length, written `"192.168.255.1/24"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Net {
    /// Builds a network; `prefix` must be at most 32.
    ///
    /// # Errors
    /// When `prefix > 32`.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Ipv4Net, String> {
        if prefix > 32 {
            return Err(format!(
                "prefix length {prefix} is out of range (expected 0 to 32)"
            ));
        }
        Ok(Ipv4Net { addr, prefix })
    }

    /// Builds a network from parts known to be valid (for constants).
    ///
    /// # Panics
    /// When `prefix > 32` (at compile time for constants).
    #[must_use]
    pub const fn from_parts(addr: Ipv4Addr, prefix: u8) -> Ipv4Net {
        assert!(prefix <= 32, "prefix length above 32");
        Ipv4Net { addr, prefix }
    }

    /// The address (host part kept).
    #[must_use]
    pub fn addr(self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    #[must_use]
    pub fn prefix(self) -> u8 {
        self.prefix
    }

    /// The mask as a 32-bit value.
    #[must_use]
    pub fn mask_bits(self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    /// The network address (host bits cleared).
    #[must_use]
    pub fn network(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask_bits())
    }

    /// The broadcast address.
    #[must_use]
    pub fn broadcast(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask_bits())
    }

    /// Whether `a` lies in this network.
    #[must_use]
    pub fn contains(self, a: Ipv4Addr) -> bool {
        u32::from(a) & self.mask_bits() == u32::from(self.network())
    }

    /// Whether the two networks share any address.
    #[must_use]
    pub fn overlaps(self, other: Ipv4Net) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }

    /// Whether the address is a usable host address (not the network or broadcast address)
    /// for prefixes up to /30.
    #[must_use]
    pub fn is_host_address(self) -> bool {
        self.prefix > 30 || (self.addr != self.network() && self.addr != self.broadcast())
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an IPv4 network (expected e.g. \"192.168.1.10/24\")");
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        Ipv4Net::new(addr, prefix).map_err(|e| format!("{s:?}: {e}"))
    }
}
string_serde!(Ipv4Net, "an IPv4 network such as \"192.168.1.10/24\"");

fn check_dns_name(s: &str, what: &str) -> Result<String, String> {
    let lower = s.to_ascii_lowercase();
    let bad = |why: &str| format!("{s:?} is not a valid {what} ({why})");
    if lower.is_empty() {
        return Err(bad("empty"));
    }
    if lower.len() > 253 {
        return Err(bad("longer than 253 characters"));
    }
    for label in lower.split('.') {
        if label.is_empty() {
            return Err(bad("empty label"));
        }
        if label.len() > 63 {
            return Err(bad("label longer than 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(bad("only letters, digits, '-' and '.' are allowed"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("a label may not start or end with '-'"));
        }
    }
    if lower.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(bad("all digits"));
    }
    Ok(lower)
}

/// A host or domain name (RFC 1123), normalised to lower case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hostname(String);

impl Hostname {
    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Hostname {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        check_dns_name(s, "host name").map(Hostname)
    }
}
string_serde!(Hostname, "a host name");

/// A DNS domain (search path entry), normalised to lower case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainName(String);

impl DomainName {
    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for DomainName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        check_dns_name(s, "domain name").map(DomainName)
    }
}
string_serde!(DomainName, "a domain name");

/// A host given by name or IPv4 address, with an optional port: `"mail.example.com:25"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    host: String,
    port: Option<u16>,
}

impl HostPort {
    /// The host part (name or address).
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, when given.
    #[must_use]
    pub fn port(&self) -> Option<u16> {
        self.port
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}:{p}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

impl FromStr for HostPort {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{s:?} is not a host (expected a name or IPv4 address, optionally with \":port\")"
            )
        };
        let (h, p) = match s.rsplit_once(':') {
            Some((h, p)) => {
                let port: u16 = p.parse().map_err(|_| bad())?;
                if port == 0 || p.starts_with('0') {
                    return Err(bad());
                }
                (h, Some(port))
            }
            None => (s, None),
        };
        let host = if h.parse::<Ipv4Addr>().is_ok() {
            h.to_owned()
        } else {
            check_dns_name(h, "host name").map_err(|_| bad())?
        };
        Ok(HostPort { host, port: p })
    }
}
string_serde!(HostPort, "a host name or address");

/// An e-mail address (`local@domain`), checked for shape only.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

impl EmailAddress {
    /// The address.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for EmailAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an e-mail address (expected local@domain)");
        let (local, domain) = s.rsplit_once('@').ok_or_else(bad)?;
        if local.is_empty()
            || local.len() > 64
            || !local
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"@<>()[]\\,;:\"".contains(&b))
        {
            return Err(bad());
        }
        let domain = check_dns_name(domain, "domain").map_err(|_| bad())?;
        Ok(EmailAddress(format!("{local}@{domain}")))
    }
}
string_serde!(EmailAddress, "an e-mail address");

/// An `http://` or `https://` URL (shape check only: scheme, host, no spaces or controls).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpUrl(String);

impl HttpUrl {
    /// The URL.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for HttpUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an http:// or https:// URL");
        let rest = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .ok_or_else(bad)?;
        if s.len() > 2048 || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad());
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if authority.contains('@') {
            // The value holds a secret: do not echo it.
            return Err(
                "must not carry credentials in the URL (use the user and password fields)"
                    .to_owned(),
            );
        }
        authority.parse::<HostPort>().map_err(|_| bad())?;
        Ok(HttpUrl(s.to_owned()))
    }
}
string_serde!(HttpUrl, "an http(s) URL");

/// An absolute path below `/dev/` (serial port, DRBD device, backing partition).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DevicePath(String);

impl DevicePath {
    /// The path.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DevicePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for DevicePath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ok = s.len() <= 255
            && s.starts_with("/dev/")
            && s.len() > 5
            && s.split('/')
                .skip(1)
                .all(|c| !c.is_empty() && c != "." && c != "..")
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/-_.:+".contains(&b));
        if ok {
            Ok(DevicePath(s.to_owned()))
        } else {
            Err(format!(
                "{s:?} is not a device path (expected e.g. \"/dev/ttyS1\")"
            ))
        }
    }
}
string_serde!(DevicePath, "a device path");

/// A user name for a local or remote account (`[a-z_][a-z0-9_-]*`, at most 32 characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserName(String);

impl UserName {
    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for UserName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut bytes = s.bytes();
        let first_ok = bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
        let ok = first_ok
            && s.len() <= 32
            && bytes
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Ok(UserName(s.to_owned()))
        } else {
            Err(format!(
                "{s:?} is not a user name (expected lower-case letters, digits, '_' or '-', at most 32)"
            ))
        }
    }
}
string_serde!(UserName, "a user name");

/// An absolute directory on a remote host (`/srv/backups/tandem`): printable characters
/// without quotes or backslashes (it is written into SFTP batch commands), no `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteDir(String);

impl RemoteDir {
    /// The path, without a trailing `/` (except for `/` itself).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RemoteDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RemoteDir {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if !s.starts_with('/') {
            return Err(format!(
                "{s:?} is not an absolute directory (expected a path starting with '/')"
            ));
        }
        if s.len() > 1024 {
            return Err("is longer than 1024 characters".to_owned());
        }
        if let Some(c) = s
            .chars()
            .find(|c| c.is_control() || matches!(c, '"' | '\\' | '\'' | '#'))
        {
            return Err(format!(
                "{s:?} contains {c:?} (expected a path without control characters, quotes, '\\' or '#')"
            ));
        }
        if s.split('/').any(|part| part == "..") {
            return Err(format!("{s:?} contains \"..\" (expected a plain path)"));
        }
        let trimmed = s.trim_end_matches('/');
        Ok(RemoteDir(if trimmed.is_empty() {
            "/".to_owned()
        } else {
            trimmed.to_owned()
        }))
    }
}
string_serde!(RemoteDir, "a directory path");

/// A time of day in UTC, `HH:MM` (`"02:30"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimeOfDay(u32);

impl TimeOfDay {
    /// Seconds after midnight, UTC.
    #[must_use]
    pub fn seconds(self) -> u32 {
        self.0
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 3600, self.0 / 60 % 60)
    }
}

impl FromStr for TimeOfDay {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a time of day (expected HH:MM in UTC, 00:00 to 23:59)");
        let (h, m) = s.split_once(':').ok_or_else(bad)?;
        if h.len() != 2 || m.len() != 2 {
            return Err(bad());
        }
        let h: u32 = h.parse().map_err(|_| bad())?;
        let m: u32 = m.parse().map_err(|_| bad())?;
        if h > 23 || m > 59 {
            return Err(bad());
        }
        Ok(TimeOfDay(h * 3600 + m * 60))
    }
}

string_serde!(TimeOfDay, "a time of day");

/// The cluster's identity: a random 128-bit id written like a UUID
/// (`"6f1c2a9e-0b7d-4c1e-9a55-2f0e8d3b7c41"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClusterId([u8; 16]);

impl ClusterId {
    /// From raw bytes.
    #[must_use]
    pub fn from_bytes(b: [u8; 16]) -> ClusterId {
        ClusterId(b)
    }

    /// The raw bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl FromStr for ClusterId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("{s:?} is not a cluster id (expected 32 hex digits in 8-4-4-4-12 groups)");
        let groups: Vec<&str> = s.split('-').collect();
        if groups.iter().map(|g| g.len()).collect::<Vec<_>>() != [8, 4, 4, 4, 12] {
            return Err(bad());
        }
        let hex: String = groups.concat();
        let v = decode_hex(&hex).ok_or_else(bad)?;
        let b: [u8; 16] = v.try_into().map_err(|_| bad())?;
        Ok(ClusterId(b))
    }
}
string_serde!(ClusterId, "a cluster id");

/// Decodes lower- or upper-case hex; `None` on odd length or a non-hex digit.
pub(crate) fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|p| {
            let hi = char::from(p[0]).to_digit(16)?;
            let lo = char::from(p[1]).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect()
}

/// Lower-case hex of `b`.
pub(crate) fn encode_hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

/// The cluster authentication key (32 random bytes, 64 hex digits in the file). Heartbeat
/// frames are authenticated with it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey([u8; 32]);

impl ClusterKey {
    /// From raw bytes.
    #[must_use]
    pub fn from_bytes(b: [u8; 32]) -> ClusterKey {
        ClusterKey(b)
    }

    /// The raw key.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterKey([redacted])")
    }
}

impl fmt::Display for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode_hex(&self.0))
    }
}

impl FromStr for ClusterKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        // The value is secret: never echo it in the message.
        let bad = || "is not a cluster key (expected 64 hex digits)".to_owned();
        if s.len() != 64 {
            return Err(bad());
        }
        let v = decode_hex(s).ok_or_else(bad)?;
        let b: [u8; 32] = v.try_into().map_err(|_| bad())?;
        Ok(ClusterKey(b))
    }
}
string_serde!(ClusterKey, "a cluster key");

/// A secret text (a credential for a remote service). Shown as `[redacted]` in `Debug` and
/// `Display`; [`Secret::expose`] is the only way to the value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a value.
    pub fn new(v: T) -> Secret<T> {
        Secret(v)
    }

    /// The secret value. Callers must not log it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A credential for a remote service (update server, BMC): printable ASCII, 1..=128
/// characters. Kept in clear because the node must present it; redacted when shown.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential(String);

impl Credential {
    /// The value. Callers must not log it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credential([redacted])")
    }
}

impl fmt::Display for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Credential {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            Ok(Credential(s.to_owned()))
        } else {
            Err(
                "is not a valid credential (expected 1 to 128 printable ASCII characters)"
                    .to_owned(),
            )
        }
    }
}
string_serde!(Credential, "a credential");

/// A salted password hash in PHC string form; only argon2id is accepted. Clear-text passwords
/// never appear in the configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// The PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash([redacted])")
    }
}

impl fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for PasswordHash {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::secrets::check_password_hash(s).map(|()| PasswordHash(s.to_owned()))
    }
}
string_serde!(PasswordHash, "an argon2id password hash");

/// A SHA-512 crypt hash (`$6$salt$hash` or `$6$rounds=N$salt$hash`), the form the C
/// library's `crypt` checks and `/etc/shadow` holds: what a node's sshd checks a root
/// password against. Never clear text.
#[derive(Clone, PartialEq, Eq)]
pub struct CryptHash(String);

impl CryptHash {
    /// The hash (`$6$…`).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CryptHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CryptHash([redacted])")
    }
}

impl fmt::Display for CryptHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for CryptHash {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::secrets::check_crypt_hash(s).map(|()| CryptHash(s.to_owned()))
    }
}
string_serde!(CryptHash, "a SHA-512 crypt password hash");

/// An unencrypted OpenSSH ed25519 private key (`-----BEGIN OPENSSH PRIVATE KEY-----`).
#[derive(Clone, PartialEq, Eq)]
pub struct SshPrivateKey(String);

impl SshPrivateKey {
    /// The key in OpenSSH PEM form. Callers must not log it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The matching public key in `authorized_keys` form.
    #[must_use]
    pub fn public_key(&self) -> String {
        crate::secrets::ssh_public_key(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for SshPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SshPrivateKey([redacted])")
    }
}

impl fmt::Display for SshPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SshPrivateKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::secrets::check_ssh_private_key(s).map(|()| SshPrivateKey(normalise_pem(s)))
    }
}
string_serde!(SshPrivateKey, "an OpenSSH private key");

/// A PEM certificate (chain) for the web console.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TlsCertificate(String);

impl TlsCertificate {
    /// The PEM text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TlsCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TlsCertificate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::secrets::check_tls_certificate(s).map(|()| TlsCertificate(normalise_pem(s)))
    }
}
string_serde!(TlsCertificate, "a PEM certificate");

/// The PEM (PKCS#8) private key of the web console's certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsPrivateKey(String);

impl TlsPrivateKey {
    /// The PEM text. Callers must not log it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TlsPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsPrivateKey([redacted])")
    }
}

impl fmt::Display for TlsPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TlsPrivateKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::secrets::check_tls_private_key(s).map(|()| TlsPrivateKey(normalise_pem(s)))
    }
}
string_serde!(TlsPrivateKey, "a PEM private key");

/// PEM text with a single trailing newline, so that equal keys compare equal whatever the
/// editor did to the end of the string.
fn normalise_pem(s: &str) -> String {
    let mut t = s.trim().replace("\r\n", "\n");
    t.push('\n');
    t
}

/// A serial line speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Baud(u32);

impl Baud {
    /// The speeds a null-modem heartbeat link may use.
    pub const ALLOWED: [u32; 6] = [9600, 19200, 38400, 57600, 115_200, 230_400];

    /// The speed in bit/s.
    #[must_use]
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for Baud {
    type Error = String;
    fn try_from(v: u32) -> Result<Baud, String> {
        if Baud::ALLOWED.contains(&v) {
            Ok(Baud(v))
        } else {
            Err(format!(
                "{v} is not a supported baud rate (expected one of 9600, 19200, 38400, 57600, 115200, 230400)"
            ))
        }
    }
}

impl Serialize for Baud {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for Baud {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = d.deserialize_i64(IntVisitor("a baud rate such as 19200"))?;
        u32::try_from(v)
            .map_err(|_| format!("{v} is not a supported baud rate"))
            .and_then(Baud::try_from)
            .map_err(serde::de::Error::custom)
    }
}

/// Accepts an integer; anything else fails with `expecting` in the message.
struct IntVisitor(&'static str);

impl serde::de::Visitor<'_> for IntVisitor {
    type Value = i64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::custom(format!("{v} is too large")))
    }
}

/// A UDP or TCP port, 1..=65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Port(u16);

impl Port {
    /// The port number.
    #[must_use]
    pub fn get(self) -> u16 {
        self.0
    }
}

impl TryFrom<u16> for Port {
    type Error = String;
    fn try_from(v: u16) -> Result<Port, String> {
        if v == 0 {
            Err("0 is not a valid port (expected 1 to 65535)".to_owned())
        } else {
            Ok(Port(v))
        }
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Port {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.0)
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = d.deserialize_i64(IntVisitor("a port number (1 to 65535)"))?;
        u16::try_from(v)
            .map_err(|_| format!("{v} is not a valid port (expected 1 to 65535)"))
            .and_then(Port::try_from)
            .map_err(serde::de::Error::custom)
    }
}

/// A DRBD resync rate, written like DRBD's own syntax: `"250K"`, `"100M"`, `"1G"`
/// (bytes per second, binary multiples).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    kib_per_sec: u64,
}

impl Rate {
    /// The rate in KiB/s (DRBD's unit).
    #[must_use]
    pub fn kib_per_sec(self) -> u64 {
        self.kib_per_sec
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = self.kib_per_sec;
        if k.is_multiple_of(1024 * 1024) {
            write!(f, "{}G", k / (1024 * 1024))
        } else if k.is_multiple_of(1024) {
            write!(f, "{}M", k / 1024)
        } else {
            write!(f, "{k}K")
        }
    }
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a rate (expected e.g. \"250K\", \"100M\" or \"1G\")");
        let (num, unit) = s.split_at(s.len().saturating_sub(1));
        if num.is_empty() || num.len() > 9 || !num.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u64 = num.parse().map_err(|_| bad())?;
        let k = match unit {
            "K" | "k" => n,
            "M" | "m" => n * 1024,
            "G" | "g" => n * 1024 * 1024,
            _ => return Err(bad()),
        };
        // DRBD 8.4 accepts 1 KiB/s up to 4 GiB/s.
        if k == 0 || k > 4 * 1024 * 1024 {
            return Err(format!("{s:?} is out of range (expected 1K to 4G)"));
        }
        Ok(Rate { kib_per_sec: k })
    }
}
string_serde!(Rate, "a rate such as \"100M\"");

/// A DRBD resource name (`[a-z0-9_-]`, at most 32 characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DrbdResource(String);

impl DrbdResource {
    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DrbdResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for DrbdResource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if !s.is_empty()
            && s.len() <= 32
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            Ok(DrbdResource(s.to_owned()))
        } else {
            Err(format!(
                "{s:?} is not a resource name (expected 1 to 32 of a-z, 0-9, '_', '-')"
            ))
        }
    }
}
string_serde!(DrbdResource, "a DRBD resource name");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!("5s".parse::<Millis>(), Ok(Millis(5000)));
        assert_eq!("250ms".parse::<Millis>(), Ok(Millis(250)));
        assert_eq!("2m".parse::<Millis>(), Ok(Millis(120_000)));
        assert!("5".parse::<Millis>().is_err());
        assert!("s".parse::<Millis>().is_err());
        assert!("99999999999999999s".parse::<Millis>().is_err());
        assert_eq!(Millis(60_000).to_string(), "60s");
        assert_eq!(Millis(1500).to_string(), "1500ms");
    }

    #[test]
    fn netmasks() {
        let m: Netmask = "255.255.255.0".parse().unwrap();
        assert_eq!(m.prefix(), 24);
        assert_eq!(m.to_string(), "255.255.255.0");
        assert!("255.0.255.0".parse::<Netmask>().is_err());
        assert!("255.255.255.255".parse::<Netmask>().is_err());
        assert!("0.0.0.0".parse::<Netmask>().is_err());
    }

    #[test]
    fn nets() {
        let n: Ipv4Net = "192.168.255.1/24".parse().unwrap();
        assert_eq!(n.network(), Ipv4Addr::new(192, 168, 255, 0));
        assert!(n.contains(Ipv4Addr::new(192, 168, 255, 3)));
        assert!(!n.contains(Ipv4Addr::new(192, 168, 254, 3)));
        assert!(n.is_host_address());
        assert!("1.2.3.4/33".parse::<Ipv4Net>().is_err());
        assert!("1.2.3.4/".parse::<Ipv4Net>().is_err());
    }

    #[test]
    fn names() {
        assert_eq!("Node-A".parse::<Hostname>().unwrap().as_str(), "node-a");
        assert!("-a".parse::<Hostname>().is_err());
        assert!("a..b".parse::<Hostname>().is_err());
        assert!("1.2.3.4".parse::<Hostname>().is_err());
        assert!("ops@example.com".parse::<EmailAddress>().is_ok());
        assert!("ops@@example.com".parse::<EmailAddress>().is_err());
        assert!("mail.example.com:25".parse::<HostPort>().is_ok());
        assert!("mail.example.com:0".parse::<HostPort>().is_err());
        assert!("https://u:p@x.example/".parse::<HttpUrl>().is_err());
        assert!("/dev/../etc/passwd".parse::<DevicePath>().is_err());
    }

    #[test]
    fn cluster_id_round_trip() {
        let s = "6f1c2a9e-0b7d-4c1e-9a55-2f0e8d3b7c41";
        assert_eq!(s.parse::<ClusterId>().unwrap().to_string(), s);
        assert!(
            "6f1c2a9e0b7d4c1e9a552f0e8d3b7c41"
                .parse::<ClusterId>()
                .is_err()
        );
    }

    #[test]
    fn secrets_are_redacted() {
        let k = ClusterKey::from_bytes([7; 32]);
        assert_eq!(format!("{k:?}"), "ClusterKey([redacted])");
        let s = Secret::new("pw".to_owned());
        assert_eq!(format!("{s} {s:?}"), "[redacted] Secret([redacted])");
    }
}

/// One line of an OpenSSH `authorized_keys` file without options: the key type, the
/// base64 key and an optional comment (`ssh-ed25519 AAAA… ops@example`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SshPublicKey(String);

/// The key types an `authorized_keys` line may name (OpenSSH 9.2's, without the
/// certificate forms).
const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

impl SshPublicKey {
    /// The line.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SshPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SshPublicKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let expected = "expected \"TYPE BASE64 [COMMENT]\" on one line, e.g. \"ssh-ed25519 AAAAC3Nz… ops@example\"";
        if s.contains(['\n', '\r', '\0']) || s.chars().any(char::is_control) {
            return Err(format!(
                "is not an SSH public key: it contains a line break or control character ({expected})"
            ));
        }
        let mut parts = s.split_whitespace();
        let (Some(kind), Some(body)) = (parts.next(), parts.next()) else {
            return Err(format!("{s:?} is not an SSH public key ({expected})"));
        };
        if !SSH_KEY_TYPES.contains(&kind) {
            return Err(format!(
                "{kind:?} is not a supported SSH key type (expected one of {})",
                SSH_KEY_TYPES.join(", ")
            ));
        }
        let b64_ok = body.len() >= 16
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
        if !b64_ok {
            return Err(format!("the key of {kind} is not base64 ({expected})"));
        }
        // The key blob starts with its own type name (a length-prefixed string):
        // "AAAAC3NzaC1lZDI1NTE5" is the base64 of "\0\0\0\x0bssh-ed25519".
        let decoded = crate::secrets::base64_decode(body)
            .ok_or_else(|| format!("the key of {kind} is not base64 ({expected})"))?;
        let name_len = decoded
            .get(..4)
            .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize);
        let inner = name_len.and_then(|n| decoded.get(4..4 + n));
        if inner != Some(kind.as_bytes()) {
            return Err(format!(
                "the key data does not hold a {kind} key (copy the whole line of the .pub file)"
            ));
        }
        let comment: Vec<&str> = parts.collect();
        let mut out = format!("{kind} {body}");
        if !comment.is_empty() {
            out.push(' ');
            out.push_str(&comment.join(" "));
        }
        Ok(SshPublicKey(out))
    }
}
string_serde!(SshPublicKey, "an SSH public key line");

#[cfg(test)]
mod ssh_public_key_tests {
    use super::SshPublicKey;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILPwP89bL4rstUl52F0q3zNJhLPZUidXi9x0aTtyqGya";

    #[test]
    fn accepts_a_pub_file_line_and_keeps_the_comment() {
        let k: SshPublicKey = format!("{ED}  ops@example  laptop").parse().unwrap();
        assert_eq!(k.as_str(), format!("{ED} ops@example laptop"));
        let k: SshPublicKey = ED.parse().unwrap();
        assert_eq!(k.as_str(), ED);
    }

    #[test]
    fn refuses_what_sshd_would_not_take() {
        for (bad, says) in [
            ("", "not an SSH public key"),
            ("ssh-ed25519", "not an SSH public key"),
            (
                "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
                "not a supported SSH key type",
            ),
            ("ssh-ed25519 !!!notbase64!!!xxxxx", "not base64"),
            // An RSA blob named as ed25519.
            (
                "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAAB",
                "does not hold a ssh-ed25519 key",
            ),
            (&format!("{ED}\nssh-rsa AAAA"), "line break"),
            (
                &format!("command=\"x\" {ED}"),
                "not a supported SSH key type",
            ),
        ] {
            let e = bad.parse::<SshPublicKey>().unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}
