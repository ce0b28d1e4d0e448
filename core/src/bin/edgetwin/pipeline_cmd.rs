//! `edgetwin pipeline test`: runs a property's data pipeline offline over a CSV of samples and
//! prints what would be reported.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use edgetwin_model::devices::load::Manifest;
use edgetwin_model::devices::{Device, DeviceProperty};
use edgetwin_model::pipeline::{Pipeline, PipelineSpec, preview};
use edgetwin_model::value::PropertyType;

/// `edgetwin pipeline …`
#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// Run a pipeline over recorded samples and show, row by row, what would be reported and
    /// which step suppressed or held the rest.
    Test(TestArgs),
}

/// Where the steps come from, the samples, and how to print.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// A YAML file with just the steps (a list, as under `pipeline:` in a Device).
    #[arg(
        long,
        value_name = "FILE.yaml",
        required_unless_present = "device",
        conflicts_with = "device"
    )]
    pipeline: Option<PathBuf>,
    /// A Device YAML (may hold several documents); the steps are its
    /// `spec.properties[].pipeline` for --property.
    #[arg(long, value_name = "FILE.yaml", requires = "property")]
    device: Option<PathBuf>,
    /// The property whose pipeline to run (with --device).
    #[arg(long, value_name = "NAME")]
    property: Option<String>,
    /// CSV of `timestamp_ms,value` rows (header optional, `#` comments allowed).
    #[arg(long, value_name = "FILE.csv")]
    samples: PathBuf,
    /// Parse values as this DeviceModel type (INT, FLOAT, DOUBLE, BOOLEAN, STRING, BYTES).
    /// Default: a value is an int, float or boolean when it reads as one, else a string.
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_property_type)]
    value_type: Option<PropertyType>,
    /// Output: an aligned table with a summary, or CSV.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Output format of `pipeline test`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Csv,
}

/// Runs a `pipeline` subcommand.
pub fn run(command: PipelineCommand) -> anyhow::Result<()> {
    match command {
        PipelineCommand::Test(args) => test(args),
    }
}

fn test(args: TestArgs) -> anyhow::Result<()> {
    let spec = match (&args.pipeline, &args.device, &args.property) {
        (Some(file), _, _) => {
            let yaml = read(file)?;
            serde_saphyr::from_str::<PipelineSpec>(&yaml)
                .with_context(|| format!("{}: not a list of pipeline steps", file.display()))?
        }
        (None, Some(file), Some(property)) => device_pipeline(file, property)?,
        // clap enforces one of the two forms.
        _ => bail!("give --pipeline FILE, or --device FILE with --property NAME"),
    };
    let source = args
        .pipeline
        .as_ref()
        .or(args.device.as_ref())
        .map_or_else(String::new, |p| p.display().to_string());
    let mut pipeline =
        Pipeline::build(&spec).with_context(|| format!("{source}: invalid pipeline"))?;
    let csv = read(&args.samples)?;
    let samples = preview::parse_samples(&csv, args.value_type)
        .with_context(|| format!("{}: bad samples", args.samples.display()))?;
    let rows = preview::run(&mut pipeline, samples);
    let output = match args.format {
        Format::Table => preview::render_table(&rows),
        Format::Csv => preview::render_csv(&rows),
    };
    print!("{output}");
    Ok(())
}

fn read(file: &Path) -> anyhow::Result<String> {
    fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

fn parse_property_type(text: &str) -> Result<PropertyType, String> {
    let quoted = format!("\"{}\"", text.trim().to_uppercase());
    serde_json::from_str(&quoted)
        .map_err(|_| "expected INT, FLOAT, DOUBLE, BOOLEAN, STRING, BYTES or STREAM".to_owned())
}

/// `spec.properties[name == property].pipeline` of the one Device in `file` that has `property`.
fn device_pipeline(file: &Path, property: &str) -> anyhow::Result<PipelineSpec> {
    let documents = edgetwin_core::manifests::from_file(file)?;
    let devices: Vec<&Device> = documents
        .iter()
        .filter_map(|d| match &d.manifest {
            Manifest::Device(device) => Some(device),
            Manifest::DeviceModel(_) => None,
        })
        .collect();
    if devices.is_empty() {
        bail!("{}: no document of kind Device", file.display());
    }
    let found: Vec<(&Device, &DeviceProperty)> = devices
        .iter()
        .filter_map(|device| device.property(property).map(|prop| (*device, prop)))
        .collect();
    match found.as_slice() {
        [(device, prop)] => prop.pipeline.clone().with_context(|| {
            format!(
                "{}: property {property:?} of Device {} has no `pipeline`",
                file.display(),
                device.name()
            )
        }),
        [] => {
            let known: Vec<&str> = devices
                .iter()
                .flat_map(|d| d.spec.properties.iter().map(|p| p.name.as_str()))
                .collect();
            bail!(
                "{}: no Device has a property named {property:?} (properties: {})",
                file.display(),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )
        }
        several => bail!(
            "{}: several Devices ({}) have a property named {property:?}; put the one to test in \
             a file of its own",
            file.display(),
            several
                .iter()
                .map(|(d, _)| d.name())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_types_parse_case_insensitively() {
        assert_eq!(parse_property_type("int"), Ok(PropertyType::Int));
        assert_eq!(parse_property_type("BOOLEAN"), Ok(PropertyType::Boolean));
        assert!(parse_property_type("number").is_err());
    }
}
