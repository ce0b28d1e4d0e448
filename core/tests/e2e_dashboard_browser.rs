//! The dashboard in real headless Chromium, against the embedded registry and its HTTP server:
//! the red button writes *desired* through the API with the token from the URL fragment, and
//! the drawn lamp lights only when the *reported* value says ON (written here as the edge
//! would, through the registry's status writer). The whole path through `edgetwin up` is
//! tested in `examples/traffic-light/tests/`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`cargo xtask provision`); without them the
//! test skips loudly, unless `EDGETWIN_REQUIRE_PEERS` is set (as `cargo xtask test` does).

#[path = "support/webdriver.rs"]
mod webdriver;

use std::time::Duration;

use edgetwin_core::cloud::registry::Registry;
use edgetwin_core::cloud::registry::embedded::server::ApiServer;
use edgetwin_core::cloud::registry::embedded::{ApplyMode, EmbeddedRegistry};
use edgetwin_model::devices::{ConditionType, DeviceStatus, PropertyCondition, TwinProperty};
use webdriver::Browser;

const TOKEN: &str = "browser-test-token-0123456789";
const LAMP_RED: &str = "circle.lamp[data-lamp='red']";
const WAIT: Duration = Duration::from_secs(10);

const MODEL: &str = include_str!("../../examples/traffic-light/model.yaml");
const DEVICE: &str = include_str!("../../examples/traffic-light/device.yaml");

fn reported_red(value: &str) -> DeviceStatus {
    let mut status = DeviceStatus::default();
    let red = status.twin_mut("red");
    red.reported = Some(TwinProperty::new(value));
    red.condition = Some(PropertyCondition::new(
        ConditionType::Verified,
        jiff::Timestamp::now(),
    ));
    status.state = Some("online".into());
    status
}

#[test]
fn e2e_the_red_button_sets_desired_and_the_lamp_follows_reported() {
    if !webdriver::available() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let registry = EmbeddedRegistry::open(&dir.path().join("registry.db")).expect("registry");
    let (url, stop) = runtime.block_on(async {
        for (yaml, source) in [(MODEL, "model.yaml"), (DEVICE, "device.yaml")] {
            for document in edgetwin_model::devices::load::from_str(yaml, source).expect("loads") {
                registry
                    .apply_manifest(document.manifest, ApplyMode::CreateOrReplace)
                    .await
                    .expect("applied");
            }
        }
        let server = ApiServer::bind(
            "127.0.0.1:0".parse().expect("addr"),
            registry.clone(),
            TOKEN.into(),
        )
        .await
        .expect("binds");
        let dashboard = edgetwin_core::cloud::dashboard::router(
            std::sync::Arc::new(registry.clone()),
            server.stopping(),
        );
        let server = server.merge(dashboard);
        let url = server.url().expect("url");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run_until(async {
            let _ = stopped.await;
        }));
        (url, stop)
    });

    let browser = Browser::start();
    browser.goto(&format!("{url}/#token={TOKEN}"));
    browser.wait_attribute("#access", "data-mode", "control", WAIT);
    browser.wait_attribute(LAMP_RED, "data-on", "false", WAIT);
    assert_eq!(
        browser.script("return location.hash", serde_json::json!([])),
        "",
        "the token leaves the address bar"
    );

    browser.click(
        "section.device[data-name='traffic-light'] button[data-property='red'][data-on='true']",
    );
    let desired = runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let device = registry
                .get_device("default", "traffic-light")
                .await
                .expect("reads")
                .expect("exists");
            let red = device.spec.properties[0].desired.clone().map(|d| d.value);
            if red.as_deref() == Some("ON") || tokio::time::Instant::now() > deadline {
                return red;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    assert_eq!(
        desired.as_deref(),
        Some("ON"),
        "the click set desired red=ON"
    );
    // Desired alone does not light the lamp: it shows what the device reported.
    assert_eq!(
        browser.attribute(LAMP_RED, "data-on").as_deref(),
        Some("false")
    );

    runtime
        .block_on(registry.patch_device_status("default", "traffic-light", reported_red("ON")))
        .expect("status written");
    browser.wait_attribute(LAMP_RED, "data-on", "true", WAIT);
    browser.wait_attribute(
        "tr[data-property='red'] .condition",
        "data-type",
        "Verified",
        WAIT,
    );
    let shot = browser.screenshot(&screenshot_dir().join("dashboard-reported.png"));
    eprintln!("screenshot: {}", shot.display());

    runtime
        .block_on(registry.patch_device_status("default", "traffic-light", reported_red("OFF")))
        .expect("status written");
    browser.wait_attribute(LAMP_RED, "data-on", "false", WAIT);

    drop(browser);
    let _ = stop.send(());
}

/// `target/screenshots` of the workspace (or of `CARGO_TARGET_DIR`).
fn screenshot_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("screenshots")
}
