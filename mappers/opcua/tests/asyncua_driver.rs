//! The driver against python asyncua (a server we did not write): every supported type read in
//! one Read call and written back, node ids and browse paths, a node that does not exist, a type
//! the node cannot take, and the secured endpoints (Basic256Sha256 with Sign and SignAndEncrypt,
//! Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss) with a user and a password from a file, and with
//! an X.509 user certificate.

mod support;

use edgetwin_mapper_opcua::config::{ProtocolConfig, VisitorConfig};
use edgetwin_sdk::{DeviceConfig, Driver, DriverError, Point, PropertyType, Session, Value};
use opcua::crypto::{CertificateStore, X509Data};
use serde_json::{Value as Json, json};
use support::{Peer, asyncua_python, device, driver};

/// Each variable of the peer, the model type it is read as, and a new value to write.
const TYPES: [(&str, PropertyType, &str); 14] = [
    ("Boolean", PropertyType::Boolean, "false"),
    ("SByte", PropertyType::Int, "-100"),
    ("Byte", PropertyType::Int, "250"),
    ("Int16", PropertyType::Int, "-30000"),
    ("UInt16", PropertyType::Int, "65000"),
    ("Int32", PropertyType::Int, "-2000000000"),
    ("UInt32", PropertyType::Int, "4000000000"),
    ("Int64", PropertyType::Int, "-9000000000000"),
    ("UInt64", PropertyType::Int, "9000000000000"),
    ("Float", PropertyType::Float, "21.3"),
    ("Double", PropertyType::Double, "-0.125"),
    ("String", PropertyType::String, "pump-2"),
    ("DateTime", PropertyType::String, "2025-01-02T03:04:05.678Z"),
    ("ByteString", PropertyType::Bytes, "bytes!"),
];

fn visitor(ns: u16, name: &str) -> Json {
    json!({ "nodeID": format!("ns={ns};s={name}") })
}

fn points(config: &DeviceConfig<ProtocolConfig, VisitorConfig>) -> Vec<&Point<VisitorConfig>> {
    config.points.iter().collect()
}

#[tokio::test]
async fn every_type_is_read_in_one_read_call_written_and_read_back() {
    let Some(python) = asyncua_python() else {
        return;
    };
    let certs = tempfile::tempdir().expect("temp dir");
    let mut peer = Peer::asyncua(&python, 0, certs.path(), None).await;
    let ns = peer.ns;
    let mut properties: Vec<(String, PropertyType, Json)> = TYPES
        .iter()
        .map(|(name, ty, _)| ((*name).to_owned(), *ty, visitor(ns, name)))
        .collect();
    properties.push((
        "numeric".into(),
        PropertyType::Int,
        json!({"nodeID": format!("ns={ns};i=5001")}),
    ));
    properties.push((
        "browsed".into(),
        PropertyType::Double,
        json!({"browseName": format!("{ns}:Device/{ns}:Setpoint")}),
    ));
    properties.push((
        "missing".into(),
        PropertyType::Int,
        json!({"nodeID": format!("ns={ns};s=NoSuchNode")}),
    ));
    properties.push((
        "unbrowsable".into(),
        PropertyType::Int,
        json!({"browsePath": format!("{ns}:Device/{ns}:Nope")}),
    ));
    properties.push(("guid".into(), PropertyType::String, visitor(ns, "Guid")));
    let config = device("all-types", json!({"url": peer.url}), &properties);
    let (driver, _data) = driver();
    driver.validate(&config).expect("valid configuration");
    let mut session = driver.connect(&config).await.expect("connects");

    peer.command("reset").await;
    let values = session.read(&points(&config)).await;
    assert_eq!(
        peer.reads().await,
        1,
        "one Read service call for the whole device"
    );
    let expected = [
        "true",
        "-8",
        "8",
        "-16",
        "16",
        "-32",
        "32",
        "-64",
        "64",
        "1.5",
        "2.25",
        "pump-1",
        "2024-05-01T12:00:00.000Z",
        "raw",
        "5001",
        "20",
    ];
    for (index, wire) in expected.iter().enumerate() {
        let value = values[index]
            .as_ref()
            .unwrap_or_else(|e| panic!("{}: {e}", properties[index].0));
        assert_eq!(&value.to_wire(), wire, "{}", properties[index].0);
    }
    // The node that does not exist fails alone, with the server's reason.
    let missing = values[16].as_ref().expect_err("no such node");
    assert!(matches!(missing, DriverError::Rejected(_)), "{missing}");
    assert!(
        missing.to_string().contains("BadNodeIdUnknown"),
        "{missing}"
    );
    let unbrowsable = values[17].as_ref().expect_err("no such path");
    assert!(
        unbrowsable.to_string().contains("browse path"),
        "{unbrowsable}"
    );
    assert_eq!(
        values[18].as_ref().map(Value::to_wire).ok().as_deref(),
        Some("72962b91-fa75-4ae6-8d28-b404dc7daf63")
    );

    // Every type written with a new value, read back by the driver and by the server.
    for (index, (name, ty, wire)) in TYPES.iter().enumerate() {
        let value = ty.parse(wire).expect("a valid wire value");
        session
            .write(&config.points[index], &value)
            .await
            .unwrap_or_else(|e| panic!("writing {name} = {wire}: {e}"));
        let back = session.read(&[&config.points[index]]).await;
        let back = back[0].as_ref().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(back, &value, "{name} read back");
        assert_eq!(peer.get(name).await, *wire, "{name} on the server");
    }

    // Values a node cannot take are refused with the reason; nothing is written.
    let refusals = [
        (1, Value::Int(300), "out of its range"),
        (4, Value::Int(-1), "out of its range"),
        (5, Value::Float(2.5), "not an integer"),
        (10, Value::String("hot".into()), "not a number"),
        (12, Value::String("yesterday".into()), "RFC 3339"),
        (
            18,
            Value::String("72962b91-fa75-4ae6-8d28-b404dc7daf64".into()),
            "cannot write",
        ),
    ];
    for (index, value, reason) in refusals {
        let error = session
            .write(&config.points[index], &value)
            .await
            .expect_err("refused");
        assert!(matches!(error, DriverError::Rejected(_)), "{error}");
        assert!(
            error.to_string().contains(reason),
            "{}: {error}",
            properties[index].0
        );
    }
    assert_eq!(
        peer.get("SByte").await,
        "-100",
        "the refused value was not written"
    );
    let error = session
        .write(&config.points[16], &Value::Int(1))
        .await
        .expect_err("no node");
    assert!(error.to_string().contains("BadNodeIdUnknown"), "{error}");
    session.disconnect().await;
    peer.kill().await;
}

#[tokio::test]
async fn secured_endpoints_take_every_policy_a_password_file_and_a_user_certificate() {
    let Some(python) = asyncua_python() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "correct horse\n").expect("written");
    let certs = dir.path().join("server-certs");
    // A user certificate (X.509 identity), made with the OPC UA library's own generator.
    let (user_cert, user_key) = (dir.path().join("user.der"), dir.path().join("user.pem"));
    let mut user_data = X509Data::from(edgetwin_mapper_opcua::pki::application_description(
        "urn:edgetwin:test-user",
    ));
    user_data.common_name = "test-user".into();
    CertificateStore::create_certificate_and_key(&user_data, true, &user_cert, &user_key)
        .expect("user certificate");
    let mut peer = Peer::asyncua_with(
        &python,
        0,
        &certs,
        Some(("operator", &password_file)),
        Some(&user_cert),
    )
    .await;
    let ns = peer.ns;
    let protocol = json!({
        "url": peer.url,
        "securityPolicy": "Basic256Sha256",
        "securityMode": "SignAndEncrypt",
        "userName": "operator",
        "passwordFile": password_file,
        "serverCertificate": certs.join("server-cert.der"),
        "timeout": 10,
    });
    let properties = [("setpoint", PropertyType::Double, visitor(ns, "Setpoint"))];
    let config = device("secured", protocol.clone(), &properties);
    let (driver, data) = driver();
    let mut session = driver
        .connect(&config)
        .await
        .expect("secured session opens");
    let values = session.read(&points(&config)).await;
    assert_eq!(values[0], Ok(Value::Float(20.0)));
    session
        .write(&config.points[0], &Value::Float(42.5))
        .await
        .expect("written");
    assert_eq!(peer.get("Setpoint").await, "42.5");
    session.disconnect().await;
    assert!(
        data.path().join("pki/own/cert.der").exists(),
        "the client certificate was generated"
    );

    // The other policies and modes, with the same client certificate.
    for (policy, mode) in [
        ("Basic256Sha256", "Sign"),
        ("Aes128_Sha256_RsaOaep", "SignAndEncrypt"),
        ("Aes256_Sha256_RsaPss", "SignAndEncrypt"),
    ] {
        let mut other = protocol.clone();
        other["securityPolicy"] = json!(policy);
        other["securityMode"] = json!(mode);
        let config = device("secured", other, &properties);
        let mut session = driver
            .connect(&config)
            .await
            .unwrap_or_else(|e| panic!("{policy}/{mode}: {e}"));
        let values = session.read(&points(&config)).await;
        assert_eq!(values[0], Ok(Value::Float(42.5)), "{policy}/{mode}");
        session.disconnect().await;
    }
    assert_eq!(peer.last_user().await, "operator");

    // The X.509 user identity instead of the user name.
    let mut by_certificate = protocol.clone();
    let object = by_certificate.as_object_mut().expect("object");
    object.remove("userName");
    object.remove("passwordFile");
    object.insert("userCertificate".into(), json!(user_cert));
    object.insert("userPrivateKey".into(), json!(user_key));
    let certified = device("secured", by_certificate, &properties);
    let mut session = driver.connect(&certified).await.expect("certificate login");
    assert_eq!(
        session.read(&points(&certified)).await[0],
        Ok(Value::Float(42.5))
    );
    session.disconnect().await;
    assert_eq!(peer.last_user().await, "certificate");

    // A mode the server does not offer is a configuration error naming what it offers.
    let mut missing = protocol.clone();
    missing["securityPolicy"] = json!("Aes256_Sha256_RsaPss");
    missing["securityMode"] = json!("Sign");
    let error = driver
        .connect(&device("secured", missing, &properties))
        .await
        .expect_err("no such endpoint");
    assert!(matches!(error, DriverError::Config(_)), "{error}");
    assert!(error.to_string().contains("it offers"), "{error}");

    // Without the server's certificate in the trust list the mapper refuses the server and
    // says where the refused certificate is.
    let mut untrusted = protocol.clone();
    untrusted
        .as_object_mut()
        .expect("object")
        .remove("serverCertificate");
    let (fresh, _fresh_data) = support::driver();
    let error = fresh
        .connect(&device("untrusted", untrusted, &properties))
        .await
        .expect_err("server certificate not trusted");
    assert!(error.is_transient(), "{error}");
    assert!(error.to_string().contains("rejected"), "{error}");

    // A wrong password is a configuration error that names where the password came from.
    std::fs::write(&password_file, "wrong horse").expect("written");
    let error = driver.connect(&config).await.expect_err("refused");
    assert!(matches!(error, DriverError::Config(_)), "{error}");
    let text = error.to_string();
    assert!(text.contains("refused the user identity"), "{text}");
    assert!(!text.contains("horse"), "{text}");
    peer.kill().await;
}
