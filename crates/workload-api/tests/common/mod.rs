//! Shared by the integration tests: a credentials directory written as the node agent does, an
//! agent on a real Unix socket, and our generated client.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint as TonicEndpoint, Uri};
use workload_auth_emulator::ca::{IssuedSvid, TrustDomainCa};
use workload_auth_emulator::credentials_writer::{CredentialsContents, CredentialsDirWriter};
use workload_auth_mtls::{CredentialsDir, WatchOptions};
use workload_auth_workload_api::WorkloadApiServer;
use workload_auth_workload_api::WorkloadApiServerBuilder;
use workload_auth_workload_api::proto::spiffe_workload_api_client::SpiffeWorkloadApiClient;

pub const ID: &str = "spiffe://example.org/ns/prod/sa/api";

pub struct World {
    pub tmp: tempfile::TempDir,
    pub local: TrustDomainCa,
    pub federated: TrustDomainCa,
    pub writer: CredentialsDirWriter,
}

impl World {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let local = TrustDomainCa::new("example.org").unwrap();
        let federated = TrustDomainCa::new("partner.example").unwrap();
        let writer = CredentialsDirWriter::new(tmp.path().join("creds"));
        Self {
            tmp,
            local,
            federated,
            writer,
        }
    }

    /// Writes a new generation with a freshly issued SVID; returns it.
    pub fn rotate(&self) -> IssuedSvid {
        let svid = self.local.issue(ID).unwrap();
        self.write(&svid);
        svid
    }

    pub fn write(&self, svid: &IssuedSvid) {
        self.writer
            .write(&CredentialsContents::new(
                svid,
                &self.local,
                [&self.federated],
            ))
            .unwrap();
    }

    pub fn socket(&self) -> PathBuf {
        self.tmp.path().join("agent.sock")
    }

    pub fn builder(&self) -> WorkloadApiServerBuilder {
        WorkloadApiServer::builder(Arc::new(CredentialsDir::new(self.writer.link_path())))
            .socket(self.socket())
            .watch_options(WatchOptions {
                poll_interval: Duration::from_millis(50),
                ..WatchOptions::default()
            })
    }
}

/// A running agent; dropping it stops it.
pub struct Agent {
    pub path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    pub task: Option<JoinHandle<workload_auth_core::Result<()>>>,
}

impl Agent {
    pub async fn start(builder: WorkloadApiServerBuilder) -> Self {
        let server = builder.bind().await.unwrap();
        let path = server.socket_path().to_path_buf();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(server.serve_until(async {
            let _ = rx.await;
        }));
        Self {
            path,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) -> workload_auth_core::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.take().unwrap().await.unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub async fn channel(path: &Path) -> Channel {
    let path = path.to_path_buf();
    TonicEndpoint::try_from("http://localhost")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .unwrap()
}

pub async fn client(path: &Path) -> SpiffeWorkloadApiClient<Channel> {
    SpiffeWorkloadApiClient::new(channel(path).await)
}

/// A request with the security header.
pub fn req<T>(message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("workload.spiffe.io", "true".parse().unwrap());
    r
}

/// Our own uid, without unsafe code: the owner of /proc/self.
pub fn my_uid() -> u32 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").unwrap().uid()
}
