//! Watch streams of the embedded registry.
//!
//! [`changes`] is the raw log: replayed from sqlite after a revision, then live from the
//! broadcast (the HTTP API serves it as `?watch=true`). [`events`] is what [`Registry::watch`]
//! returns: a listing, `Synced`, then the changes — and, should the log no longer reach back far
//! enough, a fresh listing diffed against what the consumer has seen.
//!
//! The streams hold the registry weakly: when the last [`EmbeddedRegistry`] handle is dropped,
//! the broadcast closes and every stream ends.
//!
//! [`Registry::watch`]: crate::cloud::registry::Registry::watch

use std::collections::VecDeque;
use std::sync::{Arc, PoisonError, Weak};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::broadcast::{self, error::RecvError};

use super::database::{Change, ChangeType};
use super::{EmbeddedRegistry, Error, Inner};
use crate::cloud::registry::object_set::Kind;
use crate::cloud::registry::{ObjectSet, RegistryEvent};

/// How long [`events`] waits before retrying after a storage error.
const RETRY_AFTER: Duration = Duration::from_secs(1);

type Subscription = (VecDeque<Arc<Change>>, broadcast::Receiver<Arc<Change>>, u64);

/// Subscribes to the broadcast and reads what comes before it, under the store lock so that
/// nothing falls between the two: the changes after `from`, or (with `None`) every object as a
/// synthetic `ADDED` at the current revision. `Ok(None)` when the registry is gone.
async fn subscribe(inner: &Weak<Inner>, from: Option<u64>) -> Result<Option<Subscription>, Error> {
    let Some(inner) = inner.upgrade() else {
        return Ok(None);
    };
    tokio::task::spawn_blocking(move || {
        let store = inner.store.lock().unwrap_or_else(PoisonError::into_inner);
        let rx = inner.changes.subscribe();
        let subscription = match from {
            Some(revision) => {
                let current = store.revision()?;
                if revision > current {
                    return Err(Error::BadRequest(format!(
                        "resourceVersion {revision} is newer than the registry's revision {current}"
                    )));
                }
                let replay = store.changes_since(revision)?;
                (replay.into_iter().map(Arc::new).collect(), rx, revision)
            }
            None => {
                let (objects, revision) = store.snapshot()?;
                let replay = objects
                    .into_iter()
                    .map(|object| {
                        Arc::new(Change {
                            revision,
                            change: ChangeType::Added,
                            object,
                        })
                    })
                    .collect();
                (replay, rx, revision)
            }
        };
        Ok(Some(subscription))
    })
    .await
    .map_err(|_| Error::Closed)?
}

enum Phase {
    Start(Option<u64>),
    Live(Subscription),
    Done,
}

/// The change log after `from` (or every object, then the log, with `None`); see the module
/// docs. An error item ends the stream.
pub(super) fn changes(
    registry: EmbeddedRegistry,
    from: Option<u64>,
) -> BoxStream<'static, Result<Arc<Change>, Error>> {
    let inner = Arc::downgrade(&registry.inner);
    drop(registry);
    futures::stream::unfold(
        (inner, Phase::Start(from)),
        |(inner, mut phase)| async move {
            loop {
                match phase {
                    Phase::Done => return None,
                    Phase::Start(from) => match subscribe(&inner, from).await {
                        Ok(Some(subscription)) => phase = Phase::Live(subscription),
                        Ok(None) => return None,
                        Err(err) => return Some((Err(err), (inner, Phase::Done))),
                    },
                    Phase::Live((mut replay, mut rx, mut last)) => {
                        if let Some(change) = replay.pop_front() {
                            last = last.max(change.revision);
                            return Some((Ok(change), (inner, Phase::Live((replay, rx, last)))));
                        }
                        match rx.recv().await {
                            Ok(change) if change.revision <= last => {
                                phase = Phase::Live((replay, rx, last));
                            }
                            Ok(change) => {
                                let revision = change.revision;
                                return Some((
                                    Ok(change),
                                    (inner, Phase::Live((replay, rx, revision))),
                                ));
                            }
                            Err(RecvError::Lagged(missed)) => {
                                tracing::debug!(
                                    missed,
                                    after = last,
                                    "watcher fell behind; reading the change log"
                                );
                                phase = Phase::Start(Some(last));
                            }
                            Err(RecvError::Closed) => return None,
                        }
                    }
                }
            }
        },
    )
    .boxed()
}

/// The event a change becomes in [`RegistryEvent`] terms.
fn event_of(change: &Change) -> RegistryEvent {
    match change.change {
        ChangeType::Added | ChangeType::Modified => change.object.applied(),
        ChangeType::Deleted => change.object.deleted(),
    }
}

struct EventsState {
    inner: Weak<Inner>,
    known: ObjectSet,
    queue: VecDeque<RegistryEvent>,
    changes: Option<BoxStream<'static, Result<Arc<Change>, Error>>>,
    synced: bool,
}

/// [`Registry::watch`](crate::cloud::registry::Registry::watch) for the embedded registry.
pub(super) fn events(registry: EmbeddedRegistry) -> BoxStream<'static, RegistryEvent> {
    let state = EventsState {
        inner: Arc::downgrade(&registry.inner),
        known: ObjectSet::default(),
        queue: VecDeque::new(),
        changes: None,
        synced: false,
    };
    drop(registry);
    futures::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(event) = state.queue.pop_front() {
                state.known.record(&event);
                return Some((event, state));
            }
            let Some(stream) = state.changes.as_mut() else {
                match subscribe(&state.inner, None).await {
                    Ok(Some((listing, rx, revision))) => {
                        drop(rx);
                        let fresh = listing.iter().map(|c| c.object.clone());
                        state.queue.extend(
                            state
                                .known
                                .resync(&[Kind::Device, Kind::DeviceModel], fresh),
                        );
                        if !state.synced {
                            state.queue.push_back(RegistryEvent::Synced);
                            state.synced = true;
                        }
                        let registry = state
                            .inner
                            .upgrade()
                            .map(|inner| EmbeddedRegistry { inner })?;
                        state.changes = Some(changes(registry, Some(revision)));
                    }
                    Ok(None) => return None,
                    Err(err) => {
                        tracing::warn!(error = %err, "registry watch cannot list; retrying");
                        tokio::time::sleep(RETRY_AFTER).await;
                    }
                }
                continue;
            };
            match stream.next().await {
                Some(Ok(change)) => state.queue.push_back(event_of(&change)),
                Some(Err(err)) => {
                    if !matches!(err, Error::Gone { .. }) {
                        tracing::warn!(error = %err, "registry watch failed; listing again");
                        tokio::time::sleep(RETRY_AFTER).await;
                    }
                    state.changes = None;
                }
                None => return None,
            }
        }
    })
    .boxed()
}
