//! `pushMethod.dbMethod.redis` (feature `sink-redis`): KubeEdge mapper-framework's key layout,
//! one sorted set per device.
//!
//! Each sample is `ZADD {device name} {timestamp ms} {sample JSON}` (the JSON of the HTTP and MQTT
//! sinks); a batch is one pipeline with one `ZADD` per device, in order. A retried batch adds
//! nothing twice: the same member with the same score is one entry of a sorted set. The password
//! (and, for Redis ACLs, a user name) comes from `EDGETWIN_REDIS_PASSWORD` /
//! `EDGETWIN_REDIS_USERNAME` (or `…_FILE`, or KubeEdge's `PASSWORD`). One multiplexed
//! connection per destination, opened again after a failure; `poolsize` and `minIdleConns` are
//! accepted and not needed.

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo,
};

use super::credentials::Secrets;
use super::queue::{Deliver, DeliveryError};
use super::{DB_TIMEOUT, RedisSpec, Sample};

/// Where the password comes from, edgetwin's name first and KubeEdge's last.
const PASSWORD_VARS: &[&str] = &["EDGETWIN_REDIS_PASSWORD", "PASSWORD"];
/// Where an ACL user name comes from (none by default).
const USER_VARS: &[&str] = &["EDGETWIN_REDIS_USERNAME"];

/// Adds batches of samples to sorted sets.
pub(super) struct RedisDestination {
    spec: RedisSpec,
    secrets: Secrets,
    connection: Option<MultiplexedConnection>,
}

impl RedisDestination {
    pub(super) fn new(spec: RedisSpec, secrets: Secrets) -> Self {
        Self {
            spec,
            secrets,
            connection: None,
        }
    }

    async fn connect(&self) -> Result<MultiplexedConnection, DeliveryError> {
        let mut settings = RedisConnectionInfo::default().set_db(self.spec.db);
        if let Some(password) = self
            .secrets
            .lookup(PASSWORD_VARS)
            .map_err(DeliveryError::transient)?
        {
            settings = settings.set_password(password.expose());
        }
        if let Some(user) = self
            .secrets
            .lookup(USER_VARS)
            .map_err(DeliveryError::transient)?
        {
            settings = settings.set_username(user.expose());
        }
        let info = ConnectionAddr::Tcp(self.spec.host.clone(), self.spec.port)
            .into_connection_info()
            .map_err(|e| DeliveryError::transient(e.to_string()))?
            .set_redis_settings(settings);
        let client = Client::open(info).map_err(|e| DeliveryError::transient(e.to_string()))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(DB_TIMEOUT))
            .set_response_timeout(Some(DB_TIMEOUT));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| DeliveryError::transient(format!("cannot connect: {e}")))
    }
}

impl Deliver for RedisDestination {
    const MAX_BATCH: usize = 500;

    async fn deliver(&mut self, batch: &[Sample]) -> Result<(), DeliveryError> {
        let mut connection = match self.connection.take() {
            Some(connection) => connection,
            None => self.connect().await?,
        };
        let mut pipe = redis::pipe();
        let mut start = 0;
        while start < batch.len() {
            let key = &batch[start].device.name;
            let end = batch[start..]
                .iter()
                .position(|s| s.device.name != *key)
                .map_or(batch.len(), |n| start + n);
            let members: Vec<(i64, Vec<u8>)> = batch[start..end]
                .iter()
                .map(|s| (s.timestamp_ms, s.to_json()))
                .collect();
            pipe.zadd_multiple(key, &members).ignore();
            start = end;
        }
        match pipe.query_async::<()>(&mut connection).await {
            Ok(()) => {
                self.connection = Some(connection);
                Ok(())
            }
            // The key holds something else than a sorted set: this data cannot go there.
            Err(err) if err.code() == Some("WRONGTYPE") => {
                self.connection = Some(connection);
                Err(DeliveryError::permanent(err.to_string()))
            }
            Err(err) => Err(DeliveryError::transient(err.to_string())),
        }
    }
}
