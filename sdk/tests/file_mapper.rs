//! The guide's example driver (`examples/file_mapper/driver.rs`, shown in full in
//! `docs/writing-a-mapper.md`) passes the conformance suite against real files, and the guide
//! shows exactly that code.

#[path = "../examples/file_mapper/driver.rs"]
mod driver;

use edgetwin_sdk::testkit::conformance;

fn device_yaml(root: &std::path::Path) -> String {
    format!(
        r#"
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata:
  name: status-led
spec:
  protocol: file
  properties:
    - name: brightness
      type: INT
      accessMode: ReadWrite
    - name: trigger
      type: STRING
      accessMode: ReadWrite
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata:
  name: led
spec:
  deviceModelRef:
    name: status-led
  protocol:
    protocolName: file
    configData:
      root: {root}
  properties:
    - name: brightness
      visitors:
        protocolName: file
        configData:
          file: brightness
    - name: trigger
      visitors:
        protocolName: file
        configData:
          file: trigger
"#,
        root = root.display()
    )
}

#[tokio::test]
async fn the_guide_driver_passes_the_conformance_suite_on_real_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("brightness"), "0\n").expect("written");
    std::fs::write(dir.path().join("trigger"), "none\n").expect("written");
    let report = conformance::run(|| driver::FileDriver, &device_yaml(dir.path()))
        .await
        .unwrap_or_else(|failure| panic!("{failure}"));
    println!("{report}");
    let brightness = std::fs::read_to_string(dir.path().join("brightness")).expect("read");
    assert_ne!(
        brightness, "0\n",
        "the suite's desired values reached the file"
    );
}

#[test]
fn the_guide_shows_the_example_driver_verbatim() {
    let guide = include_str!("../../docs/writing-a-mapper.md");
    let driver = include_str!("../examples/file_mapper/driver.rs");
    assert!(
        guide.contains(&format!("```rust\n{driver}```")),
        "docs/writing-a-mapper.md must contain examples/file_mapper/driver.rs verbatim"
    );
    assert!(
        driver.lines().count() < 100,
        "the guide promises a driver in under 100 lines"
    );
}
