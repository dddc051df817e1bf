//! Where mail for a domain goes (RFC 5321 section 5.1): its MX records in preference
//! order, or, when it has none, the domain's own addresses (the implicit MX). The name
//! servers are the configuration's, never the system's.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::{ResolveError, TokioResolver};

/// Why the exchangers of a domain are not known.
#[derive(Debug, thiserror::Error)]
pub enum MxError {
    /// No name server to ask.
    #[error("no dns server configured (network.dns-servers) for delivery to the recipients' MX")]
    NoServers,
    /// The lookup machinery could not start.
    #[error("cannot start the dns resolver")]
    Runtime {
        /// The cause.
        source: std::io::Error,
    },
    /// A query failed (timeout, server failure, refused).
    #[error("dns lookup of {what} for {name} failed")]
    Lookup {
        /// `MX`, or `A/AAAA`.
        what: &'static str,
        /// The name asked for.
        name: String,
        /// The cause.
        source: ResolveError,
    },
    /// The domain does not exist (NXDOMAIN).
    #[error("mail domain {domain} does not exist (NXDOMAIN)")]
    NoSuchDomain {
        /// The domain.
        domain: String,
    },
    /// The domain says it takes no mail (RFC 7505 null MX).
    #[error("mail domain {domain} accepts no mail (null MX record)")]
    NullMx {
        /// The domain.
        domain: String,
    },
    /// Neither MX records nor addresses.
    #[error("mail domain {domain} has neither MX records nor addresses")]
    NoAddress {
        /// The domain.
        domain: String,
    },
}

/// One host that takes mail for a domain, with its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchanger {
    /// Its name, for the TLS certificate check (no trailing dot).
    pub host: String,
    /// Lower is tried first.
    pub preference: u16,
    /// Its addresses as the name servers gave them.
    pub addrs: Vec<IpAddr>,
}

/// The MX records of a domain as `(preference, exchange)`, in the order to try them:
/// lowest preference first, equal preferences by name (a stable order, so retries go the
/// same way). `Ok(None)` for a null MX (a single record whose exchange is the root).
#[must_use]
pub fn order(records: &[(u16, String)]) -> Option<Vec<(u16, String)>> {
    if let [(_, only)] = records
        && (only.is_empty() || only == ".")
    {
        return None;
    }
    let mut out: Vec<(u16, String)> = records
        .iter()
        .filter(|(_, h)| !h.is_empty() && h != ".")
        .map(|(p, h)| (*p, h.trim_end_matches('.').to_ascii_lowercase()))
        .collect();
    out.sort();
    out.dedup();
    Some(out)
}

/// Asks the configured name servers (UDP, falling back to TCP for long answers).
#[derive(Debug)]
pub struct MxResolver {
    rt: tokio::runtime::Runtime,
    resolver: TokioResolver,
}

impl MxResolver {
    /// A resolver asking `servers` in order, waiting `timeout` per query and server.
    ///
    /// # Errors
    /// No servers, or the resolver's runtime cannot start.
    pub fn new(servers: &[SocketAddr], timeout: Duration) -> Result<Self, MxError> {
        if servers.is_empty() {
            return Err(MxError::NoServers);
        }
        let mut group = NameServerConfigGroup::new();
        for s in servers {
            group.merge(NameServerConfigGroup::from_ips_clear(
                &[s.ip()],
                s.port(),
                true,
            ));
        }
        let config = ResolverConfig::from_parts(None, vec![], group);
        let mut opts = ResolverOpts::default();
        opts.timeout = timeout;
        opts.attempts = 2;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.ndots = 0;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| MxError::Runtime { source })?;
        let resolver =
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
                .with_options(opts)
                .build();
        Ok(Self { rt, resolver })
    }

    fn fqdn(name: &str) -> String {
        if name.ends_with('.') {
            name.to_owned()
        } else {
            format!("{name}.")
        }
    }

    fn addresses(&self, name: &str) -> Result<Vec<IpAddr>, MxError> {
        match self.rt.block_on(self.resolver.lookup_ip(Self::fqdn(name))) {
            Ok(l) => Ok(l.iter().collect()),
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(source) => Err(MxError::Lookup {
                what: "A/AAAA",
                name: name.to_owned(),
                source,
            }),
        }
    }

    /// The exchangers of `domain` in the order to try them. An exchanger whose name has
    /// no address is left out (the next one is tried); the domain's own addresses stand
    /// in when it has no MX record at all.
    ///
    /// # Errors
    /// A lookup failed, the domain does not exist, takes no mail or has no address.
    pub fn exchangers(&self, domain: &str) -> Result<Vec<Exchanger>, MxError> {
        let records = match self
            .rt
            .block_on(self.resolver.mx_lookup(Self::fqdn(domain)))
        {
            Ok(l) => l
                .iter()
                .map(|mx| (mx.preference(), mx.exchange().to_ascii()))
                .collect(),
            Err(e) if e.is_nx_domain() => {
                return Err(MxError::NoSuchDomain {
                    domain: domain.to_owned(),
                });
            }
            Err(e) if e.is_no_records_found() => Vec::new(),
            Err(source) => {
                return Err(MxError::Lookup {
                    what: "MX",
                    name: domain.to_owned(),
                    source,
                });
            }
        };
        let hosts = if records.is_empty() {
            // RFC 5321 5.1: no MX means the domain itself, preference 0.
            vec![(0, domain.trim_end_matches('.').to_ascii_lowercase())]
        } else {
            order(&records).ok_or_else(|| MxError::NullMx {
                domain: domain.to_owned(),
            })?
        };
        let mut out = Vec::new();
        let mut last_err = None;
        for (preference, host) in hosts {
            match self.addresses(&host) {
                Ok(addrs) if !addrs.is_empty() => out.push(Exchanger {
                    host,
                    preference,
                    addrs,
                }),
                Ok(_) => {}
                Err(e) => last_err = Some(e),
            }
        }
        if out.is_empty() {
            return Err(last_err.unwrap_or(MxError::NoAddress {
                domain: domain.to_owned(),
            }));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recs(r: &[(u16, &str)]) -> Vec<(u16, String)> {
        r.iter().map(|(p, h)| (*p, (*h).to_owned())).collect()
    }

    #[test]
    fn lowest_preference_first_then_by_name() {
        let got = order(&recs(&[
            (20, "MX2.example.net."),
            (10, "mx1.example.net."),
            (20, "mx0.example.net."),
        ]));
        assert_eq!(
            got,
            Some(recs(&[
                (10, "mx1.example.net"),
                (20, "mx0.example.net"),
                (20, "mx2.example.net"),
            ]))
        );
    }

    #[test]
    fn a_single_root_exchange_is_a_null_mx() {
        assert_eq!(order(&recs(&[(0, ".")])), None);
        assert_eq!(order(&recs(&[(0, "")])), None);
        // Among others, a root exchange is just skipped.
        assert_eq!(
            order(&recs(&[(0, "."), (10, "mx.example.net.")])),
            Some(recs(&[(10, "mx.example.net")]))
        );
    }

    #[test]
    fn no_servers_is_refused() {
        assert!(matches!(
            MxResolver::new(&[], Duration::from_secs(1)),
            Err(MxError::NoServers)
        ));
    }
}
