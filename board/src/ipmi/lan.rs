//! IPMI 2.0 RMCP+ over UDP ("lanplus"), cipher suite 3 only: RAKP-HMAC-SHA1
//! authentication, HMAC-SHA1-96 integrity, AES-CBC-128 confidentiality (IPMI 2.0
//! sections 13.15–13.33).
//!
//! Packet building and parsing are pure functions; [`LanSession`] adds the UDP socket,
//! timeouts and retries. Used for host-side tests against `ipmi_sim` and for fencing the
//! peer's BMC. Not supported: IPMI 1.5 sessions, other cipher suites, BMC key (Kg) other
//! than the user password.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::NoPadding};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

use super::{IpmiError, IpmiTransport, NetFn, Request, Response, checksum};

type HmacSha1 = Hmac<Sha1>;
type AesCbcEnc = cbc::Encryptor<aes::Aes128>;
type AesCbcDec = cbc::Decryptor<aes::Aes128>;

const RMCP_HEADER: [u8; 4] = [0x06, 0x00, 0xFF, 0x07];
const AUTH_RMCPP: u8 = 0x06;
const PT_IPMI: u8 = 0x00;
const PT_OPEN_REQ: u8 = 0x10;
const PT_OPEN_RESP: u8 = 0x11;
const PT_RAKP1: u8 = 0x12;
const PT_RAKP2: u8 = 0x13;
const PT_RAKP3: u8 = 0x14;
const PT_RAKP4: u8 = 0x15;
const PRIV_ADMIN: u8 = 0x04;
/// Name-only lookup (RAKP1 role byte bit 4), as ipmitool does by default.
const LOOKUP_NAME_ONLY: u8 = 0x10;
const CONSOLE_ADDR: u8 = 0x81;
const BMC_ADDR: u8 = 0x20;

/// Connection settings.
#[derive(Debug, Clone)]
pub struct LanConfig {
    /// BMC address and port.
    pub addr: SocketAddr,
    /// User name (≤ 16 bytes).
    pub user: String,
    /// Password (≤ 20 bytes).
    pub password: String,
    /// Wait for one answer before resending.
    pub timeout: Duration,
    /// Sends per request (first try + retries).
    pub attempts: u32,
}

impl LanConfig {
    /// Defaults: 1 s per attempt, 3 attempts.
    pub fn new(addr: SocketAddr, user: &str, password: &str) -> Self {
        Self {
            addr,
            user: user.to_owned(),
            password: password.to_owned(),
            timeout: Duration::from_secs(1),
            attempts: 3,
        }
    }
}

/// Keys and ids of an established session.
#[derive(Clone)]
struct Keys {
    k1: [u8; 20],
    aes: [u8; 16],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

/// An authenticated, encrypted RMCP+ session with one BMC.
///
/// Opened by [`LanSession::open`]; closed (Close Session) on drop, best effort.
#[derive(Debug)]
pub struct LanSession {
    socket: UdpSocket,
    config: LanConfig,
    target: String,
    bmc_session: u32,
    keys: Keys,
    session_seq: u32,
    rq_seq: u8,
}

/// Compares a computed authentication code with a received one in time that does not
/// depend on where they differ (a variable-time comparison lets an attacker on the
/// LAN find a valid code byte by byte).
fn same(computed: &[u8], received: &[u8]) -> bool {
    computed.ct_eq(received).into()
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
    // HMAC accepts keys of any length; the error branch cannot happen.
    let mut mac = <HmacSha1 as Mac>::new_from_slice(key).expect("hmac takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn pad20(s: &str) -> [u8; 20] {
    let mut k = [0u8; 20];
    for (d, c) in k.iter_mut().zip(s.bytes()) {
        *d = c;
    }
    k
}

/// Builds an unauthenticated session-setup packet (open session, RAKP 1/3).
fn setup_packet(payload_type: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = RMCP_HEADER.to_vec();
    p.push(AUTH_RMCPP);
    p.push(payload_type);
    p.extend_from_slice(&[0; 8]); // session id 0, sequence 0
    p.extend_from_slice(
        &u16::try_from(payload.len())
            .unwrap_or(u16::MAX)
            .to_le_bytes(),
    );
    p.extend_from_slice(payload);
    p
}

/// A parsed RMCP+ packet: payload type (without flag bits), session id, payload.
#[derive(Debug, PartialEq, Eq)]
struct Packet {
    payload_type: u8,
    encrypted: bool,
    authenticated: bool,
    session_id: u32,
    payload: Vec<u8>,
}

/// Parses (and if authenticated, verifies; if encrypted, decrypts) one packet.
fn parse_packet(bytes: &[u8], keys: Option<&Keys>) -> Result<Packet, String> {
    if bytes.len() < 16 || bytes[..4] != RMCP_HEADER {
        return Err(format!("not an rmcp ipmi packet ({} bytes)", bytes.len()));
    }
    if bytes[4] != AUTH_RMCPP {
        return Err(format!(
            "auth type {:#04x}, expected rmcp+ (0x06)",
            bytes[4]
        ));
    }
    let pt = bytes[5];
    let session_id = u32::from_le_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]);
    let len = usize::from(u16::from_le_bytes([bytes[14], bytes[15]]));
    let body_end = 16 + len;
    if bytes.len() < body_end {
        return Err(format!("payload length {len} exceeds packet"));
    }
    let authenticated = pt & 0x40 != 0;
    let encrypted = pt & 0x80 != 0;
    if authenticated {
        let keys = keys.ok_or("authenticated packet outside a session")?;
        // Trailer: pad, pad length, next header, 12-byte auth code.
        if bytes.len() < body_end + 14 {
            return Err("authenticated packet without integrity trailer".into());
        }
        let code_at = bytes.len() - 12;
        let want = hmac(&keys.k1, &[&bytes[4..code_at]]);
        if !same(&want[..12], &bytes[code_at..]) {
            return Err("integrity check failed".into());
        }
    }
    let mut payload = bytes[16..body_end].to_vec();
    if encrypted {
        let keys = keys.ok_or("encrypted packet outside a session")?;
        if payload.len() < 32 || !payload.len().is_multiple_of(16) {
            return Err(format!("encrypted payload of {} bytes", payload.len()));
        }
        let (iv, data) = payload.split_at_mut(16);
        let dec = AesCbcDec::new_from_slices(&keys.aes, iv).map_err(|e| e.to_string())?;
        let plain = dec
            .decrypt_padded_mut::<NoPadding>(data)
            .map_err(|e| e.to_string())?;
        let pad = usize::from(*plain.last().ok_or("empty payload")?);
        if pad + 1 > plain.len() {
            return Err(format!("confidentiality pad length {pad} too long"));
        }
        let n = plain.len() - pad - 1;
        payload = plain[..n].to_vec();
    }
    Ok(Packet {
        payload_type: pt & 0x3F,
        encrypted,
        authenticated,
        session_id,
        payload,
    })
}

/// Builds an encrypted, authenticated IPMI-message packet.
fn session_packet(keys: &Keys, session_id: u32, seq: u32, message: &[u8], iv: [u8; 16]) -> Vec<u8> {
    // Confidentiality trailer: pad bytes 1, 2, … then the pad length.
    let mut plain = message.to_vec();
    let pad = (16 - (plain.len() + 1) % 16) % 16;
    for i in 1..=pad {
        plain.push(u8::try_from(i).unwrap_or(0));
    }
    plain.push(u8::try_from(pad).unwrap_or(0));
    let n = plain.len();
    let enc = AesCbcEnc::new_from_slices(&keys.aes, &iv).expect("aes-128 key and iv are 16 bytes");
    let cipher = enc
        .encrypt_padded_mut::<NoPadding>(&mut plain, n)
        .expect("plaintext is padded to the block size");
    let mut payload = iv.to_vec();
    payload.extend_from_slice(cipher);

    let mut p = RMCP_HEADER.to_vec();
    p.push(AUTH_RMCPP);
    p.push(0xC0 | PT_IPMI);
    p.extend_from_slice(&session_id.to_le_bytes());
    p.extend_from_slice(&seq.to_le_bytes());
    p.extend_from_slice(
        &u16::try_from(payload.len())
            .unwrap_or(u16::MAX)
            .to_le_bytes(),
    );
    p.extend_from_slice(&payload);
    // Integrity pad so that auth type .. next header is a multiple of 4.
    let covered = p.len() - 4 + 2;
    let ipad = (4 - covered % 4) % 4;
    p.extend(std::iter::repeat_n(0xFF, ipad));
    p.push(u8::try_from(ipad).unwrap_or(0));
    p.push(0x07);
    let code = hmac(&keys.k1, &[&p[4..]]);
    p.extend_from_slice(&code[..12]);
    p
}

/// Builds the IPMI LAN message inside the payload.
fn lan_message(netfn: NetFn, lun: u8, cmd: u8, rq_seq: u8, data: &[u8]) -> Vec<u8> {
    let mut m = vec![BMC_ADDR, (netfn.0 << 2) | (lun & 3)];
    m.push(checksum(&m));
    m.extend_from_slice(&[CONSOLE_ADDR, rq_seq << 2, cmd]);
    m.extend_from_slice(data);
    m.push(checksum(&m[3..]));
    m
}

/// Parses a LAN response message: returns (netfn, rq_seq, cmd, completion code, data).
fn parse_lan_response(m: &[u8]) -> Result<(u8, u8, u8, u8, Vec<u8>), String> {
    if m.len() < 8 {
        return Err(format!("response message of {} bytes", m.len()));
    }
    if checksum(&m[..2]) != m[2] || checksum(&m[3..m.len() - 1]) != m[m.len() - 1] {
        return Err("response message checksum mismatch".into());
    }
    Ok((m[1] >> 2, m[4] >> 2, m[5], m[6], m[7..m.len() - 1].to_vec()))
}

/// Random bytes from the kernel. The remote console's random number feeds the session
/// key, so there is no weaker fallback: without randomness there is no session.
fn random<const N: usize>(target: &str) -> Result<[u8; N], IpmiError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| IpmiError::Io {
        target: target.to_owned(),
        what: "reading random bytes",
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(b)
}

impl LanSession {
    /// Opens a session: Open Session, RAKP 1–4, Set Session Privilege Level (admin).
    pub fn open(config: LanConfig) -> Result<Self, IpmiError> {
        let target = config.addr.to_string();
        let io = |what: &'static str| {
            let target = target.clone();
            move |source| IpmiError::Io {
                target,
                what,
                source,
            }
        };
        let bind: SocketAddr = if config.addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(bind).map_err(io("binding a udp socket"))?;
        socket
            .connect(config.addr)
            .map_err(io("connecting the udp socket"))?;
        let (bmc_session, keys) = handshake(&socket, &config, &target)?;
        let mut s = Self {
            socket,
            config,
            target,
            bmc_session,
            keys,
            session_seq: 0,
            rq_seq: 0,
        };
        s.set_privilege()?;
        Ok(s)
    }

    fn set_privilege(&mut self) -> Result<(), IpmiError> {
        let r = self.send_once(&Request::new(NetFn::APP, 0x3B, &[PRIV_ADMIN]))?;
        r.ok(&self.target, "set session privilege level")?;
        Ok(())
    }

    /// Runs the handshake again on the same socket (the BMC restarted or dropped the
    /// session as idle).
    fn reopen(&mut self) -> Result<(), IpmiError> {
        let (bmc_session, keys) = handshake(&self.socket, &self.config, &self.target)?;
        self.bmc_session = bmc_session;
        self.keys = keys;
        self.session_seq = 0;
        self.set_privilege()
    }

    /// One request on the current session, with retries but no re-open.
    fn send_once(&mut self, req: &Request<'_>) -> Result<Response, IpmiError> {
        let mut buf = [0u8; 1024];
        for _ in 0..self.config.attempts.max(1) {
            self.rq_seq = (self.rq_seq + 1) & 0x3F;
            self.session_seq = self.session_seq.wrapping_add(1).max(1);
            let msg = lan_message(req.netfn, req.lun, req.cmd, self.rq_seq, req.data);
            let packet = session_packet(
                &self.keys,
                self.bmc_session,
                self.session_seq,
                &msg,
                random(&self.target)?,
            );
            self.socket.send(&packet).map_err(|source| IpmiError::Io {
                target: self.target.clone(),
                what: "sending",
                source,
            })?;
            let deadline = Instant::now() + self.config.timeout;
            while let Some(n) = recv_until(&self.socket, &mut buf, deadline, &self.target)? {
                // Stray, stale or forged packets are dropped; the wait goes on.
                let Ok(p) = parse_packet(&buf[..n], Some(&self.keys)) else {
                    continue;
                };
                if p.payload_type != PT_IPMI || !p.authenticated || !p.encrypted {
                    continue;
                }
                let Ok((netfn, seq, cmd, cc, data)) = parse_lan_response(&p.payload) else {
                    continue;
                };
                if seq == self.rq_seq && cmd == req.cmd && netfn == req.netfn.0 | 1 {
                    return Ok(Response { cc, data });
                }
            }
        }
        Err(IpmiError::Timeout {
            target: self.target.clone(),
            timeout_ms: total_ms(&self.config),
        })
    }
}

/// Open Session and RAKP 1–4: returns the BMC's session id and the session keys.
fn handshake(
    socket: &UdpSocket,
    config: &LanConfig,
    target: &str,
) -> Result<(u32, Keys), IpmiError> {
    let session_err = |detail: String| IpmiError::Session {
        target: target.to_owned(),
        detail,
    };
    let user = config.user.as_bytes();
    if user.len() > 16 || config.password.len() > 20 {
        return Err(session_err(
            "user name over 16 or password over 20 bytes".into(),
        ));
    }
    let console_session: u32 = u32::from_le_bytes(random::<4>(target)?) | 1;

    // Open Session.
    let mut open = vec![0x00, PRIV_ADMIN, 0, 0];
    open.extend_from_slice(&console_session.to_le_bytes());
    open.extend_from_slice(&[0x00, 0, 0, 0x08, 0x01, 0, 0, 0]);
    open.extend_from_slice(&[0x01, 0, 0, 0x08, 0x01, 0, 0, 0]);
    open.extend_from_slice(&[0x02, 0, 0, 0x08, 0x01, 0, 0, 0]);
    let r = exchange(
        socket,
        config,
        &setup_packet(PT_OPEN_REQ, &open),
        PT_OPEN_RESP,
        console_session,
        target,
    )?;
    if r.len() < 12 || r[1] != 0 {
        return Err(session_err(format!(
            "open session refused (status {:#04x})",
            r.get(1).copied().unwrap_or(0xFF)
        )));
    }
    let bmc_session = u32::from_le_bytes([r[8], r[9], r[10], r[11]]);
    // The BMC must have accepted exactly cipher suite 3's algorithms.
    if r.len() < 36 || r[16] != 0x01 || r[24] != 0x01 || r[32] != 0x01 {
        return Err(session_err(
            "bmc did not accept cipher suite 3 (rakp-hmac-sha1, hmac-sha1-96, aes-cbc-128)".into(),
        ));
    }

    // RAKP 1.
    let rm: [u8; 16] = random(target)?;
    let role = PRIV_ADMIN | LOOKUP_NAME_ONLY;
    let ulen = u8::try_from(user.len()).unwrap_or(16);
    let mut rakp1 = vec![0x00, 0, 0, 0];
    rakp1.extend_from_slice(&bmc_session.to_le_bytes());
    rakp1.extend_from_slice(&rm);
    rakp1.extend_from_slice(&[role, 0, 0, ulen]);
    rakp1.extend_from_slice(user);
    let r = exchange(
        socket,
        config,
        &setup_packet(PT_RAKP1, &rakp1),
        PT_RAKP2,
        console_session,
        target,
    )?;
    if r.len() < 2 || r[1] != 0 {
        return Err(session_err(format!(
            "rakp 2 status {:#04x} (unknown user or bad password?)",
            r.get(1).copied().unwrap_or(0xFF)
        )));
    }
    if r.len() < 60 {
        return Err(session_err(format!("rakp 2 of {} bytes, need 60", r.len())));
    }
    let rc = &r[8..24];
    let guid = &r[24..40];
    let kuid = pad20(&config.password);
    let sidm = console_session.to_le_bytes();
    let sidc = bmc_session.to_le_bytes();
    let want = hmac(&kuid, &[&sidm, &sidc, &rm, rc, guid, &[role, ulen], user]);
    if !same(&want[..], &r[40..60]) {
        return Err(session_err(
            "rakp 2 key exchange code mismatch (wrong password?)".into(),
        ));
    }

    // RAKP 3.
    let code = hmac(&kuid, &[rc, &sidm, &[role, ulen], user]);
    let mut rakp3 = vec![0x00, 0, 0, 0];
    rakp3.extend_from_slice(&sidc);
    rakp3.extend_from_slice(&code);
    let sik = hmac(&kuid, &[&rm, rc, &[role, ulen], user]);
    let r = exchange(
        socket,
        config,
        &setup_packet(PT_RAKP3, &rakp3),
        PT_RAKP4,
        console_session,
        target,
    )?;
    if r.len() < 2 || r[1] != 0 {
        return Err(session_err(format!(
            "rakp 4 status {:#04x}",
            r.get(1).copied().unwrap_or(0xFF)
        )));
    }
    if r.len() < 20 {
        return Err(session_err(format!("rakp 4 of {} bytes, need 20", r.len())));
    }
    let icv = hmac(&sik, &[&rm, &sidc, guid]);
    if !same(&icv[..12], &r[8..20]) {
        return Err(session_err("rakp 4 integrity check value mismatch".into()));
    }
    let k1 = hmac(&sik, &[&[0x01; 20]]);
    let k2 = hmac(&sik, &[&[0x02; 20]]);
    let mut aes = [0u8; 16];
    aes.copy_from_slice(&k2[..16]);
    Ok((bmc_session, Keys { k1, aes }))
}

/// Sends one setup packet and waits for the reply of type `want` addressed to our
/// console session id (bytes 4..8 of every setup reply), with retries. Anything else,
/// such as a late reply to an earlier attempt, is ignored.
fn exchange(
    socket: &UdpSocket,
    config: &LanConfig,
    packet: &[u8],
    want: u8,
    console_session: u32,
    target: &str,
) -> Result<Vec<u8>, IpmiError> {
    let mut buf = [0u8; 1024];
    let id = console_session.to_le_bytes();
    for _ in 0..config.attempts.max(1) {
        socket.send(packet).map_err(|source| IpmiError::Io {
            target: target.to_owned(),
            what: "sending",
            source,
        })?;
        let deadline = Instant::now() + config.timeout;
        while let Some(n) = recv_until(socket, &mut buf, deadline, target)? {
            if let Ok(p) = parse_packet(&buf[..n], None)
                && p.payload_type == want
                && p.payload.get(4..8) == Some(&id[..])
            {
                return Ok(p.payload);
            }
        }
    }
    Err(IpmiError::Timeout {
        target: target.to_owned(),
        timeout_ms: total_ms(config),
    })
}

fn total_ms(config: &LanConfig) -> u64 {
    u64::try_from(config.timeout.as_millis()).unwrap_or(u64::MAX)
        * u64::from(config.attempts.max(1))
}

/// Receives one datagram before `deadline`; `None` when the deadline passed.
fn recv_until(
    socket: &UdpSocket,
    buf: &mut [u8],
    deadline: Instant,
    target: &str,
) -> Result<Option<usize>, IpmiError> {
    let now = Instant::now();
    if now >= deadline {
        return Ok(None);
    }
    let io = |what: &'static str, source| IpmiError::Io {
        target: target.to_owned(),
        what,
        source,
    };
    socket
        .set_read_timeout(Some(deadline - now))
        .map_err(|e| io("setting a read timeout", e))?;
    match socket.recv(buf) {
        Ok(n) => Ok(Some(n)),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        // ICMP port unreachable from an earlier send: nothing listens (yet); keep waiting.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(Some(0)),
        Err(e) => Err(io("receiving", e)),
    }
}

impl IpmiTransport for LanSession {
    /// Sends on the current session; when the BMC stays silent (it restarted, or dropped
    /// the session as idle) the session is opened again once and the request resent.
    fn send(&mut self, req: &Request<'_>) -> Result<Response, IpmiError> {
        match self.send_once(req) {
            Err(IpmiError::Timeout { .. }) if req.cmd != 0x3C || req.netfn != NetFn::APP => {
                self.reopen()?;
                self.send_once(req)
            }
            other => other,
        }
    }

    fn target(&self) -> &str {
        &self.target
    }
}

impl Drop for LanSession {
    fn drop(&mut self) {
        // Free the BMC's session slot; a lost reply only costs the BMC's idle timeout.
        let id = self.bmc_session.to_le_bytes();
        let attempts = self.config.attempts;
        self.config.attempts = 1;
        self.config.timeout = self.config.timeout.min(Duration::from_millis(200));
        let _ = self.send_once(&Request::new(NetFn::APP, 0x3C, &id));
        self.config.attempts = attempts;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn keys() -> Keys {
        Keys {
            k1: [7; 20],
            aes: [9; 16],
        }
    }

    #[test]
    fn session_packet_round_trips() {
        for len in [0usize, 1, 7, 14, 15, 16, 40] {
            let msg: Vec<u8> = (0..len).map(|i| u8::try_from(i).unwrap()).collect();
            let p = session_packet(&keys(), 0x1234, 5, &msg, [3; 16]);
            // Integrity coverage (auth type .. next header) is a multiple of 4.
            assert_eq!((p.len() - 4 - 12) % 4, 0);
            let parsed = parse_packet(&p, Some(&keys())).unwrap();
            assert_eq!(parsed.payload, msg);
            assert_eq!(parsed.session_id, 0x1234);
            assert!(parsed.encrypted && parsed.authenticated);
        }
    }

    #[test]
    fn codes_compare_whole_and_by_length() {
        assert!(same(&[1, 2, 3], &[1, 2, 3]));
        assert!(!same(&[1, 2, 3], &[1, 2, 4]));
        assert!(!same(&[1, 2, 3], &[1, 2]));
        assert!(!same(&[], &[0]));
    }

    #[test]
    fn tampered_packet_is_rejected() {
        let mut p = session_packet(&keys(), 1, 1, &[1, 2, 3], [0; 16]);
        p[20] ^= 1;
        assert_eq!(
            parse_packet(&p, Some(&keys())),
            Err("integrity check failed".into())
        );
    }

    #[test]
    fn lan_message_checksums() {
        let m = lan_message(NetFn::APP, 0, 0x01, 5, &[]);
        assert_eq!(m, vec![0x20, 0x18, 0xC8, 0x81, 0x14, 0x01, 0x6A]);
        // A response to it, as a BMC builds it.
        let mut r = vec![0x81, 0x1C];
        r.push(checksum(&r));
        r.extend_from_slice(&[0x20, 0x14, 0x01, 0x00, 0xAB]);
        r.push(checksum(&r[3..]));
        assert_eq!(parse_lan_response(&r), Ok((0x07, 5, 0x01, 0, vec![0xAB])));
        r[7] ^= 1;
        assert!(parse_lan_response(&r).is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_packet(&bytes, Some(&keys()));
            let _ = parse_packet(&bytes, None);
            let _ = parse_lan_response(&bytes);
        }
    }
}
