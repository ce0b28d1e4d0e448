//! Test support: a traffic-light model and device, and a real API server on a free port.

use std::net::SocketAddr;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::client::RegistryClient;
use super::server::ApiServer;
use super::{EmbeddedRegistry, Options};
use edgetwin_model::devices::{Device, DeviceModel, Manifest};

/// A traffic light's model: three lamps (STRING `ON`/`OFF`), a brightness (INT 0..=255) and a
/// read-only cycle counter. Shared with the CLI tests in `core/tests/`.
pub(crate) const MODEL_YAML: &str =
    include_str!("../../../../tests/fixtures/registry/traffic-light-model.yaml");

/// A traffic light on node `pi-1`.
pub(crate) const DEVICE_YAML: &str =
    include_str!("../../../../tests/fixtures/registry/traffic-light.yaml");

fn load_one(yaml: &str) -> Manifest {
    let mut docs =
        edgetwin_model::devices::load::from_str(yaml, "testkit.yaml").expect("test YAML loads");
    assert_eq!(docs.len(), 1);
    docs.remove(0).manifest
}

/// The traffic light's model.
pub(crate) fn model() -> DeviceModel {
    match load_one(MODEL_YAML) {
        Manifest::DeviceModel(m) => m,
        Manifest::Device(_) => panic!("MODEL_YAML is a model"),
    }
}

/// The traffic light.
pub(crate) fn device() -> Device {
    match load_one(DEVICE_YAML) {
        Manifest::Device(d) => d,
        Manifest::DeviceModel(_) => panic!("DEVICE_YAML is a device"),
    }
}

/// A registry in a temp dir, served on a free loopback port; stopped when dropped.
pub(crate) struct TestServer {
    pub registry: EmbeddedRegistry,
    pub client: RegistryClient,
    pub addr: SocketAddr,
    pub token: String,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        Self::start_merged(options, |_, _| axum::Router::new()).await
    }

    /// A server that also serves the routes `extra` makes from the registry and the server's
    /// stopping signal (e.g. the dashboard's).
    pub async fn start_merged(
        options: Options,
        extra: impl FnOnce(&EmbeddedRegistry, tokio::sync::watch::Receiver<bool>) -> axum::Router,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let registry =
            EmbeddedRegistry::open_with(&dir.path().join("registry.db"), options).expect("opens");
        let token = "test-token-0123456789".to_owned();
        let server = ApiServer::bind(
            "127.0.0.1:0".parse().expect("addr"),
            registry.clone(),
            token.clone(),
        )
        .await
        .expect("binds");
        let routes = extra(&registry, server.stopping());
        let server = server.merge(routes);
        let addr = server.local_addr().expect("bound");
        let client = RegistryClient::new(&server.url().expect("url"), &token).expect("client");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run_until(async {
            let _ = stopped.await;
        }));
        Self {
            registry,
            client,
            addr,
            token,
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A client with another token.
    pub fn client_with_token(&self, token: &str) -> RegistryClient {
        RegistryClient::new(&format!("http://{}", self.addr), token).expect("client")
    }

    /// Stops the server and waits until it has stopped (open watches end).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server ran");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
