//! Leader election on a `coordination.k8s.io/v1` Lease: one active replica writes, the others
//! stand by with a warm cache.
//!
//! The algorithm is client-go's `leaderelection`, written out small:
//! - no Lease yet → create it with us as holder;
//! - we hold it → renew (`renewTime = now`);
//! - nobody holds it (released) → take it;
//! - someone else holds it → wait until its record has not changed for `leaseDurationSeconds`,
//!   measured on *our* clock from when we first saw that record (so clock skew between replicas
//!   does not matter), then take it.
//!
//! Every write carries the `resourceVersion` read just before, so two replicas racing for the
//! same Lease cannot both win: the loser gets `409 Conflict` and stays standby. Any error makes
//! us standby until the next successful round — a leader that cannot reach the API server could
//! not write status anyway, and the lease stays ours until it expires, so the next successful
//! renew makes us leader again.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::watch;

/// Where the Lease lives, who we are, and the timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// Our holder identity: the pod or host name (unique per replica).
    pub identity: String,
    /// How long a holder keeps the lease without renewing it.
    pub lease_duration: Duration,
    /// How often we renew (as leader) or retry (as standby). Must be well below
    /// `lease_duration`.
    pub renew_interval: Duration,
}

impl LeaseConfig {
    /// A config with client-go's defaults: 15 s lease, renewed every 5 s.
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            identity: identity.to_owned(),
            lease_duration: Duration::from_secs(15),
            renew_interval: Duration::from_secs(5),
        }
    }
}

/// This replica's default holder identity: `$POD_NAME` (set it from the downward API), else
/// `$HOSTNAME`, else the kernel's host name, else `edgetwin`.
pub fn host_identity() -> String {
    let env = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    env("POD_NAME")
        .or_else(|| env("HOSTNAME"))
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "edgetwin".to_owned())
}

/// The outcome of one election round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// We hold the lease: we may write.
    Leader,
    /// Someone else holds it (named when known), or we lost a race: we must not write.
    Standby {
        /// The current holder, when known.
        holder: Option<String>,
    },
}

/// The holder and renew time of the record we last saw, and when we (locally) first saw it.
#[derive(Debug, Clone, PartialEq)]
struct Observed {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    seen_at: Timestamp,
}

/// One replica's handle on the Lease. Each call to [`LeaseLock::try_acquire_or_renew`] is one
/// round of the election; [`run`] calls it every `renew_interval`.
pub struct LeaseLock {
    api: Api<Lease>,
    config: LeaseConfig,
    observed: Option<Observed>,
}

impl LeaseLock {
    /// A lock on the Lease named in `config`.
    pub fn new(client: kube::Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// One election round at time `now`: read the Lease, then create, renew or take it when
    /// allowed. Returns our role for the next `renew_interval`.
    pub async fn try_acquire_or_renew(&mut self, now: Timestamp) -> Result<Role, kube::Error> {
        let Some(lease) = self.api.get_opt(&self.config.name).await? else {
            return self.create(now).await;
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        self.observe(&holder, &spec.renew_time, now);

        if holder.as_deref() == Some(self.config.identity.as_str()) {
            let mut renewed = lease;
            let spec = renewed.spec.get_or_insert_with(LeaseSpec::default);
            spec.renew_time = Some(MicroTime(now));
            spec.lease_duration_seconds = Some(self.duration_seconds());
            return self.replace(&renewed, now).await;
        }
        if holder.is_some() && !self.expired(&spec, now) {
            return Ok(Role::Standby { holder });
        }
        let mut taken = lease;
        let spec = taken.spec.get_or_insert_with(LeaseSpec::default);
        spec.holder_identity = Some(self.config.identity.clone());
        spec.acquire_time = Some(MicroTime(now));
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(self.duration_seconds());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        tracing::info!(lease = %self.config.name, identity = %self.config.identity, previous = ?holder, "taking over the lease");
        self.replace(&taken, now).await
    }

    /// Gives the lease up if we hold it, so a standby replica takes over at its next round
    /// instead of waiting for the lease to expire.
    pub async fn release(&mut self, now: Timestamp) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = Some(MicroTime(now));
        self.api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await?;
        tracing::info!(lease = %self.config.name, identity = %self.config.identity, "released the lease");
        Ok(())
    }

    async fn create(&mut self, now: Timestamp) -> Result<Role, kube::Error> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                namespace: Some(self.config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.config.identity.clone()),
                lease_duration_seconds: Some(self.duration_seconds()),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(_) => {
                tracing::info!(lease = %self.config.name, identity = %self.config.identity, "created the lease");
                Ok(Role::Leader)
            }
            Err(err) if is_conflict(&err) => Ok(Role::Standby { holder: None }),
            Err(err) => Err(err),
        }
    }

    /// Writes the lease with its `resourceVersion` as precondition; a conflict means another
    /// replica wrote first.
    async fn replace(&mut self, lease: &Lease, now: Timestamp) -> Result<Role, kube::Error> {
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), lease)
            .await
        {
            Ok(written) => {
                let spec = written.spec.unwrap_or_default();
                self.observe(&spec.holder_identity, &spec.renew_time, now);
                Ok(Role::Leader)
            }
            Err(err) if is_conflict(&err) => Ok(Role::Standby { holder: None }),
            Err(err) => Err(err),
        }
    }

    fn observe(&mut self, holder: &Option<String>, renew_time: &Option<MicroTime>, now: Timestamp) {
        let unchanged = self
            .observed
            .as_ref()
            .is_some_and(|o| &o.holder == holder && &o.renew_time == renew_time);
        if !unchanged {
            self.observed = Some(Observed {
                holder: holder.clone(),
                renew_time: renew_time.clone(),
                seen_at: now,
            });
        }
    }

    /// Whether the holder's record has not changed for its lease duration, on our clock.
    fn expired(&self, spec: &LeaseSpec, now: Timestamp) -> bool {
        let seconds = spec
            .lease_duration_seconds
            .unwrap_or_else(|| self.duration_seconds());
        let Some(observed) = &self.observed else {
            return false;
        };
        let deadline = observed
            .seen_at
            .checked_add(jiff::SignedDuration::from_secs(i64::from(seconds)));
        deadline.is_ok_and(|deadline| now >= deadline)
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.config.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }
}

fn is_conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 409)
}

/// Runs the election until `shutdown` turns true: one round every `renew_interval`, the role
/// published on `leader` (true = we hold the lease). On shutdown it releases the lease if held
/// and publishes false.
pub async fn run(
    mut lock: LeaseLock,
    leader: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let interval = lock.config.renew_interval;
    loop {
        let role = match lock.try_acquire_or_renew(Timestamp::now()).await {
            Ok(role) => role,
            Err(err) => {
                tracing::warn!(lease = %lock.config.name, error = %err, "lease round failed; standing by");
                Role::Standby { holder: None }
            }
        };
        let is_leader = role == Role::Leader;
        leader.send_if_modified(|current| {
            let changed = *current != is_leader;
            if changed {
                tracing::info!(lease = %lock.config.name, identity = %lock.config.identity, ?role, "leadership changed");
            }
            *current = is_leader;
            changed
        });
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    leader.send_replace(false);
    if let Err(err) = lock.release(Timestamp::now()).await {
        tracing::warn!(lease = %lock.config.name, error = %err, "could not release the lease");
    }
}
