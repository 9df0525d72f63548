//! Fetching a client's `jwks_uri` (RFC 7591 §2), the one place Tessera fetches a URL that a client
//! chose. That is an SSRF vector (checklist A-32), so: https only; every address the host resolves
//! to must be public (the connection is pinned to the checked addresses, so a DNS answer cannot
//! change between check and use); a timeout, a size cap, and no redirects. `danger_allow_private_fetch`
//! lifts the address and scheme rules for development and tests.
//!
//! Results are cached per node (safe to lose); an unknown `kid` triggers at most one refetch per
//! `REFETCH_FLOOR`, so a stream of bogus assertions cannot turn Tessera into a request amplifier.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use url::Url;

const TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BYTES: usize = 64 * 1024;
const TTL: Duration = Duration::from_secs(300);
const REFETCH_FLOOR: Duration = Duration::from_secs(30);
/// At most this many JWK Sets are cached per node.
const MAX_CACHED: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("`{0}` is not an https URL")]
    Scheme(String),
    #[error("host of `{0}` does not resolve")]
    Resolve(String),
    #[error("host of `{0}` resolves to a non-public address")]
    PrivateAddress(String),
    #[error("fetching `{url}` failed: {reason}")]
    Http { url: String, reason: String },
    #[error("`{0}` did not return a JWK Set")]
    NotJwks(String),
}

/// Whether an address is one that a client-chosen URL may reach.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xC0) == 64) // 100.64.0.0/10, carrier-grade NAT
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24, IETF protocol assignments
                || (o[0] == 198 && (o[1] & 0xFE) == 18) // 198.18.0.0/15, benchmarking
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xFE00) == 0xFC00 // unique local
                || (s[0] & 0xFFC0) == 0xFE80 // link local
                || (s[0] == 0x2001 && s[1] == 0x0DB8) // documentation
                // Ranges that carry an IPv4 address inside (NAT64, 6to4, Teredo, IPv4-compatible) and
                // the deprecated site-local range: they can reach private IPv4 space.
                || (s[0] == 0x0064 && s[1] == 0xFF9B)
                || s[0] == 0x2002
                || (s[0] == 0x2001 && s[1] == 0x0000)
                || (s[0] & 0xFFC0) == 0xFEC0
                || s.iter().take(6).all(|x| *x == 0))
        }
    }
}

struct Cached {
    jwks: JwkSet,
    fetched_at: Instant,
}

pub struct JwksFetcher {
    allow_private: bool,
    cache: Mutex<HashMap<String, Cached>>,
}

impl JwksFetcher {
    pub fn new(allow_private: bool) -> Self {
        JwksFetcher { allow_private, cache: Mutex::new(HashMap::new()) }
    }

    /// Fetches `url` now, bypassing the cache, and caches the result.
    pub async fn fetch(&self, url: &str) -> Result<JwkSet, FetchError> {
        let jwks = self.fetch_uncached(url).await?;
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Bounded: registrations can name any number of URLs. Stale entries go first, then the oldest.
        if cache.len() >= MAX_CACHED && !cache.contains_key(url) {
            cache.retain(|_, c| c.fetched_at.elapsed() < TTL);
            if cache.len() >= MAX_CACHED
                && let Some(oldest) = cache.iter().min_by_key(|(_, c)| c.fetched_at).map(|(k, _)| k.clone())
            {
                cache.remove(&oldest);
            }
        }
        cache.insert(url.to_owned(), Cached { jwks: jwks.clone(), fetched_at: Instant::now() });
        Ok(jwks)
    }

    /// Fetches `url` to check that it serves a JWK Set, without caching it (a registration check
    /// must not let anyone fill the cache).
    pub async fn check(&self, url: &str) -> Result<(), FetchError> {
        self.fetch_uncached(url).await.map(|_| ())
    }

    /// The JWK Set of `url`, from the cache when fresh and holding `kid`; refetched when stale, or
    /// when `kid` is unknown and the last fetch is older than the refetch floor.
    pub async fn get(&self, url: &str, kid: Option<&str>) -> Result<JwkSet, FetchError> {
        let cached = {
            let cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            cache.get(url).map(|c| (c.jwks.clone(), c.fetched_at.elapsed()))
        };
        match cached {
            Some((jwks, age)) if age < TTL => {
                let has_kid = kid.is_none_or(|k| jwks.find(k).is_some());
                if has_kid || age < REFETCH_FLOOR { Ok(jwks) } else { self.fetch(url).await }
            }
            _ => self.fetch(url).await,
        }
    }

    /// Fetches a JSON document (e.g. an OpenID Provider's discovery document) under the same rules as
    /// a JWK Set: scheme and address checks, timeout, size cap, no redirects; not cached.
    pub async fn fetch_json(&self, raw: &str) -> Result<serde_json::Value, FetchError> {
        let body = self.fetch_body(raw).await?;
        serde_json::from_slice(&body)
            .map_err(|_| FetchError::Http { url: raw.to_owned(), reason: "the body is not JSON".into() })
    }

    async fn fetch_uncached(&self, raw: &str) -> Result<JwkSet, FetchError> {
        let body = self.fetch_body(raw).await?;
        let value: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| FetchError::NotJwks(raw.to_owned()))?;
        crate::oauth::client::check_jwks(&value).map_err(|_| FetchError::NotJwks(raw.to_owned()))?;
        serde_json::from_value(value).map_err(|_| FetchError::NotJwks(raw.to_owned()))
    }

    async fn fetch_body(&self, raw: &str) -> Result<Vec<u8>, FetchError> {
        let url = Url::parse(raw).map_err(|_| FetchError::Scheme(raw.to_owned()))?;
        let https = url.scheme() == "https";
        if !(https || (self.allow_private && url.scheme() == "http")) {
            return Err(FetchError::Scheme(raw.to_owned()));
        }
        let host = url.host_str().ok_or_else(|| FetchError::Resolve(raw.to_owned()))?.to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        let lookup_host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let addrs: Vec<SocketAddr> =
            tokio::time::timeout(TIMEOUT, tokio::net::lookup_host((lookup_host.as_str(), port)))
                .await
                .map_err(|_| FetchError::Resolve(raw.to_owned()))?
                .map_err(|_| FetchError::Resolve(raw.to_owned()))?
                .collect();
        if addrs.is_empty() {
            return Err(FetchError::Resolve(raw.to_owned()));
        }
        if !self.allow_private && addrs.iter().any(|a| !is_public(a.ip())) {
            return Err(FetchError::PrivateAddress(raw.to_owned()));
        }
        let http_err = |reason: String| FetchError::Http { url: raw.to_owned(), reason };
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // A proxy from the environment would resolve the host itself and defeat the pinning.
            .no_proxy()
            .timeout(TIMEOUT)
            .resolve_to_addrs(&lookup_host, &addrs)
            .build()
            .map_err(|e| http_err(e.to_string()))?;
        let mut res = client.get(url).send().await.map_err(|e| http_err(e.to_string()))?;
        if !res.status().is_success() {
            return Err(http_err(format!("status {}", res.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| http_err(e.to_string()))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_BYTES {
                return Err(http_err(format!("body larger than {MAX_BYTES} bytes")));
            }
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "2001:0:4136:e378::1",
            "::a9fe:a9fe",
            "fec0::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn loopback_and_http_urls_are_refused_without_the_danger_setting() {
        let f = JwksFetcher::new(false);
        assert!(matches!(f.fetch("http://127.0.0.1:1/jwks").await, Err(FetchError::Scheme(_))));
        assert!(matches!(f.fetch("https://127.0.0.1:1/jwks").await, Err(FetchError::PrivateAddress(_))));
        assert!(matches!(f.fetch("https://localhost:1/jwks").await, Err(FetchError::PrivateAddress(_))));
    }
}
