//! The Workload API client: a SPIFFE agent (SPIRE, or our own) as one more SVID source.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Uri};
use workload_auth_core::{Error, ErrorKind, Result, RetryPolicy};
use workload_auth_mtls::{
    ChangeMarker, LoadFuture, SvidSource, TrustBundle, TrustBundleSet, TrustDomain, X509Material,
    X509Svid,
};

use crate::endpoint::Endpoint;
use crate::proto::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use crate::proto::{X509svidRequest, X509svidResponse};
use crate::server::SECURITY_HEADER;

/// Most federated bundles accepted in one message.
const MAX_BUNDLES: usize = 1024;

/// How a [`WorkloadApiSource`] connects and picks its SVID.
#[derive(Clone, Debug)]
pub struct WorkloadApiOptions {
    /// Use the SVID with this hint instead of the default (first) one.
    pub hint: Option<String>,
    /// Reconnect backoff (attempts are unlimited; the policy gives the delays).
    pub retry: RetryPolicy,
    /// How long [`WorkloadApiSource::connect`] waits for the first usable SVID.
    pub initial_timeout: Duration,
}

impl Default for WorkloadApiOptions {
    fn default() -> Self {
        Self {
            hint: None,
            retry: RetryPolicy::default(),
            initial_timeout: Duration::from_secs(10),
        }
    }
}

struct Shared {
    endpoint: Endpoint,
    hint: Option<String>,
    current: watch::Sender<Option<Arc<X509Material>>>,
    generation: AtomicU64,
    last_error: Mutex<Option<Error>>,
}

impl Shared {
    fn record(&self, error: Error) {
        tracing::warn!(%error, endpoint = %self.endpoint, "Workload API");
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(error);
    }
}

/// X.509 material streamed from a SPIFFE Workload API (SPIRE's agent, or `workload-auth agent`),
/// usable wherever an [`SvidSource`] is: in a [`Watcher`](workload_auth_mtls::Watcher), and so in
/// the facade's `WorkloadIdentity`.
///
/// A background task keeps a `FetchX509SVID` stream open, reconnecting with backoff when the agent
/// goes away, and keeps the last good material meanwhile; a message that does not make a usable
/// SVID (bad DER, key not matching, no SVID with the wanted hint) is logged and skipped.
/// [`SvidSource::change_marker`] is an in-memory counter, so a watcher's poll costs nothing.
///
/// Unlike the spec's advice for a client whose SVID is withdrawn (`PermissionDenied`), the last
/// good SVID stays in use until it is replaced: a workload keeps talking through an agent restart.
pub struct WorkloadApiSource {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl fmt::Debug for WorkloadApiSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadApiSource")
            .field("endpoint", &self.shared.endpoint)
            .field("hint", &self.shared.hint)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl Drop for WorkloadApiSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WorkloadApiSource {
    /// Connects to the endpoint named by `SPIFFE_ENDPOINT_SOCKET` and waits for the first SVID.
    pub async fn from_env(options: WorkloadApiOptions) -> Result<Self> {
        let endpoint = Endpoint::from_env()?.ok_or_else(|| {
            Error::new(
                ErrorKind::CredentialsNotFound,
                format!("{} is not set", crate::SPIFFE_ENDPOINT_SOCKET),
            )
            .with_hint("set it to the SPIFFE agent's socket, e.g. unix:///run/spire/agent.sock")
        })?;
        Self::connect(endpoint, options).await
    }

    /// Connects to `endpoint` and waits (up to `options.initial_timeout`) for the first SVID.
    pub async fn connect(endpoint: Endpoint, options: WorkloadApiOptions) -> Result<Self> {
        let (tx, mut rx) = watch::channel(None);
        let shared = Arc::new(Shared {
            endpoint,
            hint: options.hint,
            current: tx,
            generation: AtomicU64::new(0),
            last_error: Mutex::new(None),
        });
        let task = tokio::spawn(follow(shared.clone(), options.retry));
        let this = Self { shared, task };
        match tokio::time::timeout(options.initial_timeout, rx.wait_for(Option::is_some)).await {
            Ok(Ok(_)) => Ok(this),
            _ => {
                let cause = this
                    .shared
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                let error = Error::new(
                    ErrorKind::CredentialsNotFound,
                    "no X509-SVID came from the Workload API in time",
                )
                .with_endpoint(this.shared.endpoint.to_string())
                .with_retry(workload_auth_core::Retry::Transient);
                Err(match cause {
                    Some(cause) => error.with_source(cause),
                    None => error,
                })
            }
        }
    }

    /// The current material.
    pub fn current(&self) -> Result<Arc<X509Material>> {
        self.shared.current.borrow().clone().ok_or_else(|| {
            Error::new(ErrorKind::CredentialsNotFound, "no X509-SVID received yet")
                .with_endpoint(self.shared.endpoint.to_string())
        })
    }

    /// The current material, owned (what [`SvidSource::load`] gives, without a runtime).
    pub fn load_now(&self) -> Result<X509Material> {
        self.current().map(|m| (*m).clone())
    }

    /// How many usable messages have been received.
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.shared.endpoint
    }

    /// A receiver that sees every new material.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<X509Material>>> {
        self.shared.current.subscribe()
    }
}

impl SvidSource for WorkloadApiSource {
    fn load(&self) -> LoadFuture<'_> {
        let result = self.current().map(|m| (*m).clone());
        Box::pin(async move { result })
    }

    fn change_marker(&self) -> Option<ChangeMarker> {
        Some(ChangeMarker(self.generation()))
    }

    fn describe(&self) -> String {
        format!("SPIFFE Workload API at {}", self.shared.endpoint)
    }
}

/// The generated gRPC client, connected to `endpoint`, for calls this crate does not wrap (use
/// [`request`] to add the security header).
pub async fn connect_client(endpoint: &Endpoint) -> Result<SpiffeWorkloadApiClient<Channel>> {
    Ok(SpiffeWorkloadApiClient::new(channel(endpoint).await?))
}

/// A request carrying the `workload.spiffe.io: true` header every Workload API call needs.
pub fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        SECURITY_HEADER,
        tonic::metadata::MetadataValue::from_static("true"),
    );
    request
}

/// Opens a channel to `endpoint`.
pub(crate) async fn channel(endpoint: &Endpoint) -> Result<Channel> {
    let transport = |e: tonic::transport::Error| {
        Error::new(ErrorKind::Transport, "cannot connect to the Workload API")
            .with_endpoint(endpoint.to_string())
            .with_retry(workload_auth_core::Retry::Transient)
            .with_source(e)
    };
    match endpoint {
        Endpoint::Unix(path) => {
            let path = path.clone();
            tonic::transport::Endpoint::from_static("http://localhost")
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(
                            tokio::net::UnixStream::connect(path).await?,
                        ))
                    }
                }))
                .await
                .map_err(transport)
        }
        Endpoint::Tcp(addr) => tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map_err(transport)?
            .connect()
            .await
            .map_err(transport),
    }
}

fn status_error(endpoint: &Endpoint, status: &tonic::Status) -> Error {
    let kind = match status.code() {
        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => ErrorKind::Rejected,
        tonic::Code::InvalidArgument => ErrorKind::InvalidArgument,
        _ => ErrorKind::Transport,
    };
    Error::new(
        kind,
        format!(
            "the Workload API answered {:?}: {}",
            status.code(),
            workload_auth_core::text::snippet(status.message(), 200)
        ),
    )
    .with_endpoint(endpoint.to_string())
}

/// Keeps a stream open for as long as the source lives.
async fn follow(shared: Arc<Shared>, retry: RetryPolicy) {
    let mut attempt = 0u32;
    loop {
        match stream_once(&shared, &mut attempt).await {
            Ok(()) => {
                tracing::info!(endpoint = %shared.endpoint, "Workload API stream ended; reconnecting")
            }
            Err(e) => shared.record(e),
        }
        tokio::time::sleep(retry.backoff(attempt)).await;
        attempt = attempt.saturating_add(1);
    }
}

async fn stream_once(shared: &Shared, attempt: &mut u32) -> Result<()> {
    let channel = channel(&shared.endpoint).await?;
    let mut client = SpiffeWorkloadApiClient::new(channel);
    let mut stream = client
        .fetch_x509svid(request(X509svidRequest {}))
        .await
        .map_err(|s| status_error(&shared.endpoint, &s))?
        .into_inner();
    loop {
        match stream.message().await {
            Ok(Some(message)) => {
                match material_from(&message, shared.hint.as_deref(), &shared.endpoint) {
                    Ok(material) => {
                        *attempt = 0;
                        shared.current.send_replace(Some(Arc::new(material)));
                        shared.generation.fetch_add(1, Ordering::AcqRel);
                    }
                    // Keep the last good material; the next message may be better.
                    Err(e) => shared.record(e),
                }
            }
            Ok(None) => return Ok(()),
            Err(status) => return Err(status_error(&shared.endpoint, &status)),
        }
    }
}

fn trust_domain_of_key(key: &str) -> Option<TrustDomain> {
    TrustDomain::new(key.strip_prefix("spiffe://").unwrap_or(key)).ok()
}

fn certificates(der: &[u8]) -> Option<Vec<CertificateDer<'static>>> {
    let certs = crate::der::split_concatenated(der)?;
    (!certs.is_empty()).then(|| certs.into_iter().map(CertificateDer::from).collect())
}

/// Builds material from one `X509SVIDResponse`: the SVID with `hint` (or the first), its own trust
/// domain's bundle and every federated bundle.
pub(crate) fn material_from(
    message: &X509svidResponse,
    hint: Option<&str>,
    endpoint: &Endpoint,
) -> Result<X509Material> {
    let place = || format!("Workload API {endpoint}");
    let bad = |what: String| Error::new(ErrorKind::MalformedResponse, what).with_endpoint(place());
    let svid = match hint {
        Some(h) => message.svids.iter().find(|s| s.hint == h).ok_or_else(|| {
            Error::new(
                ErrorKind::CredentialsNotFound,
                format!(
                    "the Workload API sent no SVID with hint {:?} (it sent {})",
                    workload_auth_core::text::snippet(h, 100),
                    message.svids.len()
                ),
            )
            .with_endpoint(place())
        })?,
        None => message
            .svids
            .first()
            .ok_or_else(|| bad("the Workload API sent no SVID".into()))?,
    };
    let chain = certificates(&svid.x509_svid)
        .ok_or_else(|| bad("x509_svid is not a DER certificate chain".into()))?;
    if svid.x509_svid_key.is_empty() {
        return Err(bad("x509_svid_key is empty".into()));
    }
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(svid.x509_svid_key.to_vec()));
    let x509 = X509Svid::from_der(chain, key).map_err(|e| e.at(place()))?;
    if x509.spiffe_id().as_str() != svid.spiffe_id {
        return Err(bad(format!(
            "spiffe_id {:?} does not match the certificate's {}",
            workload_auth_core::text::snippet(&svid.spiffe_id, 100),
            x509.spiffe_id()
        )));
    }
    let local = x509.spiffe_id().trust_domain();
    let roots = certificates(&svid.bundle)
        .ok_or_else(|| bad("bundle is not DER CA certificates".into()))?;
    let mut bundles = TrustBundleSet::new();
    bundles
        .add(TrustBundle::new(local, roots).map_err(|e| e.at(place()))?)
        .map_err(|e| e.at(place()))?;
    if message.federated_bundles.len() > MAX_BUNDLES {
        return Err(bad(format!("more than {MAX_BUNDLES} federated bundles")));
    }
    for (key, der) in &message.federated_bundles {
        let td = trust_domain_of_key(key).ok_or_else(|| {
            bad(format!(
                "federated bundle key {:?} is not a trust domain",
                workload_auth_core::text::snippet(key, 100)
            ))
        })?;
        let roots = certificates(der).ok_or_else(|| {
            bad(format!(
                "federated bundle of {} is not DER CA certificates",
                td.name()
            ))
        })?;
        bundles
            .add(TrustBundle::new(td, roots).map_err(|e| e.at(place()))?)
            .map_err(|e| e.at(place()))?;
    }
    Ok(X509Material::new(x509, bundles).with_origin(place()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;

    use prost::bytes::Bytes;
    use workload_auth_emulator::ca::TrustDomainCa;

    use super::*;
    use crate::proto::X509svid;

    fn response(ca: &TrustDomainCa, partner: &TrustDomainCa, hint: &str) -> X509svidResponse {
        let svid = ca.issue("spiffe://example.org/a").unwrap();
        X509svidResponse {
            svids: vec![X509svid {
                spiffe_id: "spiffe://example.org/a".into(),
                x509_svid: Bytes::from(svid.chain_der().concat()),
                x509_svid_key: Bytes::from(svid.pkcs8_der().to_vec()),
                bundle: Bytes::from(ca.root_der().to_vec()),
                hint: hint.into(),
            }],
            crl: Vec::new(),
            // A bare trust-domain name as key: clients accept it too.
            federated_bundles: HashMap::from([(
                "partner.example".to_owned(),
                Bytes::from(partner.root_der().to_vec()),
            )]),
        }
    }

    #[test]
    fn bare_trust_domain_keys_and_hints_are_understood() {
        let ca = TrustDomainCa::new("example.org").unwrap();
        let partner = TrustDomainCa::new("partner.example").unwrap();
        let at = Endpoint::unix("/run/agent.sock");
        let m = material_from(&response(&ca, &partner, "internal"), Some("internal"), &at).unwrap();
        assert_eq!(m.bundles().len(), 2);
        assert!(material_from(&response(&ca, &partner, "internal"), Some("x"), &at).is_err());
    }

    #[test]
    fn hostile_messages_are_refused_with_typed_errors() {
        let ca = TrustDomainCa::new("example.org").unwrap();
        let partner = TrustDomainCa::new("partner.example").unwrap();
        let at = Endpoint::unix("/run/agent.sock");
        let good = response(&ca, &partner, "");
        type Mutation = Box<dyn Fn(&mut X509svidResponse)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("no svids", Box::new(|r| r.svids.clear())),
            (
                "garbage chain",
                Box::new(|r| r.svids[0].x509_svid = Bytes::from_static(b"\x30\x03abc")),
            ),
            (
                "empty key",
                Box::new(|r| r.svids[0].x509_svid_key = Bytes::new()),
            ),
            (
                "other key",
                Box::new(|r| {
                    let other = TrustDomainCa::new("example.org")
                        .unwrap()
                        .issue("spiffe://example.org/a")
                        .unwrap();
                    r.svids[0].x509_svid_key = Bytes::from(other.pkcs8_der().to_vec());
                }),
            ),
            (
                "claimed id differs",
                Box::new(|r| r.svids[0].spiffe_id = "spiffe://example.org/b".into()),
            ),
            (
                "empty bundle",
                Box::new(|r| r.svids[0].bundle = Bytes::new()),
            ),
            (
                "bad bundle key",
                Box::new(|r| {
                    r.federated_bundles
                        .insert("spiffe://".into(), Bytes::from_static(b"\x30\x00"));
                }),
            ),
        ];
        for (name, mutate) in cases {
            let mut r = good.clone();
            mutate(&mut r);
            let e = material_from(&r, None, &at).err();
            assert!(e.is_some(), "{name} was accepted");
        }
        assert!(material_from(&good, None, &at).is_ok());
    }
}
