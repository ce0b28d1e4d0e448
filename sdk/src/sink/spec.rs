//! From a property's `pushMethod` to the sinks it names, refusing what is not supported.

use std::time::Duration;

use edgetwin_model::devices::PushMethod;

use crate::http::HttpTarget;
use crate::mqtt::BrokerAddr;

/// Timeout of one HTTP delivery when `pushMethod.http.timeout` is absent or not positive.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// One destination of samples.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SinkSpec {
    /// Publish each sample to an MQTT topic.
    Mqtt {
        /// Another broker; `None` publishes through the mapper's own connection.
        broker: Option<BrokerAddr>,
        /// The topic.
        topic: String,
        /// QoS 0, 1 or 2.
        qos: u8,
        /// Whether the broker retains the last sample.
        retained: bool,
    },
    /// POST each sample as JSON.
    Http {
        /// Where to.
        target: HttpTarget,
        /// Timeout of one request.
        timeout: Duration,
    },
}

impl SinkSpec {
    /// A short name for metrics and logs, e.g. `mqtt:sensors/temp`.
    pub fn name(&self) -> String {
        match self {
            SinkSpec::Mqtt {
                broker: None,
                topic,
                ..
            } => format!("mqtt:{topic}"),
            SinkSpec::Mqtt {
                broker: Some(broker),
                topic,
                ..
            } => format!("mqtt://{broker}/{topic}"),
            SinkSpec::Http { target, .. } => {
                format!("http:{}:{}{}", target.host, target.port, target.path)
            }
        }
    }
}

/// The sinks of one `pushMethod`, or an error naming the first field that is not supported or
/// not valid (`pushMethod.dbMethod.influxdb2: not supported yet`).
pub fn sink_specs(push: &PushMethod) -> Result<Vec<SinkSpec>, String> {
    let unsupported = |field: &str| Err(format!("pushMethod.{field}: not supported yet"));
    if push.otel.is_some() {
        return unsupported("otel");
    }
    if let Some(db) = &push.db_method {
        for (present, name) in [
            (db.influxdb2.is_some(), "influxdb2"),
            (db.redis.is_some(), "redis"),
            (db.td_engine.is_some(), "TDEngine"),
            (db.mysql.is_some(), "mysql"),
        ] {
            if present {
                return unsupported(&format!("dbMethod.{name}"));
            }
        }
        return unsupported("dbMethod");
    }
    if push.anomaly_detection.is_some() {
        return unsupported("anomalyDetection");
    }
    let mut sinks = Vec::new();
    if let Some(mqtt) = &push.mqtt {
        let topic = mqtt
            .topic
            .clone()
            .filter(|t| !t.is_empty())
            .ok_or("pushMethod.mqtt.topic: missing")?;
        if topic.contains(['+', '#']) {
            return Err(format!(
                "pushMethod.mqtt.topic: {topic:?} contains a wildcard (+ or #)"
            ));
        }
        let qos = match mqtt.qos.unwrap_or(0) {
            level @ 0..=2 => level as u8,
            other => return Err(format!("pushMethod.mqtt.qos: {other} is not 0, 1 or 2")),
        };
        let broker = match mqtt.address.as_deref().filter(|a| !a.is_empty()) {
            None => None,
            Some(address) => Some(
                BrokerAddr::parse(address).map_err(|e| format!("pushMethod.mqtt.address: {e}"))?,
            ),
        };
        sinks.push(SinkSpec::Mqtt {
            broker,
            topic,
            qos,
            retained: mqtt.retained.unwrap_or(false),
        });
    }
    if let Some(http) = &push.http {
        let host = http
            .host_name
            .as_deref()
            .filter(|h| !h.is_empty())
            .ok_or("pushMethod.http.hostName: missing")?;
        let host = match host.split_once("://") {
            Some(("http", rest)) => rest.trim_end_matches('/'),
            Some(("https", _)) => return unsupported("http.hostName with https://"),
            Some((scheme, _)) => {
                return Err(format!(
                    "pushMethod.http.hostName: scheme {scheme}:// is not http://"
                ));
            }
            None => host,
        };
        let port = match http.port {
            None => 80,
            Some(port) => u16::try_from(port)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("pushMethod.http.port: {port} is not a TCP port"))?,
        };
        let path = match http.request_path.as_deref() {
            None | Some("") => "/".to_owned(),
            Some(path) if path.starts_with('/') => path.to_owned(),
            Some(path) => format!("/{path}"),
        };
        let timeout = http
            .timeout
            .and_then(|ms| u64::try_from(ms).ok())
            .filter(|ms| *ms > 0)
            .map_or(DEFAULT_HTTP_TIMEOUT, Duration::from_millis);
        sinks.push(SinkSpec::Http {
            target: HttpTarget {
                host: host.to_owned(),
                port,
                path,
            },
            timeout,
        });
    }
    Ok(sinks)
}

#[cfg(test)]
mod tests {
    use edgetwin_model::devices::push_method::{
        DbMethod, DbMethodRedis, PushMethodHttp, PushMethodMqtt, PushMethodOtel,
    };

    use super::*;

    #[test]
    fn mqtt_and_http_sinks_are_read_with_defaults() {
        let push = PushMethod {
            mqtt: Some(PushMethodMqtt {
                address: Some("tcp://10.0.0.9:1884".into()),
                topic: Some("plant/meter".into()),
                qos: Some(1),
                retained: Some(true),
            }),
            http: Some(PushMethodHttp {
                host_name: Some("http://127.0.0.1".into()),
                port: Some(8080),
                request_path: Some("ingest".into()),
                timeout: None,
            }),
            ..PushMethod::default()
        };
        let sinks = sink_specs(&push).expect("supported");
        assert_eq!(
            sinks,
            vec![
                SinkSpec::Mqtt {
                    broker: Some(BrokerAddr {
                        host: "10.0.0.9".into(),
                        port: 1884
                    }),
                    topic: "plant/meter".into(),
                    qos: 1,
                    retained: true,
                },
                SinkSpec::Http {
                    target: HttpTarget {
                        host: "127.0.0.1".into(),
                        port: 8080,
                        path: "/ingest".into(),
                    },
                    timeout: DEFAULT_HTTP_TIMEOUT,
                },
            ]
        );
        assert_eq!(sinks[0].name(), "mqtt://10.0.0.9:1884/plant/meter");
        assert_eq!(sinks[1].name(), "http:127.0.0.1:8080/ingest");
    }

    #[test]
    fn unsupported_methods_are_refused_by_name() {
        let otel = PushMethod {
            otel: Some(PushMethodOtel::default()),
            ..PushMethod::default()
        };
        assert_eq!(
            sink_specs(&otel),
            Err("pushMethod.otel: not supported yet".into())
        );
        let redis = PushMethod {
            db_method: Some(DbMethod {
                redis: Some(DbMethodRedis::default()),
                ..DbMethod::default()
            }),
            ..PushMethod::default()
        };
        assert_eq!(
            sink_specs(&redis),
            Err("pushMethod.dbMethod.redis: not supported yet".into())
        );
    }

    #[test]
    fn invalid_fields_are_named() {
        let no_topic = PushMethod {
            mqtt: Some(PushMethodMqtt::default()),
            ..PushMethod::default()
        };
        assert_eq!(
            sink_specs(&no_topic),
            Err("pushMethod.mqtt.topic: missing".into())
        );
        let bad_qos = PushMethod {
            mqtt: Some(PushMethodMqtt {
                topic: Some("t".into()),
                qos: Some(3),
                ..PushMethodMqtt::default()
            }),
            ..PushMethod::default()
        };
        assert_eq!(
            sink_specs(&bad_qos),
            Err("pushMethod.mqtt.qos: 3 is not 0, 1 or 2".into())
        );
        let bad_port = PushMethod {
            http: Some(PushMethodHttp {
                host_name: Some("h".into()),
                port: Some(70_000),
                ..PushMethodHttp::default()
            }),
            ..PushMethod::default()
        };
        assert_eq!(
            sink_specs(&bad_port),
            Err("pushMethod.http.port: 70000 is not a TCP port".into())
        );
        assert_eq!(sink_specs(&PushMethod::default()), Ok(vec![]));
    }
}
