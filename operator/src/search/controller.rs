//! The `ArchitectureSearch` reconciler, as a pipeline: validate the spec -> read the policy
//! state and the ChildTrials -> resume the search core (each finished trial told to the
//! strategy exactly once, in id order) -> start new children -> save the policy state ->
//! (by the reconciles that follow at once, one round of requests each: `Due`) write the
//! status, create the children's ChildTrials and delete the replaced state's parts.
//!
//! Exactly once: the strategy state records which proposals still wait for a result, and is
//! saved before the ChildTrials of new proposals are created. A reconcile stopped anywhere
//! leaves either the old state (the same results are told again next time, to the same
//! strategy) or the new one (which already holds them); proposals saved but not yet created
//! are created by the next reconcile (`missing`). Trial names are derived from proposal ids,
//! and a create that finds one of that name already there counts as done.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use nasop_crds::api::{
    labels, ArchitectureSearch, ArchitectureSearchStatus, ChildTrial, SearchPhase, TrialPhase,
};

use super::children::{
    blocked_status, budget_spent, child_trial, derived_seed, gpu_seconds, gpus_per_trial,
    resume_children, ResumedChildren, SeenTrials,
};
use super::policy_store::{
    checkpoint_maps, head_name, journal_head, plan_write, read_stored, referenced_parts,
    stale_parts, to_config_maps, Stored, Write,
};
use super::status::{search_status, StatusInputs};
use super::Phase;
use crate::manifest;
use crate::runtime::{apply_status, create, key, now, CachedPolicy, Context, Due, Error, Result};
use crate::strategy;
use crate::trial::plan::Note;

/// The controller name (metrics label).
pub const CONTROLLER: &str = "architecturesearch";

/// How often a running search is looked at without a change (trial changes trigger
/// reconciles at once; this catches the deadline).
pub const RESYNC: Duration = Duration::from_secs(300);

/// How soon a search whose learner is too far behind to start children looks again, should
/// the learner's wake-up be lost.
pub const STALE_RECHECK: Duration = Duration::from_secs(1);

/// ChildTrials a search reconcile creates at most; the children a saved state names are
/// created by the reconciles that follow the save at once (the search is requeued without
/// delay; see [`Due`]), this many each.
///
/// A search of parallelism 450 starts 450 children in its first reconcile, and a running one
/// about as many per save as trials finished since the last (30-40 in `make bench-scale`):
/// created in one reconcile they made it take 200-1,000 ms (4 at once, 10-60 ms each). One
/// round of [`CREATE_CONCURRENCY`] creates per reconcile: in `make bench-scale` (5,000
/// trials) the p99 of search reconciles fell from 312 ms to 127 with 8 per reconcile and to
/// 97 with 4, and over all reconciles from 87 ms (8) to 72 (4).
pub const CREATES_PER_RECONCILE: usize = CREATE_CONCURRENCY;

/// ChildTrials created at once by one reconcile (requests in flight).
///
/// Each create costs the API server about 3 ms of CPU; a reconcile that sends many at once
/// makes every other call queue behind them. In `make bench-scale` (3,000 trials, operator
/// `--concurrency 4`, 2 cores shared with the API server, two runs each) 4 instead of 16 cut
/// the p99 over all reconciles from 168 / 148 ms to 128 / 127 ms at the same throughput
/// (34 trials/s); a search reconcile that creates takes longer (p99 424 ms instead of 240).
pub const CREATE_CONCURRENCY: usize = 4;

/// Reason of a search whose policy state is unreadable or missing while trials exist.
pub const REASON_POLICY_STATE: &str = "PolicyStateInvalid";

/// Reconciles one ArchitectureSearch.
///
/// # Errors
/// API errors (retried with backoff by the error policy); a policy state that does not fit
/// the space.
pub async fn reconcile(search: Arc<ArchitectureSearch>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let started = std::time::Instant::now();
    ctx.forget_deleted_searches();
    let mut steps = ctx.metrics.search_steps();
    let namespace = search
        .namespace()
        .ok_or(Error::Missing("metadata.namespace"))?;
    let name = search.name_any();
    let uid = search.uid().ok_or(Error::Missing("metadata.uid"))?;
    let searches: Api<ArchitectureSearch> = Api::namespaced(ctx.client.clone(), &namespace);
    let trials: Api<ChildTrial> = Api::namespaced(ctx.client.clone(), &namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
    let generation = search.metadata.generation;
    let previous = search.status.as_ref();
    let now = now();

    // Validate: a bad spec is a condition and an Event, never a crash loop.
    let space = match manifest::check(&search) {
        Ok(space) => space,
        Err(e) => {
            let message = format!("invalid spec: {e}");
            return block(&ctx, &searches, &search, "InvalidSpec", &message).await;
        }
    };

    // A finished search is final: once its status at this generation says so and no child
    // runs, nothing is read or written until the spec changes. (Otherwise an operator restart
    // would restore the policy state of every finished search, seconds each at 20,000
    // trials, and the deletion of a ChildTrial would change a final result.)
    if let Some(done) = previous.filter(|p| is_final(p, generation)) {
        export_status(&ctx.metrics, &namespace, &name, done);
        ctx.succeeded(&key(search.as_ref()));
        return Ok(Action::await_change());
    }

    // Read: the policy state and this search's ChildTrials (owned by this uid: a deleted
    // search's trials may linger until garbage collection). The policy comes from this
    // process's last reconcile of the search when it ended well (see `CachedPolicy`: a write
    // of the head fails if another writer changed it since). Otherwise the ConfigMaps'
    // metadata is listed, and their data read and decoded only when a head exists. The trials
    // come from the ChildTrial controller's cache when there is one.
    let selector = format!("{}={name}", labels::SEARCH);
    let mut cached_policy = None;
    let cached = ctx.take_policy(&uid);
    // The reconciles that follow one that saved the state finish its writes (`Due`): each
    // writes the status it computed and/or creates the next children it named, one round of
    // requests, and the search comes back at once while any are left. While the policy write
    // must then wait (`MIN_SAVE_INTERVAL`) and children run, a reconcile could only tell
    // results in memory: no child may start before the state naming it is written, and the
    // status waits with the write. So it does nothing more and comes back when the wait ends
    // (the trials that finished meanwhile are told then), unless the spec changed. This
    // spares the work over all the search's trials that each trial event would cost (one
    // reconcile per finished trial otherwise).
    if let Some(mut c) = cached {
        let running = previous.is_some_and(|p| {
            p.observed_generation == generation
                && matches!(p.phase, Some(SearchPhase::Running | SearchPhase::Suspended))
        });
        if c.due.generation != generation {
            c.due = Due::default();
        }
        let waiting = running && !c.strategy.pending().is_empty() && ctx.save_wait(&uid).is_some();
        if c.due.is_empty() && !waiting {
            cached_policy = Some(c);
        } else {
            return follow_up(
                &ctx,
                &searches,
                &trials,
                &config_maps,
                &search,
                &uid,
                c,
                steps,
            )
            .await;
        }
    }
    // Objects of a deleted search of the same name wait for garbage collection: do not read
    // or overwrite them.
    let foreign = |refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference]| {
        refs.iter()
            .any(|o| o.controller == Some(true) && o.uid != uid)
    };
    let mut kept_trials = None;
    let (maps, head_version, strategy) = match cached_policy {
        Some(c) => {
            kept_trials = c.trials;
            (None, Some(c.version), Some((c.strategy, c.checkpoint)))
        }
        None => {
            let maps = policy_maps(&config_maps, &selector).await?;
            let head_version = maps
                .iter()
                .find(|m| m.metadata.name.as_deref() == Some(head_name(&name).as_str()))
                .map(|m| m.metadata.resource_version.clone().unwrap_or_default());
            (Some(maps), head_version, None)
        }
    };
    let children: Vec<Arc<ChildTrial>> = match ctx.cached_trials(&namespace, &name).await {
        Some(cached) => cached,
        None => trials
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
            .into_iter()
            .map(Arc::new)
            .collect(),
    };
    if maps.iter().flatten().any(|m| foreign(m.owner_references()))
        || children.iter().any(|c| foreign(c.owner_references()))
    {
        ctx.publish(
            search.as_ref(),
            "Reconcile",
            &[Note {
                warning: false,
                reason: "WaitingForCleanup",
                message: format!(
                    "objects labelled {selector} belong to a deleted search of the same name; waiting for their garbage collection"
                ),
            }],
        );
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    let has_head = head_version.is_some();
    // The checkpoint the stored state's journal is on (`None`: stored whole, or not yet).
    let (mut strategy, mut checkpoint) = if let Some(cached) = strategy {
        cached
    } else if has_head {
        let full: Vec<ConfigMap> = config_maps
            .list(&ListParams::default().labels(&selector))
            .await?
            .items;
        // A restore tells the journal's results again (up to 1,000: about 200 PPO updates, a
        // few seconds): on a blocking thread, not the runtime's.
        let (space, spec, search_name) =
            (space.clone(), search.spec.strategy.clone(), name.clone());
        let restored = tokio::task::spawn_blocking(move || {
            read_stored(&search_name, &full)
                .map_err(|e| e.to_string())
                .and_then(|stored| match stored {
                    Stored::Whole(bytes) => strategy::restore(&space, &spec, &bytes)
                        .map(|s| (s, None))
                        .map_err(|e| e.to_string()),
                    Stored::Journal {
                        checkpoint,
                        bytes,
                        journal,
                    } => strategy::restore_journal(&space, &spec, &bytes, &journal)
                        .map(|s| (s, Some(checkpoint)))
                        .map_err(|e| e.to_string()),
                })
        })
        .await
        .map_err(|e| Error::Strategy(strategy::StrategyError::State(format!("restore: {e}"))))?;
        match restored {
            Ok(s) => s,
            Err(e) => {
                let message = format!(
                    "the policy state in ConfigMap {} cannot be trusted ({e}); no trial is started",
                    head_name(&name)
                );
                return block(&ctx, &searches, &search, REASON_POLICY_STATE, &message).await;
            }
        }
    } else if children.is_empty() {
        (
            strategy::build(&space, &search.spec.strategy, derived_seed(&uid))?,
            None,
        )
    } else {
        let message = format!(
            "ConfigMap {} (the policy state) is missing while {} trials exist; no trial is started",
            head_name(&name),
            children.len()
        );
        return block(&ctx, &searches, &search, REASON_POLICY_STATE, &message).await;
    };
    // Controllers learn on a thread of their own: telling results below only queues them, and
    // new children are sampled from the newest weights (a reconcile never waits for updates).
    let learner = strategy.learn_in_background();
    let updates_before = strategy.counts().updates;
    steps.done("read");

    // Resume: results the strategy has not seen are told now, once each, in id order.
    // Each ChildTrial changed since the last reconcile is read (all of them without one).
    let ResumedChildren {
        resumed,
        versions,
        read,
    } = resume_children(&search.spec, &space, strategy, &children, kept_trials)?;
    let mut core = resumed.search;
    steps.done("tell");
    let gpus = gpus_per_trial(&search);
    let gpu_used = gpu_seconds(children.iter().map(|c| c.as_ref()), gpus);
    let spent = budget_spent(&search, gpu_used, &now);
    if spent.is_some() {
        core.stop();
    }
    // Writes of the policy state are rate-limited (`MIN_SAVE_INTERVAL`): while one must wait,
    // results are told in memory only (the cached policy keeps them; a restart tells them
    // again from the stored state) and no child starts, as a child may only start once the
    // state naming it is stored. Once no proposal waits for a result (the search finishes,
    // or every child finished while suspended) the state is written at once, so the stored
    // state is the final one.
    let save_wait = ctx
        .save_wait(&uid)
        .filter(|_| !core.strategy().pending().is_empty());
    // How far the learner may lag: while children run, up to the updates that `parallelism`
    // results make (a child's result reaches the policy that far behind anyway, as every
    // child running meanwhile was sampled before it); with none running, not at all (the
    // search waits for the learner here: a sequential search samples each child from the
    // policy that learned from every result before it, and a finished one stores its final
    // policy). A learner further behind holds new children back until it catches up.
    let mut stale = false;
    let mut learned = false;
    if let Some(learner) = &learner {
        let limit = lag_limit(search.spec.budget.parallelism, learner.batch_size());
        let mut behind = learner.behind()?;
        if behind > 0 && core.strategy().pending().is_empty() {
            let wait = learner.clone();
            tokio::task::spawn_blocking(move || wait.wait_caught_up())
                .await
                .map_err(|e| {
                    Error::Strategy(strategy::StrategyError::State(format!("learner: {e}")))
                })??;
            behind = 0;
            learned = true;
        }
        stale = behind > limit;
        if stale {
            if let Some(wake) = ctx.search_waker(search.as_ref()) {
                learner.wake_when_behind_at_most(limit, wake);
            }
        }
        ctx.metrics
            .policy_behind
            .with_label_values(&[namespace.as_str(), name.as_str()])
            .set(behind as i64);
    }
    let launched = if search.spec.suspend || save_wait.is_some() || stale {
        Vec::new()
    } else {
        core.launch()
    };

    steps.done("launch");

    // Save the state before creating the children it names.
    let changed = save_wait.is_none()
        && (!has_head || !resumed.told.is_empty() || !launched.is_empty() || learned);
    let mut saved_version = head_version.clone();
    // What this reconcile wrote (debug log).
    let mut wrote = "nothing";
    // Policy ConfigMaps no stored state refers to any more, to delete.
    let mut stale_maps = Vec::new();
    // Milliseconds of the save spent encoding the state, creating parts, writing the head
    // (debug log).
    let mut save_ms = [0.0; 3];
    // The search's last write, or a reconcile after it (the search stopped, or children
    // still run after it failed).
    let last = core.phase() != Phase::Running;
    if changed {
        let mut lap = std::time::Instant::now();
        let mut lap_ms = || {
            let ms = lap.elapsed().as_secs_f64() * 1000.0;
            lap = std::time::Instant::now();
            ms
        };
        let owner = search
            .controller_owner_ref(&())
            .ok_or(Error::Missing("metadata.uid"))?;
        // Parts are named by the checksum of their state: created, never overwritten (an
        // existing one holds the same bytes). The head is written only if unchanged since it
        // was read (its resourceVersion as a precondition), so of two concurrent writers one
        // gets 409 and retries from a fresh read. Then the replaced state's parts go, and any
        // left by a writer stopped half-way.
        let post = kube::api::PostParams {
            field_manager: Some(crate::runtime::MANAGER.into()),
            ..kube::api::PostParams::default()
        };
        // Most writes are the head alone (the journal of results since the checkpoint);
        // a new checkpoint's parts are created first when one is due.
        let (kind, parts, head, written) =
            match plan_write(core.strategy_mut(), checkpoint.as_ref()) {
                Write::Journal {
                    checkpoint,
                    journal,
                } => (
                    "journal",
                    Vec::new(),
                    journal_head(&name, &namespace, &checkpoint, &journal),
                    Some(checkpoint),
                ),
                Write::Checkpoint {
                    checkpoint,
                    bytes,
                    journal,
                } => (
                    "checkpoint",
                    checkpoint_maps(&name, &namespace, &checkpoint, &bytes),
                    journal_head(&name, &namespace, &checkpoint, &journal),
                    Some(checkpoint),
                ),
                Write::Whole(bytes) => {
                    let mut maps = to_config_maps(&name, &namespace, &bytes);
                    let head = maps.pop().expect("a head");
                    ("whole", maps, head, None)
                }
            };
        // The parts that exist, and those a writer stopped half-way left: listed at the read,
        // or now for a write of parts or the whole state (a cached policy skipped the listing
        // at the read; one made before then would miss parts that a writer stopped while its
        // requests were in flight created since). A journal from the cached policy changes
        // no part and needs no listing: a part left by a stopped writer goes with the next
        // checkpoint (every `CHECKPOINT_RESULTS` results), the next read, or the search's
        // last write (listed then, so that a finished search leaves no part behind).
        save_ms[0] = lap_ms();
        let maps = match maps {
            Some(maps) => Some(maps),
            None if kind == "journal" && !last => None,
            None => Some(policy_maps(&config_maps, &selector).await?),
        };
        // The parts, [`CREATE_CONCURRENCY`] at once (each up to 900 KiB; the head names them,
        // so it comes after). Named by the checksum of their bytes: one there already holds
        // the same.
        let creates = parts
            .into_iter()
            .filter(|part| {
                !maps
                    .iter()
                    .flatten()
                    .any(|m| m.metadata.name == part.metadata.name)
            })
            .map(|mut part| {
                part.metadata.owner_references = Some(vec![owner.clone()]);
                let config_maps = config_maps.clone();
                async move { create(&config_maps, &part).await }
            });
        bounded(creates).await?;
        save_ms[1] = lap_ms();
        let mut head = head;
        head.metadata.owner_references = Some(vec![owner.clone()]);
        // The version this state was read or saved at, not the one listed now.
        match head_version.clone() {
            Some(version) => {
                // A replace (PUT) carrying the resourceVersion read: 409 if another
                // writer changed the head since. (Not a server-side apply or a merge
                // patch: the API server then merges the patch into the stored object,
                // which made the save step about twice as slow in `make bench-scale` when
                // the head held a whole state of 1.3 MB: p50 160-200 ms against 106 ms.)
                head.metadata.resource_version = Some(version);
                saved_version = config_maps
                    .replace(&head_name(&name), &post, &head)
                    .await?
                    .metadata
                    .resource_version;
            }
            None => {
                saved_version = config_maps
                    .create(&post, &head)
                    .await?
                    .metadata
                    .resource_version;
            }
        }
        save_ms[2] = lap_ms();
        checkpoint = written;
        wrote = kind;
        ctx.saved_policy(&uid);
        // The replaced state's parts go with the writes that follow (below).
        let kept = referenced_parts(&name, std::slice::from_ref(&head));
        stale_maps = stale_parts(&name, maps.as_deref().unwrap_or_default(), &kept);
    } else if last {
        // What the last write may have left: a failed delete, or a process stopped before it.
        let listed = match maps {
            Some(maps) => maps,
            None => policy_maps(&config_maps, &selector).await?,
        };
        stale_maps = stale_parts(&name, &listed, &referenced_parts(&name, &listed));
    }
    steps.done("save");
    // The ChildTrials of the children the saved state names and no ChildTrial holds yet.
    let new_children = resumed
        .missing
        .iter()
        .chain(&launched)
        .map(|p| child_trial(&search, p).map_err(Error::Missing))
        .collect::<Result<Vec<_>>>()?;
    let starting = new_children.len();

    // Status.
    let summary = core.summary(1);
    let all: Vec<&super::Trial> = core.trials().collect();
    let mut status = search_status(
        previous,
        &summary,
        &all,
        &StatusInputs {
            search: &name,
            max_trials: search.spec.budget.max_trials,
            generation,
            strategy: core.strategy().counts(),
            config_map: Some(head_name(&name)),
            now: now.clone(),
        },
    );
    let pending = children
        .iter()
        .filter(|c| {
            matches!(
                c.status.as_ref().and_then(|s| s.phase),
                None | Some(TrialPhase::Pending)
            )
        })
        .count() as i32
        + starting as i32;
    status.trials.pending = pending.min(status.trials.running);
    status.trials.running -= status.trials.pending;
    if search.spec.suspend && summary.phase == Phase::Running {
        status.phase = Some(SearchPhase::Suspended);
        let before = previous.and_then(|p| {
            p.conditions
                .iter()
                .find(|c| c.type_ == super::status::condition::PROGRESSING)
        });
        for c in &mut status.conditions {
            if c.type_ == super::status::condition::PROGRESSING {
                c.status = "False".into();
                c.reason = "Suspended".into();
                c.message = "spec.suspend is true: no new trial starts".into();
                c.last_transition_time = match before {
                    Some(b) if b.status == "False" => b.last_transition_time.clone(),
                    _ => now.clone(),
                };
            }
        }
    }
    if let (Some(reason), Phase::Stopped) = (&spent, summary.phase) {
        for c in &mut status.conditions {
            if c.type_ == super::status::condition::READY {
                c.message = reason.clone();
            }
        }
    }
    let mut notes = Vec::new();
    if !new_children.is_empty() {
        notes.push(created_note(&new_children));
    }
    let was = previous.and_then(|p| p.phase);
    if status.phase != was {
        match status.phase {
            Some(SearchPhase::Succeeded) => notes.push(Note {
                warning: false,
                reason: "SearchSucceeded",
                message: match &status.best {
                    Some(b) => format!(
                        "{} trials finished; best {} with reward {:.4}",
                        summary.counts.succeeded + summary.counts.failed,
                        b.trial_name,
                        b.reward
                    ),
                    None => "finished without a successful trial".into(),
                },
            }),
            Some(SearchPhase::Failed) => notes.push(Note {
                warning: true,
                reason: "SearchFailed",
                message: format!(
                    "{} trials failed, more than budget.maxFailedTrials",
                    summary.counts.failed
                ),
            }),
            _ => {}
        }
    }
    // While the policy write waits (`save_wait`), so does the status, unless its phase
    // changes: the reconcile the wait ends with writes both (the counts lag by at most
    // `MIN_SAVE_INTERVAL`; one status write per interval instead of one per finished trial).
    let deferred = save_wait.is_some() && previous.and_then(|p| p.phase) == status.phase;
    let status_due = (previous != Some(&status) && !deferred).then(|| status.clone());
    let finished = matches!(
        status.phase,
        Some(SearchPhase::Succeeded) | Some(SearchPhase::Failed)
    );
    // The writes after a save, or of children to start, are made by the reconciles that
    // follow at once, each making one round of requests (the status with the first
    // children), while the policy stays cached. Here otherwise: a finished search's final
    // status, and the status of a reconcile that saved nothing and starts nothing (which
    // thus never makes the search come back at once).
    let keep = saved_version.is_some() && !finished;
    let defer = keep && (changed || !new_children.is_empty());
    let due = if defer {
        Due {
            generation,
            children: new_children.into(),
            status: status_due,
            notes,
            stale_parts: stale_maps,
        }
    } else {
        // The replaced state's parts go first: once a final status is written the search is
        // not reconciled again (`is_final`). The creates and the status write go together:
        // neither reads what the other writes (the status already counts the new children as
        // pending; should a create fail, the retry writes the status again). The state naming
        // the children is saved, so the creates' order does not matter either.
        delete_parts(&config_maps, &stale_maps).await?;
        let (created, written) = futures::join!(
            create_children(&trials, &new_children),
            write_status(&ctx, &searches, search.as_ref(), status_due.as_ref())
        );
        created?;
        written?;
        // Together (`status` is also timed on its own).
        steps.done("create");
        ctx.publish(search.as_ref(), "Reconcile", &notes);
        Due::default()
    };

    // Metrics.
    let m = &ctx.metrics;
    let labels = [namespace.as_str(), name.as_str()];
    export_status(m, &namespace, &name, &status);
    m.gpu_seconds.with_label_values(&labels).set(gpu_used);
    let updates = core.strategy().counts().updates;
    m.policy_updates
        .with_label_values(&labels)
        .inc_by(updates.saturating_sub(updates_before));
    // The policy now equals the stored state at the head's resourceVersion: the next
    // reconcile reuses it while the head stays at that version.
    // A finished search needs it no more.
    let more = !due.is_empty();
    if let Some(version) = saved_version.filter(|_| keep) {
        let (strategy, book) = core.into_parts();
        ctx.keep_policy(
            &uid,
            CachedPolicy {
                version,
                strategy,
                checkpoint,
                due,
                trials: versions.map(|v| SeenTrials::new(book, v)),
            },
        );
    }
    tracing::debug!(
        search = %name,
        read,
        trials = children.len(),
        told = resumed.told.len(),
        children = starting,
        due = more,
        wrote,
        encode_ms = save_ms[0],
        parts_ms = save_ms[1],
        head_ms = save_ms[2],
        waited = save_wait.is_some(),
        stale,
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "search reconciled"
    );
    ctx.succeeded(&key(search.as_ref()));
    Ok(match status.phase {
        Some(SearchPhase::Succeeded) | Some(SearchPhase::Failed) => Action::await_change(),
        // The writes left (`Due`) are made by the reconciles that follow at once.
        // Results told while a write had to wait are saved, and children started, then.
        // A learner too far behind wakes the search when it has caught up (and this checks
        // again in a second in case that wake-up is lost).
        _ => Action::requeue(
            save_wait
                .into_iter()
                .chain(stale.then_some(STALE_RECHECK))
                .chain(more.then_some(Duration::ZERO))
                .fold(RESYNC, Duration::min),
        ),
    })
}

/// Whether `status` is the final one of a search at `generation`: it finished (Succeeded or
/// Failed, with a completion time) at that generation for a reason of its budget or its
/// trials (not a blocked one: an invalid spec or policy state is checked again on each
/// event), and no child is pending or running.
pub fn is_final(status: &ArchitectureSearchStatus, generation: Option<i64>) -> bool {
    use super::status::{condition, reason};
    let ended = status.conditions.iter().any(|c| {
        c.type_ == condition::PROGRESSING
            && [
                reason::BUDGET_SPENT,
                reason::SPACE_EXHAUSTED,
                reason::TOO_MANY_FAILURES,
            ]
            .contains(&c.reason.as_str())
    });
    matches!(
        status.phase,
        Some(SearchPhase::Succeeded | SearchPhase::Failed)
    ) && ended
        && status.observed_generation == generation
        && status.completion_time.is_some()
        && status.trials.running == 0
        && status.trials.pending == 0
}

/// Sets the gauges a search's status gives: `nasop_trials` by phase and the best trial's
/// reward, accuracy and latency (ms).
fn export_status(
    m: &crate::metrics::Metrics,
    namespace: &str,
    name: &str,
    status: &ArchitectureSearchStatus,
) {
    for (phase, n) in [
        ("Pending", status.trials.pending),
        ("Running", status.trials.running),
        ("Succeeded", status.trials.succeeded),
        ("Failed", status.trials.failed),
    ] {
        m.trials
            .with_label_values(&[namespace, name, phase])
            .set(i64::from(n));
    }
    if let Some(b) = &status.best {
        let labels = [namespace, name];
        m.best_reward.with_label_values(&labels).set(b.reward);
        if let Some(a) = b.accuracy {
            m.best_accuracy.with_label_values(&labels).set(a);
        }
        if let Some(l) = b.latency_ms {
            m.best_latency_ms.with_label_values(&labels).set(l);
        }
    }
}

/// The most updates a search's background learner may be behind while its children run: as
/// many as `parallelism` results make at `batch` results per update, less one (0 for a
/// sequential search, and for any search whose children all fit in one batch).
pub fn lag_limit(parallelism: i32, batch: usize) -> u64 {
    (parallelism.max(1) as u64 - 1) / batch.max(1) as u64
}

/// Creates `children`, [`CREATE_CONCURRENCY`] at once; one that exists already counts as
/// created (trial names derive from proposal ids).
///
/// # Errors
/// The first failed create (all are tried).
async fn create_children(trials: &Api<ChildTrial>, children: &[ChildTrial]) -> Result<()> {
    bounded(children.iter().cloned().map(|child| {
        let trials = trials.clone();
        async move { create(&trials, &child).await }
    }))
    .await
}

/// Runs `requests`, [`CREATE_CONCURRENCY`] at once, each to its end.
///
/// # Errors
/// The first failed request's (in the given order).
async fn bounded<T>(
    requests: impl IntoIterator<Item = impl std::future::Future<Output = Result<T>>>,
) -> Result<()> {
    futures::stream::iter(requests)
        .buffered(CREATE_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .try_for_each(|r| r.map(|_| ()))
}

/// The `TrialsCreated` Event of the children a saved state named: the first
/// [`CREATES_PER_RECONCILE`] are created by the reconcile that records it, the rest by the
/// reconciles that follow (which record no Event of their own: one per saved state).
fn created_note(children: &[ChildTrial]) -> Note {
    let names = |c: &[ChildTrial]| {
        c.iter()
            .map(|c| c.name_any())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (now, queued) = children.split_at(children.len().min(CREATES_PER_RECONCILE));
    let mut message = format!("created {}", names(now));
    if !queued.is_empty() {
        message += &format!("; {} follow: {}", queued.len(), names(queued));
    }
    Note {
        warning: false,
        reason: "TrialsCreated",
        message,
    }
}

/// Deletes the policy ConfigMaps named `parts`, [`CREATE_CONCURRENCY`] at once (one already
/// gone counts as deleted).
///
/// # Errors
/// The first failed delete (all are tried).
async fn delete_parts(config_maps: &Api<ConfigMap>, parts: &[String]) -> Result<()> {
    bounded(parts.iter().cloned().map(|part| {
        let config_maps = config_maps.clone();
        async move { crate::runtime::delete(&config_maps, &part).await }
    }))
    .await
}

/// Writes `status` (`None`: nothing to write) to the search's status subresource, timed as
/// the `status` step.
///
/// # Errors
/// The API error.
async fn write_status(
    ctx: &Context,
    searches: &Api<ArchitectureSearch>,
    search: &ArchitectureSearch,
    status: Option<&ArchitectureSearchStatus>,
) -> Result<()> {
    let Some(status) = status else {
        return Ok(());
    };
    let started = std::time::Instant::now();
    let written = apply_status(searches, search, status).await.map(|_| ());
    ctx.metrics
        .search_steps
        .with_label_values(&["status"])
        .observe(started.elapsed().as_secs_f64());
    written
}

/// Makes one round of the writes the reconcile that saved the cached policy `c` left
/// (`c.due`): the status it computed and the deletes of the replaced state's parts, alongside
/// the next [`CREATES_PER_RECONCILE`] of its children; then records its Events. What fails
/// stays due, with the Events: the retry, backed off by the error policy, makes it again (a
/// ChildTrial created meanwhile counts as created). Comes back at once while writes are
/// left, and otherwise when the policy may be written again.
///
/// # Errors
/// The first failed create, the failed status write, or the first failed delete.
#[allow(clippy::too_many_arguments)]
async fn follow_up(
    ctx: &Context,
    searches: &Api<ArchitectureSearch>,
    trials: &Api<ChildTrial>,
    config_maps: &Api<ConfigMap>,
    search: &ArchitectureSearch,
    uid: &str,
    mut c: CachedPolicy,
    mut steps: crate::metrics::StepTimer<'_>,
) -> Result<Action> {
    let started = std::time::Instant::now();
    let batch: Vec<ChildTrial> = {
        let n = c.due.children.len().min(CREATES_PER_RECONCILE);
        c.due.children.drain(..n).collect()
    };
    let status = c
        .due
        .status
        .take()
        .filter(|s| search.status.as_ref() != Some(s));
    let notes = std::mem::take(&mut c.due.notes);
    let stale = std::mem::take(&mut c.due.stale_parts);
    let (created, written, deleted) = futures::join!(
        create_children(trials, &batch),
        write_status(ctx, searches, search, status.as_ref()),
        delete_parts(config_maps, &stale)
    );
    if created.is_err() || written.is_err() || deleted.is_err() {
        if created.is_err() {
            for child in batch.into_iter().rev() {
                c.due.children.push_front(child);
            }
        }
        if written.is_err() {
            c.due.status = status;
        }
        if deleted.is_err() {
            c.due.stale_parts = stale;
        }
        c.due.notes = notes;
        ctx.keep_policy(uid, c);
        return Err(created
            .and(written)
            .and(deleted)
            .expect_err("one of the writes failed"));
    }
    let more = !c.due.is_empty();
    ctx.keep_policy(uid, c);
    if !batch.is_empty() {
        steps.done("create");
    }
    ctx.publish(search, "Reconcile", &notes);
    if !batch.is_empty() || status.is_some() {
        tracing::debug!(
            search = %search.name_any(),
            created = batch.len(),
            status = status.is_some(),
            due = more,
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "search writes followed up"
        );
    }
    ctx.succeeded(&key(search));
    Ok(Action::requeue(if more {
        Duration::ZERO
    } else {
        ctx.save_wait(uid).unwrap_or(Duration::ZERO)
    }))
}

/// The metadata of the search's policy ConfigMaps (names, annotations, owners,
/// resourceVersions; no data), listed by `selector`.
async fn policy_maps(config_maps: &Api<ConfigMap>, selector: &str) -> Result<Vec<ConfigMap>> {
    Ok(config_maps
        .list_metadata(&ListParams::default().labels(selector))
        .await?
        .items
        .into_iter()
        .map(|m| ConfigMap {
            metadata: m.metadata,
            ..ConfigMap::default()
        })
        .collect())
}

/// Writes the status of a search that cannot run and records a Warning Event (once per
/// change of message); starts nothing and waits for a change of the spec.
async fn block(
    ctx: &Context,
    searches: &Api<ArchitectureSearch>,
    search: &ArchitectureSearch,
    reason: &'static str,
    message: &str,
) -> Result<Action> {
    let previous = search.status.as_ref();
    let status = blocked_status(
        previous,
        reason,
        message,
        search.metadata.generation,
        &now(),
    );
    if previous != Some(&status) {
        apply_status(searches, search, &status).await?;
        ctx.publish(
            search,
            "Validate",
            &[Note {
                warning: true,
                reason,
                message: message.to_string(),
            }],
        );
    }
    ctx.succeeded(&key(search));
    Ok(Action::await_change())
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;
