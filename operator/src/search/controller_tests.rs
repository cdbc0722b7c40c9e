//! Mock-API tests of the ArchitectureSearch reconciler: one scenario per path.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::controller::Action;
use nasop_crds::api::{ArchitectureSearch, ArchitectureSearchStatus, SearchPhase};
use serde_json::{json, Value};

use super::reconcile;
use crate::mock::{self, ApiServer};
use crate::search::children::child_trial;
use crate::search::policy_store::{from_config_maps, to_config_maps};
use crate::strategy;
use crate::testing::from_yaml;

const MAPS: &str = "/api/v1/namespaces/nas/configmaps";
const TRIALS: &str = "/apis/nasop.dev/v1alpha1/namespaces/nas/childtrials";
const SEARCH: &str = "/apis/nasop.dev/v1alpha1/namespaces/nas/architecturesearches/cifar";
const SELECTOR: &str = "nasop.dev%2Fsearch%3Dcifar";

fn search(budget: &str) -> ArchitectureSearch {
    from_yaml(&format!(
        r#"
apiVersion: nasop.dev/v1alpha1
kind: ArchitectureSearch
metadata: {{name: cifar, namespace: nas, uid: 5f0c1d2e-3a4b-4c5d-8e9f-0a1b2c3d4e5f, generation: 1}}
spec:
  searchSpace: {{nb201: {{}}}}
  strategy: {{algorithm: Random, seed: 3}}
  budget: {budget}
  trial:
    image: trainer:1
    dataset: {{format: CIFAR10, path: /data}}
"#
    ))
}

/// A search of `budget` whose status says it runs at its generation (as after its first
/// reconcile).
fn running(budget: &str) -> ArchitectureSearch {
    let mut s = search(budget);
    s.status = Some(ArchitectureSearchStatus {
        phase: Some(SearchPhase::Running),
        observed_generation: Some(1),
        ..ArchitectureSearchStatus::default()
    });
    s
}

/// Caches for `s` (as a reconcile that saved it would, at resourceVersion 41, a moment ago)
/// a policy that made `proposals` proposals, the ChildTrials of those from `queued` on left
/// to create.
fn cached_policy(
    ctx: &crate::runtime::Context,
    s: &ArchitectureSearch,
    proposals: usize,
    queued: usize,
) {
    let uid = s.metadata.uid.clone().unwrap();
    let space = s.spec.search_space.build().unwrap();
    let mut st = strategy::build(&space, &s.spec.strategy, 0).unwrap();
    let asked = st.ask(proposals);
    ctx.keep_policy(
        &uid,
        crate::runtime::CachedPolicy {
            version: "41".into(),
            strategy: st,
            checkpoint: None,
            due: crate::runtime::Due {
                generation: s.metadata.generation,
                children: asked[queued..]
                    .iter()
                    .map(|p| child_trial(s, p).unwrap())
                    .collect(),
                ..Default::default()
            },
            trials: None,
        },
    );
    ctx.saved_policy(&uid);
}

async fn reconciled(
    s: ArchitectureSearch,
    script: impl FnOnce(ApiServer, Value) -> futures::future::BoxFuture<'static, ApiServer>,
) -> Action {
    reconciled_with_metrics(s, script).await.0
}

/// Also gives the metrics text after the reconcile.
async fn reconciled_with_metrics(
    s: ArchitectureSearch,
    script: impl FnOnce(ApiServer, Value) -> futures::future::BoxFuture<'static, ApiServer>,
) -> (Action, String) {
    let (ctx, server) = mock::context();
    let metrics = ctx.metrics.clone();
    let object = serde_json::to_value(&s).unwrap();
    let action = mock::run(
        async move { reconcile(Arc::new(s), ctx).await.unwrap() },
        script(server, object),
    )
    .await;
    (action, metrics.render())
}

fn status_of(seen: &mock::Seen) -> ArchitectureSearchStatus {
    serde_json::from_value(seen.body["status"].clone()).unwrap()
}

fn config_map(seen: &mock::Seen) -> ConfigMap {
    serde_json::from_value(seen.body.clone()).unwrap()
}

#[tokio::test]
async fn a_new_search_saves_its_policy_state_then_creates_parallelism_trials() {
    let s = search("{maxTrials: 3, parallelism: 2}");
    let expected: Vec<String> = {
        let space = s.spec.search_space.build().unwrap();
        let mut st = strategy::build(&space, &s.spec.strategy, 0).unwrap();
        st.ask(2).iter().map(|p| p.genotype.to_string()).collect()
    };
    reconciled(s, move |mut api, object| {
        Box::pin(async move {
            api.expect_list(MAPS, SELECTOR, vec![]).await;
            api.expect_list(TRIALS, SELECTOR, vec![]).await;
            // The head did not exist: created (a concurrent creator would get 409).
            let head = api
                .expect(
                    "POST",
                    &format!("{MAPS}?"),
                    &["fieldManager=nasop-operator"],
                    |s| (201, s.body.clone()),
                )
                .await;
            let head = config_map(&head);
            assert_eq!(head.metadata.name.as_deref(), Some("cifar-policy"));
            assert_eq!(
                head.metadata.owner_references.as_ref().unwrap()[0].kind,
                "ArchitectureSearch"
            );
            let state = from_config_maps("cifar", &[head]).unwrap();
            let space = nasop_crds::api::ArchitectureSearchSpec::clone(
                &serde_json::from_value::<ArchitectureSearch>(object.clone())
                    .unwrap()
                    .spec,
            );
            let restored = strategy::restore(
                &space.search_space.build().unwrap(),
                &space.strategy,
                &state,
            )
            .unwrap();
            assert_eq!(
                restored.pending(),
                vec![0, 1],
                "saved with both proposals pending"
            );
            for (i, g) in expected.iter().enumerate() {
                let t = api.expect_create(&format!("{TRIALS}/cifar-0000{i}?")).await;
                assert_eq!(t.body["spec"]["proposalId"], i);
                assert_eq!(t.body["metadata"]["labels"]["nasop.dev/search"], "cifar");
                let genotype: nasop_crds::Genotype =
                    serde_json::from_value(t.body["spec"]["genotype"].clone()).unwrap();
                assert_eq!(&genotype.to_string(), g);
            }
            let st = status_of(
                &api.expect_status(&format!("{SEARCH}/status?"), &object)
                    .await,
            );
            assert_eq!(st.phase, Some(SearchPhase::Running));
            assert_eq!(
                (st.trials.total, st.trials.pending, st.trials.running),
                (2, 2, 0)
            );
            assert_eq!(st.progress.as_deref(), Some("0/3"));
            assert_eq!(st.observed_generation, Some(1));
            let ev = api.expect_event("nas", "TrialsCreated").await;
            assert_eq!(ev.body["note"], "created cifar-00000, cifar-00001");
            api
        })
    })
    .await;
}

/// The policy state after `launched` proposals, and the ChildTrials of those proposals with
/// their rewards (`None`: still running).
fn mid_search(s: &ArchitectureSearch, rewards: &[Option<f64>]) -> (Vec<ConfigMap>, Vec<Value>) {
    let space = s.spec.search_space.build().unwrap();
    let mut st = strategy::build(&space, &s.spec.strategy, 0).unwrap();
    let proposals = st.ask(rewards.len());
    let mut maps = to_config_maps("cifar", "nas", &st.save());
    for m in &mut maps {
        m.metadata.resource_version = Some("41".into());
    }
    let children = proposals
        .iter()
        .zip(rewards)
        .map(|(p, r)| {
            let mut c = serde_json::to_value(child_trial(s, p).unwrap()).unwrap();
            c["status"] = match r {
                Some(r) => json!({"phase": "Succeeded", "reward": r, "metrics": {"accuracy": r, "trainSeconds": 60.0}}),
                None => json!({"phase": "Running", "attempts": 1}),
            };
            c
        })
        .collect();
    (maps, children)
}

#[tokio::test]
async fn finished_trials_are_consumed_once_and_the_budget_ends_the_search() {
    let s = search("{maxTrials: 2, parallelism: 2}");
    let (maps, children) = mid_search(&s, &[Some(0.71), Some(0.93)]);
    let maps_json: Vec<Value> = maps
        .iter()
        .map(|m| serde_json::to_value(m).unwrap())
        .collect();
    let (c1, m1) = (children.clone(), maps_json.clone());
    let saved = std::sync::Arc::new(std::sync::Mutex::new(None));
    let saved_in = saved.clone();
    let final_status = std::sync::Arc::new(std::sync::Mutex::new(None));
    let final_in = final_status.clone();
    let (action, metrics) = reconciled_with_metrics(s.clone(), move |mut api, object| {
        Box::pin(async move {
            // The ConfigMaps' metadata, the trials, then (no cached policy) their data.
            api.expect_list(MAPS, SELECTOR, m1.clone()).await;
            api.expect_list(TRIALS, SELECTOR, c1).await;
            api.expect_list(MAPS, SELECTOR, m1).await;
            // Both results told: the new state (one part: the head) is written.
            let head = config_map(
                &api.expect_replace(&format!("{MAPS}/cifar-policy?"), "42")
                    .await,
            );
            assert_eq!(
                head.metadata.resource_version.as_deref(),
                Some("41"),
                "written only if unchanged since read"
            );
            assert_eq!(
                head.metadata.annotations.as_ref().unwrap()["nasop.dev/policy-parts"],
                "1"
            );
            *saved_in.lock().unwrap() = Some(head);
            let st = status_of(
                &api.expect_status(&format!("{SEARCH}/status?"), &object)
                    .await,
            );
            *final_in.lock().unwrap() = Some(st.clone());
            assert_eq!(st.phase, Some(SearchPhase::Succeeded));
            assert_eq!((st.trials.succeeded, st.trials.total), (2, 2));
            let best = st.best.unwrap();
            assert_eq!(
                (best.trial_name.as_str(), best.reward),
                ("cifar-00001", 0.93)
            );
            assert_eq!(st.policy.as_ref().unwrap().trials_consumed, 2);
            let ready = st.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
            assert_eq!(
                (ready.status.as_str(), ready.reason.as_str()),
                ("True", "BudgetSpent")
            );
            api.expect_event("nas", "SearchSucceeded").await;
            api
        })
    })
    .await;
    assert_eq!(action, Action::await_change());
    for line in [
        "nasop_trials{namespace=\"nas\",phase=\"Succeeded\",search=\"cifar\"} 2",
        "nasop_trials{namespace=\"nas\",phase=\"Running\",search=\"cifar\"} 0",
        "nasop_best_reward{namespace=\"nas\",search=\"cifar\"} 0.93",
        "nasop_best_accuracy{namespace=\"nas\",search=\"cifar\"} 0.93",
        "nasop_reconciles_total{controller=\"architecturesearch\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    // Reconciled again with its final status (as the next trial event would): nothing is
    // read or written, and the metrics come from the status (a new process's, here).
    let mut finished = s.clone();
    finished.status = final_status.lock().unwrap().take();
    assert!(super::is_final(finished.status.as_ref().unwrap(), Some(1)));
    let (action, metrics) =
        reconciled_with_metrics(finished.clone(), |api, _| Box::pin(async move { api })).await;
    assert_eq!(action, Action::await_change());
    for line in [
        "nasop_trials{namespace=\"nas\",phase=\"Succeeded\",search=\"cifar\"} 2",
        "nasop_best_reward{namespace=\"nas\",search=\"cifar\"} 0.93",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    // Not final when blocked after the spec changed (an invalid spec is checked again).
    let blocked = crate::search::children::blocked_status(
        finished.status.as_ref(),
        "InvalidSpec",
        "invalid spec",
        Some(2),
        &crate::testing::now(),
    );
    assert_eq!(blocked.phase, Some(SearchPhase::Failed));
    assert!(blocked.completion_time.is_some());
    assert!(!super::is_final(&blocked, Some(2)));
    // Not final at another generation (the spec changed), nor while a child runs.
    assert!(!super::is_final(finished.status.as_ref().unwrap(), Some(2)));
    let mut running = finished.status.clone().unwrap();
    running.trials.running = 1;
    assert!(!super::is_final(&running, Some(1)));
    // Reconciled again with the new state but no status: nothing is told twice, nothing
    // is written.
    let head = saved.lock().unwrap().take().unwrap();
    let space = s.spec.search_space.build().unwrap();
    let state = from_config_maps("cifar", std::slice::from_ref(&head)).unwrap();
    let st = strategy::restore(&space, &s.spec.strategy, &state).unwrap();
    assert_eq!((st.counts().told, st.pending().len()), (2, 0));
    let mut done = s;
    done.status = None;
    reconciled(done, move |mut api, object| {
        Box::pin(async move {
            let maps = vec![serde_json::to_value(&head).unwrap()];
            api.expect_list(MAPS, SELECTOR, maps.clone()).await;
            api.expect_list(TRIALS, SELECTOR, children).await;
            api.expect_list(MAPS, SELECTOR, maps).await;
            let st = status_of(
                &api.expect_status(&format!("{SEARCH}/status?"), &object)
                    .await,
            );
            assert_eq!(st.policy.unwrap().trials_consumed, 2);
            api.expect_event("nas", "SearchSucceeded").await;
            api
        })
    })
    .await;
}

#[tokio::test]
async fn a_result_already_in_the_state_is_not_told_again_and_nothing_is_written() {
    let s = search("{maxTrials: 2, parallelism: 2}");
    let (maps, children) = mid_search(&s, &[Some(0.5), None]);
    // The saved state already holds trial 0's reward (a previous reconcile told it).
    let space = s.spec.search_space.build().unwrap();
    let mut st = strategy::restore(
        &space,
        &s.spec.strategy,
        &from_config_maps("cifar", &maps).unwrap(),
    )
    .unwrap();
    st.tell(0, 0.5).unwrap();
    let maps: Vec<Value> = to_config_maps("cifar", "nas", &st.save())
        .iter()
        .map(|m| serde_json::to_value(m).unwrap())
        .collect();
    let action = reconciled(s, move |mut api, object| {
        Box::pin(async move {
            api.expect_list(MAPS, SELECTOR, maps.clone()).await;
            api.expect_list(TRIALS, SELECTOR, children).await;
            api.expect_list(MAPS, SELECTOR, maps).await;
            // No ConfigMap write, no new trial: straight to the status.
            let st = status_of(
                &api.expect_status(&format!("{SEARCH}/status?"), &object)
                    .await,
            );
            assert_eq!(st.phase, Some(SearchPhase::Running));
            assert_eq!(
                (st.trials.succeeded, st.trials.running, st.trials.total),
                (1, 1, 2)
            );
            assert_eq!(st.policy.unwrap().trials_consumed, 1);
            api
        })
    })
    .await;
    assert_eq!(action, Action::requeue(super::RESYNC));
}

#[tokio::test]
async fn a_bad_spec_is_a_condition_and_an_event_and_creates_nothing() {
    // Passes the schema, fails the rules: parallelism above maxTrials.
    let s = search("{maxTrials: 2, parallelism: 5}");
    let action = reconciled(s, |mut api, object| {
        Box::pin(async move {
            let st = status_of(
                &api.expect_status(&format!("{SEARCH}/status?"), &object)
                    .await,
            );
            assert_eq!(st.phase, Some(SearchPhase::Failed));
            let degraded = st
                .conditions
                .iter()
                .find(|c| c.type_ == "Degraded")
                .unwrap();
            assert_eq!(
                (degraded.status.as_str(), degraded.reason.as_str()),
                ("True", "InvalidSpec")
            );
            assert!(
                degraded
                    .message
                    .contains("budget.parallelism must not exceed budget.maxTrials"),
                "{}",
                degraded.message
            );
            let ev = api.expect_event("nas", "InvalidSpec").await;
            assert_eq!(ev.body["type"], "Warning");
            api
        })
    })
    .await;
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn an_untrustworthy_policy_state_starts_nothing() {
    let s = search("{maxTrials: 4, parallelism: 2}");
    let (maps, children) = mid_search(&s, &[Some(0.5), None]);
    let mut head = serde_json::to_value(&maps[0]).unwrap();
    head["metadata"]["annotations"]["nasop.dev/policy-sha256"] = json!("00");
    reconciled(s, move |mut api, object| {
        Box::pin(async move {
            api.expect_list(MAPS, SELECTOR, vec![head.clone()]).await;
            api.expect_list(TRIALS, SELECTOR, children).await;
            api.expect_list(MAPS, SELECTOR, vec![head]).await;
            let st = status_of(
                &api.expect_status(&format!("{SEARCH}/status?"), &object)
                    .await,
            );
            let degraded = st
                .conditions
                .iter()
                .find(|c| c.type_ == "Degraded")
                .unwrap();
            assert_eq!(degraded.reason, "PolicyStateInvalid");
            assert!(degraded.message.contains("sha256"), "{}", degraded.message);
            api.expect_event("nas", "PolicyStateInvalid").await;
            api
        })
    })
    .await;
}

#[tokio::test]
async fn the_policy_saved_is_reused_and_a_write_over_another_writer_fails_with_409() {
    let s = search("{maxTrials: 3, parallelism: 2}");
    let (ctx, server) = mock::context();
    let object = serde_json::to_value(&s).unwrap();
    // First reconcile: a new search creates its head (the server answers resourceVersion 7).
    let created = std::sync::Arc::new(std::sync::Mutex::new((None, Vec::new())));
    let keep = created.clone();
    let first = {
        let (ctx, s) = (ctx.clone(), s.clone());
        async move { reconcile(Arc::new(s), ctx).await.unwrap() }
    };
    let server = {
        let (action, server) = mock::run_keeping(first, async move {
            let mut api = server;
            api.expect_list(MAPS, SELECTOR, vec![]).await;
            api.expect_list(TRIALS, SELECTOR, vec![]).await;
            let head = api
                .expect(
                    "POST",
                    &format!("{MAPS}?"),
                    &["fieldManager=nasop-operator"],
                    |s| {
                        let mut body = s.body.clone();
                        body["metadata"]["resourceVersion"] = json!("7");
                        (201, body)
                    },
                )
                .await;
            let mut head = head.body;
            head["metadata"]["resourceVersion"] = json!("7");
            keep.lock().unwrap().0 = Some(head);
            api
        })
        .await;
        // Nothing else is sent; the search comes back at once for the writes that follow.
        assert_eq!(action, Action::requeue(std::time::Duration::ZERO));
        server
    };
    // The reconcile that follows at once creates them, writes the status and records the
    // Event.
    let keep = created.clone();
    let follow = {
        let (ctx, s) = (ctx.clone(), s.clone());
        async move { reconcile(Arc::new(s), ctx).await.unwrap() }
    };
    let server = {
        let object = object.clone();
        mock::run_keeping(follow, async move {
            let mut api = server;
            let mut trials = Vec::new();
            for i in 0..2 {
                trials.push(
                    api.expect_create(&format!("{TRIALS}/cifar-0000{i}?"))
                        .await
                        .body,
                );
            }
            api.expect_status(&format!("{SEARCH}/status?"), &object)
                .await;
            api.expect_event("nas", "TrialsCreated").await;
            keep.lock().unwrap().1 = trials;
            api
        })
        .await
        .1
    };
    let (head, trials) = created.lock().unwrap().clone();
    let head = head.unwrap();
    // Second reconcile: the cached policy is used, so the ConfigMaps are neither listed nor
    // read; nothing changed, nothing is written.
    let second = {
        let (ctx, s) = (ctx.clone(), s.clone());
        async move { reconcile(Arc::new(s), ctx).await.unwrap() }
    };
    let server = {
        let trials = trials.clone();
        let object = object.clone();
        mock::run_keeping(second, async move {
            let mut api = server;
            api.expect_list(TRIALS, SELECTOR, trials).await;
            api.expect_status(&format!("{SEARCH}/status?"), &object)
                .await;
            api
        })
        .await
        .1
    };
    // Third: both trials finished, and meanwhile another writer saved (the head is at 8).
    // To write, the ConfigMaps are listed (which parts exist); the write of the head carries
    // the cached resourceVersion 7, not the listed 8, and gets 409 Conflict: the reconcile
    // fails before it creates any child, and drops the cached policy.
    let mut moved = head.clone();
    moved["metadata"]["resourceVersion"] = json!("8");
    let finished: Vec<Value> = trials
        .iter()
        .map(|t| {
            let mut t = t.clone();
            t["status"] =
                json!({"phase": "Succeeded", "reward": 0.5, "metrics": {"accuracy": 0.5}});
            t
        })
        .collect();
    let third = {
        let (ctx, s) = (ctx.clone(), s.clone());
        async move { reconcile(Arc::new(s), ctx).await }
    };
    let server = {
        let (finished, moved) = (finished.clone(), moved.clone());
        mock::run_keeping(third, async move {
            let mut api = server;
            api.expect_list(TRIALS, SELECTOR, finished).await;
            api.expect_list(MAPS, SELECTOR, vec![moved]).await;
            let put = api
                .expect(
                    "PUT",
                    &format!("{MAPS}/cifar-policy?"),
                    &["fieldManager=nasop-operator"],
                    |_| {
                        (
                            409,
                            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                "reason": "Conflict", "code": 409,
                                "message": "the object has been modified"}),
                        )
                    },
                )
                .await;
            assert_eq!(put.body["metadata"]["resourceVersion"], "7");
            api
        })
        .await
    };
    let (third, server) = server;
    assert!(
        matches!(&third, Err(crate::runtime::Error::Kube(kube::Error::Api(e))) if e.code == 409),
        "{third:?}"
    );
    // Fourth: with no cached policy the ConfigMaps are listed and the state read in full.
    let fourth = {
        let ctx = ctx.clone();
        async move { reconcile(Arc::new(s), ctx).await.unwrap() }
    };
    let server = mock::run_keeping(fourth, async move {
        let mut api = server;
        api.expect_list(MAPS, SELECTOR, vec![moved.clone()]).await;
        api.expect_list(TRIALS, SELECTOR, trials).await;
        api.expect_list(MAPS, SELECTOR, vec![moved]).await;
        api.expect_status(&format!("{SEARCH}/status?"), &object)
            .await;
        api
    })
    .await
    .1;
    server.done();
}

#[test]
fn the_learner_may_lag_by_the_updates_of_the_children_in_flight() {
    use super::lag_limit;
    // A sequential search, and one whose children fit in a batch: never behind.
    assert_eq!(lag_limit(1, 5), 0);
    assert_eq!(lag_limit(5, 5), 0);
    assert_eq!(lag_limit(6, 5), 1);
    // NASNet-scale: 450 children in flight, PPO batch 5.
    assert_eq!(lag_limit(450, 5), 89);
    assert_eq!(lag_limit(450, 1), 449);
    // Out-of-range values (the CRD schema refuses them) do not underflow.
    assert_eq!(lag_limit(0, 5), 0);
    assert_eq!(lag_limit(-3, 0), 0);
}

#[tokio::test]
async fn while_a_policy_write_waits_results_are_told_in_memory_and_nothing_is_written() {
    let mut s = search("{maxTrials: 4, parallelism: 2}");
    s.status = Some(ArchitectureSearchStatus {
        phase: Some(SearchPhase::Running),
        ..ArchitectureSearchStatus::default()
    });
    let (maps, children) = mid_search(&s, &[Some(0.5), None]);
    let maps: Vec<Value> = maps
        .iter()
        .map(|m| serde_json::to_value(m).unwrap())
        .collect();
    let (ctx, server) = mock::context();
    // This process wrote the search's policy state a moment ago.
    ctx.saved_policy(s.metadata.uid.as_deref().unwrap());
    let uid = s.metadata.uid.clone().unwrap();
    let keep = ctx.clone();
    let action = mock::run(
        async move { reconcile(Arc::new(s), keep).await.unwrap() },
        async move {
            let mut api = server;
            api.expect_list(MAPS, SELECTOR, maps.clone()).await;
            api.expect_list(TRIALS, SELECTOR, children).await;
            api.expect_list(MAPS, SELECTOR, maps).await;
            // No policy write, no child, and no status write: all wait for the write.
            api
        },
    )
    .await;
    // Requeued for when the wait ends, under `MIN_SAVE_INTERVAL` (500 ms) from now (`Action`
    // shows its delay only in its Debug form).
    let shown = format!("{action:?}");
    let ms: f64 = shown
        .split_once("Some(")
        .and_then(|(_, rest)| rest.split_once("ms)"))
        .and_then(|(ms, _)| ms.parse().ok())
        .unwrap_or_else(|| panic!("{shown}"));
    assert!(ms > 0.0 && ms <= 500.0, "{shown}");
    // The result is in the cached policy, to be saved when the wait ends.
    let cached = ctx.take_policy(&uid).unwrap();
    assert_eq!(cached.strategy.counts().told, 1);
    assert_eq!(cached.version, "41");
}

#[tokio::test]
async fn while_a_policy_write_waits_a_cached_search_is_not_reconciled_until_the_wait_ends() {
    let s = running("{maxTrials: 4, parallelism: 2}");
    let uid = s.metadata.uid.clone().unwrap();
    let cache = |ctx: &crate::runtime::Context, proposals: usize| {
        cached_policy(ctx, &s, proposals, proposals);
    };
    let (ctx, server) = mock::context();
    cache(&ctx, 2);
    let action = mock::run(reconcile(Arc::new(s.clone()), ctx.clone()), async move {
        // No request at all: nothing is read, told, written or created.
        server
    })
    .await
    .unwrap();
    assert_ne!(action, Action::requeue(super::RESYNC));
    assert!(format!("{action:?}").contains("ms)"), "{action:?}");
    assert_eq!(ctx.take_policy(&uid).unwrap().strategy.pending().len(), 2);

    // A changed spec (generation 2, status at 1) is reconciled at once.
    let mut changed = s.clone();
    changed.metadata.generation = Some(2);
    // The writes the reconcile at generation 1 left (both creates) are dropped: a full
    // reconcile computes them anew.
    let (ctx, server) = mock::context();
    cached_policy(&ctx, &s, 2, 0);
    let (action, server) = mock::run_keeping(
        reconcile(Arc::new(changed.clone()), ctx.clone()),
        async move {
            let mut api = server;
            // The trials are read: the proposals saved are found without ChildTrials. Nothing
            // new starts (the write still waits), and the status waits with it.
            api.expect_list(TRIALS, SELECTOR, vec![]).await;
            api
        },
    )
    .await;
    // Their creates are left to the reconcile that follows at once.
    assert_eq!(action.unwrap(), Action::requeue(std::time::Duration::ZERO));
    let due = ctx.take_policy(&uid).unwrap();
    assert_eq!(due.due.generation, Some(2));
    assert_eq!(due.due.children.len(), 2);
    assert_eq!(due.due.status, None);
    ctx.keep_policy(&uid, due);
    let (action, server) = mock::run_keeping(reconcile(Arc::new(changed), ctx.clone()), {
        let mut api = server;
        async move {
            for i in 0..2 {
                api.expect_create(&format!("{TRIALS}/cifar-0000{i}?")).await;
            }
            api.expect_event("nas", "TrialsCreated").await;
            api
        }
    })
    .await;
    server.done();
    // Then back when the write may be made.
    assert!(format!("{action:?}").contains("ms)"), "{action:?}");
    assert!(ctx.take_policy(&uid).unwrap().due.is_empty());
}

/// Answers the next `creates` ChildTrial creates (each echoed, or answered `code` with a
/// Status when not 201) and, when `object` is given, the status write sent alongside them,
/// in whatever order they come; returns the names created in request order.
async fn creates_and_status(
    api: &mut ApiServer,
    creates: usize,
    code: u16,
    object: Option<&Value>,
) -> (Vec<String>, Option<ArchitectureSearchStatus>) {
    let (mut names, mut status) = (Vec::new(), None);
    let requests = creates + usize::from(object.is_some());
    for _ in 0..requests {
        let seen = api
            .next("a ChildTrial create or the status write", |s| {
                if s.method == "PATCH" {
                    let mut answer = object.cloned().unwrap_or(Value::Null);
                    answer["status"] = s.body["status"].clone();
                    (200, answer)
                } else if code == 201 {
                    (201, s.body.clone())
                } else {
                    (
                        code,
                        json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                               "status": "Failure", "message": "etcd is down", "code": code}),
                    )
                }
            })
            .await;
        match seen.method.as_str() {
            "POST" => {
                assert!(seen.uri.starts_with(&format!("{TRIALS}?")), "{}", seen.uri);
                names.push(seen.body["metadata"]["name"].as_str().unwrap().to_string());
            }
            "PATCH" => {
                assert!(object.is_some(), "an unexpected status write");
                assert!(seen.uri.starts_with(&format!("{SEARCH}/status?")));
                status = Some(status_of(&seen));
            }
            other => panic!("unexpected {other} {}", seen.uri),
        }
    }
    (names, status)
}

fn trial_names(ids: std::ops::Range<usize>) -> Vec<String> {
    ids.map(|i| format!("cifar-{i:05}")).collect()
}

#[tokio::test]
async fn a_reconcile_creates_at_most_creates_per_reconcile_children_and_the_next_ones_the_rest() {
    use super::CREATES_PER_RECONCILE as K;
    assert_eq!(K, 4);
    let mut s = search("{maxTrials: 30, parallelism: 20}");
    let uid = s.metadata.uid.clone().unwrap();
    let object = serde_json::to_value(&s).unwrap();
    let (ctx, server) = mock::context();
    // First reconcile: the state naming all 20 proposals is saved, and nothing else is sent;
    // the search comes back at once for the writes that follow.
    let (action, server) =
        mock::run_keeping(reconcile(Arc::new(s.clone()), ctx.clone()), async move {
            let mut api = server;
            api.expect_list(MAPS, SELECTOR, vec![]).await;
            api.expect_list(TRIALS, SELECTOR, vec![]).await;
            api.expect("POST", &format!("{MAPS}?"), &[], |s| {
                let mut body = s.body.clone();
                body["metadata"]["resourceVersion"] = json!("7");
                (201, body)
            })
            .await;
            api
        })
        .await;
    assert_eq!(action.unwrap(), Action::requeue(std::time::Duration::ZERO));
    let cached = ctx.take_policy(&uid).unwrap();
    let queued: Vec<String> = cached
        .due
        .children
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(queued, trial_names(0..20));
    assert_eq!(cached.strategy.pending().len(), 20);
    assert_eq!(cached.due.generation, Some(1));
    ctx.keep_policy(&uid, cached);

    // The next reconcile writes the status, which counts all 20 as pending, alongside the
    // first 4 creates, then records the Event naming all 20.
    let (action, server) =
        mock::run_keeping(reconcile(Arc::new(s.clone()), ctx.clone()), async move {
            let mut api = server;
            let (names, status) = creates_and_status(&mut api, K, 201, Some(&object)).await;
            assert_eq!(names, trial_names(0..K));
            let status = status.unwrap();
            assert_eq!(
                (
                    status.trials.total,
                    status.trials.pending,
                    status.trials.running
                ),
                (20, 20, 0)
            );
            let ev = api.expect_event("nas", "TrialsCreated").await;
            assert_eq!(
                ev.body["note"],
                format!(
                    "created {}; 16 follow: {}",
                    trial_names(0..K).join(", "),
                    trial_names(K..20).join(", ")
                )
            );
            api
        })
        .await;
    assert_eq!(action.unwrap(), Action::requeue(std::time::Duration::ZERO));

    // The reconciles that follow (the write waits: `MIN_SAVE_INTERVAL`) create the next 4
    // each, and send nothing else: no read, no write, no status, no Event (the
    // first one named them).
    s = running("{maxTrials: 30, parallelism: 20}");
    let mut server = server;
    for first in (K..20).step_by(K) {
        let (expected, more) = (trial_names(first..first + K), first + K < 20);
        let (action, back) =
            mock::run_keeping(reconcile(Arc::new(s.clone()), ctx.clone()), async move {
                let mut api = server;
                let (names, _) = creates_and_status(&mut api, expected.len(), 201, None).await;
                assert_eq!(names, expected);
                api
            })
            .await;
        server = back;
        let action = action.unwrap();
        if more {
            assert_eq!(action, Action::requeue(std::time::Duration::ZERO));
        } else {
            // Then back when the write may be made (under 500 ms from now).
            assert_ne!(action, Action::requeue(std::time::Duration::ZERO));
            assert!(format!("{action:?}").contains("ms)"), "{action:?}");
        }
    }
    server.done();
    let cached = ctx.take_policy(&uid).unwrap();
    assert!(cached.due.is_empty());
    assert_eq!(cached.version, "7");
    assert_eq!(cached.strategy.pending().len(), 20);
}

#[tokio::test]
async fn a_failed_create_of_a_queued_child_stays_due_with_the_event_for_the_retry() {
    use super::CREATES_PER_RECONCILE as K;
    let s = running("{maxTrials: 30, parallelism: 20}");
    let uid = s.metadata.uid.clone().unwrap();
    let (ctx, server) = mock::context();
    cached_policy(&ctx, &s, 20, 4);
    let mut cached = ctx.take_policy(&uid).unwrap();
    cached.due.notes.push(crate::trial::plan::Note {
        warning: false,
        reason: "TrialsCreated",
        message: "created cifar-00004, ...".into(),
    });
    ctx.keep_policy(&uid, cached);
    // The API server fails the 4 creates (503): the reconcile fails (retried with backoff by
    // the error policy), no Event claims them created, and they stay due, in order, with the
    // Event and the rest.
    let (result, server) =
        mock::run_keeping(reconcile(Arc::new(s.clone()), ctx.clone()), async move {
            let mut api = server;
            let (names, _) = creates_and_status(&mut api, K, 503, None).await;
            assert_eq!(names, trial_names(4..4 + K));
            api
        })
        .await;
    assert!(result.is_err());
    let cached = ctx.take_policy(&uid).unwrap();
    let due: Vec<String> = cached
        .due
        .children
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(due, trial_names(4..20));
    assert_eq!(cached.due.notes.len(), 1);
    assert_eq!(cached.strategy.pending().len(), 20);
    ctx.keep_policy(&uid, cached);
    // The retry creates them, then records the Event; the rest follow.
    let (action, server) = mock::run_keeping(reconcile(Arc::new(s), ctx.clone()), async move {
        let mut api = server;
        let (names, _) = creates_and_status(&mut api, K, 201, None).await;
        assert_eq!(names, trial_names(4..4 + K));
        api.expect_event("nas", "TrialsCreated").await;
        api
    })
    .await;
    server.done();
    assert_eq!(action.unwrap(), Action::requeue(std::time::Duration::ZERO));
    let cached = ctx.take_policy(&uid).unwrap();
    assert_eq!(cached.due.children.len(), 20 - 4 - K);
    assert!(cached.due.notes.is_empty());
}

#[tokio::test]
async fn a_search_that_ends_deletes_the_parts_left_before_its_final_status() {
    // The last results were saved, but the process stopped before it deleted the replaced
    // state's part: the next reconcile, with nothing to write, finds the part, deletes it, and
    // only then writes the final status (after which the search is not reconciled again).
    let s = search("{maxTrials: 2, parallelism: 2}");
    let space = s.spec.search_space.build().unwrap();
    let (_, children) = mid_search(&s, &[Some(0.71), Some(0.93)]);
    let mut st = strategy::build(&space, &s.spec.strategy, 0).unwrap();
    let proposals = st.ask(2);
    for (p, r) in proposals.iter().zip([0.71, 0.93]) {
        st.tell(p.id, r).unwrap();
    }
    let mut head = to_config_maps("cifar", "nas", &st.save()).pop().unwrap();
    head.metadata.resource_version = Some("42".into());
    let mut stray = head.clone();
    stray.metadata.name = Some("cifar-policy-0123abcd-1".into());
    stray.metadata.annotations = None;
    let listed: Vec<Value> = [&head, &stray]
        .iter()
        .map(|m| serde_json::to_value(m).unwrap())
        .collect();
    let action = reconciled(s, move |mut api, object| {
        Box::pin(async move {
            api.expect_list(MAPS, SELECTOR, listed.clone()).await;
            api.expect_list(TRIALS, SELECTOR, children).await;
            api.expect_list(MAPS, SELECTOR, listed).await;
            api.expect(
                "DELETE",
                &format!("{MAPS}/cifar-policy-0123abcd-1"),
                &[],
                |_| {
                    (
                        200,
                        json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                               "status": "Success"}),
                    )
                },
            )
            .await;
            let st = status_of(
                &api.expect_status(&format!("{SEARCH}/status?"), &object)
                    .await,
            );
            assert_eq!(st.phase, Some(SearchPhase::Succeeded));
            assert!(super::is_final(&st, Some(1)));
            api.expect_event("nas", "SearchSucceeded").await;
            api
        })
    })
    .await;
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn the_parts_a_save_replaces_are_deleted_by_the_reconcile_that_follows() {
    let s = running("{maxTrials: 4, parallelism: 2}");
    let uid = s.metadata.uid.clone().unwrap();
    let object = serde_json::to_value(&s).unwrap();
    let (maps, children) = mid_search(&s, &[Some(0.5), None]);
    // A part no head refers to (as a writer stopped half-way leaves one).
    let mut stray = maps[0].clone();
    stray.metadata.name = Some("cifar-policy-0123abcd-1".into());
    stray.metadata.annotations = None;
    let listed: Vec<Value> = maps
        .iter()
        .chain([&stray])
        .map(|m| serde_json::to_value(m).unwrap())
        .collect();
    let (ctx, server) = mock::context();
    // The result is told and a child launched: the state is written, and nothing else yet.
    let (action, server) =
        mock::run_keeping(reconcile(Arc::new(s.clone()), ctx.clone()), async move {
            let mut api = server;
            api.expect_list(MAPS, SELECTOR, listed.clone()).await;
            api.expect_list(TRIALS, SELECTOR, children).await;
            api.expect_list(MAPS, SELECTOR, listed).await;
            api.expect_replace(&format!("{MAPS}/cifar-policy?"), "42")
                .await;
            api
        })
        .await;
    assert_eq!(action.unwrap(), Action::requeue(std::time::Duration::ZERO));
    let cached = ctx.take_policy(&uid).unwrap();
    assert_eq!(cached.due.stale_parts, ["cifar-policy-0123abcd-1"]);
    assert_eq!(cached.due.children.len(), 1);
    assert!(cached.due.status.is_some());
    ctx.keep_policy(&uid, cached);
    // The reconcile that follows creates the child, writes the status and deletes the stray
    // part, all at once, then records the Event.
    let (action, server) =
        mock::run_keeping(reconcile(Arc::new(s.clone()), ctx.clone()), async move {
            let mut api = server;
            let mut seen = Vec::new();
            for _ in 0..3 {
                let request = api
                    .next("the create, the status write or the delete", |s| {
                        match s.method.as_str() {
                            "POST" => (201, s.body.clone()),
                            "PATCH" => {
                                let mut answer = object.clone();
                                answer["status"] = s.body["status"].clone();
                                (200, answer)
                            }
                            "DELETE" => (
                                200,
                                json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                                       "status": "Success"}),
                            ),
                            _ => (500, json!({})),
                        }
                    })
                    .await;
                seen.push(format!(
                    "{} {}",
                    request.method,
                    request.uri.split('?').next().unwrap()
                ));
            }
            seen.sort();
            assert_eq!(
                seen,
                [
                    format!("DELETE {MAPS}/cifar-policy-0123abcd-1"),
                    format!("PATCH {SEARCH}/status"),
                    format!("POST {TRIALS}"),
                ]
            );
            api.expect_event("nas", "TrialsCreated").await;
            api
        })
        .await;
    server.done();
    // Then back when the next write may be made.
    let action = action.unwrap();
    assert!(format!("{action:?}").contains("ms)"), "{action:?}");
    assert!(ctx.take_policy(&uid).unwrap().due.is_empty());
}
