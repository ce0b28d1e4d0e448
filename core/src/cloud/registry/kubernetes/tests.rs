//! The Kubernetes backend against a scripted API server (kube-rs' `Client` over tower-test):
//! every request's method, path and query, content type and body is asserted.

use std::time::Duration;

use futures::StreamExt;
use http::Method;
use serde_json::{Value, json};

use super::lease::{LeaseConfig, LeaseLock, Role};
use super::mock::{MockApiServer, WatchFeed, mock_client};
use super::*;
use crate::cloud::registry::embedded::testkit;
use edgetwin_model::devices::{Twin, TwinProperty};

const DEVICES: &str = "/apis/devices.kubeedge.io/v1beta1/devices";
const MODELS: &str = "/apis/devices.kubeedge.io/v1beta1/devicemodels";
const DEVICE_STATUS: &str =
    "/apis/devices.kubeedge.io/v1beta1/namespaces/default/devices/traffic-light/status";
const STATUS_PATCH: &str = "/apis/devices.kubeedge.io/v1beta1/namespaces/default/devices/traffic-light/status?&fieldManager=edgetwin";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/edgetwin/leases/edgetwin-cloud";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/edgetwin/leases";
const MERGE: Option<&str> = Some("application/merge-patch+json");
const JSON: Option<&str> = Some("application/json");

fn device_json(rv: &str, status: Option<Value>) -> Value {
    let mut device = serde_json::to_value(testkit::device()).expect("JSON");
    device["metadata"]["namespace"] = json!("default");
    device["metadata"]["resourceVersion"] = json!(rv);
    device["metadata"]["uid"] = json!("0f0e-device");
    device["metadata"]["generation"] = json!(1);
    if let Some(status) = status {
        device["status"] = status;
    }
    device
}

fn model_json(rv: &str) -> Value {
    let mut model = serde_json::to_value(testkit::model()).expect("JSON");
    model["metadata"]["namespace"] = json!("default");
    model["metadata"]["resourceVersion"] = json!(rv);
    model
}

fn list(kind: &str, rv: &str, items: Vec<Value>) -> Value {
    json!({
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": kind,
        "metadata": {"resourceVersion": rv},
        "items": items,
    })
}

async fn next<S: futures::Stream + Unpin>(stream: &mut S) -> S::Item {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an item within 10 s")
        .expect("the stream goes on")
}

/// The two initial lists and the two watches the backend opens (one per kind, in either order,
/// since the watchers run concurrently). Returns the feeds of the device and model watches.
async fn initial_sync(
    api: &mut MockApiServer,
    devices: Vec<Value>,
    models: Vec<Value>,
) -> (WatchFeed, WatchFeed) {
    let (mut devices, mut models) = (Some(devices), Some(models));
    let (mut device_feed, mut model_feed) = (None, None);
    for _ in 0..4 {
        let exchange = api.next().await;
        let path = exchange.path.clone();
        match path.as_str() {
            p if p == format!("{DEVICES}?&limit=500") => {
                exchange.assert(Method::GET, p, None);
                exchange.reply(
                    200,
                    list("DeviceList", "100", devices.take().expect("listed once")),
                );
            }
            p if p == format!("{MODELS}?&limit=500") => {
                exchange.assert(Method::GET, p, None);
                exchange.reply(
                    200,
                    list("DeviceModelList", "90", models.take().expect("listed once")),
                );
            }
            p if p
                == format!(
                    "{DEVICES}?&watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion=100"
                ) =>
            {
                exchange.assert(Method::GET, p, None);
                device_feed = Some(exchange.stream());
            }
            p if p
                == format!(
                    "{MODELS}?&watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion=90"
                ) =>
            {
                exchange.assert(Method::GET, p, None);
                model_feed = Some(exchange.stream());
            }
            other => panic!("unexpected request {} {other}", exchange.method),
        }
    }
    (
        device_feed.expect("device watch"),
        model_feed.expect("model watch"),
    )
}

/// `patch_status` in a task, so the test can answer its requests meanwhile.
fn spawn_patch(
    registry: &KubeRegistry,
    name: &'static str,
    patch: DeviceStatus,
) -> tokio::task::JoinHandle<Result<Device, RegistryError>> {
    let registry = registry.clone();
    tokio::spawn(async move { registry.patch_status("default", name, &patch).await })
}

fn reported(property: &str, value: &str) -> Twin {
    Twin {
        reported: Some(TwinProperty::new(value)),
        ..Twin::new(property)
    }
}

#[tokio::test]
async fn the_initial_list_then_watch_events_reach_the_stream_and_the_cache() {
    let (client, mut api) = mock_client();
    let registry = KubeRegistry::start(client, KubeRegistryConfig::new("cloud-0"));
    let mut events = registry.watch();
    let (devices, _models) = initial_sync(
        &mut api,
        vec![device_json("100", None)],
        vec![model_json("90")],
    )
    .await;

    let RegistryEvent::ModelApplied(model) = next(&mut events).await else {
        panic!("the model comes first");
    };
    assert_eq!(model.name(), "traffic-light-model");
    let RegistryEvent::Applied(device) = next(&mut events).await else {
        panic!("then the device");
    };
    assert_eq!(device.metadata.resource_version.as_deref(), Some("100"));
    assert_eq!(next(&mut events).await, RegistryEvent::Synced);

    // Reads come from the cache: no request.
    let cached = registry
        .get_device("default", "traffic-light")
        .await
        .expect("get");
    assert_eq!(cached.as_ref().map(|d| d.name()), Some("traffic-light"));
    assert_eq!(
        registry
            .list_models(Some("default"))
            .await
            .expect("list")
            .len(),
        1
    );
    assert!(
        registry
            .list_devices(Some("elsewhere"))
            .await
            .expect("list")
            .is_empty()
    );

    // A desired change arrives as a watch event.
    let mut changed = device_json("101", None);
    changed["metadata"]["generation"] = json!(2);
    changed["spec"]["properties"][0]["desired"]["value"] = json!("ON");
    devices.send("MODIFIED", changed);
    let RegistryEvent::Applied(device) = next(&mut events).await else {
        panic!("the change");
    };
    assert_eq!(device.metadata.generation, Some(2));
    assert_eq!(
        device
            .property("red")
            .and_then(|p| p.desired.as_ref())
            .map(|d| d.value.as_str()),
        Some("ON")
    );
    let cached = registry
        .get_device("default", "traffic-light")
        .await
        .expect("get")
        .expect("cached");
    assert_eq!(cached.metadata.resource_version.as_deref(), Some("101"));

    devices.send("DELETED", device_json("102", None));
    let RegistryEvent::Deleted(gone) = next(&mut events).await else {
        panic!("the deletion");
    };
    assert_eq!(gone.name(), "traffic-light");
    assert_eq!(
        registry
            .get_device("default", "traffic-light")
            .await
            .expect("get"),
        None
    );

    // A second consumer starts from the cache: the model, then Synced.
    let mut late = registry.watch();
    assert!(matches!(
        next(&mut late).await,
        RegistryEvent::ModelApplied(_)
    ));
    assert_eq!(next(&mut late).await, RegistryEvent::Synced);
}

#[tokio::test]
async fn a_broken_watch_relists_and_reports_what_vanished() {
    let (client, mut api) = mock_client();
    let mut config = KubeRegistryConfig::new("cloud-0");
    config.namespace = Some("default".into());
    let registry = KubeRegistry::start(client, config);
    let mut events = registry.watch();

    // One namespace: the namespaced paths.
    let mut feeds = Vec::new();
    for _ in 0..4 {
        let exchange = api.next().await;
        let path = exchange.path.clone();
        if path.ends_with("devices?&limit=500") {
            exchange.assert(
                Method::GET,
                "/apis/devices.kubeedge.io/v1beta1/namespaces/default/devices?&limit=500",
                None,
            );
            exchange.reply(
                200,
                list("DeviceList", "100", vec![device_json("100", None)]),
            );
        } else if path.ends_with("devicemodels?&limit=500") {
            exchange.assert(
                Method::GET,
                "/apis/devices.kubeedge.io/v1beta1/namespaces/default/devicemodels?&limit=500",
                None,
            );
            exchange.reply(200, list("DeviceModelList", "90", vec![]));
        } else if path.contains("/devices?&watch=true") {
            feeds.push(("devices", exchange.stream()));
        } else if path.contains("/devicemodels?&watch=true") {
            feeds.push(("models", exchange.stream()));
        } else {
            panic!("unexpected request {path}");
        }
    }
    assert!(matches!(next(&mut events).await, RegistryEvent::Applied(_)));
    assert_eq!(next(&mut events).await, RegistryEvent::Synced);

    // The API server says the watch's resourceVersion is too old: the watcher lists again. The
    // device was deleted meanwhile, so the fresh list is empty.
    let (_, devices) = feeds
        .iter()
        .find(|(kind, _)| *kind == "devices")
        .expect("device feed");
    devices.send(
        "ERROR",
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "too old resource version", "reason": "Expired", "code": 410}),
    );
    let relist = api
        .expect(
            Method::GET,
            "/apis/devices.kubeedge.io/v1beta1/namespaces/default/devices?&limit=500",
            None,
        )
        .await;
    relist.reply(200, list("DeviceList", "150", vec![]));
    let RegistryEvent::Deleted(gone) = next(&mut events).await else {
        panic!("the vanished device is reported deleted");
    };
    assert_eq!(
        gone.metadata.resource_version.as_deref(),
        Some("100"),
        "its last known state"
    );
    let rewatch = api.next().await;
    assert!(
        rewatch.path.contains("resourceVersion=150"),
        "{}",
        rewatch.path
    );
}

#[tokio::test]
async fn a_status_patch_merges_twins_and_carries_the_resource_version() {
    let (client, mut api) = mock_client();
    let registry = KubeRegistry::start(client, KubeRegistryConfig::new("cloud-0"));
    let stored = json!({"twins": [{"propertyName": "red", "reported": {"value": "OFF"}}], "state": "online"});
    let _feeds = initial_sync(
        &mut api,
        vec![device_json("100", Some(stored.clone()))],
        vec![],
    )
    .await;

    // Another property's report: the body's twins are the merged list (a merge patch replaces
    // arrays), only the fields the patch sets are sent, and resourceVersion is a precondition.
    let patch = DeviceStatus {
        twins: vec![reported("green", "ON")],
        observed_generation: Some(1),
        ..DeviceStatus::default()
    };
    let write = spawn_patch(&registry, "traffic-light", patch.clone());
    let request = api.expect(Method::PATCH, STATUS_PATCH, MERGE).await;
    assert_eq!(
        request.body(),
        &json!({
            "metadata": {"resourceVersion": "100"},
            "status": {
                "twins": [
                    {"propertyName": "red", "reported": {"value": "OFF"}},
                    {"propertyName": "green", "reported": {"value": "ON"}},
                ],
                "observedGeneration": 1,
            },
        })
    );
    let written = device_json(
        "101",
        Some(
            json!({"twins": [{"propertyName": "red", "reported": {"value": "OFF"}},
                              {"propertyName": "green", "reported": {"value": "ON"}}],
                    "state": "online", "observedGeneration": 1}),
        ),
    );
    request.reply(200, written);
    let device = write.await.expect("task").expect("patched");
    assert_eq!(device.metadata.resource_version.as_deref(), Some("101"));

    // A conflict: someone else wrote in between. The backend reads the status again and
    // merges onto the fresh object, keeping the other writer's twin.
    let patch = DeviceStatus {
        twins: vec![reported("red", "ON")],
        ..DeviceStatus::default()
    };
    let write = spawn_patch(&registry, "traffic-light", patch.clone());
    let first = api.expect(Method::PATCH, STATUS_PATCH, MERGE).await;
    assert_eq!(
        first.body()["metadata"]["resourceVersion"],
        "100",
        "the cache has not seen 101 yet"
    );
    first.reply_status(409, "Conflict");
    let reread = api.expect(Method::GET, DEVICE_STATUS, None).await;
    reread.reply(
        200,
        device_json(
            "105",
            Some(json!({"twins": [{"propertyName": "amber", "reported": {"value": "ON"}}]})),
        ),
    );
    let second = api.expect(Method::PATCH, STATUS_PATCH, MERGE).await;
    assert_eq!(
        second.body(),
        &json!({
            "metadata": {"resourceVersion": "105"},
            "status": {"twins": [
                {"propertyName": "amber", "reported": {"value": "ON"}},
                {"propertyName": "red", "reported": {"value": "ON"}},
            ]},
        })
    );
    second.reply(200, device_json("106", None));
    write
        .await
        .expect("task")
        .expect("patched after the conflict");

    // A device that is gone: NotFound.
    let online = DeviceStatus {
        state: Some("online".into()),
        ..DeviceStatus::default()
    };
    let write = spawn_patch(&registry, "nope", online);
    api.expect(
        Method::GET,
        "/apis/devices.kubeedge.io/v1beta1/namespaces/default/devices/nope/status",
        None,
    )
    .await
    .reply_status(404, "NotFound");
    let err = write.await.expect("task").expect_err("missing");
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err}");
}

/// No coalescing in the registry layer: N `patch_status` calls are N requests (the device
/// controller folds reports with `status::merge` first; folded, they are one request). A patch
/// that changes nothing is no request at all.
#[tokio::test]
async fn each_status_patch_is_one_request_and_folding_makes_one() {
    let (client, mut api) = mock_client();
    let registry = KubeRegistry::start(client, KubeRegistryConfig::new("cloud-0"));
    let stored = json!({"twins": [{"propertyName": "red", "reported": {"value": "OFF"}}]});
    let _feeds = initial_sync(&mut api, vec![device_json("100", Some(stored))], vec![]).await;

    let reports: Vec<DeviceStatus> = ["1", "2", "3"]
        .iter()
        .map(|v| DeviceStatus {
            twins: vec![reported("brightness", v)],
            ..DeviceStatus::default()
        })
        .collect();
    let all = reports.clone();
    let writes = tokio::spawn({
        let registry = registry.clone();
        async move {
            for report in &all {
                registry
                    .patch_status("default", "traffic-light", report)
                    .await
                    .expect("patched");
            }
        }
    });
    for (i, value) in ["1", "2", "3"].iter().enumerate() {
        let request = api.expect(Method::PATCH, STATUS_PATCH, MERGE).await;
        let twins = request.body()["status"]["twins"].clone();
        assert_eq!(
            twins[1],
            json!({"propertyName": "brightness", "reported": {"value": value}}),
            "request {i}"
        );
        request.reply(200, device_json(&format!("{}", 101 + i), None));
    }
    writes.await.expect("task");

    let mut folded = DeviceStatus::default();
    for report in &reports {
        status::merge(&mut folded, report);
    }
    let write = spawn_patch(&registry, "traffic-light", folded);
    let request = api.expect(Method::PATCH, STATUS_PATCH, MERGE).await;
    assert_eq!(
        request.body()["status"]["twins"][1]["reported"]["value"],
        "3"
    );
    request.reply(200, device_json("110", None));
    write.await.expect("task").expect("patched");

    // Already there (the cache still has red=OFF): nothing is sent. Were a request sent, the
    // next expectation would see it.
    let same = DeviceStatus {
        twins: vec![reported("red", "OFF")],
        ..DeviceStatus::default()
    };
    registry
        .patch_status("default", "traffic-light", &same)
        .await
        .expect("no-op");
    let event = tokio::spawn({
        let registry = registry.clone();
        async move {
            let device = registry
                .get_device("default", "traffic-light")
                .await
                .expect("get")
                .expect("cached");
            registry
                .record_event(
                    &device,
                    &DeviceEvent::warning("ActuationFailed", "red: write timed out"),
                )
                .await
        }
    });
    let request = api.next().await;
    assert_eq!(
        request.method,
        Method::POST,
        "the next request is the event, not a status patch: {}",
        request.path
    );
    request.reply(201, json!({}));
    event.await.expect("task").expect("recorded");
}

#[tokio::test]
async fn failed_actuations_become_kubernetes_warning_events() {
    let (client, mut api) = mock_client();
    let registry = KubeRegistry::start(client, KubeRegistryConfig::new("cloud-0"));
    let _feeds = initial_sync(&mut api, vec![device_json("100", None)], vec![]).await;
    let device = registry
        .get_device("default", "traffic-light")
        .await
        .expect("get")
        .expect("cached");
    let record = tokio::spawn({
        let registry = registry.clone();
        async move {
            registry
                .record_event(
                    &device,
                    &DeviceEvent::warning("ActuationFailed", "red: no answer from line 17"),
                )
                .await
        }
    });
    let request = api
        .expect(
            Method::POST,
            "/apis/events.k8s.io/v1/namespaces/default/events?",
            JSON,
        )
        .await;
    let body = request.body().clone();
    assert_eq!(body["type"], "Warning");
    assert_eq!(body["reason"], "ActuationFailed");
    assert_eq!(body["note"], "red: no answer from line 17");
    assert_eq!(body["action"], "Actuate");
    assert_eq!(body["reportingController"], "edgetwin");
    assert_eq!(body["reportingInstance"], "cloud-0");
    assert_eq!(
        body["regarding"],
        json!({"apiVersion": "devices.kubeedge.io/v1beta1", "kind": "Device", "name": "traffic-light",
               "namespace": "default", "uid": "0f0e-device"})
    );
    request.reply(201, body);
    record.await.expect("task").expect("recorded");
}

#[tokio::test]
async fn a_read_failure_is_a_warning_event_of_the_read_action() {
    let (client, mut api) = mock_client();
    let registry = KubeRegistry::start(client, KubeRegistryConfig::new("cloud-0"));
    let _feeds = initial_sync(&mut api, vec![device_json("100", None)], vec![]).await;
    let device = registry
        .get_device("default", "traffic-light")
        .await
        .expect("get")
        .expect("cached");
    let record = tokio::spawn({
        let registry = registry.clone();
        async move {
            let event = DeviceEvent::warning("ReadFailed", "property count: ERR unknown")
                .with_action("Read");
            registry.record_event(&device, &event).await
        }
    });
    let request = api
        .expect(
            Method::POST,
            "/apis/events.k8s.io/v1/namespaces/default/events?",
            JSON,
        )
        .await;
    let body = request.body().clone();
    assert_eq!(body["type"], "Warning");
    assert_eq!(body["reason"], "ReadFailed");
    assert_eq!(body["note"], "property count: ERR unknown");
    assert_eq!(body["action"], "Read");
    request.reply(201, body);
    record.await.expect("task").expect("recorded");
}

fn lease_json(holder: Option<&str>, renew: &str, transitions: i32, rv: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "edgetwin-cloud", "namespace": "edgetwin", "resourceVersion": rv},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 15,
            "acquireTime": "2025-01-01T00:00:00.000000Z",
            "renewTime": renew,
            "leaseTransitions": transitions,
        },
    })
}

fn at(seconds: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_735_689_600 + seconds).expect("time")
}

fn lock(client: kube::Client) -> LeaseLock {
    LeaseLock::new(
        client,
        LeaseConfig::new("edgetwin", "edgetwin-cloud", "cloud-1"),
    )
}

/// One election round at `now`, with the API server scripted by `script`.
async fn round<F>(
    lock: &mut LeaseLock,
    api: &mut MockApiServer,
    now: jiff::Timestamp,
    script: F,
) -> Role
where
    F: AsyncFnOnce(&mut MockApiServer),
{
    let (role, ()) = tokio::join!(lock.try_acquire_or_renew(now), script(api));
    role.expect("the round completes")
}

/// A round in which the lock only reads the Lease (and must write nothing).
async fn round_reading(
    lock: &mut LeaseLock,
    api: &mut MockApiServer,
    now: jiff::Timestamp,
    lease: Value,
) -> Role {
    round(lock, api, now, async |api: &mut MockApiServer| {
        api.expect(Method::GET, LEASE, None).await.reply(200, lease);
    })
    .await
}

#[tokio::test]
async fn leader_handover_standby_expiry_acquire_renew_and_release() {
    let (client, mut api) = mock_client();
    let mut lock = lock(client);
    let held_by_other = lease_json(Some("cloud-0"), "2025-01-01T00:00:00.000000Z", 3, "500");

    // Held by another replica: stand by, write nothing.
    let role = round_reading(&mut lock, &mut api, at(1), held_by_other.clone()).await;
    assert_eq!(
        role,
        Role::Standby {
            holder: Some("cloud-0".into())
        }
    );

    // 14 s after we first saw that record (our clock): still not expired.
    let role = round_reading(&mut lock, &mut api, at(15), held_by_other.clone()).await;
    assert!(matches!(role, Role::Standby { .. }));

    // 15 s without a renewal: take it, with the resourceVersion read as the precondition.
    let other = held_by_other.clone();
    let role = round(
        &mut lock,
        &mut api,
        at(16),
        async |api: &mut MockApiServer| {
            api.expect(Method::GET, LEASE, None).await.reply(200, other);
            let put = api.expect(Method::PUT, &format!("{LEASE}?"), JSON).await;
            let body = put.body().clone();
            assert_eq!(body["metadata"]["resourceVersion"], "500");
            assert_eq!(body["spec"]["holderIdentity"], "cloud-1");
            assert_eq!(body["spec"]["leaseTransitions"], 4);
            assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
            assert_eq!(body["spec"]["acquireTime"], "2025-01-01T00:00:16.000000Z");
            assert_eq!(body["spec"]["renewTime"], "2025-01-01T00:00:16.000000Z");
            let mut written = body;
            written["metadata"]["resourceVersion"] = json!("501");
            put.reply(200, written);
        },
    )
    .await;
    assert_eq!(role, Role::Leader);

    // Renew.
    let ours = lease_json(Some("cloud-1"), "2025-01-01T00:00:16.000000Z", 4, "501");
    let role = round(
        &mut lock,
        &mut api,
        at(21),
        async |api: &mut MockApiServer| {
            api.expect(Method::GET, LEASE, None)
                .await
                .reply(200, ours.clone());
            let put = api.expect(Method::PUT, &format!("{LEASE}?"), JSON).await;
            let body = put.body().clone();
            assert_eq!(body["metadata"]["resourceVersion"], "501");
            assert_eq!(body["spec"]["holderIdentity"], "cloud-1");
            assert_eq!(
                body["spec"]["leaseTransitions"], 4,
                "a renewal is no transition"
            );
            assert_eq!(body["spec"]["renewTime"], "2025-01-01T00:00:21.000000Z");
            put.reply(
                200,
                lease_json(Some("cloud-1"), "2025-01-01T00:00:21.000000Z", 4, "502"),
            );
        },
    )
    .await;
    assert_eq!(role, Role::Leader);

    // Another replica wrote first: the precondition fails, we stand by.
    let role = round(
        &mut lock,
        &mut api,
        at(26),
        async |api: &mut MockApiServer| {
            api.expect(Method::GET, LEASE, None).await.reply(
                200,
                lease_json(Some("cloud-1"), "2025-01-01T00:00:21.000000Z", 4, "502"),
            );
            api.expect(Method::PUT, &format!("{LEASE}?"), JSON)
                .await
                .reply_status(409, "Conflict");
        },
    )
    .await;
    assert_eq!(role, Role::Standby { holder: None });

    // Release on shutdown: the holder is cleared so a standby takes over at once.
    let (released, ()) = tokio::join!(lock.release(at(30)), async {
        api.expect(Method::GET, LEASE, None).await.reply(
            200,
            lease_json(Some("cloud-1"), "2025-01-01T00:00:26.000000Z", 4, "503"),
        );
        let put = api.expect(Method::PUT, &format!("{LEASE}?"), JSON).await;
        assert_eq!(put.body()["metadata"]["resourceVersion"], "503");
        assert_eq!(put.body()["spec"].get("holderIdentity"), None);
        put.reply(
            200,
            lease_json(None, "2025-01-01T00:00:30.000000Z", 4, "504"),
        );
    });
    released.expect("released");
}

#[tokio::test]
async fn a_missing_lease_is_created_and_a_released_one_taken_at_once() {
    let (client, mut api) = mock_client();
    let mut lock = lock(client);
    let role = round(
        &mut lock,
        &mut api,
        at(0),
        async |api: &mut MockApiServer| {
            api.expect(Method::GET, LEASE, None)
                .await
                .reply_status(404, "NotFound");
            let post = api.expect(Method::POST, &format!("{LEASES}?"), JSON).await;
            assert_eq!(post.body()["metadata"]["name"], "edgetwin-cloud");
            assert_eq!(post.body()["spec"]["holderIdentity"], "cloud-1");
            assert_eq!(post.body()["spec"]["leaseTransitions"], 0);
            let created = post.body().clone();
            post.reply(201, created);
        },
    )
    .await;
    assert_eq!(role, Role::Leader);

    let (client, mut api) = mock_client();
    let mut lock = self::lock(client);
    let role = round(
        &mut lock,
        &mut api,
        at(0),
        async |api: &mut MockApiServer| {
            api.expect(Method::GET, LEASE, None)
                .await
                .reply_status(404, "NotFound");
            api.expect(Method::POST, &format!("{LEASES}?"), JSON)
                .await
                .reply_status(409, "AlreadyExists");
        },
    )
    .await;
    assert_eq!(
        role,
        Role::Standby { holder: None },
        "another replica created it first"
    );

    let role = round(
        &mut lock,
        &mut api,
        at(1),
        async |api: &mut MockApiServer| {
            api.expect(Method::GET, LEASE, None)
                .await
                .reply(200, lease_json(None, "2025-01-01T00:00:00.000000Z", 7, "9"));
            let put = api.expect(Method::PUT, &format!("{LEASE}?"), JSON).await;
            assert_eq!(put.body()["spec"]["holderIdentity"], "cloud-1");
            assert_eq!(put.body()["spec"]["leaseTransitions"], 8);
            let taken = put.body().clone();
            put.reply(200, taken);
        },
    )
    .await;
    assert_eq!(
        role,
        Role::Leader,
        "a released lease is taken without waiting"
    );
}

/// A standby replica (the Lease is someone else's) keeps its cache but writes nothing; at
/// shutdown it releases nothing either.
#[tokio::test]
async fn a_standby_replica_does_not_write() {
    let (client, mut api) = mock_client();
    let mut config = KubeRegistryConfig::new("cloud-1");
    let mut lease = LeaseConfig::new("edgetwin", "edgetwin-cloud", "cloud-1");
    lease.renew_interval = Duration::from_secs(3600);
    config.lease = Some(lease);
    let registry = KubeRegistry::start(client, config);
    let mut leader = registry.leader();

    // The watchers and the elector start together: answer by path.
    let mut feeds = Vec::new();
    for _ in 0..5 {
        let exchange = api.next().await;
        let path = exchange.path.clone();
        if path == LEASE {
            exchange.assert(Method::GET, LEASE, None);
            exchange.reply(
                200,
                lease_json(Some("cloud-0"), "2025-01-01T00:00:00.000000Z", 1, "7"),
            );
        } else if path == format!("{DEVICES}?&limit=500") {
            exchange.reply(
                200,
                list("DeviceList", "100", vec![device_json("100", None)]),
            );
        } else if path == format!("{MODELS}?&limit=500") {
            exchange.reply(200, list("DeviceModelList", "90", vec![]));
        } else if path.contains("watch=true") {
            feeds.push(exchange.stream());
        } else {
            panic!("unexpected request {path}");
        }
    }
    assert!(!*leader.borrow_and_update());
    let device = registry
        .get_device("default", "traffic-light")
        .await
        .expect("get")
        .expect("warm cache");
    let patch = DeviceStatus {
        state: Some("online".into()),
        ..DeviceStatus::default()
    };
    let err = registry
        .patch_status("default", "traffic-light", &patch)
        .await
        .expect_err("standby");
    assert!(matches!(err, RegistryError::NotLeader), "{err}");
    let err = registry
        .record_event(&device, &DeviceEvent::warning("ActuationFailed", "x"))
        .await
        .expect_err("standby");
    assert!(matches!(err, RegistryError::NotLeader), "{err}");

    let mut events = registry.watch();
    assert!(matches!(next(&mut events).await, RegistryEvent::Applied(_)));
    assert_eq!(next(&mut events).await, RegistryEvent::Synced);

    // Shutdown: the elector reads the lease, sees it is not ours, and leaves it alone.
    let (_, ()) = tokio::join!(registry.shutdown(), async {
        api.expect(Method::GET, LEASE, None).await.reply(
            200,
            lease_json(Some("cloud-0"), "2025-01-01T00:00:05.000000Z", 1, "8"),
        );
    });
    assert!(!*leader.borrow_and_update());
    let end = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("the watch stream ends at shutdown");
    assert_eq!(end, None);
}

/// The election loop: leader after the first round (creating the lease), and at shutdown
/// false is published before the lease is released.
#[tokio::test]
async fn the_election_loop_publishes_leadership_and_releases_at_shutdown() {
    let (client, mut api) = mock_client();
    let mut config = LeaseConfig::new("edgetwin", "edgetwin-cloud", "cloud-1");
    config.renew_interval = Duration::from_secs(3600);
    let (leader_tx, mut leader) = tokio::sync::watch::channel(false);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let elector = tokio::spawn(lease::run(
        LeaseLock::new(client, config),
        leader_tx,
        stopped,
    ));

    api.expect(Method::GET, LEASE, None)
        .await
        .reply_status(404, "NotFound");
    let post = api.expect(Method::POST, &format!("{LEASES}?"), JSON).await;
    let created = post.body().clone();
    post.reply(201, created.clone());
    tokio::time::timeout(Duration::from_secs(10), leader.wait_for(|l| *l))
        .await
        .expect("leader in time")
        .expect("published");

    stop.send_replace(true);
    let get = api.expect(Method::GET, LEASE, None).await;
    assert!(
        !*leader.borrow(),
        "writes stop before the lease is released"
    );
    let mut current = created;
    current["metadata"]["resourceVersion"] = json!("2");
    get.reply(200, current);
    let put = api.expect(Method::PUT, &format!("{LEASE}?"), JSON).await;
    assert_eq!(put.body()["spec"].get("holderIdentity"), None);
    let released = put.body().clone();
    put.reply(200, released);
    tokio::time::timeout(Duration::from_secs(10), elector)
        .await
        .expect("the loop ends")
        .expect("task");
}
