//! Checks and generators for the secret material of the configuration: argon2id password
//! hashes, OpenSSH ed25519 keys, the web console's TLS certificate and key, random tokens.
//!
//! Randomness comes from the operating system (getrandom). Nothing here logs or returns a
//! secret inside an error message.

use argon2::password_hash::PasswordHasher as _;
use argon2::{ARGON2ID_IDENT, Argon2, PasswordVerifier as _};
use base64ct::{Base64, Encoding as _};
use rand_core::{OsRng, RngCore as _};
use ssh_key::{Algorithm, LineEnding, PrivateKey};

use crate::types::{
    ClusterId, ClusterKey, CryptHash, PasswordHash, SshPrivateKey, TlsCertificate, TlsPrivateKey,
};

/// Accepts only argon2id PHC strings with parameters argon2 itself can use.
pub(crate) fn check_password_hash(s: &str) -> Result<(), String> {
    let bad = || {
        "is not an argon2id password hash (expected a PHC string \"$argon2id$v=19$m=…,t=…,p=…$salt$hash\")".to_owned()
    };
    if s.len() > 512 {
        return Err(bad());
    }
    let h = argon2::PasswordHash::new(s).map_err(|_| bad())?;
    if h.algorithm != ARGON2ID_IDENT || h.salt.is_none() || h.hash.is_none() {
        return Err(bad());
    }
    let params = argon2::Params::try_from(&h).map_err(|_| bad())?;
    // A hostile archive must not be able to make every login cost gigabytes of memory.
    if params.m_cost() > 256 * 1024 || params.t_cost() > 16 || params.p_cost() > 8 {
        return Err(
            "is an argon2id hash with parameters above the accepted maximum (m 262144, t 16, p 8)"
                .to_owned(),
        );
    }
    Ok(())
}

/// The most rounds a SHA-512 crypt hash may ask for: a hostile archive must not be able
/// to make every SSH password attempt cost seconds (the default is 5000).
pub const CRYPT_MAX_ROUNDS: u32 = 1_000_000;

/// Accepts only SHA-512 crypt hashes (`$6$[rounds=N$]salt$hash`): a salt of 1 to 16
/// characters and a hash of 86, both of `./0-9A-Za-z`, rounds 1000 to
/// [`CRYPT_MAX_ROUNDS`].
pub(crate) fn check_crypt_hash(s: &str) -> Result<(), String> {
    let bad = || {
        "is not a SHA-512 crypt hash (expected \"$6$salt$hash\", as `tandem config hash-password --crypt` prints)".to_owned()
    };
    let alphabet = |t: &str| {
        t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
    };
    let Some(rest) = s.strip_prefix("$6$") else {
        return Err(bad());
    };
    let mut parts: Vec<&str> = rest.split('$').collect();
    if parts.len() == 3 {
        let rounds = parts.remove(0);
        let n: u32 = rounds
            .strip_prefix("rounds=")
            .and_then(|n| n.parse().ok())
            .ok_or_else(bad)?;
        if !(1000..=CRYPT_MAX_ROUNDS).contains(&n) || rounds != format!("rounds={n}") {
            return Err(format!(
                "is a SHA-512 crypt hash with {rounds} (expected 1000 to {CRYPT_MAX_ROUNDS} rounds)"
            ));
        }
    }
    match parts.as_slice() {
        [salt, hash]
            if (1..=16).contains(&salt.len())
                && hash.len() == 86
                && alphabet(salt)
                && alphabet(hash) =>
        {
            Ok(())
        }
        _ => Err(bad()),
    }
}

pub(crate) fn check_ssh_private_key(s: &str) -> Result<(), String> {
    let bad = || {
        "is not an OpenSSH private key (expected \"-----BEGIN OPENSSH PRIVATE KEY-----\")"
            .to_owned()
    };
    if s.len() > 16 * 1024 {
        return Err(bad());
    }
    let k = PrivateKey::from_openssh(s.trim()).map_err(|_| bad())?;
    if k.is_encrypted() {
        return Err(
            "is a passphrase-protected SSH key (the node must use it unattended)".to_owned(),
        );
    }
    if k.algorithm() != Algorithm::Ed25519 {
        return Err(format!("is an {} key (expected ed25519)", k.algorithm()));
    }
    Ok(())
}

/// Standard base64 (with padding) to bytes, `None` when it is not.
pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    Base64::decode_vec(s).ok()
}

pub(crate) fn ssh_public_key(s: &str) -> Option<String> {
    PrivateKey::from_openssh(s.trim())
        .ok()?
        .public_key()
        .to_openssh()
        .ok()
}

/// Decodes every PEM block labelled `label`; `None` if there is none or one is malformed.
fn pem_blocks(s: &str, label: &str) -> Option<Vec<Vec<u8>>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut lines = s.lines().map(str::trim).filter(|l| !l.is_empty());
    while let Some(l) = lines.next() {
        if l != begin {
            return None;
        }
        let mut body = String::new();
        loop {
            let l = lines.next()?;
            if l == end {
                break;
            }
            body.push_str(l);
        }
        out.push(Base64::decode_vec(&body).ok()?);
    }
    (!out.is_empty()).then_some(out)
}

/// Accepts PEM text whose every block is a whole DER X.509 certificate (leaf first).
pub(crate) fn check_tls_certificate(s: &str) -> Result<(), String> {
    let bad =
        || "is not a PEM certificate (expected \"-----BEGIN CERTIFICATE-----\" blocks)".to_owned();
    if s.len() > 64 * 1024 {
        return Err(bad());
    }
    let blocks = pem_blocks(s, "CERTIFICATE").ok_or_else(bad)?;
    let count = blocks.len();
    for (i, der) in blocks.iter().enumerate() {
        let whole = matches!(
            x509_parser::parse_x509_certificate(der),
            Ok((rest, _)) if rest.is_empty()
        );
        if !whole {
            return Err(if count == 1 {
                "is not an X.509 certificate (the PEM block does not hold a DER certificate)"
                    .to_owned()
            } else {
                format!(
                    "block {} of {count} is not an X.509 certificate (expected a DER certificate in every PEM block)",
                    i + 1
                )
            });
        }
    }
    Ok(())
}

/// Whether the private key `key` (PKCS#8 PEM) belongs to the leaf (first) certificate of
/// `cert` (PEM): the certificate's subject public key equals the key's public key. `false`
/// when either does not parse.
pub(crate) fn tls_key_matches_certificate(cert: &str, key: &str) -> bool {
    let Some(leaf) = pem_blocks(cert, "CERTIFICATE").and_then(|b| b.into_iter().next()) else {
        return false;
    };
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(&leaf) else {
        return false;
    };
    let Ok(pair) = rcgen::KeyPair::from_pem(key) else {
        return false;
    };
    parsed.public_key().subject_public_key.data.as_ref() == pair.public_key_raw()
}

pub(crate) fn check_tls_private_key(s: &str) -> Result<(), String> {
    let bad =
        || "is not a PEM private key (expected \"-----BEGIN PRIVATE KEY-----\", PKCS#8)".to_owned();
    if s.len() > 16 * 1024 || pem_blocks(s, "PRIVATE KEY").is_none_or(|b| b.len() != 1) {
        return Err(bad());
    }
    rcgen::KeyPair::from_pem(s).map_err(|_| bad())?;
    Ok(())
}

/// Hashes `password` with argon2id (library defaults: m 19 MiB, t 2, p 1) and a random salt.
///
/// # Errors
/// When the password is empty or longer than 1024 bytes.
pub fn hash_password(password: &str) -> Result<PasswordHash, String> {
    if password.is_empty() || password.len() > 1024 {
        return Err("a password must have 1 to 1024 bytes".to_owned());
    }
    let h = Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| format!("hashing failed: {e}"))?;
    h.to_string().parse()
}

/// Hashes `password` with SHA-512 crypt (5000 rounds, a random 16-character salt): the
/// form a node's `/etc/shadow` holds for sshd.
///
/// # Errors
/// When the password is empty or longer than 1024 bytes.
pub fn crypt_password(password: &str) -> Result<CryptHash, String> {
    if password.is_empty() || password.len() > 1024 {
        return Err("a password must have 1 to 1024 bytes".to_owned());
    }
    sha_crypt::sha512_simple(password, &sha_crypt::Sha512Params::default())
        .map_err(|e| format!("hashing failed: {e:?}"))?
        .parse()
}

/// Whether `password` matches the SHA-512 crypt `hash`.
#[must_use]
pub fn verify_crypt(password: &str, hash: &CryptHash) -> bool {
    sha_crypt::sha512_check(password, hash.as_str()).is_ok()
}

/// Whether `password` matches `hash`.
#[must_use]
pub fn verify_password(password: &str, hash: &PasswordHash) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash.as_str())
        .is_ok()
}

/// A fresh ed25519 key in OpenSSH form, with `comment`.
///
/// # Errors
/// When the operating system's random source fails.
pub fn generate_ssh_key(comment: &str) -> Result<SshPrivateKey, String> {
    let mut k = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
        .map_err(|e| format!("generating an ssh key: {e}"))?;
    k.set_comment(comment);
    let pem = k
        .to_openssh(LineEnding::LF)
        .map_err(|e| format!("encoding an ssh key: {e}"))?;
    pem.as_str().parse()
}

/// A fresh self-signed certificate (ECDSA P-256) named `common_name` for `names` (host
/// names or addresses), and its key.
///
/// # Errors
/// When a name is not acceptable to the certificate builder.
pub fn generate_tls(
    common_name: &str,
    names: Vec<String>,
) -> Result<(TlsCertificate, TlsPrivateKey), String> {
    let fail = |e: rcgen::Error| format!("generating the tls certificate: {e}");
    let mut params = rcgen::CertificateParams::new(names).map_err(fail)?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, common_name);
    params.distinguished_name = dn;
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let cert = params.self_signed(&key).map_err(fail)?;
    Ok((cert.pem().parse()?, key.serialize_pem().parse()?))
}

/// Random bytes from the operating system.
#[must_use]
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    OsRng.fill_bytes(&mut b);
    b
}

/// A fresh random cluster id (UUID version 4 layout).
#[must_use]
pub fn generate_cluster_id() -> ClusterId {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    ClusterId::from_bytes(b)
}

/// A fresh cluster authentication key.
#[must_use]
pub fn generate_cluster_key() -> ClusterKey {
    ClusterKey::from_bytes(random_bytes::<32>())
}

/// A random password of `len` characters from an alphabet without look-alikes.
#[must_use]
pub fn generate_password(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let [b] = random_bytes::<1>();
        // Rejection sampling keeps the choice uniform.
        let limit = 256 - 256 % ALPHABET.len();
        if usize::from(b) < limit {
            out.push(char::from(ALPHABET[usize::from(b) % ALPHABET.len()]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crypt_hashes_are_sha512_crypt_and_only_that() {
        let h = crypt_password("open sesame").unwrap();
        assert!(h.as_str().starts_with("$6$"), "{h}");
        assert!(verify_crypt("open sesame", &h));
        assert!(!verify_crypt("open sesame ", &h));
        assert_eq!(format!("{h:?}"), "CryptHash([redacted])");
        let hash = "a".repeat(86);
        assert!(check_crypt_hash(&format!("$6$saltsalt${hash}")).is_ok());
        assert!(check_crypt_hash(&format!("$6$rounds=10000$salt${hash}")).is_ok());
        for bad in [
            String::new(),
            format!("$5$salt${hash}"),
            format!("$6$salt${}", "a".repeat(85)),
            format!("$6$${hash}"),
            format!("$6${}${hash}", "s".repeat(17)),
            format!("$6$sa:lt${hash}"),
            format!("$6$salt${hash}$"),
            format!("$6$rounds=999$salt${hash}"),
            format!("$6$rounds=99999999$salt${hash}"),
            format!("$6$rounds=x$salt${hash}"),
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA".to_owned(),
            "!".to_owned(),
            "*".to_owned(),
        ] {
            assert!(check_crypt_hash(&bad).is_err(), "{bad:?} accepted");
        }
        assert!(crypt_password("").is_err());
    }

    #[test]
    fn tls_key_matches_only_its_certificate() {
        let (cert_a, key_a) = generate_tls("a", vec!["a".to_owned()]).unwrap();
        let (cert_b, key_b) = generate_tls("b", vec!["b".to_owned()]).unwrap();
        assert!(tls_key_matches_certificate(cert_a.as_str(), key_a.expose()));
        assert!(tls_key_matches_certificate(cert_b.as_str(), key_b.expose()));
        assert!(!tls_key_matches_certificate(
            cert_a.as_str(),
            key_b.expose()
        ));
        assert!(!tls_key_matches_certificate(
            cert_b.as_str(),
            key_a.expose()
        ));

        // A chain is matched by its leaf, the first block.
        let chain = format!("{}{}", cert_a.as_str(), cert_b.as_str());
        assert_eq!(check_tls_certificate(&chain), Ok(()));
        assert!(tls_key_matches_certificate(&chain, key_a.expose()));
        assert!(!tls_key_matches_certificate(&chain, key_b.expose()));
    }

    #[test]
    fn certificates_must_be_whole_x509() {
        let (cert, _) = generate_tls("a", vec!["a".to_owned()]).unwrap();
        let der = pem_blocks(cert.as_str(), "CERTIFICATE").unwrap().remove(0);
        let pem = |d: &[u8]| {
            format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                Base64::encode_string(d)
            )
        };
        assert_eq!(check_tls_certificate(&pem(&der)), Ok(()));
        // Cut short, or with bytes after the certificate.
        assert!(check_tls_certificate(&pem(&der[..der.len() - 1])).is_err());
        let mut longer = der.clone();
        longer.push(0);
        assert!(check_tls_certificate(&pem(&longer)).is_err());
        // A DER SEQUENCE that is not a certificate.
        assert_eq!(
            check_tls_certificate(&pem(&[0x30, 0x03, 0x02, 0x01, 0x01])),
            Err(
                "is not an X.509 certificate (the PEM block does not hold a DER certificate)"
                    .to_owned()
            )
        );
    }
}
