//! `SPIFFE_ENDPOINT_SOCKET` addresses: `unix:///absolute/path` or `tcp://IP:port`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use workload_auth_core::{Error, ErrorKind, Result};

/// The environment variable naming the Workload API endpoint.
pub const SPIFFE_ENDPOINT_SOCKET: &str = "SPIFFE_ENDPOINT_SOCKET";

/// Where a Workload API is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix domain socket at an absolute path.
    Unix(PathBuf),
    /// A TCP address (an IP literal and port; no host names, as the SPIFFE spec requires).
    Tcp(SocketAddr),
}

impl Endpoint {
    /// Parses `unix:///abs/path` (also `unix:/abs/path`) or `tcp://IP:port`.
    ///
    /// Anything else — a relative path, a host name, a query, a fragment, user info — is refused
    /// with `InvalidArgument`, as the SPIFFE Workload Endpoint spec asks.
    pub fn parse(address: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("`{address}` is not a Workload API address: {why}"),
            )
            .with_hint("use unix:///absolute/path/to/socket or tcp://IP:port")
        };
        if address.len() > 4096 {
            return Err(bad("too long"));
        }
        if address.contains(['?', '#']) {
            return Err(bad("it has a query or fragment"));
        }
        if let Some(rest) = address.strip_prefix("unix:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if !path.starts_with('/') {
                return Err(bad("the socket path must be absolute"));
            }
            if path.len() > 1 && path.ends_with('/') {
                return Err(bad("the socket path names a directory"));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = address.strip_prefix("tcp://") {
            let rest = rest.strip_suffix('/').unwrap_or(rest);
            return rest
                .parse::<SocketAddr>()
                .map(Self::Tcp)
                .map_err(|_| bad("tcp:// needs an IP address and a port"));
        }
        Err(bad("the scheme must be unix or tcp"))
    }

    /// The endpoint named by `SPIFFE_ENDPOINT_SOCKET`, if the variable is set.
    pub fn from_env() -> Result<Option<Self>> {
        match std::env::var(SPIFFE_ENDPOINT_SOCKET) {
            Ok(v) if !v.trim().is_empty() => Self::parse(v.trim()).map(Some),
            Ok(_) => Ok(None),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("{SPIFFE_ENDPOINT_SOCKET} is not valid UTF-8"),
            )),
        }
    }

    /// A Unix socket endpoint at `path`.
    pub fn unix(path: impl AsRef<Path>) -> Self {
        Self::Unix(path.as_ref().to_path_buf())
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix://{}", p.display()),
            Self::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_forms() {
        assert_eq!(
            Endpoint::parse("unix:///run/agent.sock").ok(),
            Some(Endpoint::unix("/run/agent.sock"))
        );
        assert_eq!(
            Endpoint::parse("unix:/run/agent.sock").ok(),
            Some(Endpoint::unix("/run/agent.sock"))
        );
        assert!(matches!(
            Endpoint::parse("tcp://127.0.0.1:8081"),
            Ok(Endpoint::Tcp(_))
        ));
    }

    #[test]
    fn refuses_what_the_spec_refuses() {
        for bad in [
            "unix://relative/path",
            "unix:relative",
            "tcp://localhost:8081",
            "tcp://127.0.0.1",
            "http://127.0.0.1:80",
            "unix:///a?b=c",
            "unix:///a#frag",
            "/run/agent.sock",
            "",
        ] {
            let e = Endpoint::parse(bad).err();
            assert_eq!(
                e.map(|e| e.kind()),
                Some(ErrorKind::InvalidArgument),
                "{bad}"
            );
        }
    }
}
