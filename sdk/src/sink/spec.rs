//! From a property's `pushMethod` to the sinks it names, refusing what is not valid, what this
//! mapper was built without (each database sink is a cargo feature) and what is not supported.

use std::collections::BTreeMap;
use std::time::Duration;

use edgetwin_model::devices::PushMethod;
use edgetwin_model::devices::push_method::{
    DbMethod, DbMethodInfluxdb2, DbMethodMysql, DbMethodRedis, DbMethodTdEngine, PushMethodOtel,
};
use edgetwin_model::value::PropertyType;

use crate::driver::DeviceId;
use crate::http::HttpTarget;
use crate::mqtt::BrokerAddr;

/// Timeout of one HTTP delivery when `pushMethod.http.timeout` is absent or not positive.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// Timeout of one delivery (or connection) of the OpenTelemetry and database sinks.
pub const DB_TIMEOUT: Duration = Duration::from_secs(10);

/// MySQL's longest table name (the sink's tables are `{namespace}/{device}/{property}`).
pub const MYSQL_MAX_TABLE: usize = 64;

/// TDengine's longest table name.
pub const TDENGINE_MAX_TABLE: usize = 192;

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
    /// OpenTelemetry gauges over OTLP/HTTP (`pushMethod.otel`).
    Otel(OtelSpec),
    /// Redis sorted sets (`pushMethod.dbMethod.redis`).
    Redis(RedisSpec),
    /// MySQL or MariaDB tables (`pushMethod.dbMethod.mysql`).
    Mysql(MysqlSpec),
    /// InfluxDB v2 write API (`pushMethod.dbMethod.influxdb2`).
    Influxdb2(Influxdb2Spec),
    /// TDengine REST interface (`pushMethod.dbMethod.TDEngine`).
    TdEngine(TdEngineSpec),
}

/// `pushMethod.otel`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OtelSpec {
    /// The OTLP/HTTP metrics endpoint (`endpointURL`; path `/v1/metrics` when it has none).
    pub target: HttpTarget,
}

/// `pushMethod.dbMethod.redis.redisClientConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RedisSpec {
    /// Server host (`addr`).
    pub host: String,
    /// Server port (`addr`, default 6379).
    pub port: u16,
    /// Database number (`db`, default 0).
    pub db: i64,
}

/// `pushMethod.dbMethod.mysql.mysqlClientConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MysqlSpec {
    /// Server host (`addr`).
    pub host: String,
    /// Server port (`addr`, default 3306).
    pub port: u16,
    /// Database (`database`, required: it must exist).
    pub database: String,
    /// User (`userName`, required). The password comes from a file or the environment.
    pub user: String,
}

/// `pushMethod.dbMethod.influxdb2`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Influxdb2Spec {
    /// `POST {url}/api/v2/write?org=…&bucket=…&precision=ms`.
    pub target: HttpTarget,
    /// `influxdb2ClientConfig.org`.
    pub org: String,
    /// `influxdb2ClientConfig.bucket`.
    pub bucket: String,
    /// `influxdb2DataConfig.measurement` (default: the device's name).
    pub measurement: Option<String>,
    /// `influxdb2DataConfig.tag`, sorted by key (as InfluxDB recommends).
    pub tags: BTreeMap<String, String>,
    /// `influxdb2DataConfig.fieldKey` (default: the property's name).
    pub field_key: Option<String>,
}

/// `pushMethod.dbMethod.TDEngine.TDEngineClientConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TdEngineSpec {
    /// `POST http://{addr}/rest/sql/{dbName}`.
    pub target: HttpTarget,
    /// `dbName` (required: the database must exist).
    pub database: String,
}

impl SinkSpec {
    /// A short name for metrics and logs, e.g. `mqtt:sensors/temp`. Never holds a secret.
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
            SinkSpec::Otel(otel) => format!("otel:{}", otel.target),
            SinkSpec::Redis(redis) => {
                format!("redis://{}:{}/{}", redis.host, redis.port, redis.db)
            }
            SinkSpec::Mysql(mysql) => format!(
                "mysql://{}@{}:{}/{}",
                mysql.user, mysql.host, mysql.port, mysql.database
            ),
            SinkSpec::Influxdb2(influx) => format!(
                "influxdb2:http://{}:{}/{}/{}",
                influx.target.host, influx.target.port, influx.org, influx.bucket
            ),
            SinkSpec::TdEngine(td) => format!(
                "tdengine://{}:{}/{}",
                td.target.host, td.target.port, td.database
            ),
        }
    }

    /// Checks what depends on the property this sink serves: OpenTelemetry gauges need a
    /// number (or a boolean, sent as 0/1), MySQL's and TDengine's table names have a length limit.
    pub fn check_property(
        &self,
        device: &DeviceId,
        property: &str,
        ty: PropertyType,
    ) -> Result<(), String> {
        match self {
            SinkSpec::Otel(_) => match ty {
                PropertyType::Int
                | PropertyType::Float
                | PropertyType::Double
                | PropertyType::Boolean => Ok(()),
                other => Err(format!(
                    "pushMethod.otel: OpenTelemetry gauges carry numbers; a {} property is not one",
                    other.twin_type_name()
                )),
            },
            SinkSpec::Mysql(_) => {
                let table = mysql_table(device, property);
                if table.chars().count() > MYSQL_MAX_TABLE {
                    return Err(format!(
                        "pushMethod.dbMethod.mysql: the table name {table:?} is longer than \
                         MySQL's {MYSQL_MAX_TABLE} characters"
                    ));
                }
                Ok(())
            }
            SinkSpec::TdEngine(_) => {
                let table = tdengine_subtable(device, property);
                if table.len() > TDENGINE_MAX_TABLE {
                    return Err(format!(
                        "pushMethod.dbMethod.TDEngine: the table name {table:?} is longer than \
                         TDengine's {TDENGINE_MAX_TABLE} characters"
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// The MySQL table of a property: `{namespace}/{device}/{property}` (KubeEdge's layout).
pub fn mysql_table(device: &DeviceId, property: &str) -> String {
    format!("{}/{}/{}", device.namespace, device.name, property)
}

/// The TDengine super table of a device: `{namespace}_{device}`, made a plain identifier (every
/// character but ASCII letters, digits and `_` becomes `_`; a leading digit gets a `t` in front).
pub fn tdengine_stable(device: &DeviceId) -> String {
    identifier(&format!("{}_{}", device.namespace, device.name))
}

/// The TDengine table of one property: `{super table}__{property}`, made a plain identifier.
pub fn tdengine_subtable(device: &DeviceId, property: &str) -> String {
    identifier(&format!("{}__{}", tdengine_stable(device), property))
}

fn identifier(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 't');
    }
    out.to_ascii_lowercase()
}

/// The sinks of one `pushMethod`, or an error naming the first field that is not valid, not
/// built into this mapper, or not supported (`pushMethod.anomalyDetection: not supported yet`).
pub fn sink_specs(push: &PushMethod) -> Result<Vec<SinkSpec>, String> {
    if push.anomaly_detection.is_some() {
        return Err("pushMethod.anomalyDetection: not supported yet".into());
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
            Some(("https", _)) => {
                return Err("pushMethod.http.hostName: https:// is not supported yet".into());
            }
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
    if let Some(otel) = &push.otel {
        sinks.push(otel_spec(otel)?);
    }
    if let Some(db) = &push.db_method {
        sinks.extend(db_specs(db)?);
    }
    Ok(sinks)
}

/// Refuses a sink this mapper was built without, naming the SDK feature that adds it.
fn built_with(field: &str, enabled: bool, feature: &str) -> Result<(), String> {
    if enabled {
        Ok(())
    } else {
        Err(format!(
            "pushMethod.{field}: this mapper was built without it (edgetwin-sdk feature `{feature}`)"
        ))
    }
}

fn otel_spec(otel: &PushMethodOtel) -> Result<SinkSpec, String> {
    const FIELD: &str = "pushMethod.otel.endpointURL";
    let url = otel
        .endpoint_url
        .as_deref()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| format!("{FIELD}: missing"))?;
    let target = parse_http_url(FIELD, url, 4318)?;
    let target = if target.path == "/" {
        HttpTarget {
            path: "/v1/metrics".into(),
            ..target
        }
    } else {
        target
    };
    built_with("otel", cfg!(feature = "sink-otel"), "sink-otel")?;
    Ok(SinkSpec::Otel(OtelSpec { target }))
}

fn db_specs(db: &DbMethod) -> Result<Vec<SinkSpec>, String> {
    let mut sinks = Vec::new();
    if let Some(influx) = &db.influxdb2 {
        sinks.push(influxdb2_spec(influx)?);
    }
    if let Some(redis) = &db.redis {
        sinks.push(redis_spec(redis)?);
    }
    if let Some(td) = &db.td_engine {
        sinks.push(tdengine_spec(td)?);
    }
    if let Some(mysql) = &db.mysql {
        sinks.push(mysql_spec(mysql)?);
    }
    if sinks.is_empty() {
        return Err(
            "pushMethod.dbMethod: names no database (influxdb2, redis, TDEngine or mysql)".into(),
        );
    }
    Ok(sinks)
}

fn redis_spec(redis: &DbMethodRedis) -> Result<SinkSpec, String> {
    const FIELD: &str = "pushMethod.dbMethod.redis.redisClientConfig";
    let config = redis
        .redis_client_config
        .as_ref()
        .ok_or_else(|| format!("{FIELD}: missing"))?;
    let addr = required(FIELD, "addr", config.addr.as_deref())?;
    let addr = match addr.split_once("://") {
        Some(("redis", rest)) => rest.trim_end_matches('/'),
        Some(("rediss", _)) => {
            return Err(format!(
                "{FIELD}.addr: TLS (rediss://) is not supported yet"
            ));
        }
        Some((scheme, _)) => {
            return Err(format!("{FIELD}.addr: scheme {scheme}:// is not redis://"));
        }
        None => addr,
    };
    let (host, port) = host_port(&format!("{FIELD}.addr"), addr, 6379)?;
    let db = config.db.unwrap_or(0);
    if !(0..=i64::from(u16::MAX)).contains(&db) {
        return Err(format!("{FIELD}.db: {db} is not a database number"));
    }
    built_with("dbMethod.redis", cfg!(feature = "sink-redis"), "sink-redis")?;
    Ok(SinkSpec::Redis(RedisSpec { host, port, db }))
}

fn mysql_spec(mysql: &DbMethodMysql) -> Result<SinkSpec, String> {
    const FIELD: &str = "pushMethod.dbMethod.mysql.mysqlClientConfig";
    let config = mysql
        .mysql_client_config
        .as_ref()
        .ok_or_else(|| format!("{FIELD}: missing"))?;
    let addr = required(FIELD, "addr", config.addr.as_deref())?;
    let (host, port) = host_port(&format!("{FIELD}.addr"), addr, 3306)?;
    let database = required(FIELD, "database", config.database.as_deref())?.to_owned();
    let user = required(FIELD, "userName", config.user_name.as_deref())?.to_owned();
    built_with("dbMethod.mysql", cfg!(feature = "sink-mysql"), "sink-mysql")?;
    Ok(SinkSpec::Mysql(MysqlSpec {
        host,
        port,
        database,
        user,
    }))
}

fn influxdb2_spec(influx: &DbMethodInfluxdb2) -> Result<SinkSpec, String> {
    const FIELD: &str = "pushMethod.dbMethod.influxdb2.influxdb2ClientConfig";
    const DATA: &str = "pushMethod.dbMethod.influxdb2.influxdb2DataConfig";
    let client = influx
        .client_config
        .as_ref()
        .ok_or_else(|| format!("{FIELD}: missing"))?;
    let url = required(FIELD, "url", client.url.as_deref())?;
    let base = parse_http_url(&format!("{FIELD}.url"), url, 8086)?;
    let org = required(FIELD, "org", client.org.as_deref())?.to_owned();
    let bucket = required(FIELD, "bucket", client.bucket.as_deref())?.to_owned();
    let data = influx.data_config.clone().unwrap_or_default();
    let tags = data.tag.unwrap_or_default();
    for (key, value) in &tags {
        if key.is_empty() || value.is_empty() {
            return Err(format!(
                "{DATA}.tag: {key:?}: InfluxDB refuses empty tag keys and values"
            ));
        }
        if key.contains(['\n', '\r']) || value.contains(['\n', '\r']) {
            return Err(format!(
                "{DATA}.tag: {key:?}: line protocol cannot carry a newline"
            ));
        }
    }
    let non_empty = |v: Option<String>| v.filter(|v| !v.is_empty());
    let measurement = non_empty(data.measurement);
    let field_key = non_empty(data.field_key);
    for (name, value) in [("measurement", &measurement), ("fieldKey", &field_key)] {
        if value.as_deref().is_some_and(|v| v.contains(['\n', '\r'])) {
            return Err(format!(
                "{DATA}.{name}: line protocol cannot carry a newline"
            ));
        }
    }
    let prefix = base.path.trim_end_matches('/');
    let path = format!(
        "{prefix}/api/v2/write?org={}&bucket={}&precision=ms",
        percent_encode(&org),
        percent_encode(&bucket)
    );
    built_with(
        "dbMethod.influxdb2",
        cfg!(feature = "sink-influxdb2"),
        "sink-influxdb2",
    )?;
    Ok(SinkSpec::Influxdb2(Influxdb2Spec {
        target: HttpTarget { path, ..base },
        org,
        bucket,
        measurement,
        tags,
        field_key,
    }))
}

fn tdengine_spec(td: &DbMethodTdEngine) -> Result<SinkSpec, String> {
    const FIELD: &str = "pushMethod.dbMethod.TDEngine.TDEngineClientConfig";
    let config = td
        .client_config
        .as_ref()
        .ok_or_else(|| format!("{FIELD}: missing"))?;
    let addr = required(FIELD, "addr", config.addr.as_deref())?;
    let base = if addr.contains("://") {
        parse_http_url(&format!("{FIELD}.addr"), addr, 6041)?
    } else {
        let (host, port) = host_port(&format!("{FIELD}.addr"), addr, 6041)?;
        HttpTarget {
            host,
            port,
            path: "/".into(),
        }
    };
    let database = required(FIELD, "dbName", config.db_name.as_deref())?.to_owned();
    if !database
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(format!(
            "{FIELD}.dbName: {database:?} is not a plain TDengine name (letters, digits, _)"
        ));
    }
    built_with(
        "dbMethod.TDEngine",
        cfg!(feature = "sink-tdengine"),
        "sink-tdengine",
    )?;
    Ok(SinkSpec::TdEngine(TdEngineSpec {
        target: HttpTarget {
            path: format!("/rest/sql/{database}"),
            ..base
        },
        database,
    }))
}

fn required<'a>(field: &str, name: &str, value: Option<&'a str>) -> Result<&'a str, String> {
    value
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| format!("{field}.{name}: missing"))
}

/// `host`, `host:port` or `[v6]:port`; refuses credentials (`user:pass@host`), which belong in a
/// file or the environment.
fn host_port(field: &str, text: &str, default_port: u16) -> Result<(String, u16), String> {
    if text.contains('@') {
        return Err(format!(
            "{field}: credentials in the address are refused; give them in a file or the environment"
        ));
    }
    let text = text.trim().trim_end_matches('/');
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{field}: {text:?}: unclosed ["))?;
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err(format!("{field}: {text:?} is not host:port")),
        }
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() || host.contains(['/', ' ']) {
        return Err(format!("{field}: {text:?} is not host:port"));
    }
    let port = match port {
        None => default_port,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{field}: {port:?} is not a TCP port"))?,
    };
    Ok((host.to_owned(), port))
}

/// `http://host[:port][/path]`; https and credentials in the URL are refused.
fn parse_http_url(field: &str, url: &str, default_port: u16) -> Result<HttpTarget, String> {
    let rest = match url.split_once("://") {
        Some(("http", rest)) => rest,
        Some(("https", _)) => {
            return Err(format!(
                "{field}: https:// is not supported yet (the mapper has no TLS); use http://"
            ));
        }
        Some((scheme, _)) => return Err(format!("{field}: scheme {scheme}:// is not http://")),
        None => return Err(format!("{field}: {url:?} is not an http:// URL")),
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    if path.contains(['?', '#', ' ']) {
        return Err(format!(
            "{field}: {url:?}: a query or fragment is not supported"
        ));
    }
    let (host, port) = host_port(field, authority, default_port)?;
    Ok(HttpTarget {
        host,
        port,
        path: path.to_owned(),
    })
}

/// Percent-encodes a query parameter value (RFC 3986 unreserved characters stay).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use edgetwin_model::devices::push_method::{PushMethodHttp, PushMethodMqtt};

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
    fn every_kubeedge_push_method_is_read_with_kubeedge_field_names() {
        let yaml = r#"
mqtt: {topic: t}
otel: {endpointURL: "http://collector:4318"}
dbMethod:
  influxdb2:
    influxdb2ClientConfig: {url: "http://127.0.0.1:8086", org: "test org", bucket: b}
    influxdb2DataConfig: {measurement: m, tag: {unit: C, site: x}, fieldKey: v}
  redis:
    redisClientConfig: {addr: "127.0.0.1:6380", db: 2, poolsize: 30, minIdleConns: 5}
  TDEngine:
    TDEngineClientConfig: {addr: "127.0.0.1:6041", dbName: plant}
  mysql:
    mysqlClientConfig: {addr: "[::1]:3307", database: plant, userName: mapper}
"#;
        let push: PushMethod = serde_saphyr::from_str(yaml).expect("KubeEdge's pushMethod");
        let names: Vec<String> = sink_specs(&push)
            .expect("all supported")
            .iter()
            .map(SinkSpec::name)
            .collect();
        assert_eq!(
            names,
            [
                "mqtt:t",
                "otel:http://collector:4318/v1/metrics",
                "influxdb2:http://127.0.0.1:8086/test org/b",
                "redis://127.0.0.1:6380/2",
                "tdengine://127.0.0.1:6041/plant",
                "mysql://mapper@::1:3307/plant",
            ]
        );
        let specs = sink_specs(&push).expect("supported");
        let SinkSpec::Influxdb2(influx) = &specs[2] else {
            panic!("influxdb2 third");
        };
        assert_eq!(
            influx.target.path,
            "/api/v2/write?org=test%20org&bucket=b&precision=ms"
        );
        let SinkSpec::TdEngine(td) = &specs[4] else {
            panic!("TDengine fifth");
        };
        assert_eq!(td.target.path, "/rest/sql/plant");
    }

    #[test]
    fn credentials_tls_and_anomaly_detection_are_refused_by_name() {
        let refused = |yaml: &str| {
            let push: PushMethod = serde_saphyr::from_str(yaml).expect("parses");
            sink_specs(&push).expect_err("refused")
        };
        assert_eq!(
            refused("anomalyDetection: {model: x}"),
            "pushMethod.anomalyDetection: not supported yet"
        );
        assert_eq!(
            refused("dbMethod: {redis: {redisClientConfig: {addr: \"user:pw@db:6379\"}}}"),
            "pushMethod.dbMethod.redis.redisClientConfig.addr: credentials in the address are \
             refused; give them in a file or the environment"
        );
        assert!(
            refused("otel: {endpointURL: \"https://localhost:4318/v1/metrics\"}")
                .starts_with("pushMethod.otel.endpointURL: https:// is not supported yet")
        );
        assert_eq!(
            refused("dbMethod: {mysql: {mysqlClientConfig: {addr: db}}}"),
            "pushMethod.dbMethod.mysql.mysqlClientConfig.database: missing"
        );
        assert_eq!(
            refused("dbMethod: {}"),
            "pushMethod.dbMethod: names no database (influxdb2, redis, TDEngine or mysql)"
        );
        assert_eq!(refused("otel: {}"), "pushMethod.otel.endpointURL: missing");
    }

    #[test]
    fn a_sink_the_mapper_was_built_without_names_its_feature() {
        assert_eq!(
            built_with("dbMethod.redis", false, "sink-redis"),
            Err(
                "pushMethod.dbMethod.redis: this mapper was built without it (edgetwin-sdk \
                 feature `sink-redis`)"
                    .into()
            )
        );
        assert_eq!(built_with("otel", true, "sink-otel"), Ok(()));
    }

    #[test]
    fn properties_a_sink_cannot_carry_are_refused() {
        let device = DeviceId::new("plant", "boiler-1");
        let otel = SinkSpec::Otel(OtelSpec {
            target: HttpTarget {
                host: "c".into(),
                port: 4318,
                path: "/v1/metrics".into(),
            },
        });
        assert_eq!(
            otel.check_property(&device, "t", PropertyType::Double),
            Ok(())
        );
        assert_eq!(
            otel.check_property(&device, "t", PropertyType::String),
            Err(
                "pushMethod.otel: OpenTelemetry gauges carry numbers; a string property is not one"
                    .into()
            )
        );
        assert_eq!(tdengine_stable(&device), "plant_boiler_1");
        assert_eq!(
            tdengine_subtable(&device, "Temp.C"),
            "plant_boiler_1__temp_c"
        );
        assert_eq!(tdengine_stable(&DeviceId::new("1a", "b")), "t1a_b");
        assert_eq!(mysql_table(&device, "temp"), "plant/boiler-1/temp");
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
