//! EDGETWIN-PATCH: per-client authentication and topic authorisation.
//!
//! A server whose [`ConnectionSettings`](crate::ConnectionSettings) carry a [`ConnectAuthority`]
//! asks it about every CONNECT (client id and login). The authority refuses the connection (the
//! client gets a CONNACK with the return code it names) or returns the client's
//! [`ClientPermissions`], which the router then asks about every PUBLISH (the topic) and every
//! SUBSCRIBE (each filter) of that connection, and which the CONNECT's last will must pass.
//!
//! A refused publish is dropped: QoS 1 is still acknowledged (PUBACK, reason "not authorised" in
//! MQTT 5), QoS 2 completes its handshake but is never appended, as mosquitto does. A refused
//! filter gets the SUBACK failure code (0x80) and no subscription. Local links (in-process) have
//! no permissions object and may do everything.

use std::fmt;
use std::sync::Arc;

use crate::protocol::{ConnectReturnCode, Login};

/// What one connected client may do.
pub trait ClientPermissions: Send + Sync + fmt::Debug {
    /// Whether the client may publish on `topic` (also its last will's topic).
    fn may_publish(&self, topic: &str) -> bool;
    /// Whether the client may subscribe to `filter`.
    fn may_subscribe(&self, filter: &str) -> bool;
}

/// Decides who may connect, and with which permissions.
pub trait ConnectAuthority: Send + Sync {
    /// The permissions of a client connecting with `client_id` and `login`, or the CONNACK
    /// return code that refuses it.
    fn authenticate(
        &self,
        client_id: &str,
        login: Option<&Login>,
    ) -> Result<Arc<dyn ClientPermissions>, ConnectReturnCode>;
}

/// A connection's permissions, as the router keeps them: `None` for local links.
#[derive(Clone, Default)]
pub struct Permissions(pub(crate) Option<Arc<dyn ClientPermissions>>);

impl fmt::Debug for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(permissions) => permissions.fmt(f),
            None => f.write_str("Permissions(all)"),
        }
    }
}

impl Permissions {
    /// Whether the connection may publish on `topic` (UTF-8; anything else is refused).
    pub(crate) fn may_publish(&self, topic: &[u8]) -> bool {
        match &self.0 {
            None => true,
            Some(permissions) => {
                std::str::from_utf8(topic).is_ok_and(|topic| permissions.may_publish(topic))
            }
        }
    }

    /// Whether the connection may subscribe to `filter`.
    pub(crate) fn may_subscribe(&self, filter: &str) -> bool {
        self.0
            .as_ref()
            .is_none_or(|permissions| permissions.may_subscribe(filter))
    }
}
