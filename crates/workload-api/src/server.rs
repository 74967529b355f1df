//! The Workload API server: a SPIFFE agent serving the workload's own X.509 material.

use std::fmt;
use std::future::Future;
use std::os::unix::fs::{
    DirBuilderExt as _, FileTypeExt as _, MetadataExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Response, Status};
use workload_auth_core::{Error, ErrorKind, Result, RetryPolicy};
use workload_auth_mtls::{SvidSource, SvidStore, WatchOptions, Watcher};

use crate::authority::AuthorityFix;
use crate::endpoint::Endpoint;
use crate::proto::spiffe_workload_api_server::{SpiffeWorkloadApi, SpiffeWorkloadApiServer};
use crate::proto::{
    JwtBundlesRequest, JwtBundlesResponse, JwtsvidRequest, JwtsvidResponse, ValidateJwtsvidRequest,
    ValidateJwtsvidResponse, X509BundlesRequest, X509BundlesResponse, X509svidRequest,
    X509svidResponse,
};
use crate::render::{Rendered, render};

/// The metadata every Workload API call must carry (`workload.spiffe.io: true`): it proves the
/// call was made on purpose by a gRPC client, not forwarded by a confused HTTP proxy.
pub const SECURITY_HEADER: &str = "workload.spiffe.io";

/// What a caller is told while the agent has no SVID yet. rust-spiffe recognises this text.
pub const NO_IDENTITY_MESSAGE: &str = "no identity issued";

/// Default bound on concurrent streams (`FetchX509SVID` and `FetchX509Bundles` together).
pub const DEFAULT_MAX_STREAMS: usize = 4096;

type Snapshot = Option<Arc<Rendered>>;

enum Feed {
    Source(Arc<dyn SvidSource>),
    Store(SvidStore),
}

/// Configures a [`WorkloadApiServer`]; see [`WorkloadApiServer::builder`].
pub struct WorkloadApiServerBuilder {
    feed: Feed,
    endpoint: Option<Endpoint>,
    allow_uids: Vec<u32>,
    allow_gids: Vec<u32>,
    socket_group: Option<u32>,
    max_streams: usize,
    watch: WatchOptions,
    hint: String,
    shutdown_grace: Duration,
}

impl fmt::Debug for WorkloadApiServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let feed = match &self.feed {
            Feed::Source(s) => s.describe(),
            Feed::Store(_) => "an SVID store".to_owned(),
        };
        f.debug_struct("WorkloadApiServerBuilder")
            .field("feed", &feed)
            .field("endpoint", &self.endpoint)
            .field("allow_uids", &self.allow_uids)
            .field("allow_gids", &self.allow_gids)
            .field("max_streams", &self.max_streams)
            .finish_non_exhaustive()
    }
}

impl WorkloadApiServerBuilder {
    fn new(feed: Feed) -> Self {
        Self {
            feed,
            endpoint: None,
            allow_uids: Vec::new(),
            allow_gids: Vec::new(),
            socket_group: None,
            max_streams: DEFAULT_MAX_STREAMS,
            watch: WatchOptions::default(),
            hint: String::new(),
            shutdown_grace: Duration::from_secs(5),
        }
    }

    /// Serve on a Unix socket at `path` (absolute).
    #[must_use]
    pub fn socket(mut self, path: impl AsRef<Path>) -> Self {
        self.endpoint = Some(Endpoint::unix(path));
        self
    }

    /// Serve on `endpoint`. Only `unix://` is served: a TCP endpoint cannot tell callers apart.
    #[must_use]
    pub fn endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    /// Lets processes running as `uid` call. With no `allow_uid`/`allow_gid` at all, anyone who
    /// can open the socket (mode 0600: the agent's own user) may call.
    #[must_use]
    pub fn allow_uid(mut self, uid: u32) -> Self {
        self.allow_uids.push(uid);
        self
    }

    /// Lets processes whose primary group (as SO_PEERCRED reports it) is `gid` call.
    #[must_use]
    pub fn allow_gid(mut self, gid: u32) -> Self {
        self.allow_gids.push(gid);
        self
    }

    /// Gives the socket to group `gid` with mode 0660 (instead of 0600), so members of the group
    /// can connect; the allow lists still decide who may call.
    #[must_use]
    pub fn socket_group(mut self, gid: u32) -> Self {
        self.socket_group = Some(gid);
        self
    }

    /// The most streams open at once; more are refused with `ResourceExhausted`.
    #[must_use]
    pub fn max_streams(mut self, max: usize) -> Self {
        self.max_streams = max.max(1);
        self
    }

    /// How the source is watched for rotation (its poll interval bounds rotation latency).
    #[must_use]
    pub fn watch_options(mut self, options: WatchOptions) -> Self {
        self.watch = options;
        self
    }

    /// The `hint` sent with the SVID (empty by default). At most 1024 bytes, as the spec asks.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = hint.into();
        self
    }

    /// How long open streams get to close after shutdown is asked for (default 5 s).
    #[must_use]
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Creates the socket and starts following the source. Must run inside a tokio runtime.
    ///
    /// Refuses (with `InvalidArgument`) a path that exists and is not a socket, and a socket
    /// another live agent is serving; a stale socket left by a dead agent is replaced.
    pub async fn bind(self) -> Result<WorkloadApiServer> {
        let path = match &self.endpoint {
            Some(Endpoint::Unix(p)) => p.clone(),
            Some(Endpoint::Tcp(a)) => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "the Workload API is served on unix:// sockets only, not tcp://{a}: a TCP \
                         peer's process cannot be identified"
                    ),
                ));
            }
            None => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "no socket given for the Workload API server",
                ));
            }
        };
        if self.hint.len() > 1024 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "the SVID hint is longer than 1024 bytes",
            ));
        }
        let listener = bind_socket(&path, self.socket_group).await?;
        // One load now, so a caller that connects as soon as `bind` returns is served when the
        // material is there; if it is not, `drive` keeps trying in the background.
        let initial = match &self.feed {
            Feed::Source(source) => match source.load().await {
                Ok(material) => Some(material),
                Err(e) => {
                    tracing::warn!(error = %e, source = source.describe(), "no X.509 material yet; callers are told no identity was issued");
                    None
                }
            },
            Feed::Store(_) => None,
        };
        let have_material = initial.is_some() || matches!(self.feed, Feed::Store(_));
        let (state_tx, state_rx) = watch::channel::<Snapshot>(None);
        let feed_task = tokio::spawn(drive(self.feed, initial, self.watch, self.hint, state_tx));
        if have_material {
            // `drive` publishes the first state before it awaits anything that could take long.
            let mut ready = state_rx.clone();
            let _ =
                tokio::time::timeout(Duration::from_secs(1), ready.wait_for(|s| s.is_some())).await;
        }
        Ok(WorkloadApiServer {
            listener: Some(listener),
            path,
            state: state_rx,
            allow: Arc::new(Allow {
                uids: self.allow_uids,
                gids: self.allow_gids,
            }),
            max_streams: self.max_streams,
            shutdown_grace: self.shutdown_grace,
            feed_task,
        })
    }

    /// [`bind`](Self::bind), then [`WorkloadApiServer::serve_until`].
    pub async fn serve_until(self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        self.bind().await?.serve_until(shutdown).await
    }
}

/// A SPIFFE Workload API server (a "SPIFFE agent") on a Unix socket, serving the X.509 material of
/// an [`SvidSource`] to every SPIFFE client: go-spiffe, rust-spiffe, py-spiffe, Envoy.
///
/// `FetchX509SVID` and `FetchX509Bundles` send the complete state at once and again after every
/// rotation or bundle change; a failed reload (directory missing, half rotated, key not matching)
/// keeps the last good material. The JWT RPCs answer `PermissionDenied` (the spec's answer for a
/// caller entitled to no JWT-SVID or JWT bundle: this agent has no JWT authority), and
/// `ValidateJWTSVID` `InvalidArgument` (no JWT bundle can vouch for any token). RPCs of newer
/// protos (WIT-SVIDs) are unknown here and answered `Unimplemented`.
///
/// ```no_run
/// use std::sync::Arc;
/// use workload_auth_mtls::CredentialsDir;
/// use workload_auth_workload_api::WorkloadApiServer;
///
/// # async fn run() -> workload_auth_core::Result<()> {
/// WorkloadApiServer::builder(Arc::new(CredentialsDir::default_location()))
///     .socket("/run/workload-auth/agent.sock")
///     .allow_uid(1000)
///     .serve_until(async { tokio::signal::ctrl_c().await.ok(); })
///     .await
/// # }
/// ```
pub struct WorkloadApiServer {
    listener: Option<UnixListener>,
    path: PathBuf,
    state: watch::Receiver<Snapshot>,
    allow: Arc<Allow>,
    max_streams: usize,
    shutdown_grace: Duration,
    feed_task: JoinHandle<()>,
}

impl fmt::Debug for WorkloadApiServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadApiServer")
            .field("socket", &self.path)
            .field("has_identity", &self.has_identity())
            .finish_non_exhaustive()
    }
}

impl Drop for WorkloadApiServer {
    fn drop(&mut self) {
        self.feed_task.abort();
    }
}

impl WorkloadApiServer {
    /// A server for the material of `source`, watched for rotation by the `mtls` crate's
    /// [`Watcher`]. Until the first load succeeds, callers get `PermissionDenied`
    /// ("no identity issued") and the load is retried with backoff.
    pub fn builder(source: Arc<dyn SvidSource>) -> WorkloadApiServerBuilder {
        WorkloadApiServerBuilder::new(Feed::Source(source))
    }

    /// A server for the material of a store the program already keeps current (e.g. the one its
    /// own mTLS configs use).
    pub fn from_store(store: SvidStore) -> WorkloadApiServerBuilder {
        WorkloadApiServerBuilder::new(Feed::Store(store))
    }

    /// The socket's path.
    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    /// Whether the server has material to serve yet.
    pub fn has_identity(&self) -> bool {
        self.state.borrow().is_some()
    }

    /// Waits until the server has material to serve.
    pub async fn ready(&self) {
        let mut state = self.state.clone();
        let _ = state.wait_for(Option::is_some).await;
    }

    /// Serves until `shutdown` completes; then ends open streams (they get a normal end of
    /// stream), waits up to the grace period for connections to close, and removes the socket.
    pub async fn serve_until(mut self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        let Some(listener) = self.listener.take() else {
            return Err(Error::new(ErrorKind::InvalidArgument, "server already ran"));
        };
        let socket_ino = std::fs::symlink_metadata(&self.path).ok().map(|m| m.ino());
        let (stop_tx, stop_rx) = watch::channel(false);
        let service = Service {
            state: self.state.clone(),
            allow: self.allow.clone(),
            streams: Arc::new(Semaphore::new(self.max_streams)),
            stop: stop_rx.clone(),
        };
        let stop_signal = async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        };
        // Above the stream bound, so that the bound is enforced by the semaphore with a status
        // the caller can read, not by HTTP/2 flow control stalling the extra call.
        let max_per_conn = u32::try_from(self.max_streams.saturating_add(16)).unwrap_or(u32::MAX);
        let serve = tonic::transport::Server::builder()
            .max_concurrent_streams(max_per_conn)
            .add_service(SpiffeWorkloadApiServer::new(service))
            .serve_with_incoming_shutdown(
                UnixListenerStream::new(listener).map(|s| s.map(AuthorityFix::new)),
                stop_signal,
            );
        let grace = self.shutdown_grace;
        let mut stopped = stop_rx;
        let result = tokio::select! {
            r = serve => r.map_err(|e| Error::new(ErrorKind::Io, "the Workload API server failed").with_source(e)),
            () = async {
                let _ = stopped.wait_for(|s| *s).await;
                tokio::time::sleep(grace).await;
            } => Ok(()),
        };
        // Remove the socket only if it is still ours (not replaced by another agent since).
        if let Ok(m) = std::fs::symlink_metadata(&self.path)
            && Some(m.ino()) == socket_ino
            && m.file_type().is_socket()
        {
            let _ = std::fs::remove_file(&self.path);
        }
        result
    }
}

/// Creates the socket with its final mode before anyone can connect: it is bound in a private
/// directory (mode 0700) beside the target, given its mode and group, then renamed into place.
async fn bind_socket(path: &Path, group: Option<u32>) -> Result<UnixListener> {
    let at = || path.display().to_string();
    if !path.is_absolute() {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "the socket path must be absolute",
        )
        .with_endpoint(at()));
    }
    let parent = path.parent().ok_or_else(|| {
        Error::new(ErrorKind::InvalidArgument, "the socket path has no parent").with_endpoint(at())
    })?;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            // Live agent, or a stale socket left by one that died?
            if tokio::net::UnixStream::connect(path).await.is_ok() {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "another process is serving on this socket",
                )
                .with_endpoint(at()));
            }
            std::fs::remove_file(path).map_err(|e| {
                Error::new(ErrorKind::Io, "cannot remove the stale socket")
                    .with_endpoint(at())
                    .with_source(e)
            })?;
        }
        Ok(_) => {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "the socket path exists and is not a socket; refusing to replace it",
            )
            .with_endpoint(at()));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::new(ErrorKind::Io, "cannot inspect the socket path")
                .with_endpoint(at())
                .with_source(e));
        }
    }
    let io = |what: &str| {
        let what = what.to_owned();
        move |e: std::io::Error| {
            Error::new(ErrorKind::Io, what)
                .with_endpoint(path.display().to_string())
                .with_source(e)
        }
    };
    std::fs::create_dir_all(parent).map_err(io("cannot create the socket's directory"))?;
    let staging = parent.join(format!(
        ".workload-api-{}-{}",
        std::process::id(),
        fastrand_suffix()
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(io("cannot create a private staging directory"))?;
    let result = (|| {
        let staged = staging.join("s");
        let listener =
            UnixListener::bind(&staged).map_err(io("cannot bind the Workload API socket"))?;
        let mode = if group.is_some() { 0o660 } else { 0o600 };
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))
            .map_err(io("cannot set the socket's mode"))?;
        if let Some(gid) = group {
            std::os::unix::fs::chown(&staged, None, Some(gid))
                .map_err(io("cannot give the socket to its group"))?;
        }
        std::fs::rename(&staged, path).map_err(io("cannot move the socket into place"))?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result
}

fn fastrand_suffix() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// Follows the source (or store) and publishes each new, different state.
async fn drive(
    feed: Feed,
    initial: Option<workload_auth_mtls::X509Material>,
    options: WatchOptions,
    hint: String,
    tx: watch::Sender<Snapshot>,
) {
    let publish = |store: &SvidStore| match render(&store.current(), &hint) {
        Ok(rendered) => {
            tx.send_if_modified(|current| {
                if current.as_deref() == Some(&rendered) {
                    return false;
                }
                *current = Some(Arc::new(rendered));
                true
            });
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot serve the new X.509 material; keeping the last good set")
        }
    };
    let (store, _watcher) = match feed {
        Feed::Store(store) => (store, None),
        Feed::Source(source) => {
            let policy = RetryPolicy {
                max_attempts: u32::MAX,
                initial_backoff: options.poll_interval,
                max_backoff: options.max_reload_interval.min(Duration::from_secs(10)),
                ..RetryPolicy::default()
            };
            let mut attempt = 0u32;
            let material = if let Some(m) = initial {
                m
            } else {
                loop {
                    match source.load().await {
                        Ok(m) => break m,
                        Err(e) => {
                            tracing::warn!(error = %e, source = source.describe(), "no X.509 material yet; callers are told no identity was issued");
                            tokio::time::sleep(policy.backoff(attempt)).await;
                            attempt = attempt.saturating_add(1);
                        }
                    }
                }
            };
            let store = SvidStore::new(material);
            match Watcher::spawn(store.clone(), source, options) {
                Ok(w) => (store, Some(w)),
                Err(e) => {
                    tracing::error!(error = %e, "cannot watch the source for rotation");
                    (store, None)
                }
            }
        }
    };
    let mut changes = store.subscribe();
    publish(&store);
    while changes.changed().await.is_ok() {
        publish(&store);
    }
}

struct Allow {
    uids: Vec<u32>,
    gids: Vec<u32>,
}

#[derive(Clone)]
struct Service {
    state: watch::Receiver<Snapshot>,
    allow: Arc<Allow>,
    streams: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
}

type Stream<T> = Pin<Box<dyn tokio_stream::Stream<Item = std::result::Result<T, Status>> + Send>>;

impl Service {
    /// The checks every call goes through, in the order the spec implies: the security header
    /// (`InvalidArgument`), then the caller (`PermissionDenied`).
    fn admit<T>(&self, request: &Request<T>) -> std::result::Result<(), Status> {
        let header = request.metadata().get(SECURITY_HEADER);
        if header.and_then(|v| v.to_str().ok()) != Some("true") {
            return Err(Status::invalid_argument(
                "security header missing from request: workload.spiffe.io: true",
            ));
        }
        let allow = &self.allow;
        if allow.uids.is_empty() && allow.gids.is_empty() {
            return Ok(());
        }
        let cred = request
            .extensions()
            .get::<UdsConnectInfo>()
            .and_then(|info| info.peer_cred);
        match cred {
            Some(c) if allow.uids.contains(&c.uid()) || allow.gids.contains(&c.gid()) => Ok(()),
            Some(c) => {
                tracing::info!(
                    uid = c.uid(),
                    gid = c.gid(),
                    pid = c.pid(),
                    "Workload API caller refused"
                );
                Err(Status::permission_denied(
                    "this caller's uid and gid are not allowed to call this agent",
                ))
            }
            None => Err(Status::permission_denied("the caller cannot be identified")),
        }
    }

    fn open_stream<T: Clone + PartialEq + Send + Sync + 'static>(
        &self,
        project: fn(&Rendered) -> T,
    ) -> std::result::Result<Stream<T>, Status> {
        let permit = self.streams.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted("too many Workload API streams are open; try again later")
        })?;
        if self.state.borrow().is_none() {
            return Err(Status::permission_denied(NO_IDENTITY_MESSAGE));
        }
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(pump(
            self.state.clone(),
            self.stop.clone(),
            tx,
            project,
            permit,
        ));
        Ok(Box::pin(ReceiverStream::new(rx)))
    }
}

/// Sends the current state, then each new one that differs from the last sent, until the client
/// goes away or the server stops.
async fn pump<T: Clone + PartialEq>(
    mut state: watch::Receiver<Snapshot>,
    mut stop: watch::Receiver<bool>,
    tx: mpsc::Sender<std::result::Result<T, Status>>,
    project: fn(&Rendered) -> T,
    _permit: OwnedSemaphorePermit,
) {
    let mut last: Option<T> = None;
    loop {
        let snapshot = state.borrow_and_update().clone();
        if let Some(rendered) = snapshot {
            let message = project(&rendered);
            if last.as_ref() != Some(&message) {
                last = Some(message.clone());
                tokio::select! {
                    sent = tx.send(Ok(message)) => if sent.is_err() { return },
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
        tokio::select! {
            changed = state.changed() => if changed.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
            () = tx.closed() => return,
        }
    }
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for Service {
    type FetchX509SVIDStream = Stream<X509svidResponse>;
    type FetchX509BundlesStream = Stream<X509BundlesResponse>;
    type FetchJWTBundlesStream = Stream<JwtBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        request: Request<X509svidRequest>,
    ) -> std::result::Result<Response<Self::FetchX509SVIDStream>, Status> {
        self.admit(&request)?;
        self.open_stream(|r| r.svid.clone()).map(Response::new)
    }

    async fn fetch_x509_bundles(
        &self,
        request: Request<X509BundlesRequest>,
    ) -> std::result::Result<Response<Self::FetchX509BundlesStream>, Status> {
        self.admit(&request)?;
        self.open_stream(|r| r.bundles.clone()).map(Response::new)
    }

    async fn fetch_jwtsvid(
        &self,
        request: Request<JwtsvidRequest>,
    ) -> std::result::Result<Response<JwtsvidResponse>, Status> {
        self.admit(&request)?;
        if request.get_ref().audience.is_empty() {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        Err(Status::permission_denied(
            "this agent has no JWT authority: no JWT-SVID is issued to any caller",
        ))
    }

    async fn fetch_jwt_bundles(
        &self,
        request: Request<JwtBundlesRequest>,
    ) -> std::result::Result<Response<Self::FetchJWTBundlesStream>, Status> {
        self.admit(&request)?;
        Err(Status::permission_denied(
            "this agent has no JWT authority: it holds no JWT bundles",
        ))
    }

    async fn validate_jwtsvid(
        &self,
        request: Request<ValidateJwtsvidRequest>,
    ) -> std::result::Result<Response<ValidateJwtsvidResponse>, Status> {
        self.admit(&request)?;
        let r = request.get_ref();
        if r.audience.is_empty() {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        if r.svid.is_empty() {
            return Err(Status::invalid_argument("svid must be specified"));
        }
        Err(Status::invalid_argument(
            "this agent holds no JWT bundles, so no JWT-SVID can be validated",
        ))
    }
}
