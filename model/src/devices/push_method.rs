//! `spec.properties[].pushMethod`: where a mapper pushes a property's data besides the twin
//! (KubeEdge v1beta1; field names, including the odd `TDEngine` and `poolsize`, as KubeEdge spells
//! them).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema::{ConfigData, free_form_object};

/// How the mapper pushes the data of one property to a destination. Please ensure the mapper can
/// reach the destination address.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushMethod {
    /// Push over HTTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<PushMethodHttp>,
    /// Publish to an MQTT broker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<PushMethodMqtt>,
    /// Export as OpenTelemetry metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otel: Option<PushMethodOtel>,
    /// Write to a database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_method: Option<DbMethod>,
    /// Push to an anomaly detection service (free-form configuration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub anomaly_detection: Option<ConfigData>,
}

/// HTTP push configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushMethodHttp {
    /// Host name of the HTTP server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_name: Option<String>,
    /// Port of the HTTP server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// Request path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_path: Option<String>,
    /// Request timeout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
}

/// MQTT push configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushMethodMqtt {
    /// Broker address, like `mqtt://127.0.0.1:1883`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Topic to publish to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// QoS of the publish.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qos: Option<i32>,
    /// Whether the message is retained.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retained: Option<bool>,
}

/// OpenTelemetry push configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PushMethodOtel {
    /// The endpoint the exporter connects to, like `https://localhost:4318/v1/metrics`.
    #[serde(rename = "endpointURL", skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
}

/// Database push configuration: one block per supported database.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DbMethod {
    /// InfluxDB 2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub influxdb2: Option<DbMethodInfluxdb2>,
    /// Redis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<DbMethodRedis>,
    /// TDengine.
    #[serde(rename = "TDEngine", skip_serializing_if = "Option::is_none")]
    pub td_engine: Option<DbMethodTdEngine>,
    /// MySQL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mysql: Option<DbMethodMysql>,
}

/// InfluxDB 2 configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DbMethodInfluxdb2 {
    /// Connection to the database.
    #[serde(
        rename = "influxdb2ClientConfig",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_config: Option<Influxdb2ClientConfig>,
    /// How the device data is written.
    #[serde(
        rename = "influxdb2DataConfig",
        skip_serializing_if = "Option::is_none"
    )]
    pub data_config: Option<Influxdb2DataConfig>,
}

/// InfluxDB 2 connection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Influxdb2ClientConfig {
    /// URL of the database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Organisation of the user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// Bucket of the user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
}

/// InfluxDB 2 data layout.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Influxdb2DataConfig {
    /// Measurement name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measurement: Option<String>,
    /// Tags written with each point.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<BTreeMap<String, String>>,
    /// Field key of the value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_key: Option<String>,
}

/// Redis configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DbMethodRedis {
    /// Connection to the database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_client_config: Option<RedisClientConfig>,
}

/// Redis connection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisClientConfig {
    /// Address of the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// Database number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db: Option<i64>,
    /// Connection pool size.
    #[serde(rename = "poolsize", skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<i64>,
    /// Minimum number of idle connections.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_idle_conns: Option<i64>,
}

/// TDengine configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DbMethodTdEngine {
    /// Connection to the database.
    #[serde(
        rename = "TDEngineClientConfig",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_config: Option<TdEngineClientConfig>,
}

/// TDengine connection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TdEngineClientConfig {
    /// Address of the database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// Database name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_name: Option<String>,
}

/// MySQL configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DbMethodMysql {
    /// Connection to the database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mysql_client_config: Option<MysqlClientConfig>,
}

/// MySQL connection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MysqlClientConfig {
    /// Address, like `localhost:3306`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// Database name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// User name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
}
