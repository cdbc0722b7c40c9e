//! What the three controllers share: the context (client, Event recorder, metrics), the
//! error type with its bounded categories, the error policy with per-object backoff, the
//! server-side-apply helpers, and [`run`], which starts the controllers for the watched
//! namespaces until shutdown.

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::{Client, Resource, ResourceExt};
use nasop_crds::api::{ArchitectureSearch, ChildTrial, LatencyProbe};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::metrics::Metrics;
use crate::strategy::{Strategy, Wake};
use crate::trial::plan::Note;

/// The field manager of every write the operator makes: creates, replaces, and the
/// server-side applies of status (kubernetes.io/docs/reference/using-api/server-side-apply).
pub const MANAGER: &str = "nasop-operator";

/// Label selector of the Pods the operator watches (its own trainer and probe pods).
pub const POD_SELECTOR: &str = "app.kubernetes.io/managed-by=nasop";

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A Pod could not be built from the object.
    #[error("building a pod: {0}")]
    Pod(#[from] crate::trial::pod::PodError),
    /// The search core refused (a state that does not fit its space).
    #[error("search: {0}")]
    Search(#[from] crate::search::SearchError),
    /// The strategy could not be built or restored.
    #[error("strategy: {0}")]
    Strategy(#[from] crate::strategy::StrategyError),
    /// An object lacks a field the API server always sets.
    #[error("the object has no {0}")]
    Missing(&'static str),
}

impl Error {
    /// A bounded category for the `error` label of `nasop_reconcile_errors_total`.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict",
            Error::Kube(kube::Error::Api(s)) if s.code == 404 => "not_found",
            Error::Kube(kube::Error::Api(s)) if s.code == 403 => "forbidden",
            Error::Kube(kube::Error::Api(s)) if s.code == 422 => "invalid",
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "transport",
            Error::Pod(_) => "pod_build",
            Error::Search(_) => "search_state",
            Error::Strategy(_) => "strategy_state",
            Error::Missing(_) => "missing_field",
        }
    }
}

impl Error {
    /// The API server's message when it refused an object as invalid (422): retrying the same
    /// object cannot succeed.
    pub fn rejection(&self) -> Option<String> {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 422 => Some(s.message.clone()),
            _ => None,
        }
    }
}

/// Events that may wait to be recorded; more are dropped (with a warning), as client-go's
/// event broadcaster drops them beyond its queue of 1,000
/// (k8s.io/client-go/tools/record/event.go, `maxQueuedEvents`).
pub const EVENT_QUEUE: usize = 1000;

/// Events recorded at once.
pub const EVENT_CONCURRENCY: usize = 8;

/// An Event to record: the recorder (the search one keeps series), the Event, its object.
type QueuedEvent = (Recorder, Event, k8s_openapi::api::core::v1::ObjectReference);

/// Records the queued Events, up to [`EVENT_CONCURRENCY`] at once, until every sender is gone.
/// A failed one is logged: Events are best effort.
async fn record_events(waiting: tokio::sync::mpsc::Receiver<QueuedEvent>) {
    futures::stream::unfold(waiting, |mut waiting| async move {
        waiting.recv().await.map(|e| (e, waiting))
    })
    .for_each_concurrent(
        EVENT_CONCURRENCY,
        |(recorder, event, reference)| async move {
            if let Err(e) = recorder.publish(&event, &reference).await {
                tracing::warn!(error = %e, reason = %event.reason, "could not record an Event");
            }
        },
    )
    .await;
}

/// Result of a reconcile.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A ChildTrial as the API server returned it to this process (see
/// [`Context::newest_trial`]).
struct WrittenTrial {
    trial: Arc<ChildTrial>,
    /// The versions it replaces: the one read before the write, and those that one replaced.
    replaces: Vec<Option<String>>,
    at: std::time::Instant,
}

/// Age after which a kept copy may be dropped to bound memory once 1,024 are kept (only a
/// copy whose version the watch skipped, e.g. across a relist, lives that long).
pub const WRITTEN_TRIAL_TTL: Duration = Duration::from_secs(30);

/// Whether `cached` is a version of the trial that `copy` replaces.
fn replaced_by(copy: &WrittenTrial, cached: &ChildTrial) -> bool {
    copy.trial.metadata.uid == cached.metadata.uid
        && copy.replaces.contains(&cached.metadata.resource_version)
}

/// Shared by every reconcile.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Records the Events of searches: one Recorder for the operator's lifetime, so that a
    /// repeated Event (TrialsCreated on every reconcile that starts children) becomes one Event
    /// with a growing series count.
    recorder: Recorder,
    /// Events waiting to be recorded by [`record_events`] (started by the first
    /// [`Context::publish`]).
    events: std::sync::OnceLock<tokio::sync::mpsc::Sender<QueuedEvent>>,
    /// Who reports the Events (controller and pod name).
    reporter: Reporter,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    failures: Mutex<HashMap<String, u32>>,
    /// The ChildTrial controllers' caches, by watched namespace (`""`: all namespaces). A
    /// search reads its trials here instead of listing them from the API server on every
    /// reconcile; without a cache (tests calling a reconciler directly) it lists them.
    trial_stores: std::sync::RwLock<HashMap<String, Store<ChildTrial>>>,
    /// The caches of the operator's Pods (label [`POD_SELECTOR`]), by watched namespace, fed
    /// by the watch that also wakes the ChildTrial controller: a trial reads its trainer Pod
    /// here instead of with a GET on every reconcile.
    pod_stores: std::sync::RwLock<HashMap<String, Store<Pod>>>,
    /// The policy each search last saved or read, by search uid (see [`CachedPolicy`]).
    policies: Mutex<HashMap<String, CachedPolicy>>,
    /// When each search (by uid) last wrote its policy state from this process.
    saves: Mutex<HashMap<String, std::time::Instant>>,
    /// Wakes a search's reconcile from outside a watch (its policy learner caught up), by
    /// watched namespace (`""`: all namespaces).
    search_wakes: std::sync::RwLock<HashMap<String, SearchWakes>>,
    /// The search controllers' caches of ArchitectureSearches, by watched namespace (`""`:
    /// all namespaces): which searches still exist.
    search_stores: std::sync::RwLock<HashMap<String, Store<ArchitectureSearch>>>,
    /// The ChildTrials whose status this process wrote (by [`key`]), as the API server
    /// returned them, until the ChildTrial cache shows that version (see
    /// [`Context::newest_trial`]). At most the trials written in the last watch delay.
    written_trials: Mutex<HashMap<String, WrittenTrial>>,
    /// When this process deleted the trainer Pods of each finished trial (by [`key`]), for a
    /// grace while the Pod cache may still show them (see [`Context::pods_deleted_within`]).
    deleted_pods: Mutex<HashMap<String, std::time::Instant>>,
}

/// Sends searches to their controller's queue (see [`Context::search_waker`]).
type SearchWakes = futures::channel::mpsc::UnboundedSender<ObjectRef<ArchitectureSearch>>;

/// A search's policy as this process last saved or read it. The next reconcile of the search
/// starts from it without reading the policy ConfigMaps (not even their metadata; a reconcile
/// that writes lists them then). That is safe because every write of the head carries the
/// resourceVersion kept here as a precondition: if another writer changed the state
/// meanwhile, the write fails with 409 Conflict, no child starts, and the entry, taken out
/// for the failed reconcile, is gone, so the retry reads the stored state. (A reconcile that
/// only makes the writes a save left, see [`Due`], keeps it when one fails: the state is
/// stored already.)
pub struct CachedPolicy {
    /// The head ConfigMap's resourceVersion after the save or read.
    pub version: String,
    /// The policy.
    pub strategy: Box<dyn Strategy>,
    /// The checkpoint its stored journal is on (`None`: stored whole).
    pub checkpoint: Option<crate::search::policy_store::Checkpoint>,
    /// What the reconcile that saved this state left to the reconciles that follow it at once.
    pub due: Due,
    /// The search's trials as the reconcile that saved this state left them (`None`: the next
    /// full reconcile reads all its ChildTrials).
    pub trials: Option<crate::search::children::SeenTrials>,
}

/// The writes a search reconcile that saved the policy state leaves to the reconciles that
/// follow it at once, each of which makes one round of requests (see
/// [`crate::search::controller::reconcile`]): the status it computed, and the ChildTrials of
/// the children the state names, [`crate::search::controller::CREATES_PER_RECONCILE`] per
/// reconcile. Derived, never trusted alone: it is dropped when the spec's generation changes
/// (or the operator restarts), and the full reconcile then computes the status anew from the
/// saved state and the trials seen, and creates the children still missing. A failed write
/// stays due and is made again by the retry.
///
/// Before, the saving reconcile wrote the status and its first children itself, after the
/// save: two rounds of requests in a row. In `make bench-scale` (20,000 trials, 2 cores) the
/// reconciles that save then took p50 63 ms and p90 121 ms (127 of 612 over 100 ms); split,
/// p50 35 ms and p90 63 ms (22 of 551 over 100 ms, 20 of them new checkpoints), and the
/// search controller's p99 fell from 95 ms to 62 ms at the same throughput (65-67 trials/s).
#[derive(Debug, Default)]
pub struct Due {
    /// The search's `metadata.generation` it was computed at: a reconcile of another
    /// generation drops it.
    pub generation: Option<i64>,
    /// ChildTrials to create, in order.
    pub children: std::collections::VecDeque<nasop_crds::api::ChildTrial>,
    /// The status to write (`None`: written, or unchanged).
    pub status: Option<nasop_crds::api::ArchitectureSearchStatus>,
    /// Events to record once the status is written and the first children are created.
    pub notes: Vec<crate::trial::plan::Note>,
    /// Names of the policy ConfigMaps of the state the save replaced, to delete (no stored
    /// state refers to them; one left by a stopped process goes with a later write).
    pub stale_parts: Vec<String>,
}

impl Due {
    /// Whether nothing is left to do.
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.status.is_none()
            && self.notes.is_empty()
            && self.stale_parts.is_empty()
    }
}

/// First retry delay after a failed reconcile; doubles per consecutive failure of the same
/// object up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// Longest retry delay after failed reconciles.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

impl Context {
    /// A context for `client`; Events name `instance` (the pod name) as the reporting
    /// instance.
    pub fn new(client: Client, metrics: Arc<Metrics>, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter.clone()),
            events: std::sync::OnceLock::new(),
            reporter,
            client,
            metrics,
            failures: Mutex::new(HashMap::new()),
            trial_stores: std::sync::RwLock::new(HashMap::new()),
            pod_stores: std::sync::RwLock::new(HashMap::new()),
            policies: Mutex::new(HashMap::new()),
            saves: Mutex::new(HashMap::new()),
            search_wakes: std::sync::RwLock::new(HashMap::new()),
            search_stores: std::sync::RwLock::new(HashMap::new()),
            written_trials: Mutex::new(HashMap::new()),
            deleted_pods: Mutex::new(HashMap::new()),
        }
    }

    /// Records that this process deleted the trainer Pods of trial `key` now; records older
    /// than `grace` go (at most the trials finished in the last `grace` are kept).
    pub fn deleted_pods(&self, key: &str, grace: Duration) {
        let now = std::time::Instant::now();
        let mut deleted = self.deleted_pods.lock().unwrap_or_else(|e| e.into_inner());
        deleted.retain(|_, at| now.duration_since(*at) < grace);
        deleted.insert(key.to_string(), now);
    }

    /// What is left of `grace` since this process deleted the trainer Pods of trial `key`
    /// (Pods the cache shows meanwhile are on their way out); `None`: not deleted by this
    /// process within `grace`.
    pub fn pods_deleted_within(&self, key: &str, grace: Duration) -> Option<Duration> {
        let deleted = self.deleted_pods.lock().unwrap_or_else(|e| e.into_inner());
        let since = deleted.get(key)?.elapsed();
        grace.checked_sub(since).filter(|left| !left.is_zero())
    }

    /// `trial` as given by the ChildTrial cache, or the newer copy of it that this process
    /// got from the API server (the answer to its last status write, or a GET) while the
    /// cache still shows a version that copy replaces. A reconcile woken by a change of the
    /// trial's Pod (the Pod this process just created, or deleted after writing the result)
    /// can read the trial from before the write: it would create the Pod again (409), write
    /// the same status again, or take the deleted Pod for a lost one. A cache showing any
    /// other version (the copy's own, or a newer one) wins, and the copy goes.
    pub fn newest_trial(&self, trial: Arc<ChildTrial>) -> Arc<ChildTrial> {
        let mut written = self
            .written_trials
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if written.is_empty() {
            return trial;
        }
        let key = key(trial.as_ref());
        match written.get(&key) {
            Some(w) if replaced_by(w, &trial) => w.trial.clone(),
            Some(_) => {
                written.remove(&key);
                trial
            }
            None => trial,
        }
    }

    /// Records `newer`, the API server's copy of a trial this process read as `read` (the
    /// answer to a status write made from `read`, or a GET), unless the ChildTrial cache
    /// shows a version `newer` does not replace (its own, or a later one) already.
    pub fn newer_trial(&self, read: &ChildTrial, newer: ChildTrial) {
        let key = key(&newer);
        let store = self.trial_store(newer.metadata.namespace.as_deref().unwrap_or_default());
        // Under the lock that [`Context::trial_cached`] takes after the cache applied a
        // change: either the cache shows that change here, or its check comes after this.
        let mut written = self
            .written_trials
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut replaces = vec![read.metadata.resource_version.clone()];
        if let Some(previous) = written.get(&key) {
            // Written over a kept copy: the versions that copy replaced are replaced too.
            if previous.trial.metadata.uid == newer.metadata.uid
                && previous.trial.metadata.resource_version == read.metadata.resource_version
            {
                replaces.extend(previous.replaces.iter().cloned());
            }
        }
        let copy = WrittenTrial {
            trial: Arc::new(newer),
            replaces,
            at: std::time::Instant::now(),
        };
        let cached = store.and_then(|s| s.get(&ObjectRef::from_obj(copy.trial.as_ref())));
        if cached.is_some_and(|c| !replaced_by(&copy, &c)) {
            written.remove(&key);
            return;
        }
        if written.len() >= 1024 {
            written.retain(|_, w| w.at.elapsed() < WRITTEN_TRIAL_TTL);
        }
        written.insert(key, copy);
    }

    /// Forgets the kept copy of `trial` (a status write made from it was refused).
    pub fn forget_newer_trial(&self, trial: &ChildTrial) {
        self.written_trials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key(trial));
    }

    /// Called for each change the ChildTrial watch applied to the cache (not for the objects
    /// of a relist, which reach the cache only at its end: see
    /// [`Context::trial_cache_relisted`]): a kept copy goes once the cache shows a version
    /// it does not replace, or the trial is deleted.
    pub fn trial_cached(&self, trial: &ChildTrial, deleted: bool) {
        let mut written = self
            .written_trials
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if written.is_empty() {
            return;
        }
        let key = key(trial);
        let gone = written
            .get(&key)
            .is_some_and(|w| deleted || !replaced_by(w, trial));
        if gone {
            written.remove(&key);
        }
    }

    /// Called when the ChildTrial cache of `store` has been filled by a relist: kept copies
    /// go unless the cache still shows a version they replace.
    pub fn trial_cache_relisted(&self, store: &Store<ChildTrial>) {
        let mut written = self
            .written_trials
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        written.retain(|_, w| {
            store
                .get(&ObjectRef::from_obj(w.trial.as_ref()))
                .is_none_or(|c| replaced_by(w, &c))
        });
    }

    /// Uses `store` as the Pod cache of `namespace` (tests calling a reconciler directly).
    #[cfg(test)]
    pub fn use_pod_store(&self, namespace: &str, store: Store<Pod>) {
        self.pod_stores
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(namespace.to_string(), store);
    }

    /// Names of the trainer Pods of trial `trial` in `namespace` that the Pod cache holds and
    /// that are not being deleted: none without a cache (a reconciler called directly),
    /// `None` while the cache has not listed the Pods yet.
    pub fn cached_trainer_pods(&self, namespace: &str, trial: &str) -> Option<Vec<String>> {
        use crate::trial::pod::{ROLE_LABEL, TRIAL_LABEL};
        use futures::FutureExt;
        let Some(store) = self.pod_store(namespace) else {
            return Some(Vec::new());
        };
        if !matches!(store.wait_until_ready().now_or_never(), Some(Ok(()))) {
            return None;
        }
        let names = store
            .state()
            .iter()
            .filter(|p| {
                let labels = p.labels();
                p.metadata.namespace.as_deref() == Some(namespace)
                    && p.metadata.deletion_timestamp.is_none()
                    && labels.get(TRIAL_LABEL).map(String::as_str) == Some(trial)
                    && labels.get(ROLE_LABEL).map(String::as_str) == Some("trainer")
            })
            .map(|p| p.name_any())
            .collect();
        Some(names)
    }

    /// Drops the cached policies (each with its learner thread) and the save times of searches
    /// that no longer exist (a deleted search is not reconciled again, so nothing else would).
    /// Does nothing until every search cache has listed its searches, or without one.
    pub fn forget_deleted_searches(&self) {
        use futures::FutureExt;
        let stores: Vec<Store<ArchitectureSearch>> = self
            .search_stores
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        if stores.is_empty() {
            return;
        }
        let mut live = std::collections::HashSet::new();
        for store in &stores {
            if !matches!(store.wait_until_ready().now_or_never(), Some(Ok(()))) {
                return;
            }
            live.extend(store.state().iter().filter_map(|s| s.metadata.uid.clone()));
        }
        // Dropped outside the lock: dropping a policy stops its learner thread.
        let gone: Vec<CachedPolicy> = {
            let mut policies = self.policies.lock().unwrap_or_else(|e| e.into_inner());
            let dead: Vec<String> = policies
                .keys()
                .filter(|uid| !live.contains(*uid))
                .cloned()
                .collect();
            dead.iter().filter_map(|uid| policies.remove(uid)).collect()
        };
        drop(gone);
        self.saves
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|uid, _| live.contains(uid));
    }

    /// A [`Wake`] that queues a reconcile of `search` (called by its policy learner on its
    /// thread); `None` without a running search controller (tests calling the reconciler
    /// directly: the search is requeued instead).
    pub fn search_waker(&self, search: &ArchitectureSearch) -> Option<Wake> {
        let namespace = search.metadata.namespace.clone()?;
        let wakes = self.search_wakes.read().unwrap_or_else(|e| e.into_inner());
        let sender = wakes.get(&namespace).or_else(|| wakes.get(""))?.clone();
        let target = ObjectRef::from_obj(search);
        Some(Box::new(move || {
            // Fails only once the search controller has stopped.
            let _ = sender.unbounded_send(target);
        }))
    }

    /// The ChildTrials of `namespace` labelled `nasop.dev/search=<search>` from the ChildTrial
    /// controller's cache, once that cache has listed them (at most 10 s of waiting at
    /// start-up); `None` without a cache or while it is not ready (list from the API then).
    pub async fn cached_trials(
        &self,
        namespace: &str,
        search: &str,
    ) -> Option<Vec<Arc<ChildTrial>>> {
        let store = self.trial_store(namespace)?;
        tokio::time::timeout(Duration::from_secs(10), store.wait_until_ready())
            .await
            .ok()?
            .ok()?;
        Some(store.state_filter(|t| {
            t.metadata.namespace.as_deref() == Some(namespace) && t.spec.search_name == search
        }))
    }

    /// Pod `name` of `namespace` from the Pod cache, if the cache has listed the Pods and holds
    /// it. `None` does not mean the Pod is absent (no cache, not ready yet, or its creation not
    /// seen yet): ask the API server then. A cached Pod may be behind the API server by the
    /// events not yet delivered, each of which wakes the owner again.
    pub fn cached_pod(&self, namespace: &str, name: &str) -> Option<Arc<Pod>> {
        self.pod_store(namespace)?
            .get(&kube::runtime::reflector::ObjectRef::new(name).within(namespace))
    }

    /// The ChildTrial cache that holds `namespace`'s trials (its own, or the all-namespaces
    /// one), if any.
    fn trial_store(&self, namespace: &str) -> Option<Store<ChildTrial>> {
        let stores = self.trial_stores.read().unwrap_or_else(|e| e.into_inner());
        stores.get(namespace).or_else(|| stores.get("")).cloned()
    }

    /// The Pod cache that holds `namespace`'s Pods (its own, or the all-namespaces one), if
    /// any.
    fn pod_store(&self, namespace: &str) -> Option<Store<Pod>> {
        let stores = self.pod_stores.read().unwrap_or_else(|e| e.into_inner());
        stores.get(namespace).or_else(|| stores.get("")).cloned()
    }

    /// Pod `name` of `namespace`: the cached one when the Pod cache holds it (see
    /// [`Context::cached_pod`]), else read with a GET through `pods`; `None` when the API
    /// server has no such Pod. Only for the ChildTrial controller: the cache is fed by the
    /// watch that wakes it, and applies each change before the wake-up. Another controller,
    /// woken by its own watch, may read the Pod from before the change that woke it.
    ///
    /// # Errors
    /// The GET's API error.
    pub async fn pod(
        &self,
        pods: &Api<Pod>,
        namespace: &str,
        name: &str,
    ) -> std::result::Result<Option<Pod>, kube::Error> {
        match self.cached_pod(namespace, name) {
            Some(cached) => Ok(Some(Pod::clone(&cached))),
            None => pods.get_opt(name).await,
        }
    }

    /// Takes the policy cached for search `uid` (it is kept again only by a reconcile that
    /// ends well).
    pub fn take_policy(&self, uid: &str) -> Option<CachedPolicy> {
        self.policies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid)
    }

    /// How long search `uid` must wait before it writes its policy state again (see
    /// [`save_wait`]); `None`: it may write now.
    pub fn save_wait(&self, uid: &str) -> Option<Duration> {
        let saves = self.saves.lock().unwrap_or_else(|e| e.into_inner());
        save_wait(saves.get(uid).copied(), std::time::Instant::now())
    }

    /// Records that search `uid` wrote its policy state now.
    pub fn saved_policy(&self, uid: &str) {
        self.saves
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(uid.to_string(), std::time::Instant::now());
    }

    /// Caches the policy of search `uid` as saved or read.
    pub fn keep_policy(&self, uid: &str, policy: CachedPolicy) {
        self.policies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(uid.to_string(), policy);
    }

    /// Forgets the failures of `key` (after a successful reconcile).
    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// The retry delay after another failure of `key`: 1 s, 2 s, 4 s, ... up to 300 s.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = f.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        MIN_BACKOFF
            .saturating_mul(1u32 << (*n - 1).min(16))
            .min(MAX_BACKOFF)
    }

    /// Queues `notes` as Events on `obj`. A background task records them (as client-go's
    /// recorder does), so a reconcile does not wait for them; a failed one is logged, not an
    /// error, and beyond [`EVENT_QUEUE`] waiting they are dropped: Events are best effort.
    /// Needs a Tokio runtime (the first call starts the task).
    ///
    /// Events of searches go through the shared Recorder (series). Events of ChildTrials and
    /// LatencyProbes go through a Recorder made for this call: kube's Recorder keeps every
    /// Event it published for 6 minutes (to count repeats) and scans them all on each publish,
    /// so with one Event per finished trial a shared one held about 3 KB per trial finished
    /// in the last 6 minutes (35 MB at 32 trials/s in `make bench-scale`). A trial's Events
    /// rarely repeat (a retried attempt or a disruption: a few per trial), so they lose
    /// little by not forming series.
    pub fn publish<K>(&self, obj: &K, action: &str, notes: &[Note])
    where
        K: Resource<DynamicType = ()>,
    {
        if notes.is_empty() {
            return;
        }
        let reference = obj.object_ref(&());
        let recorder = if K::kind(&()) == ArchitectureSearch::kind(&()) {
            self.recorder.clone()
        } else {
            Recorder::new(self.client.clone(), self.reporter.clone())
        };
        let queue = self.events.get_or_init(|| {
            let (queue, waiting) = tokio::sync::mpsc::channel(EVENT_QUEUE);
            tokio::spawn(record_events(waiting));
            queue
        });
        for n in notes {
            let event = Event {
                type_: if n.warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: n.reason.into(),
                note: Some(truncate(&n.message, 1000)),
                action: action.into(),
                secondary: None,
            };
            if queue
                .try_send((recorder.clone(), event, reference.clone()))
                .is_err()
            {
                tracing::warn!(
                    reason = n.reason,
                    "Event dropped: {EVENT_QUEUE} Events wait to be recorded"
                );
            }
        }
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// The key of an object for backoff bookkeeping: `kind/namespace/name`.
pub fn key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.meta().namespace.clone().unwrap_or_default(),
        obj.meta().name.clone().unwrap_or_default()
    )
}

/// The error policy of every controller: counts the error by category, logs it, and retries
/// the object after its backoff. Never panics.
pub fn error_policy<K>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action
where
    K: Resource<DynamicType = ()>,
{
    let kind = K::kind(&()).to_lowercase();
    ctx.metrics
        .reconcile_errors
        .with_label_values(&[kind.as_str(), error.category()])
        .inc();
    let key = key(obj.as_ref());
    let delay = ctx.backoff(&key);
    tracing::warn!(object = %key, error = %error, retry_in_s = delay.as_secs_f64(), "reconcile failed");
    Action::requeue(delay)
}

/// Creates `obj` (`POST`, field manager [`MANAGER`]); one that exists already counts as
/// created. Only for objects whose name fixes their content (a child's proposal id, a pod's
/// attempt, a policy checkpoint part's checksum): a create is repeated when a reconcile
/// stopped before recording it, and then finds its own object. (Cheaper for the API server than a server-side apply: measured with
/// `make bench-scale`, see the README.)
///
/// Returns whether it was created now (`false`: it existed).
///
/// # Errors
/// The API error, other than 409 AlreadyExists.
pub async fn create<K>(api: &Api<K>, obj: &K) -> Result<bool>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    let post = kube::api::PostParams {
        field_manager: Some(MANAGER.into()),
        ..kube::api::PostParams::default()
    };
    match api.create(&post, obj).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 && e.reason == "AlreadyExists" => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Deletes object `name` in background propagation (its dependents are collected by the
/// garbage collector); an object already gone (404) counts as deleted, so a delete repeated
/// by a retried reconcile succeeds.
///
/// # Errors
/// The API error, other than 404 NotFound.
pub async fn delete<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api
        .delete(name, &kube::api::DeleteParams::background())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Server-side applies the status subresource of `obj` to `status`.
///
/// # Errors
/// The API error.
pub async fn apply_status<K, S>(api: &Api<K>, obj: &K, status: &S) -> Result<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    S: Serialize,
{
    apply_status_at(api, obj, status, None).await
}

/// [`apply_status`] of the object as read at `resource_version`: the API server refuses the
/// write with 409 Conflict if the object changed since (optimistic concurrency; a status
/// computed from a stale read never overwrites a newer one).
///
/// # Errors
/// The API error (409 when the object changed since `resource_version`).
pub async fn apply_status_at<K, S>(
    api: &Api<K>,
    obj: &K,
    status: &S,
    resource_version: Option<&str>,
) -> Result<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    S: Serialize,
{
    let mut body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    if let Some(version) = resource_version {
        body["metadata"] = serde_json::json!({ "resourceVersion": version });
    }
    Ok(api
        .patch_status(
            &obj.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?)
}

/// Now, as an API time.
pub fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Shortest time between two writes of one search's policy state.
///
/// etcd keeps every revision until the API server compacts (every 5 minutes by default;
/// etcd's default backend quota is 2 GiB, etcd.io/docs/v3.6/op-guide/maintenance). When each
/// write carried a whole PPO state (about 1.4 MB as written), `make bench-scale` wrote about
/// 3.8 MB/s unthrottled and filled the quota ("mvcc: database space exceeded") at 19,000
/// trials. Now most writes are the head's journal (tens of KB; see
/// [`crate::search::policy_store`]), and a write every 500 ms carries about 16 results at
/// 32 trials/s, so the children they lead to start in one round of creations. Results that
/// arrive meanwhile are told to the policy in memory and saved with the next write, before
/// any child they lead to is created.
pub const MIN_SAVE_INTERVAL: Duration = Duration::from_millis(500);

/// How long to wait before the next policy-state write, given the last one (`None`: never
/// from this process) and `now`; `None` when a write may happen now.
pub fn save_wait(last: Option<std::time::Instant>, now: std::time::Instant) -> Option<Duration> {
    let since = now.saturating_duration_since(last?);
    (since < MIN_SAVE_INTERVAL).then(|| MIN_SAVE_INTERVAL - since)
}

/// Drops from a ChildTrial on its way into the cache what no reconciler reads, so that a
/// search of 20,000 trials fits the operator's memory goal (256 MiB):
/// - `managedFields` of every trial (about 2 KB each);
/// - labels and annotations of a finished trial whose Pods are gone (`status.podName` unset):
///   its reconcile returns at once, and the search reads only its spec, status, namespace and
///   owner references. Two small maps cost about 1.2 KB per trial (a B-tree leaf is allocated
///   for 11 entries).
///
/// The API server's object is unchanged; only the operator's copy is smaller.
pub fn slim_cached_trial(trial: &mut ChildTrial) {
    trial.metadata.managed_fields = None;
    let done = trial
        .status
        .as_ref()
        .is_some_and(|s| s.pod_name.is_none() && crate::trial::plan::finished(s));
    if done {
        trial.metadata.labels = None;
        trial.metadata.annotations = None;
    }
}

/// Searches whose copied parts a [`TrialInterner`] keeps (per part; the least recently seen
/// goes first). A namespace rarely runs more searches at once; a trial of one that was
/// pushed out keeps its own copy, which is correct, only larger.
pub const INTERNED_SEARCHES: usize = 16;

/// Makes the cached ChildTrials of a search share one copy of each part that every child
/// copies from its search (`spec.searchSpace`, `spec.objective`, `spec.trial`,
/// `spec.probe`; see [`ChildTrialSpec`](nasop_crds::api::ChildTrialSpec)): each object the
/// watch decodes gets its own, about 1 KB per trial (the trial template alone is 376 bytes
/// before its strings), 20 MB of the operator's memory goal (256 MiB) at 20,000 trials.
/// Parts are shared only when equal, so what a reconciler reads is unchanged.
#[derive(Default)]
pub struct TrialInterner {
    search_space: Pool<nasop_crds::space::SearchSpaceSpec>,
    objective: Pool<nasop_crds::api::ObjectiveSpec>,
    trial: Pool<nasop_crds::api::TrialTemplate>,
    probe: Pool<nasop_crds::api::ProbeTemplate>,
}

impl TrialInterner {
    /// Replaces the copied parts of `trial` by the equal ones seen before, and keeps its own
    /// where none is equal.
    pub fn share(&mut self, trial: &mut ChildTrial) {
        let spec = &mut trial.spec;
        self.search_space.share(&mut spec.search_space);
        self.objective.share(&mut spec.objective);
        self.trial.share(&mut spec.trial);
        if let Some(probe) = &mut spec.probe {
            self.probe.share(probe);
        }
    }
}

/// The last [`INTERNED_SEARCHES`] distinct values seen, most recent last.
struct Pool<T> {
    shared: std::collections::VecDeque<Arc<T>>,
}

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Self {
            shared: std::collections::VecDeque::new(),
        }
    }
}

impl<T: PartialEq> Pool<T> {
    fn share(&mut self, value: &mut Arc<T>) {
        let found = self
            .shared
            .iter()
            .rposition(|s| Arc::ptr_eq(s, value) || **s == **value);
        match found {
            Some(i) => {
                *value = self.shared[i].clone();
                if i + 1 != self.shared.len() {
                    let s = self.shared.remove(i).expect("found above");
                    self.shared.push_back(s);
                }
            }
            None => {
                if self.shared.len() == INTERNED_SEARCHES {
                    self.shared.pop_front();
                }
                self.shared.push_back(value.clone());
            }
        }
    }
}

/// Whether `pod` names a `K` as its controller (owner reference with `controller: true`).
fn owned_by<K: Resource<DynamicType = ()>>(pod: &Pod) -> bool {
    pod.owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && o.kind == K::kind(&()))
}

/// What the operator watches and how hard it works.
#[derive(Clone, Debug)]
pub struct Scope {
    /// Namespaces watched; empty: all.
    pub namespaces: Vec<String>,
    /// Reconciles run at once per controller (0: unbounded).
    pub concurrency: u16,
}

/// Logs the watch errors a controller stream yields (a missing CRD, RBAC refusing a list):
/// reconcile errors are logged by [`error_policy`] already.
fn log_queue_errors<T, E: std::error::Error>(
    item: Result<T, kube::runtime::controller::Error<E, watcher::Error>>,
) -> futures::future::Ready<()> {
    if let Err(kube::runtime::controller::Error::QueueError(e)) = item {
        tracing::warn!(error = %e, "watch failed (is the CRD installed, and may the operator list it?)");
    }
    futures::future::ready(())
}

/// The watched namespaces, each once (two controllers on one object would race), sorted;
/// `[""]` for all namespaces.
fn watched(scope: &Scope) -> Vec<String> {
    let namespaces: std::collections::BTreeSet<&str> = scope
        .namespaces
        .iter()
        .map(|n| n.trim())
        .filter(|n| !n.is_empty())
        .collect();
    if namespaces.is_empty() {
        vec![String::new()]
    } else {
        namespaces.into_iter().map(str::to_string).collect()
    }
}

fn apis<K>(client: &Client, scope: &Scope) -> Vec<Api<K>>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    watched(scope)
        .iter()
        .map(|ns| match ns.as_str() {
            "" => Api::all(client.clone()),
            ns => Api::namespaced(client.clone(), ns),
        })
        .collect()
}

/// Runs the ArchitectureSearch, ChildTrial and LatencyProbe controllers over `scope` until
/// `shutdown` completes; in-flight reconciles finish first (graceful shutdown).
pub async fn run(
    ctx: Arc<Context>,
    scope: Scope,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stop = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stopped| *stopped).await;
        }
    };
    let config = ControllerConfig::default().concurrency(scope.concurrency);
    let client = &ctx.client;
    let pods = watcher::Config::default().labels(POD_SELECTOR);
    let mut tasks = Vec::new();
    // The Pod watches, which feed the controllers: stopped once the controllers have.
    let mut feeds = Vec::new();
    let keys = watched(&scope);
    for ((((searches, trials), probes), pod_api), key) in apis::<ArchitectureSearch>(client, &scope)
        .into_iter()
        .zip(apis::<ChildTrial>(client, &scope))
        .zip(apis::<LatencyProbe>(client, &scope))
        .zip(apis::<Pod>(client, &scope))
        .zip(keys)
    {
        // The ChildTrial cache, shared with the search reconciler, keeps the objects without
        // what no reconciler reads (see `slim_cached_trial`), and the trials of a search
        // share the parts copied from it (see `TrialInterner`). Each change is applied to the
        // cache first, then wakes the ChildTrial and its search: a search woken by a watch of
        // its own could read the cache before the change that woke it got there, see its
        // trial still running, and not be woken again (seen as a search stalled until its
        // 5-minute resync).
        let (trial_store, writer) = kube::runtime::reflector::store::<ChildTrial>();
        let (to_search, search_trigger) = futures::channel::mpsc::unbounded::<ChildTrial>();
        let (cached, relisted) = (ctx.clone(), trial_store.clone());
        let trial_stream = kube::runtime::reflector(
            writer,
            watcher(trials, watcher::Config::default())
                .default_backoff()
                .modify({
                    let mut interner = TrialInterner::default();
                    move |t: &mut ChildTrial| {
                        slim_cached_trial(t);
                        interner.share(t);
                    }
                }),
        )
        .inspect(move |event| {
            match event {
                Ok(watcher::Event::Apply(t)) => cached.trial_cached(t, false),
                Ok(watcher::Event::Delete(t)) => cached.trial_cached(t, true),
                Ok(watcher::Event::InitDone) => cached.trial_cache_relisted(&relisted),
                _ => {}
            }
            if let Ok(
                watcher::Event::Apply(t) | watcher::Event::InitApply(t) | watcher::Event::Delete(t),
            ) = event
            {
                // Only fails once the search controller has stopped.
                let _ = to_search.unbounded_send(t.clone());
            }
        })
        .applied_objects();
        ctx.trial_stores
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), trial_store.clone());
        let (wakes, woken) = futures::channel::mpsc::unbounded();
        ctx.search_wakes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), wakes);
        let search = Controller::new(searches, watcher::Config::default());
        ctx.search_stores
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), search.store());
        let search = search
            .owns_stream(search_trigger.map(Ok))
            .reconcile_on(woken)
            .with_config(config.clone())
            .graceful_shutdown_on(stop())
            .run(
                crate::search::controller::reconcile,
                error_policy,
                ctx.clone(),
            )
            .for_each(log_queue_errors);
        // The operator's Pods, watched once: cached (without managedFields) for the trial
        // reconciler, and each change wakes the ChildTrial or LatencyProbe that owns the Pod
        // (deletions too: a vanished Pod is a disruption). Each change is applied to the cache
        // before it wakes its owner.
        let (pod_store, pod_writer) = kube::runtime::reflector::store::<Pod>();
        let pod_stream = kube::runtime::reflector(
            pod_writer,
            watcher(pod_api.clone(), pods.clone())
                .default_backoff()
                .modify(|p| {
                    p.managed_fields_mut().clear();
                }),
        )
        .touched_objects();
        let (to_trials, trial_pods) = futures::channel::mpsc::unbounded();
        let (to_probes, probe_pods) = futures::channel::mpsc::unbounded();
        feeds.push(tokio::spawn(pod_stream.for_each(move |pod| {
            // Watch errors go to the trial controller, which logs them (`log_queue_errors`).
            let to = match &pod {
                Ok(p) if owned_by::<LatencyProbe>(p) => &to_probes,
                _ => &to_trials,
            };
            // Only fails once that controller has stopped.
            let _ = to.unbounded_send(pod);
            futures::future::ready(())
        })));
        ctx.pod_stores
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, pod_store);
        let trial = Controller::for_stream(trial_stream, trial_store)
            .owns_stream(trial_pods)
            .owns(probes.clone(), watcher::Config::default())
            .with_config(config.clone())
            .graceful_shutdown_on(stop())
            .run(
                crate::trial::controller::reconcile,
                error_policy,
                ctx.clone(),
            )
            .for_each(log_queue_errors);
        let probe = Controller::new(probes, watcher::Config::default())
            .owns_stream(probe_pods)
            .with_config(config.clone())
            .graceful_shutdown_on(stop())
            .run(
                crate::probe::controller::reconcile,
                error_policy,
                ctx.clone(),
            )
            .for_each(log_queue_errors);
        tasks.push(tokio::spawn(search));
        tasks.push(tokio::spawn(trial));
        tasks.push(tokio::spawn(probe));
    }
    for t in tasks {
        let _ = t.await;
    }
    for f in feeds {
        f.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::children::record_of;
    use crate::testing::gpu_trial;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
    use nasop_crds::api::{ChildTrialStatus, TrialMetrics, TrialPhase};
    use std::collections::BTreeMap;

    fn trial(phase: TrialPhase, pod: Option<&str>) -> ChildTrial {
        let mut t = gpu_trial();
        t.metadata.labels = Some(BTreeMap::from([(
            nasop_crds::api::labels::SEARCH.to_string(),
            "cifar-nb201".to_string(),
        )]));
        t.metadata.annotations = Some(BTreeMap::from([(
            "nasop.dev/genotype".to_string(),
            t.spec.genotype.to_string(),
        )]));
        t.metadata.managed_fields = Some(vec![ManagedFieldsEntry::default()]);
        t.status = Some(ChildTrialStatus {
            phase: Some(phase),
            attempts: 1,
            pod_name: pod.map(str::to_string),
            metrics: Some(TrialMetrics {
                accuracy: Some(0.9),
                train_seconds: Some(12.0),
                ..TrialMetrics::default()
            }),
            reward: Some(0.9),
            ..ChildTrialStatus::default()
        });
        t
    }

    #[tokio::test]
    async fn the_policies_of_deleted_searches_are_forgotten() {
        let (ctx, _server) = crate::mock::context();
        let space = nasop_crds::space::SearchSpaceSpec::Nb201(Default::default())
            .build()
            .unwrap();
        let spec: nasop_crds::api::StrategySpec =
            serde_json::from_value(serde_json::json!({"algorithm": "Random"})).unwrap();
        let keep = |uid: &str| {
            ctx.keep_policy(
                uid,
                CachedPolicy {
                    version: "1".into(),
                    strategy: crate::strategy::build(&space, &spec, 1).unwrap(),
                    checkpoint: None,
                    due: Default::default(),
                    trials: None,
                },
            );
            ctx.saved_policy(uid);
        };
        keep("live");
        keep("deleted");
        // Without a search cache (a reconciler called directly), nothing is forgotten.
        ctx.forget_deleted_searches();
        assert_eq!(ctx.policies.lock().unwrap().len(), 2);
        let (store, mut writer) = kube::runtime::reflector::store::<ArchitectureSearch>();
        ctx.search_stores
            .write()
            .unwrap()
            .insert(String::new(), store);
        // A cache that has not listed the searches yet forgets nothing either.
        ctx.forget_deleted_searches();
        assert_eq!(ctx.policies.lock().unwrap().len(), 2);
        let mut search: ArchitectureSearch =
            crate::testing::from_yaml(include_str!("../../examples/nb201-evolution.yaml"));
        search.metadata.namespace = Some("nas".into());
        search.metadata.uid = Some("live".into());
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitApply(search));
        writer.apply_watcher_event(&watcher::Event::InitDone);
        ctx.forget_deleted_searches();
        let policies = ctx.policies.lock().unwrap();
        assert_eq!(policies.keys().collect::<Vec<_>>(), ["live"]);
        let saves = ctx.saves.lock().unwrap();
        assert_eq!(saves.keys().collect::<Vec<_>>(), ["live"]);
    }

    #[test]
    fn policy_writes_are_at_least_min_save_interval_apart() {
        let t0 = std::time::Instant::now();
        assert_eq!(save_wait(None, t0), None, "never written: write now");
        assert_eq!(save_wait(Some(t0), t0), Some(MIN_SAVE_INTERVAL));
        assert_eq!(
            save_wait(Some(t0), t0 + Duration::from_millis(200)),
            Some(Duration::from_millis(300))
        );
        assert_eq!(save_wait(Some(t0), t0 + MIN_SAVE_INTERVAL), None);
        assert_eq!(save_wait(Some(t0), t0 + Duration::from_secs(60)), None);
        // A clock read before the last write (another thread's) waits the full interval.
        assert_eq!(
            save_wait(Some(t0 + Duration::from_secs(1)), t0),
            Some(MIN_SAVE_INTERVAL)
        );
    }

    #[tokio::test]
    async fn a_newer_copy_stands_in_only_for_the_versions_it_replaces() {
        let (ctx, _server) = crate::mock::context();
        let (store, mut writer) = kube::runtime::reflector::store::<ChildTrial>();
        ctx.trial_stores
            .write()
            .unwrap()
            .insert(String::new(), store.clone());
        let version = |phase, pod: Option<&str>, rv: &str| {
            let mut t = trial(phase, pod);
            t.metadata.uid = Some("u1".into());
            t.metadata.resource_version = Some(rv.into());
            t
        };
        let running = version(TrialPhase::Running, Some("cifar-nb201-00042-train-1"), "10");
        let done = version(TrialPhase::Succeeded, None, "11");
        let newest = |t: &ChildTrial| ctx.newest_trial(Arc::new(t.clone())).status.clone();
        let kept = || ctx.written_trials.lock().unwrap().len();
        writer.apply_watcher_event(&watcher::Event::Apply(running.clone()));
        // Written from version 10: the cache, at 10, is behind.
        ctx.newer_trial(&running, done.clone());
        assert_eq!(newest(&running), done.status);
        assert_eq!(kept(), 1);
        // A trial of the same name but another uid (deleted and created again) is not it.
        let mut other = running.clone();
        other.metadata.uid = Some("u2".into());
        assert_eq!(newest(&other), other.status);
        assert_eq!(kept(), 0);
        // The cache shows the written version: the copy goes.
        ctx.newer_trial(&running, done.clone());
        ctx.trial_cached(&running, false);
        assert_eq!(kept(), 1, "version 10 is the one replaced");
        writer.apply_watcher_event(&watcher::Event::Apply(done.clone()));
        ctx.trial_cached(&done, false);
        assert_eq!(kept(), 0);
        // A version the copy does not replace (another writer's 12) wins, and the copy goes.
        let mut later = done.clone();
        later.metadata.resource_version = Some("12".into());
        writer.apply_watcher_event(&watcher::Event::Apply(running.clone()));
        ctx.newer_trial(&running, done.clone());
        assert_eq!(newest(&later), later.status);
        assert_eq!(kept(), 0);
        // Both reached the cache before the copy was recorded: nothing is kept.
        writer.apply_watcher_event(&watcher::Event::Apply(later.clone()));
        ctx.newer_trial(&running, done.clone());
        assert_eq!(kept(), 0);
        // Written twice over kept copies: each replaced version stands in.
        writer.apply_watcher_event(&watcher::Event::Apply(running.clone()));
        let pending = version(TrialPhase::Pending, Some("cifar-nb201-00042-train-1"), "11");
        let mut done13 = done.clone();
        done13.metadata.resource_version = Some("13".into());
        ctx.newer_trial(&running, pending.clone());
        ctx.newer_trial(&pending, done13.clone());
        assert_eq!(newest(&running), done13.status);
        assert_eq!(newest(&pending), done13.status);
        // A deleted trial's copy goes.
        ctx.trial_cached(&running, true);
        assert_eq!(kept(), 0);
        // A relist: the objects reach the cache at its end; copies the cache is past go.
        ctx.newer_trial(&running, done.clone());
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitApply(running.clone()));
        writer.apply_watcher_event(&watcher::Event::InitDone);
        ctx.trial_cache_relisted(&store);
        assert_eq!(kept(), 1, "the cache still shows version 10");
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitApply(later.clone()));
        writer.apply_watcher_event(&watcher::Event::InitDone);
        ctx.trial_cache_relisted(&store);
        assert_eq!(kept(), 0);
        // A refused write forgets the copy.
        ctx.newer_trial(&running, done.clone());
        ctx.forget_newer_trial(&done);
        assert_eq!(kept(), 0);
    }

    #[test]
    fn a_finished_trial_without_pods_is_cached_without_labels_and_annotations() {
        let full = trial(TrialPhase::Succeeded, None);
        let mut slim = full.clone();
        slim_cached_trial(&mut slim);
        assert_eq!(slim.metadata.managed_fields, None);
        assert_eq!(slim.metadata.labels, None);
        assert_eq!(slim.metadata.annotations, None);
        // What the search reads is unchanged.
        assert_eq!(record_of(&slim), record_of(&full));
        assert_eq!(slim.spec, full.spec);
        assert_eq!(slim.status, full.status);
        assert_eq!(
            slim.metadata.owner_references,
            full.metadata.owner_references
        );
        assert_eq!(slim.metadata.namespace.as_deref(), Some("nas"));
    }

    #[test]
    fn trials_of_one_search_share_the_parts_copied_from_it() {
        // Decoded one by one, as the watch decodes each object: equal parts, separate copies.
        let decode = |t: &ChildTrial| -> ChildTrial {
            serde_json::from_value(serde_json::to_value(t).unwrap()).unwrap()
        };
        let mut first = trial(TrialPhase::Succeeded, None);
        first.spec.probe = Some(Arc::new(nasop_crds::api::ProbeTemplate::default()));
        let mut interner = TrialInterner::default();
        let (mut a, mut b) = (decode(&first), decode(&first));
        assert!(!Arc::ptr_eq(&a.spec.trial, &b.spec.trial));
        interner.share(&mut a);
        interner.share(&mut b);
        assert!(Arc::ptr_eq(&a.spec.search_space, &b.spec.search_space));
        assert!(Arc::ptr_eq(&a.spec.objective, &b.spec.objective));
        assert!(Arc::ptr_eq(&a.spec.trial, &b.spec.trial));
        assert!(Arc::ptr_eq(
            a.spec.probe.as_ref().unwrap(),
            b.spec.probe.as_ref().unwrap()
        ));
        // What a reconciler reads is unchanged.
        assert_eq!((&b.spec, &b.status), (&first.spec, &first.status));
        assert_eq!(
            serde_json::to_value(&b).unwrap(),
            serde_json::to_value(&first).unwrap()
        );

        // A search with another trial template: its template is its own, the equal parts
        // are shared.
        let mut other = decode(&first);
        Arc::make_mut(&mut other.spec.trial).epochs += 1;
        interner.share(&mut other);
        assert!(!Arc::ptr_eq(&other.spec.trial, &a.spec.trial));
        assert_eq!(other.spec.trial.epochs, first.spec.trial.epochs + 1);
        assert!(Arc::ptr_eq(&other.spec.search_space, &a.spec.search_space));

        // The pool is bounded: after INTERNED_SEARCHES other templates, the first is gone
        // (its trials keep their copies; a new one gets its own).
        for i in 0..INTERNED_SEARCHES {
            let mut t = decode(&first);
            Arc::make_mut(&mut t.spec.trial).epochs = 100 + i as i32;
            interner.share(&mut t);
        }
        assert_eq!(interner.trial.shared.len(), INTERNED_SEARCHES);
        let mut late = decode(&first);
        interner.share(&mut late);
        assert!(!Arc::ptr_eq(&late.spec.trial, &a.spec.trial));
        assert!(Arc::ptr_eq(&late.spec.search_space, &a.spec.search_space));
        assert_eq!(late.spec, first.spec);
    }

    #[test]
    fn trials_still_running_or_with_pods_keep_their_labels() {
        for t in [
            trial(TrialPhase::Running, Some("cifar-nb201-00042-train-1")),
            trial(TrialPhase::Pending, None),
            trial(TrialPhase::Succeeded, Some("cifar-nb201-00042-train-1")),
            trial(TrialPhase::Failed, Some("cifar-nb201-00042-train-2")),
        ] {
            let mut cached = t.clone();
            slim_cached_trial(&mut cached);
            assert_eq!(cached.metadata.managed_fields, None);
            assert_eq!(cached.metadata.labels, t.metadata.labels);
            assert_eq!(cached.metadata.annotations, t.metadata.annotations);
            assert_eq!(cached.spec, t.spec);
        }
    }
}
