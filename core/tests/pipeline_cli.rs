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
        "apiVersion: devices.kubeedge.io/v1beta1\nkind: Device\nmetadata: {name: d}\nspec:\n  \
         deviceModelRef: {name: m}\n  properties:\n  - name: a\n  - name: b\n",
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

/// KubeEdge's own v1beta1 samples from `EDGETWIN_KUBEEDGE_FIXTURES`, or `None` (the test skips).
fn kubeedge_v1beta1_samples() -> Option<Vec<PathBuf>> {
    let dir = edgetwin_testkit::fixtures::kubeedge_dir("samples", "pipeline_cli")?;
    let mut samples: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("fixtures samples dir")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("v1beta1__") && n.ends_with(".yaml"))
        })
        .collect();
    samples.sort();
    assert!(!samples.is_empty(), "no v1beta1 samples in {dir:?}");
    Some(samples)
}

#[test]
fn kubeedge_device_files_are_read_or_refused_with_a_clear_error() {
    let Some(samples) = kubeedge_v1beta1_samples() else {
        return;
    };
    let files = Files::new();
    files.write("samples.csv", "0,1\n");
    for sample in samples {
        let path = sample.to_str().expect("UTF-8 path");
        let args = [
            "--device",
            path,
            "--property",
            "no-such-property",
            "--samples",
            "samples.csv",
        ];
        let stderr = refused(&files, &args);
        let clear = [
            "no Device has a property named \"no-such-property\" (properties: ",
            "no document of kind Device",
        ];
        // Anything the model loader refuses (Helm templates, invalid YAML) names `path:line:col`.
        let names_a_line = stderr
            .strip_prefix(&format!("error: {path}:"))
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
        assert!(
            stderr.starts_with(&format!("error: {path}"))
                && (names_a_line || clear.iter().any(|c| stderr.contains(c))),
            "{path}: {stderr}"
        );
    }
}

#[test]
fn a_kubeedge_device_with_our_pipeline_field_added_runs() {
    let Some(samples) = kubeedge_v1beta1_samples() else {
        return;
    };
    let instance = samples
        .iter()
        .find(|p| p.ends_with("v1beta1__modbus__temperature-instance.yaml"))
        .expect("the modbus temperature sample");
    let yaml = fs::read_to_string(instance).expect("read sample");
    let mut device: serde_json::Value = serde_saphyr::from_str(&yaml).expect("the sample parses");
    let property = &mut device["spec"]["properties"][0];
    assert_eq!(property["name"], "temperature");
    property["pipeline"] = serde_json::json!([
        {"scale": {"factor": 0.5}},
        {"deadband": {"absolute": 1}},
    ]);
    let files = Files::new();
    // JSON is YAML: the file is the KubeEdge sample plus our field.
    files.write(
        "device.yaml",
        &serde_json::to_string_pretty(&device).expect("JSON"),
    );
    files.write("samples.csv", "0,40\n1000,41\n2000,44\n");
    let out = edgetwin(
        &[
            "pipeline",
            "test",
            "--device",
            "device.yaml",
            "--property",
            "temperature",
            "--samples",
            "samples.csv",
            "--format",
            "csv",
        ],
        files.dir.path(),
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "time_ms,input,output,note\n\
         0,40,20,reported\n\
         1000,41,,suppressed by pipeline[1] (deadband)\n\
         2000,44,22,reported\n"
    );
}
