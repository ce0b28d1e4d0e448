//! `edgetwin pipeline test` as a user runs it: the built binary on YAML and CSV files in a temp dir.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

struct Files {
    dir: TempDir,
}

impl Files {
    fn new() -> Self {
        Files {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::write(&path, content).expect("write test file");
        path
    }
}

fn edgetwin(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgetwin"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run edgetwin")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const TEMPERATURE_STEPS: &str = "\
# raw register in 0.1 °C with a -40 °C offset
- scale: {factor: 0.1, offset: -40}
- clamp: {min: -40, max: 125}
- round: {decimals: 1}
- deadband: {absolute: 0.5}
- rateLimit: {minInterval: 2s}
";

const SAMPLES: &str = "\
timestamp_ms,value
0,653
1000,655
2000,660
2500,670
3000,700
9000,abc
10000,5000
";

#[test]
fn previews_a_pipeline_file_as_a_table() {
    let files = Files::new();
    files.write("steps.yaml", TEMPERATURE_STEPS);
    files.write("samples.csv", SAMPLES);
    let out = edgetwin(
        &[
            "pipeline",
            "test",
            "--pipeline",
            "steps.yaml",
            "--samples",
            "samples.csv",
        ],
        files.dir.path(),
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "\
time_ms  input    output  note
      0  653      25.3    reported
   1000  655      -       suppressed by pipeline[3] (deadband)
   2000  660      26      reported
   2500  670      -       held by pipeline[4] (rateLimit)
   3000  700      -       held by pipeline[4] (rateLimit)
   4000  (timer)  30      reported, released by pipeline[4] (rateLimit)
   9000  abc      -       error: pipeline[0] (scale): needs a number, got string \"abc\"
  10000  5000     125     reported
7 samples: 3 reported, 3 suppressed or held, 1 refused; 1 released by a timer
"
    );
}

#[test]
fn reads_the_pipeline_of_a_property_from_a_device_file_and_prints_csv() {
    let files = Files::new();
    files.write(
        "lamp.yaml",
        "\
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: lamp-model}
spec:
  properties:
  - name: power
    type: STRING
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: lamp-1}
spec:
  deviceModelRef: {name: lamp-model}
  properties:
  - name: brightness
  - name: power
    visitors: {protocolName: gpio, configData: {line: 17}}
    pipeline:
    - deadband: {}
    - map: {\"0\": \"OFF\", \"1\": \"ON\"}
",
    );
    files.write("power.csv", "0,0\n100,0\n200,1\n300,1\n400,2\n");
    let out = edgetwin(
        &[
            "pipeline",
            "test",
            "--device",
            "lamp.yaml",
            "--property",
            "power",
            "--samples",
            "power.csv",
            "--format",
            "csv",
        ],
        files.dir.path(),
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "\
time_ms,input,output,note
0,0,OFF,reported
100,0,,suppressed by pipeline[0] (deadband)
200,1,ON,reported
300,1,,suppressed by pipeline[0] (deadband)
400,2,,\"error: pipeline[1] (map): no entry for \"\"2\"\" (the map's keys are 0, 1)\"
"
    );
}

/// Runs `edgetwin pipeline test ARGS` expecting exit status 1 and nothing on stdout; the stderr.
fn refused(files: &Files, args: &[&str]) -> String {
    let out = edgetwin(&[&["pipeline", "test"], args].concat(), files.dir.path());
    assert_eq!(out.status.code(), Some(1), "stdout: {}", text(&out.stdout));
    assert!(out.stdout.is_empty(), "stdout: {}", text(&out.stdout));
    text(&out.stderr)
}

#[test]
fn a_bad_csv_row_is_reported_with_file_and_line() {
    let files = Files::new();
    files.write("steps.yaml", TEMPERATURE_STEPS);
    files.write("samples.csv", "timestamp_ms,value\n0,653\nsoon,655\n");
    let stderr = refused(
        &files,
        &["--pipeline", "steps.yaml", "--samples", "samples.csv"],
    );
    assert!(
        stderr.contains("samples.csv: bad samples: line 3: timestamp \"soon\" is not a whole"),
        "{stderr}"
    );
}

#[test]
fn bad_yaml_and_invalid_steps_are_reported_with_file_line_and_step() {
    let files = Files::new();
    files.write("samples.csv", "0,1\n");
    files.write(
        "typo.yaml",
        "- scale: {factor: 2}\n- rateLimt: {maxPerSecond: 1}\n",
    );
    let stderr = refused(
        &files,
        &["--pipeline", "typo.yaml", "--samples", "samples.csv"],
    );
    assert!(
        stderr.contains("typo.yaml: not a list of pipeline steps"),
        "{stderr}"
    );
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(stderr.contains("unknown field `rateLimt`"), "{stderr}");

    files.write(
        "invalid.yaml",
        "- scale: {factor: 2}\n- window: {size: 5, period: 1s, aggregate: max}\n",
    );
    let stderr = refused(
        &files,
        &["--pipeline", "invalid.yaml", "--samples", "samples.csv"],
    );
    assert!(
        stderr.contains(
            "invalid.yaml: invalid pipeline: pipeline[1] (window): `size` and `period` cannot both be set"
        ),
        "{stderr}"
    );
}

#[test]
fn a_missing_property_names_the_ones_there_are() {
    let files = Files::new();
    files.write("samples.csv", "0,1\n");
    files.write(
        "device.yaml",
        "kind: Device\nmetadata: {name: d}\nspec:\n  properties:\n  - name: a\n  - name: b\n",
    );
    let args = [
        "--device",
        "device.yaml",
        "--property",
        "c",
        "--samples",
        "samples.csv",
    ];
    let stderr = refused(&files, &args);
    assert!(
        stderr.contains("device.yaml: no Device has a property named \"c\" (properties: a, b)"),
        "{stderr}"
    );
}
