//! `pushMethod.otel` (feature `sink-otel`): OpenTelemetry gauges over OTLP/HTTP (protobuf), one
//! export request per batch, with the SDK's own HTTP client.
//!
//! The request is built with opentelemetry-proto's OTLP types rather than through an
//! OpenTelemetry SDK meter: a meter aggregates on its own clock and has its own export queue,
//! while a sink must send what the pipeline let through, stamped with the time it was read, and
//! go through the mapper's bounded, retrying queue like every other sink.
//!
//! Shape, per device one `ResourceMetrics` (resource attributes `service.name =
//! edgetwin-mapper` and KubeEdge's `device.id = {namespace}/{name}`), scope `edgetwin-mapper`,
//! per property one gauge named after the property (as KubeEdge's mapper-framework names it), one
//! data point per sample with the attributes `device` (`{namespace}/{name}`) and `property`.
//! INT values are sent as integers, FLOAT and DOUBLE as doubles, BOOLEAN as 0 or 1.
//!
//! Answers follow the OTLP/HTTP specification: 2xx is success (a partial success is logged),
//! 429, 502, 503 and 504 are retried, every other status refuses the data.

use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use super::queue::{Deliver, DeliveryError};
use super::{DB_TIMEOUT, OtelSpec, Sample};
use crate::http::post;
use edgetwin_model::value::Value;

/// The scope and service name of the exported metrics.
pub const SCOPE: &str = "edgetwin-mapper";

/// Content type of an OTLP/HTTP protobuf body.
pub const CONTENT_TYPE: &str = "application/x-protobuf";

/// Exports batches of samples.
pub(super) struct OtelDestination {
    spec: OtelSpec,
}

impl OtelDestination {
    pub(super) fn new(spec: OtelSpec) -> Self {
        Self { spec }
    }
}

impl Deliver for OtelDestination {
    const MAX_BATCH: usize = 500;

    async fn deliver(&mut self, batch: &[Sample]) -> Result<(), DeliveryError> {
        let (request, refused) = match batch.iter().position(|s| number(s).is_err()) {
            Some(0) => {
                let reason = number(&batch[0]).err().unwrap_or_default();
                return Err(DeliveryError::permanent(reason));
            }
            Some(index) => (export_request(&batch[..index]), Some(index)),
            None => (export_request(batch), None),
        };
        let response = post(
            &self.spec.target,
            CONTENT_TYPE,
            &[],
            &request.encode_to_vec(),
            DB_TIMEOUT,
        )
        .await
        .map_err(|e| DeliveryError::transient(e.to_string()))?;
        match response.status {
            200..=299 => {
                if let Ok(answer) = ExportMetricsServiceResponse::decode(response.body.as_slice())
                    && let Some(partial) = answer.partial_success
                    && partial.rejected_data_points > 0
                {
                    tracing::warn!(
                        sink = %self.spec.target,
                        rejected = partial.rejected_data_points,
                        message = %partial.error_message,
                        "the OTLP receiver rejected some data points"
                    );
                }
                match refused {
                    None => Ok(()),
                    Some(index) => Err(DeliveryError::permanent(
                        number(&batch[index]).err().unwrap_or_default(),
                    )
                    .after(index)),
                }
            }
            429 | 502 | 503 | 504 => Err(DeliveryError::transient(format!(
                "the OTLP receiver answered status {}",
                response.status
            ))),
            status => Err(DeliveryError::permanent(format!(
                "the OTLP receiver refused the export: status {status}: {}",
                response.body_excerpt()
            ))),
        }
    }
}

/// The export request for `samples` (every one must be a number: see [`number`]).
pub fn export_request(samples: &[Sample]) -> ExportMetricsServiceRequest {
    let mut resources: Vec<ResourceMetrics> = Vec::new();
    let mut devices: Vec<String> = Vec::new();
    for sample in samples {
        let Ok(value) = number(sample) else {
            continue;
        };
        let device = sample.device.to_string();
        let index = match devices.iter().position(|d| *d == device) {
            Some(index) => index,
            None => {
                devices.push(device.clone());
                resources.push(resource_metrics(&device));
                resources.len() - 1
            }
        };
        let metrics = &mut resources[index].scope_metrics[0].metrics;
        let point = NumberDataPoint {
            attributes: vec![
                attribute("device", &device),
                attribute("property", &sample.property),
            ],
            time_unix_nano: u64::try_from(sample.timestamp_ms)
                .unwrap_or(0)
                .saturating_mul(1_000_000),
            value: Some(value),
            ..NumberDataPoint::default()
        };
        match metrics.iter_mut().find(|m| m.name == sample.property) {
            Some(Metric {
                data: Some(metric::Data::Gauge(gauge)),
                ..
            }) => gauge.data_points.push(point),
            _ => metrics.push(Metric {
                name: sample.property.clone(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: vec![point],
                })),
                ..Metric::default()
            }),
        }
    }
    ExportMetricsServiceRequest {
        resource_metrics: resources,
    }
}

fn resource_metrics(device: &str) -> ResourceMetrics {
    ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![
                attribute("service.name", SCOPE),
                attribute("device.id", device),
            ],
            ..Resource::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            scope: Some(InstrumentationScope {
                name: SCOPE.into(),
                version: env!("CARGO_PKG_VERSION").into(),
                ..InstrumentationScope::default()
            }),
            ..ScopeMetrics::default()
        }],
        ..ResourceMetrics::default()
    }
}

fn attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

/// The gauge value of a sample, typed by its DeviceModel type, or why it has none.
pub fn number(sample: &Sample) -> Result<number_data_point::Value, String> {
    let typed = sample
        .ty
        .parse(&sample.value.to_wire())
        .map_err(|e| format!("{}/{}: {e}", sample.device, sample.property))?;
    match typed {
        Value::Int(n) => Ok(number_data_point::Value::AsInt(n)),
        Value::Float(f) => Ok(number_data_point::Value::AsDouble(f)),
        Value::Boolean(b) => Ok(number_data_point::Value::AsInt(i64::from(b))),
        Value::String(_) | Value::Bytes(_) => Err(format!(
            "{}/{}: a {} value is not a number",
            sample.device,
            sample.property,
            sample.ty.twin_type_name()
        )),
    }
}

#[cfg(test)]
mod tests {
    use edgetwin_model::value::PropertyType;

    use super::*;
    use crate::driver::DeviceId;

    fn sample(device: &str, property: &str, ty: PropertyType, value: Value, ms: i64) -> Sample {
        Sample {
            device: DeviceId::new("plant", device),
            property: property.into(),
            ty,
            value,
            timestamp_ms: ms,
        }
    }

    #[test]
    fn samples_become_gauges_per_device_and_property() {
        let request = export_request(&[
            sample("a", "temp", PropertyType::Float, Value::Float(21.5), 1_000),
            sample(
                "b",
                "on",
                PropertyType::Boolean,
                Value::Boolean(true),
                2_000,
            ),
            sample("a", "temp", PropertyType::Float, Value::Float(22.0), 3_000),
            sample("a", "count", PropertyType::Int, Value::Int(7), 3_000),
        ]);
        assert_eq!(request.resource_metrics.len(), 2);
        let a = &request.resource_metrics[0];
        let resource = a.resource.as_ref().expect("resource");
        assert_eq!(resource.attributes[1], attribute("device.id", "plant/a"));
        let metrics = &a.scope_metrics[0].metrics;
        assert_eq!(
            metrics.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
            ["temp", "count"]
        );
        let Some(metric::Data::Gauge(gauge)) = &metrics[0].data else {
            panic!("a gauge");
        };
        assert_eq!(gauge.data_points.len(), 2);
        assert_eq!(gauge.data_points[1].time_unix_nano, 3_000_000_000);
        assert_eq!(
            gauge.data_points[1].value,
            Some(number_data_point::Value::AsDouble(22.0))
        );
        assert_eq!(
            gauge.data_points[1].attributes,
            vec![
                attribute("device", "plant/a"),
                attribute("property", "temp")
            ]
        );
        let b = &request.resource_metrics[1].scope_metrics[0].metrics[0];
        let Some(metric::Data::Gauge(on)) = &b.data else {
            panic!("a gauge");
        };
        assert_eq!(
            on.data_points[0].value,
            Some(number_data_point::Value::AsInt(1))
        );
        assert!(
            number(&sample(
                "a",
                "s",
                PropertyType::String,
                Value::String("x".into()),
                0
            ))
            .is_err()
        );
    }
}
