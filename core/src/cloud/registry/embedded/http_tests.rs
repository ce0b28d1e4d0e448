//! The embedded registry through its real HTTP API on a free loopback port, with the real client.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use super::client::{ClientError, RegistryClient};
use super::testkit::{TestServer, device, model};
use super::{ApplyMode, Options};
use crate::cloud::registry::object_set::Kind;
use edgetwin_model::devices::{Device, DeviceModel};

async fn next<S: futures::Stream + Unpin>(stream: &mut S) -> S::Item {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an item within 10 s")
        .expect("the stream goes on")
}

async fn seed(client: &RegistryClient) {
    client
        .apply::<_, Value>(
            Kind::DeviceModel,
            "default",
            "traffic-light-model",
            &model(),
        )
        .await
        .expect("model");
    client
        .apply::<_, Value>(Kind::Device, "default", "traffic-light", &device())
        .await
        .expect("device");
}

/// A raw request, for what the typed client does not send (no token, wrong content type).
async fn raw(server: &TestServer, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connects");
    stream
        .write_all(request.replace('\n', "\r\n").as_bytes())
        .await
        .expect("writes");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("reads");
    response
}

#[tokio::test]
async fn every_api_path_needs_the_token_except_healthz() {
    let server = TestServer::start().await;
    seed(&server.client).await;

    let wrong = server.client_with_token("guess");
    let err = wrong
        .list::<Device>(Kind::Device, None)
        .await
        .expect_err("wrong token");
    let status = err.api_status().expect("a Status");
    assert_eq!((status.code, status.reason.as_str()), (401, "Unauthorized"));
    let err = wrong
        .get::<Device>(Kind::Device, "default", "traffic-light")
        .await
        .expect_err("wrong token");
    assert_eq!(err.api_status().map(|s| s.code), Some(401));
    let err = wrong
        .watch(Kind::Device, None, None)
        .await
        .err()
        .expect("wrong token");
    assert_eq!(err.api_status().map(|s| s.code), Some(401));

    let anonymous = raw(
        &server,
        "GET /apis/devices.kubeedge.io/v1beta1/devices HTTP/1.1\nHost: x\nConnection: close\n\n",
    )
    .await;
    assert!(anonymous.starts_with("HTTP/1.1 401"), "{anonymous}");

    let health = raw(
        &server,
        "GET /healthz HTTP/1.1\nHost: x\nConnection: close\n\n",
    )
    .await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("ok"), "{health}");
}

#[tokio::test]
async fn apply_get_list_and_the_server_fields() {
    let server = TestServer::start().await;
    let client = &server.client;
    let written = client
        .apply::<_, DeviceModel>(
            Kind::DeviceModel,
            "default",
            "traffic-light-model",
            &model(),
        )
        .await
        .expect("model");
    assert_eq!(written.result, "created");
    let written = client
        .apply::<_, Device>(Kind::Device, "default", "traffic-light", &device())
        .await
        .expect("device");
    assert_eq!(written.result, "created");
    assert!(written.warnings.is_empty());
    assert_eq!(written.object.metadata.generation, Some(1));
    assert_eq!(
        written.object.metadata.resource_version.as_deref(),
        Some("2")
    );

    let again = client
        .apply::<_, Device>(Kind::Device, "default", "traffic-light", &device())
        .await
        .expect("again");
    assert_eq!(again.result, "unchanged");
    assert_eq!(again.object.metadata.resource_version.as_deref(), Some("2"));

    let fetched: Device = client
        .get(Kind::Device, "default", "traffic-light")
        .await
        .expect("get");
    assert_eq!(fetched, written.object);

    let list = client
        .list::<Device>(Kind::Device, None)
        .await
        .expect("list");
    assert_eq!(list.kind, "DeviceList");
    assert_eq!(list.metadata.resource_version, "2");
    assert_eq!(list.items, vec![fetched]);
    let elsewhere = client
        .list::<Device>(Kind::Device, Some("other"))
        .await
        .expect("list");
    assert!(elsewhere.items.is_empty());

    let err = client
        .get::<Device>(Kind::Device, "default", "nope")
        .await
        .expect_err("missing");
    assert!(err.is_not_found());
    assert_eq!(
        err.to_string(),
        "Error from server (NotFound): devices.devices.kubeedge.io \"nope\" not found"
    );
}

#[tokio::test]
async fn a_device_without_its_model_is_accepted_with_a_warning_header() {
    let server = TestServer::start().await;
    let written = server
        .client
        .apply::<_, Device>(Kind::Device, "default", "traffic-light", &device())
        .await
        .expect("accepted");
    assert_eq!(written.warnings.len(), 1);
    assert!(
        written.warnings[0].starts_with("DeviceModel \"traffic-light-model\" does not exist"),
        "{:?}",
        written.warnings
    );
}

#[tokio::test]
async fn validation_errors_come_back_with_field_paths() {
    let server = TestServer::start().await;
    seed(&server.client).await;
    let mut bad = device();
    bad.spec.properties[3].desired = Some(edgetwin_model::devices::TwinProperty::new("bright"));
    let err = server
        .client
        .apply::<_, Value>(Kind::Device, "default", "traffic-light", &bad)
        .await
        .expect_err("invalid");
    let status = err.api_status().expect("a Status");
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    let causes = &status.details.as_ref().expect("details").causes;
    assert_eq!(causes.len(), 1);
    assert_eq!(causes[0].field, "spec.properties[3].desired.value");
    assert_eq!(
        causes[0].message,
        "Invalid value: \"bright\": the value \"bright\" is not int or integer"
    );

    // A body that does not parse into the model names the field too.
    let mut json = serde_json::to_value(device()).expect("json");
    json["spec"]["properties"][0]["collectCycle"] = json!("often");
    let err = server
        .client
        .apply::<_, Value>(Kind::Device, "default", "traffic-light", &json)
        .await
        .expect_err("invalid");
    let status = err.api_status().expect("a Status");
    assert_eq!(status.code, 422);
    assert_eq!(
        status.details.as_ref().expect("details").causes[0].field,
        "spec.properties[0].collectCycle"
    );

    // The URL and the body must agree.
    let err = server
        .client
        .apply::<_, Value>(Kind::Device, "default", "another-name", &device())
        .await
        .expect_err("name mismatch");
    assert_eq!(err.api_status().map(|s| s.code), Some(400));
    let err = server
        .client
        .apply::<_, Value>(Kind::DeviceModel, "default", "traffic-light", &device())
        .await
        .expect_err("kind mismatch");
    assert!(
        err.to_string()
            .contains("must be a devices.kubeedge.io/v1beta1 DeviceModel"),
        "{err}"
    );
}

#[tokio::test]
async fn merge_patch_status_patch_and_delete() {
    let server = TestServer::start().await;
    seed(&server.client).await;
    let client = &server.client;

    let patched = client
        .merge_patch::<Device>(
            Kind::Device,
            "default",
            "traffic-light",
            &json!({"metadata": {"labels": {"site": null, "zone": "a"}}, "spec": {"nodeName": "pi-2"}}),
        )
        .await
        .expect("patch");
    assert_eq!(patched.result, "configured");
    assert_eq!(patched.object.node_name(), Some("pi-2"));
    assert_eq!(
        patched.object.metadata.labels,
        Some([("zone".to_owned(), "a".to_owned())].into())
    );
    assert_eq!(patched.object.metadata.generation, Some(2));

    let status = client
        .merge_patch_status::<Device>(
            Kind::Device,
            "default",
            "traffic-light",
            &json!({"status": {"state": "online"}}),
        )
        .await
        .expect("status");
    assert_eq!(status.object.metadata.generation, Some(2));
    assert_eq!(
        status.object.status.and_then(|s| s.state).as_deref(),
        Some("online")
    );

    let stale = client
        .merge_patch::<Value>(
            Kind::Device,
            "default",
            "traffic-light",
            &json!({"metadata": {"resourceVersion": "1"}, "spec": {"nodeName": "x"}}),
        )
        .await
        .expect_err("stale");
    assert!(stale.is_conflict(), "{stale}");

    let wrong_type = raw(
        &server,
        &format!(
            "PATCH /apis/devices.kubeedge.io/v1beta1/namespaces/default/devices/traffic-light HTTP/1.1\nHost: x\nAuthorization: Bearer {}\nContent-Type: application/strategic-merge-patch+json\nContent-Length: 2\nConnection: close\n\n{{}}",
            server.token
        ),
    )
    .await;
    assert!(wrong_type.starts_with("HTTP/1.1 400"), "{wrong_type}");
    assert!(
        wrong_type.contains("application/merge-patch+json")
            && wrong_type.contains("application/json-patch+json"),
        "{wrong_type}"
    );

    let deleted: Device = client
        .delete(Kind::Device, "default", "traffic-light")
        .await
        .expect("delete");
    assert_eq!(deleted.name(), "traffic-light");
    let err = client
        .delete::<Value>(Kind::Device, "default", "traffic-light")
        .await
        .expect_err("gone");
    assert!(err.is_not_found());
}

#[tokio::test]
async fn watch_from_a_resource_version_over_http() {
    let server = TestServer::start_with(Options {
        retained_changes: 4,
        watch_buffer: 64,
    })
    .await;
    let client = &server.client;
    seed(client).await;
    let listed = client
        .list::<Device>(Kind::Device, Some("default"))
        .await
        .expect("list");
    let from: u64 = listed.metadata.resource_version.parse().expect("revision");

    let mut watch = client
        .watch(Kind::Device, Some("default"), Some(from))
        .await
        .expect("watch");
    client
        .merge_patch::<Value>(
            Kind::Device,
            "default",
            "traffic-light",
            &json!({"spec": {"nodeName": "pi-9"}}),
        )
        .await
        .expect("patch");
    // A model change is another kind: filtered out.
    client
        .merge_patch::<Value>(
            Kind::DeviceModel,
            "default",
            "traffic-light-model",
            &json!({"spec": {"protocol": "gpio2"}}),
        )
        .await
        .expect("model patch");
    client
        .delete::<Value>(Kind::Device, "default", "traffic-light")
        .await
        .expect("delete");

    let modified = next(&mut watch).await.expect("event");
    assert_eq!(modified.kind, "MODIFIED");
    assert_eq!(modified.object["spec"]["nodeName"], "pi-9");
    assert_eq!(modified.object["metadata"]["resourceVersion"], "3");
    let deleted = next(&mut watch).await.expect("event");
    assert_eq!(deleted.kind, "DELETED");
    assert_eq!(deleted.object["metadata"]["resourceVersion"], "5");

    // A second watch from the same revision replays the same changes.
    let mut replay = client
        .watch(Kind::Device, None, Some(from))
        .await
        .expect("watch");
    assert_eq!(next(&mut replay).await.expect("event"), modified);
    assert_eq!(next(&mut replay).await.expect("event"), deleted);

    // Without a revision: the current objects as ADDED (the model only, in its kind).
    let mut models = client
        .watch(Kind::DeviceModel, None, None)
        .await
        .expect("watch");
    let added = next(&mut models).await.expect("event");
    assert_eq!(
        (added.kind.as_str(), &added.object["spec"]["protocol"]),
        ("ADDED", &json!("gpio2"))
    );

    // More writes than the log keeps: resuming from the start is Gone (410 Expired).
    for node in ["a", "b", "c", "d", "e"] {
        server
            .registry
            .apply(
                {
                    let mut d = device();
                    d.spec.node_name = Some(node.into());
                    d
                },
                ApplyMode::CreateOrReplace,
            )
            .await
            .expect("apply");
    }
    let mut expired = client
        .watch(Kind::Device, None, Some(from))
        .await
        .expect("watch");
    let error = next(&mut expired).await.expect("event");
    assert_eq!(error.kind, "ERROR");
    assert_eq!(error.object["code"], 410);
    assert_eq!(error.object["reason"], "Expired");
    let end = tokio::time::timeout(Duration::from_secs(10), expired.next())
        .await
        .expect("ends");
    assert!(end.is_none());

    // A revision the registry has not reached is a bad request, not a silent wait.
    let mut future = client
        .watch(Kind::Device, None, Some(999))
        .await
        .expect("watch");
    let error = next(&mut future).await.expect("event");
    assert_eq!(
        (error.kind.as_str(), &error.object["code"]),
        ("ERROR", &json!(400))
    );

    // Stopping the server ends open watches.
    server.stop().await;
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(item) = watch.next().await {
            if item.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the watch ended with the server");
}

#[tokio::test]
async fn an_unknown_resource_or_method_is_a_status_not_a_crash() {
    let server = TestServer::start().await;
    let err = server
        .client
        .list::<Value>(Kind::Device, None)
        .await
        .map(|_| ())
        .err();
    assert!(err.is_none(), "an empty list is fine");
    let response = raw(
        &server,
        &format!(
            "GET /apis/devices.kubeedge.io/v1beta1/pods HTTP/1.1\nHost: x\nAuthorization: Bearer {}\nConnection: close\n\n",
            server.token
        ),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(
        response.contains("unknown resource \\\"pods\\\""),
        "{response}"
    );
    let response = raw(
        &server,
        "GET /nothing/here HTTP/1.1\nHost: x\nConnection: close\n\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    assert!(response.contains("\"kind\":\"Status\""), "{response}");
    let err = RegistryClient::new("http://127.0.0.1:1", "t")
        .expect("client")
        .list::<Value>(Kind::Device, None)
        .await
        .expect_err("nothing listens on port 1");
    assert!(matches!(err, ClientError::Connect { .. }), "{err}");
}

/// A raw `PATCH …/devices/{name}/desired` with the test server's token.
async fn raw_desired(server: &TestServer, device: &str, content_type: &str, body: &str) -> String {
    raw(
        server,
        &format!(
            "PATCH /apis/devices.kubeedge.io/v1beta1/namespaces/default/devices/{device}/desired HTTP/1.1\nHost: x\nAuthorization: Bearer {}\nContent-Type: {content_type}\nContent-Length: {}\nConnection: close\n\n{body}",
            server.token,
            body.len()
        ),
    )
    .await
}

#[tokio::test]
async fn the_desired_subresource_sets_values_by_property_name_in_one_write() {
    let server = TestServer::start().await;
    seed(&server.client).await;
    let client = &server.client;
    let before: Device = client
        .get(Kind::Device, "default", "traffic-light")
        .await
        .expect("get");

    let set = client
        .set_desired::<Device>(
            "default",
            "traffic-light",
            &[("red".into(), "ON".into()), ("green".into(), "OFF".into())],
        )
        .await
        .expect("set");
    assert_eq!(set.result, "configured");
    let desired = |device: &Device, name: &str| {
        device
            .spec
            .properties
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.desired.as_ref())
            .map(|d| d.value.clone())
    };
    assert_eq!(desired(&set.object, "red").as_deref(), Some("ON"));
    assert_eq!(desired(&set.object, "green").as_deref(), Some("OFF"));
    assert_eq!(set.object.metadata.generation, Some(2), "one spec change");
    let mut expected = before.spec.clone();
    for property in &mut expected.properties {
        match property.name.as_str() {
            "red" => {
                property
                    .desired
                    .as_mut()
                    .expect("red has a desired value")
                    .value = "ON".into()
            }
            "green" => {
                property
                    .desired
                    .as_mut()
                    .expect("green has a desired value")
                    .value = "OFF".into();
            }
            _ => {}
        }
    }
    assert_eq!(
        set.object.spec, expected,
        "nothing else in the spec changed"
    );

    let again = client
        .set_desired::<Device>("default", "traffic-light", &[("red".into(), "ON".into())])
        .await
        .expect("same value");
    assert_eq!(again.result, "unchanged");
    assert_eq!(
        again.object.metadata.resource_version,
        set.object.metadata.resource_version
    );

    // Validated like any spec change: the type and the access mode of the model's property.
    let err = client
        .set_desired::<Value>(
            "default",
            "traffic-light",
            &[("brightness".into(), "dim".into())],
        )
        .await
        .expect_err("not an int");
    assert_eq!(err.api_status().map(|s| s.code), Some(422), "{err}");
    assert!(err.to_string().contains("Invalid value: \"dim\""), "{err}");

    let err = client
        .set_desired::<Value>("default", "traffic-light", &[("blue".into(), "ON".into())])
        .await
        .expect_err("unknown property");
    assert_eq!(err.api_status().map(|s| s.code), Some(422), "{err}");
    assert!(
        err.to_string().contains(
            "spec.properties: Not found: the device has no property \"blue\" (it has: red, amber, green, brightness, cycles)"
        ),
        "{err}"
    );
    let err = client
        .set_desired::<Value>("default", "nope", &[("red".into(), "ON".into())])
        .await
        .expect_err("unknown device");
    assert!(err.is_not_found(), "{err}");

    for (content_type, body, expected) in [
        ("application/json", "[]", "must be a JSON object"),
        ("application/json", "{}", "no property to set"),
        (
            "application/json",
            r#"{"red": true}"#,
            r#"desired values are strings: \"red\" is true"#,
        ),
        ("application/json", "{\"red\": ", "not valid JSON"),
        (
            "application/merge-patch+json",
            r#"{"red": "ON"}"#,
            "is not supported here",
        ),
    ] {
        let response = raw_desired(&server, "traffic-light", content_type, body).await;
        assert!(response.starts_with("HTTP/1.1 400"), "{body}: {response}");
        assert!(response.contains(expected), "{body}: {response}");
    }
    let unread: Device = client
        .get(Kind::Device, "default", "traffic-light")
        .await
        .expect("get");
    assert_eq!(
        unread.metadata.resource_version, set.object.metadata.resource_version,
        "no refused request wrote anything"
    );

    let anonymous = raw(
        &server,
        "PATCH /apis/devices.kubeedge.io/v1beta1/namespaces/default/devices/traffic-light/desired HTTP/1.1\nHost: x\nContent-Type: application/json\nContent-Length: 13\nConnection: close\n\n{\"red\":\"ON\"}",
    )
    .await;
    assert!(anonymous.starts_with("HTTP/1.1 401"), "{anonymous}");
}

#[tokio::test]
async fn json_patches_apply_in_order_all_or_nothing_and_test_preconditions() {
    let server = TestServer::start().await;
    seed(&server.client).await;
    let client = &server.client;
    let before: Device = client
        .get(Kind::Device, "default", "traffic-light")
        .await
        .expect("get");
    let version = before.metadata.resource_version.clone().expect("a version");

    // kubectl's example: replace a desired value by index, guarded by tests.
    let patched = client
        .json_patch::<Device>(
            Kind::Device,
            "default",
            "traffic-light",
            &json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": version},
                {"op": "test", "path": "/spec/properties/0/name", "value": "red"},
                {"op": "replace", "path": "/spec/properties/0/desired/value", "value": "ON"},
                {"op": "add", "path": "/metadata/labels/zone", "value": "a"},
            ]),
        )
        .await
        .expect("json patch");
    assert_eq!(patched.result, "configured");
    let red = &patched.object.spec.properties[0];
    assert_eq!(
        (
            red.name.as_str(),
            red.desired.as_ref().map(|d| d.value.as_str())
        ),
        ("red", Some("ON"))
    );
    assert_eq!(
        patched
            .object
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("zone"))
            .map(String::as_str),
        Some("a")
    );
    assert_eq!(patched.object.metadata.generation, Some(2));

    // Each refused: nothing of the patch is applied.
    let refused = |operations: Value| async move {
        client
            .json_patch::<Value>(Kind::Device, "default", "traffic-light", &operations)
            .await
            .expect_err("refused")
    };
    // The old version no longer tests true.
    let err = refused(json!([
        {"op": "replace", "path": "/spec/nodeName", "value": "pi-9"},
        {"op": "test", "path": "/metadata/resourceVersion", "value": version},
    ]))
    .await;
    assert_eq!(err.api_status().map(|s| s.code), Some(422), "{err}");
    assert!(
        err.to_string().contains(
            "/metadata/resourceVersion: JSON patch operation 1 failed: value did not match"
        ),
        "{err}"
    );
    let err = refused(json!([
        {"op": "replace", "path": "/spec/properties/9/desired/value", "value": "ON"}
    ]))
    .await;
    assert_eq!(err.api_status().map(|s| s.code), Some(422), "{err}");
    assert!(
        err.to_string().contains("/spec/properties/9/desired/value"),
        "{err}"
    );
    // Validated like any other write.
    let err = refused(json!([
        {"op": "replace", "path": "/spec/properties/3/desired/value", "value": "dim"}
    ]))
    .await;
    assert!(err.to_string().contains("Invalid value: \"dim\""), "{err}");
    // Setting a stale resourceVersion is a precondition, as with a merge patch.
    let err = refused(json!([
        {"op": "replace", "path": "/metadata/resourceVersion", "value": version}
    ]))
    .await;
    assert!(err.is_conflict(), "{err}");
    let after: Device = client
        .get(Kind::Device, "default", "traffic-light")
        .await
        .expect("get");
    assert_eq!(
        after.metadata.resource_version, patched.object.metadata.resource_version,
        "no refused patch wrote anything"
    );
    assert_eq!(after.spec.node_name.as_deref(), Some("pi-1"));

    let body = r#"{"op":"replace"}"#;
    let not_a_patch = raw(
        &server,
        &format!(
            "PATCH /apis/devices.kubeedge.io/v1beta1/namespaces/default/devices/traffic-light HTTP/1.1\nHost: x\nAuthorization: Bearer {}\nContent-Type: application/json-patch+json\nContent-Length: {}\nConnection: close\n\n{body}",
            server.token,
            body.len()
        ),
    )
    .await;
    assert!(not_a_patch.starts_with("HTTP/1.1 400"), "{not_a_patch}");
    assert!(not_a_patch.contains("is not a JSON patch"), "{not_a_patch}");
}

#[tokio::test]
async fn what_the_edge_cannot_take_is_refused_with_a_status_naming_the_limit() {
    use edgetwin_model::limits::{MAX_OBJECT_BYTES, MAX_REQUEST_BODY_BYTES, MAX_VALUE_BYTES};
    let server = TestServer::start().await;
    seed(&server.client).await;
    let client = &server.client;

    // A desired value over the edge's value limit, through the desired subresource and through
    // an apply.
    let big = "O".repeat(70_000);
    let err = client
        .set_desired::<Value>("default", "traffic-light", &[("red".into(), big.clone())])
        .await
        .expect_err("too long");
    let status = err.api_status().expect("a Status");
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    let cause = &status.details.as_ref().expect("details").causes[0];
    assert_eq!(cause.field, "spec.properties[0].desired.value");
    assert!(
        cause
            .message
            .contains(&format!("at most {MAX_VALUE_BYTES} bytes"))
            && cause.message.contains("got 70000"),
        "{}",
        cause.message
    );
    let mut with_big_value = device();
    with_big_value.spec.properties[0].desired =
        Some(edgetwin_model::devices::TwinProperty::new(big));
    let err = client
        .apply::<_, Value>(Kind::Device, "default", "traffic-light", &with_big_value)
        .await
        .expect_err("too long");
    assert_eq!(err.api_status().map(|s| s.code), Some(422));

    // A Device larger than the edge takes (a 1.5 MB annotation).
    let mut huge = device();
    huge.metadata.annotations = Some(
        [("example.com/blob".to_owned(), "a".repeat(1_500_000))]
            .into_iter()
            .collect(),
    );
    let err = client
        .apply::<_, Value>(Kind::Device, "default", "traffic-light", &huge)
        .await
        .expect_err("too large");
    let status = err.api_status().expect("a Status");
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    let cause = &status.details.as_ref().expect("details").causes[0];
    assert!(
        cause
            .message
            .contains(&format!("at most {MAX_OBJECT_BYTES} bytes (256 KiB")),
        "{}",
        cause.message
    );
    let stored: Device = client
        .get(Kind::Device, "default", "traffic-light")
        .await
        .expect("still there");
    assert!(stored.metadata.annotations.is_none(), "nothing was stored");

    // A body over the request limit: 413 with a Kubernetes Status, not plain text.
    let body = "x".repeat(MAX_REQUEST_BODY_BYTES + 1);
    let response = raw(
        &server,
        &format!(
            "PUT /apis/devices.kubeedge.io/v1beta1/namespaces/default/devices/traffic-light HTTP/1.1\nHost: x\nAuthorization: Bearer {}\nContent-Type: application/json\nContent-Length: {}\nConnection: close\n\n{body}",
            server.token,
            body.len()
        ),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 413"), "{}", &response[..200]);
    let json: Value = serde_json::from_str(
        response
            .split("\r\n\r\n")
            .nth(1)
            .expect("a body after the headers"),
    )
    .expect("a JSON body");
    assert_eq!(json["kind"], "Status");
    assert_eq!(json["reason"], "RequestEntityTooLarge");
    assert_eq!(
        json["message"],
        format!("Request entity too large: limit is {MAX_REQUEST_BODY_BYTES} bytes (3 MiB)")
    );
}

#[tokio::test]
async fn labels_and_annotation_keys_are_validated_as_kubernetes_does() {
    let server = TestServer::start().await;
    seed(&server.client).await;
    let apply = |labels: &[(&str, &str)]| {
        let mut device = device();
        device.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let client = server.client.clone();
        async move {
            client
                .apply::<_, Value>(Kind::Device, "default", "traffic-light", &device)
                .await
        }
    };
    for good in [
        &[("app", "traffic-light")][..],
        &[("example.com/zone", "A_1.b-2")],
        &[("empty", "")],
    ] {
        apply(good)
            .await
            .unwrap_or_else(|e| panic!("{good:?}: {e}"));
    }
    for (bad, part) in [
        (
            &[("app", "has space")][..],
            "a valid label must be an empty string",
        ),
        (&[("app", "line\nbreak")], "a valid label"),
        (&[("app", "-leading")], "a valid label"),
        (&[("app", &"v".repeat(64))], "no more than 63 characters"),
        (&[("bad key", "v")], "name part must consist of"),
        (&[("Example.com/x", "v")], "prefix part"),
        (&[("/x", "v")], "prefix part must be non-empty"),
    ] {
        let err = apply(bad).await.expect_err("invalid label");
        let status = err.api_status().expect("a Status");
        assert_eq!(
            (status.code, status.reason.as_str()),
            (422, "Invalid"),
            "{bad:?}"
        );
        let cause = &status.details.as_ref().expect("details").causes[0];
        assert_eq!(cause.field, "metadata.labels", "{bad:?}");
        assert!(cause.message.contains(part), "{bad:?}: {}", cause.message);
    }
    let mut annotated = device();
    annotated.metadata.annotations =
        Some([("no spaces allowed".to_owned(), "v".to_owned())].into());
    let err = server
        .client
        .apply::<_, Value>(Kind::Device, "default", "traffic-light", &annotated)
        .await
        .expect_err("invalid annotation key");
    let status = err.api_status().expect("a Status");
    assert_eq!(
        status.details.as_ref().expect("details").causes[0].field,
        "metadata.annotations"
    );
}
