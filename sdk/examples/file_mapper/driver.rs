//! A driver for devices that show up as files, like Linux sysfs LEDs, hwmon sensors or GPIO
//! values: each property is one file holding its value as text.

use std::io::ErrorKind;
use std::path::PathBuf;

use edgetwin_sdk::{DeviceConfig, Driver, DriverError, Point, Session, Value};
use serde::Deserialize;

/// `protocol.configData`: the directory of the device's files.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDevice {
    /// e.g. `/sys/class/leds/status`.
    pub root: PathBuf,
}

/// `visitors.configData`: the file of one property, relative to `root`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePoint {
    /// e.g. `brightness`.
    pub file: String,
}

/// The `file` protocol.
#[derive(Debug, Default)]
pub struct FileDriver;

impl Driver for FileDriver {
    const PROTOCOL: &'static str = "file";
    type ProtocolConfig = FileDevice;
    type VisitorConfig = FilePoint;
    type Session = FileSession;

    fn validate(&self, device: &DeviceConfig<FileDevice, FilePoint>) -> Result<(), DriverError> {
        match device.points.iter().find(|p| p.visitor.file.contains("..")) {
            Some(p) => Err(DriverError::config(format!(
                "property {}: file leaves root",
                p.property
            ))),
            None => Ok(()),
        }
    }

    async fn connect(
        &self,
        device: &DeviceConfig<FileDevice, FilePoint>,
    ) -> Result<FileSession, DriverError> {
        let root = device.protocol.root.clone();
        if !tokio::fs::metadata(&root).await?.is_dir() {
            return Err(DriverError::io(format!(
                "{} is not a directory",
                root.display()
            )));
        }
        Ok(FileSession { root })
    }
}

/// An open "connection": the device's directory.
#[derive(Debug)]
pub struct FileSession {
    root: PathBuf,
}

impl FileSession {
    async fn read_one(&self, point: &Point<FilePoint>) -> Result<Value, DriverError> {
        let text = match tokio::fs::read_to_string(self.root.join(&point.visitor.file)).await {
            Ok(text) => text,
            // A missing file fails this property only; other errors are the transport's.
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(DriverError::Rejected(e.to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        let value = point.ty.parse(text.trim());
        value.map_err(|e| DriverError::Rejected(format!("{}: {e}", point.visitor.file)))
    }
}

impl Session for FileSession {
    type Visitor = FilePoint;

    async fn read(&mut self, points: &[&Point<FilePoint>]) -> Vec<Result<Value, DriverError>> {
        let mut values = Vec::with_capacity(points.len());
        for point in points {
            values.push(self.read_one(point).await);
        }
        values
    }

    async fn write(&mut self, point: &Point<FilePoint>, value: &Value) -> Result<(), DriverError> {
        let path = self.root.join(&point.visitor.file);
        tokio::fs::write(path, format!("{value}\n")).await?;
        Ok(())
    }
}
