//! The operator against a real kube-apiserver + etcd (built from Go modules, see
//! `tests/apiserver/`), with the process-kubelet running the real `nasop-trainer`: CRDs,
//! examples, and whole searches with real training on the shipped Fashion-MNIST subset.
//! Without Go these tests skip (one line each); in CI they must run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use nasop::metrics::Metrics;
use nasop::runtime::{self, Context, Scope};
use nasop::search::policy_store::Stored;
use nasop_crds::api::{ArchitectureSearch, ChildTrial, LatencyProbe, SearchPhase, TrialPhase};
use nasop_tests::apiserver::{install_crds, namespace, ApiServer};
use nasop_tests::kubelet::{Kubelet, KubeletConfig};
use nasop_tests::workspace_root;

/// A binary `name` of package `package` from this build. `make test` (`cargo test
/// --workspace`) builds both binaries with the tests (their packages have integration tests);
/// a partial run builds a missing one here.
fn binary(package: &str, name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join(name);
    if !path.is_file() {
        let mut cmd = std::process::Command::new(env!("CARGO"));
        cmd.args(["build", "-q", "-p", package, "--bin", name]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        assert!(cmd
            .current_dir(workspace_root())
            .status()
            .unwrap()
            .success());
    }
    path
}

fn trainer() -> PathBuf {
    binary("nasop-trainer", "nasop-trainer")
}

async fn start_server() -> Option<ApiServer> {
    tokio::task::spawn_blocking(ApiServer::start).await.unwrap()
}

struct Operator {
    task: tokio::task::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Operator {
    fn start(client: Client, ns: &str, metrics: Arc<Metrics>) -> Self {
        let ctx = Arc::new(Context::new(client, metrics, Some("e2e".into())));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let scope = Scope {
            namespaces: vec![ns.to_string()],
            concurrency: 4,
        };
        let task = tokio::spawn(runtime::run(ctx, scope, async move {
            let _ = rx.await;
        }));
        Self {
            task,
            stop: Some(tx),
        }
    }

    /// Kills the operator mid-flight (drops its tasks, as a SIGKILL would stop it).
    fn kill(mut self) {
        self.stop.take();
        self.task.abort();
    }
}

fn search_manifest(name: &str, max_trials: i32, extra: &str) -> ArchitectureSearch {
    let text = format!(
        r#"
apiVersion: nasop.dev/v1alpha1
kind: ArchitectureSearch
metadata: {{name: {name}}}
spec:
  searchSpace: {{nb201: {{channels: 8, cellsPerStage: 1}}}}
  strategy: {{algorithm: PPO, seed: 7, controller: {{batchSize: 2}}}}
  budget: {{maxTrials: {max_trials}, parallelism: 2, maxFailedTrials: 2}}
  objective:
    latency: {{targetMs: 1.0, deviceClass: cpu-test}}
  trial:
    image: nasop-trainer:test
    args: ["--threads", "1"]
    dataset: {{format: FashionMNIST, path: /data/fashion-mnist, trainExamples: 512, validationExamples: 256}}
    epochs: 1
    batchSize: 64
  probe: {{repeats: 5, warmup: 1}}
{extra}"#
    );
    let value: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    serde_json::from_value(value).unwrap()
}

async fn wait_phase(
    searches: &Api<ArchitectureSearch>,
    name: &str,
    limit: Duration,
) -> ArchitectureSearch {
    let start = Instant::now();
    loop {
        let s = searches.get(name).await.unwrap();
        if matches!(
            s.status.as_ref().and_then(|s| s.phase),
            Some(SearchPhase::Succeeded) | Some(SearchPhase::Failed)
        ) {
            return s;
        }
        assert!(
            start.elapsed() < limit,
            "search {name} not finished after {limit:?}: {:?}",
            s.status
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A real API server with the CRDs, namespace `ns` and a process-kubelet running its pods.
struct Cluster {
    server: ApiServer,
    client: Client,
    kubelet: Kubelet,
    /// The kubelet's working directories (pods' `/tmp` and termination logs).
    _work: tempfile::TempDir,
}

/// [`Cluster`] for `ns`; `None` when the API-server tests are skipped (no Go).
async fn cluster(ns: &str) -> Option<Cluster> {
    let server = start_server().await?;
    let client = server.client().await;
    install_crds(&client).await;
    namespace(&client, ns).await;
    let work = tempfile::tempdir().unwrap();
    let kubelet = kubelet(&client, ns, work.path());
    Some(Cluster {
        server,
        client,
        kubelet,
        _work: work,
    })
}

fn kubelet(client: &Client, ns: &str, work: &std::path::Path) -> Kubelet {
    Kubelet::start(
        client.clone(),
        ns,
        KubeletConfig {
            trainer: trainer(),
            paths: vec![(
                "/data/fashion-mnist".into(),
                workspace_root().join("data/fashion-mnist"),
            )],
            work: work.to_path_buf(),
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_search_runs_to_the_end_against_a_real_api_server() {
    let Some(Cluster {
        server: _server,
        client,
        kubelet,
        _work,
    }) = cluster("e2e").await
    else {
        return;
    };
    let metrics = Arc::new(Metrics::new());
    let operator = Operator::start(client.clone(), "e2e", metrics.clone());
    let searches: Api<ArchitectureSearch> = Api::namespaced(client.clone(), "e2e");
    searches
        .create(&PostParams::default(), &search_manifest("fmnist", 4, ""))
        .await
        .unwrap();
    let done = wait_phase(&searches, "fmnist", Duration::from_secs(600)).await;
    let status = done.status.clone().unwrap();
    assert_eq!(status.phase, Some(SearchPhase::Succeeded), "{status:?}");
    let trials: Api<ChildTrial> = Api::namespaced(client.clone(), "e2e");
    let all = trials.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(all.len(), 4, "exactly maxTrials trials");
    let mut best: Option<(f64, String)> = None;
    for t in &all {
        let s = t.status.as_ref().unwrap();
        assert_eq!(s.phase, Some(TrialPhase::Succeeded), "{s:?}");
        let m = s.metrics.as_ref().unwrap();
        let acc = m.accuracy.unwrap();
        // One epoch on 512 images: some children stay near chance (0.1); all are fractions.
        assert!((0.0..=1.0).contains(&acc), "accuracy {acc}");
        assert_eq!((m.epochs, m.learning_curve.len()), (Some(1), 1));
        assert!(m.params.unwrap() > 0 && m.macs.unwrap() > 0);
        let latency = s.latency.as_ref().unwrap().median_ms;
        assert!(latency > 0.0);
        let reward = s.reward.unwrap();
        let expected = acc * (latency / 1.0f64).powf(-0.07);
        assert!((reward - expected).abs() < 1e-9, "{reward} vs {expected}");
        if best.as_ref().is_none_or(|(r, _)| reward > *r) {
            best = Some((reward, t.metadata.name.clone().unwrap()));
        }
    }
    let b = status.best.unwrap();
    assert_eq!((b.reward, b.trial_name), best.unwrap());
    assert_eq!((status.trials.succeeded, status.trials.total), (4, 4));
    let policy = status.policy.unwrap();
    assert_eq!(policy.trials_consumed, 4);
    assert_eq!(
        policy.updates, 2,
        "PPO batch 2: two updates from four rewards"
    );
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "e2e");
    assert!(maps.get_opt("fmnist-policy").await.unwrap().is_some());
    let probes: Api<LatencyProbe> = Api::namespaced(client.clone(), "e2e");
    assert_eq!(
        probes
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        4
    );
    // Finished trials leave no pods behind.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "e2e");
    let start = Instant::now();
    while !pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty()
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "pods left behind"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let text = metrics.render();
    assert!(
        text.contains("nasop_trials{namespace=\"e2e\",phase=\"Succeeded\",search=\"fmnist\"} 4"),
        "{text}"
    );
    assert!(text.contains("nasop_policy_updates_total{namespace=\"e2e\",search=\"fmnist\"}"));
    assert_eq!(
        kubelet.started.lock().unwrap().len(),
        8,
        "4 trainer + 4 probe pods"
    );
    operator.kill();
}

/// The strategy of `done` (a sequential search) replayed without interruption: asked one
/// proposal at a time and told each trial's reward in id order. Asserts that every trial of
/// `all` (sorted by proposal id) has the genotype the replay proposed.
fn uninterrupted_replay(
    done: &ArchitectureSearch,
    all: &[ChildTrial],
) -> Box<dyn nasop::strategy::Strategy> {
    let space = done.spec.search_space.build().unwrap();
    let seed = nasop::search::children::derived_seed(done.metadata.uid.as_deref().unwrap());
    let mut reference = nasop::strategy::build(&space, &done.spec.strategy, seed).unwrap();
    for t in all {
        let p = reference.ask(1).remove(0);
        assert_eq!(
            p.genotype, t.spec.genotype,
            "proposal {}",
            t.spec.proposal_id
        );
        reference
            .tell(p.id, t.status.as_ref().unwrap().reward.unwrap())
            .unwrap();
    }
    reference
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_operator_resumes_without_duplicates_or_lost_results() {
    let Some(Cluster {
        server: _server,
        client,
        kubelet: _kubelet,
        _work,
    }) = cluster("restart").await
    else {
        return;
    };
    // Sequential (parallelism 1) so that the proposals depend only on the rewards.
    let mut search = search_manifest("again", 5, "");
    search.spec.objective.latency = None;
    search.spec.budget.parallelism = 1;
    let searches: Api<ArchitectureSearch> = Api::namespaced(client.clone(), "restart");
    searches
        .create(&PostParams::default(), &search)
        .await
        .unwrap();
    let trials: Api<ChildTrial> = Api::namespaced(client.clone(), "restart");
    let operator = Operator::start(client.clone(), "restart", Arc::new(Metrics::new()));
    // Kill it as soon as the second trial has a result (before or after the search saw it).
    let start = Instant::now();
    loop {
        let done = trials
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .filter(|t| t.status.as_ref().and_then(|s| s.phase) == Some(TrialPhase::Succeeded))
            .count();
        if done >= 2 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(300), "no progress");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    operator.kill();
    let again = Operator::start(client.clone(), "restart", Arc::new(Metrics::new()));
    let done = wait_phase(&searches, "again", Duration::from_secs(600)).await;
    let status = done.status.clone().unwrap();
    assert_eq!(status.phase, Some(SearchPhase::Succeeded));
    let mut all = trials.list(&ListParams::default()).await.unwrap().items;
    all.sort_by_key(|t| t.spec.proposal_id);
    let ids: Vec<i64> = all.iter().map(|t| t.spec.proposal_id).collect();
    assert_eq!(ids, vec![0, 1, 2, 3, 4], "no duplicate, none missing");
    assert_eq!(status.policy.as_ref().unwrap().trials_consumed, 5);
    // The proposals are those of an uninterrupted search given the same rewards in order.
    let reference = uninterrupted_replay(&done, &all);
    assert_eq!(
        status.policy.unwrap().updates,
        reference.counts().updates as i64
    );
    again.kill();
}

/// Issue 10's fault test: the operator killed at 10 random points of one search (seeded, so
/// a failure reproduces), then run to the end. Exactly maxTrials trials, proposal ids
/// 0..maxTrials, each result told to the policy once and in order (the proposals and update
/// count equal an uninterrupted replay with the same rewards), the policy state readable and
/// no stale policy part left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_kills_at_random_points_lose_nothing_and_duplicate_nothing() {
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    let Some(Cluster {
        server: _server,
        client,
        kubelet: _kubelet,
        _work,
    }) = cluster("kills").await
    else {
        return;
    };
    let mut search = search_manifest("kills", 6, "");
    search.spec.objective.latency = None;
    search.spec.budget.parallelism = 1;
    let searches: Api<ArchitectureSearch> = Api::namespaced(client.clone(), "kills");
    searches
        .create(&PostParams::default(), &search)
        .await
        .unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(10);
    let mut kill_points = Vec::new();
    for _ in 0..10 {
        let operator = Operator::start(client.clone(), "kills", Arc::new(Metrics::new()));
        let ms = 50 + rng.next_u64() % 2450;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        operator.kill();
        kill_points.push(ms);
    }
    let last = Operator::start(client.clone(), "kills", Arc::new(Metrics::new()));
    let done = wait_phase(&searches, "kills", Duration::from_secs(600)).await;
    last.kill();
    let status = done.status.clone().unwrap();
    assert_eq!(status.phase, Some(SearchPhase::Succeeded), "{status:?}");
    let trials: Api<ChildTrial> = Api::namespaced(client.clone(), "kills");
    let mut all = trials.list(&ListParams::default()).await.unwrap().items;
    all.sort_by_key(|t| t.spec.proposal_id);
    let ids: Vec<i64> = all.iter().map(|t| t.spec.proposal_id).collect();
    assert_eq!(
        ids,
        (0..6).collect::<Vec<_>>(),
        "kills after {kill_points:?} ms"
    );
    let policy = status.policy.clone().unwrap();
    assert_eq!(policy.trials_consumed, 6);
    let reference = uninterrupted_replay(&done, &all);
    assert_eq!(policy.updates, reference.counts().updates as i64);
    let space = done.spec.search_space.build().unwrap();
    // The stored state is the one of the replay, and nothing else is stored.
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "kills");
    let stored = maps
        .list(&ListParams::default().labels("nasop.dev/search=kills"))
        .await
        .unwrap()
        .items;
    let referenced = nasop::search::policy_store::referenced_parts("kills", &stored);
    assert_eq!(stored.len(), 1 + referenced.len(), "stale parts left");
    // A PPO state: a checkpoint and the journal of the results told since.
    let Ok(Stored::Journal { bytes, journal, .. }) =
        nasop::search::policy_store::read_stored("kills", &stored)
    else {
        panic!("a checkpoint and a journal")
    };
    let restored =
        nasop::strategy::restore_journal(&space, &done.spec.strategy, &bytes, &journal).unwrap();
    assert_eq!(restored.counts(), reference.counts());
    assert!(restored.pending().is_empty(), "no proposal waits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn evictions_are_retried_and_failures_end_the_search_cleanly() {
    let Some(Cluster {
        server: _server,
        client,
        kubelet,
        _work,
    }) = cluster("faults").await
    else {
        return;
    };
    let operator = Operator::start(client.clone(), "faults", Arc::new(Metrics::new()));
    let searches: Api<ArchitectureSearch> = Api::namespaced(client.clone(), "faults");
    let trials: Api<ChildTrial> = Api::namespaced(client.clone(), "faults");

    // One eviction: retried, not a failure.
    kubelet.faults.lock().unwrap().evict_trainers = 1;
    let mut evicted = search_manifest("evicted", 2, "");
    evicted.spec.objective.latency = None;
    evicted.spec.strategy =
        serde_json::from_value(serde_json::json!({"algorithm": "Random", "seed": 1})).unwrap();
    searches
        .create(&PostParams::default(), &evicted)
        .await
        .unwrap();
    let done = wait_phase(&searches, "evicted", Duration::from_secs(300)).await;
    let st = done.status.unwrap();
    assert_eq!(st.phase, Some(SearchPhase::Succeeded));
    assert_eq!((st.trials.succeeded, st.trials.failed), (2, 0));
    let disrupted: Vec<_> = trials
        .list(&ListParams::default().labels("nasop.dev/search=evicted"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|t| t.status.as_ref().unwrap().disruptions == 1)
        .collect();
    assert_eq!(disrupted.len(), 1, "one trial was evicted once");
    assert_eq!(disrupted[0].status.as_ref().unwrap().attempts, 2);

    // Every trainer fails: with maxAttempts 1 and maxFailedTrials 1 the search fails after
    // the second failure and starts nothing more.
    kubelet.faults.lock().unwrap().fail_trainers = 100;
    let mut failing = search_manifest("failing", 6, "");
    failing.spec.objective.latency = None;
    failing.spec.budget.max_failed_trials = Some(1);
    failing.spec.budget.parallelism = 1;
    failing.spec.trial.max_attempts = 1;
    failing.spec.strategy =
        serde_json::from_value(serde_json::json!({"algorithm": "Random", "seed": 2})).unwrap();
    searches
        .create(&PostParams::default(), &failing)
        .await
        .unwrap();
    let done = wait_phase(&searches, "failing", Duration::from_secs(300)).await;
    let st = done.status.unwrap();
    assert_eq!(st.phase, Some(SearchPhase::Failed));
    assert_eq!((st.trials.failed, st.trials.total), (2, 2));
    let degraded = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(degraded.status, "True");
    let failed = trials
        .list(&ListParams::default().labels("nasop.dev/search=failing"))
        .await
        .unwrap()
        .items;
    for t in &failed {
        let s = t.status.as_ref().unwrap();
        assert_eq!(s.reason.as_deref(), Some("Internal"), "{s:?}");
    }

    // An image that cannot be pulled: past trial.pendingDeadlineSeconds the trial fails with
    // ImagePullFailed, its pod is deleted, and the search goes on to exactly maxTrials.
    kubelet.faults.lock().unwrap().fail_trainers = 0;
    kubelet.faults.lock().unwrap().image_pull_errors = 1;
    let mut pulls = search_manifest("pull", 3, "");
    pulls.spec.objective.latency = None;
    pulls.spec.budget.parallelism = 1;
    pulls.spec.trial.pending_deadline_seconds = Some(2);
    pulls.spec.strategy =
        serde_json::from_value(serde_json::json!({"algorithm": "Random", "seed": 3})).unwrap();
    searches
        .create(&PostParams::default(), &pulls)
        .await
        .unwrap();
    let done = wait_phase(&searches, "pull", Duration::from_secs(300)).await;
    let st = done.status.unwrap();
    assert_eq!(st.phase, Some(SearchPhase::Succeeded), "{st:?}");
    assert_eq!(
        (st.trials.succeeded, st.trials.failed, st.trials.total),
        (2, 1, 3)
    );
    let all = trials
        .list(&ListParams::default().labels("nasop.dev/search=pull"))
        .await
        .unwrap()
        .items;
    let failed: Vec<_> = all
        .iter()
        .filter_map(|t| t.status.as_ref())
        .filter(|s| s.phase == Some(TrialPhase::Failed))
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].reason.as_deref(), Some("ImagePullFailed"));
    let message = failed[0].message.as_deref().unwrap();
    assert!(
        message.contains("(trial.pendingDeadlineSeconds is 2): ImagePullBackOff: Back-off pulling image \"nasop-trainer:test\""),
        "{message}"
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "faults");
    let start = Instant::now();
    while !pods
        .list(&ListParams::default().labels("nasop.dev/search=pull"))
        .await
        .unwrap()
        .items
        .is_empty()
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the stuck pod stays"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    operator.kill();
}

/// A valid search as JSON, to break one field at a time.
fn base_manifest(name: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "nasop.dev/v1alpha1", "kind": "ArchitectureSearch",
        "metadata": {"name": name},
        "spec": {
            "searchSpace": {"nb201": {}},
            "strategy": {"algorithm": "PPO"},
            "budget": {"maxTrials": 10, "parallelism": 2},
            "objective": {"latency": {"targetMs": 5.0, "deviceClass": "pixel"}},
            "trial": {"image": "trainer:1", "dataset": {"format": "CIFAR10", "path": "/data"}},
            "probe": {"repeats": 50}
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_api_server_accepts_the_examples_and_rejects_bad_manifests_by_field() {
    let Some(server) = start_server().await else {
        return;
    };
    let client = server.client().await;
    install_crds(&client).await;
    namespace(&client, "manifests").await;
    let searches: Api<ArchitectureSearch> = Api::namespaced(client.clone(), "manifests");
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    for path in nasop_tests::example_manifests() {
        let value: serde_json::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let search: ArchitectureSearch = serde_json::from_value(value).unwrap();
        searches
            .create(&dry, &search)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    searches
        .create(
            &dry,
            &serde_json::from_value(base_manifest("base")).unwrap(),
        )
        .await
        .unwrap();
    // (what is broken, the JSON pointer and value, what the message must name)
    let catalogue: Vec<(&str, &str, serde_json::Value, &str)> = vec![
        (
            "wrong type",
            "/spec/budget/maxTrials",
            "ten".into(),
            "spec.budget.maxTrials",
        ),
        (
            "zero trials",
            "/spec/budget/maxTrials",
            0.into(),
            "spec.budget.maxTrials",
        ),
        (
            "parallelism above maxTrials",
            "/spec/budget/parallelism",
            20.into(),
            "budget.parallelism must not exceed budget.maxTrials",
        ),
        (
            "maxFailedTrials above maxTrials",
            "/spec/budget/maxFailedTrials",
            11.into(),
            "budget.maxFailedTrials must not exceed budget.maxTrials",
        ),
        (
            "unknown algorithm",
            "/spec/strategy/algorithm",
            "Bayes".into(),
            "spec.strategy.algorithm",
        ),
        (
            "controller settings on evolution",
            "/spec/strategy",
            serde_json::json!({"algorithm": "Evolution", "controller": {}}),
            "strategy.controller applies only to algorithm PPO or REINFORCE",
        ),
        (
            "sample above population",
            "/spec/strategy",
            serde_json::json!({"algorithm": "Evolution", "evolution": {"populationSize": 4, "sampleSize": 8}}),
            "sampleSize must not exceed",
        ),
        (
            "learning rate above 1",
            "/spec/strategy/controller",
            serde_json::json!({"learningRate": 2.0}),
            "spec.strategy.controller.learningRate",
        ),
        (
            "unknown op",
            "/spec/searchSpace",
            serde_json::json!({"nb201": {"ops": ["conv_9x9"]}}),
            "spec.searchSpace.nb201.ops",
        ),
        (
            "unknown dataset format",
            "/spec/trial/dataset/format",
            "ImageNet".into(),
            "spec.trial.dataset.format",
        ),
        (
            "missing image",
            "/spec/trial",
            serde_json::json!({"dataset": {"format": "CIFAR10", "path": "/data"}}),
            "spec.trial.image",
        ),
        (
            "missing search space",
            "/spec/searchSpace",
            serde_json::Value::Null,
            "spec.searchSpace",
        ),
        (
            "zero epochs",
            "/spec/trial/epochs",
            0.into(),
            "spec.trial.epochs",
        ),
        (
            "zero latency target",
            "/spec/objective/latency/targetMs",
            0.into(),
            "objective.latency.targetMs must be at least 0.001 ms",
        ),
        (
            "zero GPU hours",
            "/spec/budget/maxGpuHours",
            0.into(),
            "budget.maxGpuHours must be at least 0.001",
        ),
        (
            "device class not a label value",
            "/spec/objective/latency/deviceClass",
            "Pixel 7".into(),
            "spec.objective.latency.deviceClass",
        ),
        (
            "zero probe repeats",
            "/spec/probe/repeats",
            0.into(),
            "spec.probe.repeats",
        ),
        (
            "two spaces at once",
            "/spec/searchSpace",
            serde_json::json!({"nb201": {}, "nasnet": {}}),
            "spec.searchSpace",
        ),
    ];
    assert!(catalogue.len() >= 15);
    for (i, (what, pointer, value, named)) in catalogue.into_iter().enumerate() {
        let mut m = base_manifest(&format!("bad-{i}"));
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let target = m.pointer_mut(parent).unwrap();
        if value.is_null() {
            target.as_object_mut().unwrap().remove(key);
        } else {
            target[key] = value;
        }
        let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
            client.clone(),
            "manifests",
            &kube::api::ApiResource::erase::<ArchitectureSearch>(&()),
        );
        let obj: kube::api::DynamicObject = serde_json::from_value(m.clone()).unwrap();
        match api.create(&dry, &obj).await {
            Ok(back) => panic!(
                "{what}: accepted {m}\nstored as {}",
                serde_json::to_string(&back).unwrap()
            ),
            Err(kube::Error::Api(e)) => {
                assert_eq!(e.code, 422, "{what}: {e:?}");
                assert!(
                    e.message.contains(named),
                    "{what}: {} lacks {named}",
                    e.message
                );
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
    // A name too long for its trials' label values.
    let mut long = base_manifest(&"n".repeat(57));
    long["metadata"]["name"] = "n".repeat(57).into();
    let obj: kube::api::DynamicObject = serde_json::from_value(long).unwrap();
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        "manifests",
        &kube::api::ApiResource::erase::<ArchitectureSearch>(&()),
    );
    let e = api.create(&dry, &obj).await.unwrap_err();
    assert!(e.to_string().contains("at most 56 characters"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_operator_survives_an_api_server_restart_and_an_etcd_outage() {
    let Some(Cluster {
        mut server,
        client,
        kubelet: _kubelet,
        _work,
    }) = cluster("restart-api").await
    else {
        return;
    };
    let operator = Operator::start(client.clone(), "restart-api", Arc::new(Metrics::new()));
    let searches: Api<ArchitectureSearch> = Api::namespaced(client.clone(), "restart-api");
    let mut s = search_manifest("survivor", 4, "");
    s.spec.objective.latency = None;
    searches.create(&PostParams::default(), &s).await.unwrap();
    let trials: Api<ChildTrial> = Api::namespaced(client.clone(), "restart-api");
    let start = Instant::now();
    while trials
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty()
    {
        assert!(start.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::task::block_in_place(|| server.restart_apiserver());
    // Then etcd gone for 5 s once a trial has a result: requests fail, watches break.
    let start = Instant::now();
    while !trials
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .any(|t| t.status.as_ref().and_then(|s| s.phase) == Some(TrialPhase::Succeeded))
    {
        assert!(start.elapsed() < Duration::from_secs(120));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::task::block_in_place(|| server.pause_etcd(Duration::from_secs(5)));
    let done = wait_phase(&searches, "survivor", Duration::from_secs(300)).await;
    let st = done.status.unwrap();
    assert_eq!(st.phase, Some(SearchPhase::Succeeded));
    assert_eq!((st.trials.succeeded, st.trials.total), (4, 4));
    assert_eq!(st.policy.unwrap().trials_consumed, 4);
    operator.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_operators_at_once_still_make_exactly_max_trials_each_consumed_once() {
    // Split brain (two active replicas): writes race and conflict (409); the state's
    // resourceVersion precondition and retries keep the search exact.
    let Some(Cluster {
        server: _server,
        client,
        kubelet,
        _work,
    }) = cluster("twins").await
    else {
        return;
    };
    kubelet.faults.lock().unwrap().delay = Duration::from_millis(300);
    let (ma, mb) = (Arc::new(Metrics::new()), Arc::new(Metrics::new()));
    let a = Operator::start(client.clone(), "twins", ma.clone());
    let b = Operator::start(client.clone(), "twins", mb.clone());
    let searches: Api<ArchitectureSearch> = Api::namespaced(client.clone(), "twins");
    let mut s = search_manifest("twins", 6, "");
    s.spec.objective.latency = None;
    s.spec.budget.parallelism = 3;
    searches.create(&PostParams::default(), &s).await.unwrap();
    let done = wait_phase(&searches, "twins", Duration::from_secs(600)).await;
    let st = done.status.unwrap();
    assert_eq!(st.phase, Some(SearchPhase::Succeeded), "{st:?}");
    let trials: Api<ChildTrial> = Api::namespaced(client.clone(), "twins");
    let mut ids: Vec<i64> = trials
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|t| t.spec.proposal_id)
        .collect();
    ids.sort();
    assert_eq!(ids, vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(st.policy.unwrap().trials_consumed, 6);
    let conflicts = |m: &Metrics| {
        m.render()
            .lines()
            .filter(|l| l.starts_with("nasop_reconcile_errors_total") && l.contains("conflict"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum::<f64>()
    };
    eprintln!("conflicts retried: {} + {}", conflicts(&ma), conflicts(&mb));
    a.kill();
    b.kill();
}

/// `GET path` on 127.0.0.1:`port` (HTTP/1.0): the status code and body, or `None` when
/// nothing listens.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

fn leader_gauge(port: u16) -> Option<i64> {
    let (_, body) = http_get(port, "/metrics")?;
    body.lines()
        .find(|l| l.starts_with("nasop_leader "))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_operator_processes_leads_and_the_other_takes_over_on_sigterm() {
    let Some(server) = start_server().await else {
        return;
    };
    let client = server.client().await;
    install_crds(&client).await;
    namespace(&client, "lease").await;
    let binary = binary("nasop", "nasop");
    let start = |name: &str, port: u16| {
        std::process::Command::new(&binary)
            .args([
                "operator",
                "--namespace",
                "lease",
                "--lease-namespace",
                "lease",
            ])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .args([
                "--identity",
                name,
                "--lease-seconds",
                "4",
                "--log-format",
                "json",
            ])
            .env("KUBECONFIG", &server.kubeconfig)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let (pa, pb) = (
        nasop_tests::apiserver::free_port(),
        nasop_tests::apiserver::free_port(),
    );
    let mut a = start("replica-a", pa);
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        let t = Instant::now();
        while !f() {
            assert!(t.elapsed() < Duration::from_secs(60), "{what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    tokio::task::block_in_place(|| {
        wait("replica-a leads", &|| leader_gauge(pa) == Some(1));
        assert_eq!(http_get(pa, "/readyz").map(|r| r.0), Some(200));
        assert_eq!(http_get(pa, "/healthz").map(|r| r.0), Some(200));
    });
    let mut b = start("replica-b", pb);
    tokio::task::block_in_place(|| {
        wait("replica-b serves", &|| leader_gauge(pb).is_some());
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(leader_gauge(pb), Some(0), "the second replica waits");
        assert_eq!(
            http_get(pb, "/readyz").map(|r| r.0),
            Some(200),
            "a standby is ready"
        );
    });
    // SIGTERM: the leader finishes, releases the Lease and exits 0; the standby takes over.
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &a.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = tokio::task::block_in_place(|| a.wait().unwrap());
    assert!(status.success(), "{status}");
    tokio::task::block_in_place(|| wait("replica-b takes over", &|| leader_gauge(pb) == Some(1)));
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), "lease");
    let lease = leases.get("nasop-operator").await.unwrap();
    assert_eq!(
        lease.spec.unwrap().holder_identity.as_deref(),
        Some("replica-b")
    );
    let _ = b.kill();
    let _ = b.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_helm_chart_passes_lint_and_a_server_side_dry_run() {
    let Some(helm) = tokio::task::spawn_blocking(nasop_tests::apiserver::helm)
        .await
        .unwrap()
    else {
        return;
    };
    let Some(server) = start_server().await else {
        return;
    };
    let chart = workspace_root().join("charts/nasop");
    let lint = std::process::Command::new(&helm)
        .args(["lint", "--strict"])
        .arg(&chart)
        .output()
        .unwrap();
    assert!(
        lint.status.success(),
        "{}",
        String::from_utf8_lossy(&lint.stdout)
    );
    let client = server.client().await;
    install_crds(&client).await;
    namespace(&client, "nasop-system").await;
    namespace(&client, "team-a").await;
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    // Default values, and namespaced RBAC with the dashboard (the ServiceMonitor needs the
    // Prometheus operator's CRD, which this server lacks).
    for extra in [
        &[][..],
        &[
            "--set",
            "watchNamespaces={team-a}",
            "--set",
            "grafanaDashboard.enabled=true",
        ][..],
    ] {
        let out = std::process::Command::new(&helm)
            .args([
                "template",
                "nasop",
                "--namespace",
                "nasop-system",
                "--kube-version",
                "1.34.4",
            ])
            .arg(&chart)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let mut kinds = Vec::new();
        for doc in text.split("\n---") {
            let value: serde_json::Value = match serde_yaml::from_str(doc) {
                Ok(v) if !matches!(v, serde_json::Value::Null) => v,
                _ => continue,
            };
            let obj: kube::api::DynamicObject = serde_json::from_value(value).unwrap();
            let types = obj.types.clone().unwrap();
            let gvk = kube::api::GroupVersionKind::try_from(&types).unwrap();
            let (ar, caps) = discovery
                .resolve_gvk(&gvk)
                .unwrap_or_else(|| panic!("{gvk:?} unknown"));
            let api: Api<kube::api::DynamicObject> = match caps.scope {
                kube::discovery::Scope::Namespaced => Api::namespaced_with(
                    client.clone(),
                    obj.metadata.namespace.as_deref().unwrap_or("nasop-system"),
                    &ar,
                ),
                kube::discovery::Scope::Cluster => Api::all_with(client.clone(), &ar),
            };
            let pp = PatchParams::apply("nasop-tests").dry_run();
            api.patch(
                obj.metadata.name.as_deref().unwrap(),
                &pp,
                &Patch::Apply(&obj),
            )
            .await
            .unwrap_or_else(|e| panic!("{} {:?}: {e}", types.kind, obj.metadata.name));
            if types.kind.ends_with("Role") {
                // Least privilege in both modes: no secrets, no wildcards.
                for rule in obj.data["rules"].as_array().unwrap() {
                    for field in ["apiGroups", "resources", "verbs"] {
                        for v in rule[field].as_array().unwrap() {
                            let v = v.as_str().unwrap();
                            assert!(v != "*" && v != "secrets", "{} has {field} {v}", types.kind);
                        }
                    }
                }
            }
            kinds.push(types.kind);
        }
        // Namespaced values: no cluster-scoped role at all.
        assert_eq!(
            kinds.contains(&"ClusterRole".to_string()),
            extra.is_empty(),
            "{kinds:?}"
        );
        assert!(kinds.contains(&"Deployment".to_string()), "{kinds:?}");
        assert!(kinds.iter().any(|k| k.ends_with("Role")), "{kinds:?}");
    }
}

/// The README's "On a cluster" commands, run with the real kubectl and helm against the real
/// API server.
struct Cli {
    kubectl: PathBuf,
    helm: PathBuf,
    kubeconfig: PathBuf,
    home: tempfile::TempDir,
}

impl Cli {
    /// `program args...` with this kubeconfig and a private HOME; the output, whatever the
    /// exit status.
    fn try_run(&self, program: &std::path::Path, args: &[&str]) -> std::process::Output {
        tokio::task::block_in_place(|| {
            std::process::Command::new(program)
                .args(args)
                .current_dir(workspace_root())
                .env("KUBECONFIG", &self.kubeconfig)
                .env("HOME", self.home.path())
                .env("HELM_CACHE_HOME", self.home.path().join("helm-cache"))
                .env("HELM_CONFIG_HOME", self.home.path().join("helm-config"))
                .env("HELM_DATA_HOME", self.home.path().join("helm-data"))
                .output()
                .unwrap()
        })
    }

    /// `program args...`, which must succeed; its stdout.
    fn run(&self, program: &std::path::Path, args: &[&str]) -> String {
        let out = self.try_run(program, args);
        assert!(
            out.status.success(),
            "{} {}: {}\n{}",
            program.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn kubectl(&self, args: &[&str]) -> String {
        self.run(&self.kubectl, args)
    }

    fn helm(&self, args: &[&str]) -> String {
        self.run(&self.helm, args)
    }

    /// `kubectl auth can-i VERB RESOURCE[/SUBRESOURCE]` as `user` with `scope` (`-n NS` or
    /// `-A`).
    fn can(&self, user: &str, verb: &str, resource: &str, scope: &[&str]) -> bool {
        let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
        let mut args = vec!["auth", "can-i", verb, resource, "--as", user];
        if !subresource.is_empty() {
            args.extend(["--subresource", subresource]);
        }
        args.extend_from_slice(scope);
        let out = self.try_run(&self.kubectl, &args);
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            answer == "yes" || answer == "no",
            "kubectl {}: {answer:?} {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        answer == "yes"
    }
}

/// Helm installs the chart (namespaced RBAC for `team-a`); the operator runs as the chart's
/// Deployment runs it (its arguments and environment, read back from the installed Deployment)
/// with a token of the chart's ServiceAccount, so exactly the chart's RBAC; then the README's
/// kubectl workflow: apply, get (printer columns, short names, the `nasop` category),
/// describe (conditions and Events), suspend and resume, results, uninstall.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_readme_kubectl_workflow_works_with_exactly_the_charts_rbac() {
    let Some(helm) = tokio::task::spawn_blocking(nasop_tests::apiserver::helm)
        .await
        .unwrap()
    else {
        return;
    };
    let Some(server) = start_server().await else {
        return;
    };
    let kubectl = nasop_tests::apiserver::binaries().unwrap().kubectl;
    let admin = server.client().await;
    // team-a enforces the restricted Pod Security Standard (the API server's PodSecurity
    // admission): every trainer and probe pod of the search must pass it.
    let ns: Api<Namespace> = Api::all(admin.clone());
    let restricted: Namespace = serde_json::from_value(serde_json::json!({"metadata": {
        "name": "team-a", "labels": {"pod-security.kubernetes.io/enforce": "restricted",
                                     "pod-security.kubernetes.io/enforce-version": "v1.34"}}}))
    .unwrap();
    ns.create(&PostParams::default(), &restricted)
        .await
        .unwrap();
    namespace(&admin, "team-b").await;
    let cli = Cli {
        kubectl,
        helm,
        kubeconfig: server.kubeconfig.clone(),
        home: tempfile::tempdir().unwrap(),
    };

    // Install: CRDs from the chart's crds/, the operator objects, namespaced RBAC.
    let notes = cli.helm(&[
        "install",
        "nasop",
        "charts/nasop",
        "--namespace",
        "nasop-system",
        "--create-namespace",
        "--set",
        "watchNamespaces={team-a}",
    ]);
    for line in [
        "It watches the namespaces team-a.",
        "kubectl -n nasop-system get lease nasop -o jsonpath='{.spec.holderIdentity}{\"\\n\"}'",
        "kubectl apply -f examples/nb201-evolution.yaml -n team-a",
    ] {
        assert!(notes.contains(line), "{line} in the NOTES:\n{notes}");
    }
    cli.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/architecturesearches.nasop.dev",
        "crd/childtrials.nasop.dev",
        "crd/latencyprobes.nasop.dev",
        "--timeout=60s",
    ]);

    // Least privilege, as the API server's authorizer answers for the ServiceAccount.
    let sa = "system:serviceaccount:nasop-system:nasop";
    for (verb, resource) in [
        ("create", "pods"),
        ("delete", "pods"),
        ("watch", "childtrials.nasop.dev"),
        ("patch", "architecturesearches.nasop.dev/status"),
        ("create", "configmaps"),
        ("update", "configmaps"),
        ("create", "events.events.k8s.io"),
    ] {
        assert!(
            cli.can(sa, verb, resource, &["-n", "team-a"]),
            "{verb} {resource}"
        );
    }
    for (verb, resource, scope) in [
        ("get", "secrets", &["-n", "team-a"][..]),
        ("list", "secrets", &["-A"][..]),
        ("list", "pods", &["-A"][..]),
        ("create", "pods", &["-n", "team-b"][..]),
        ("create", "pods", &["-n", "nasop-system"][..]),
        (
            "patch",
            "architecturesearches.nasop.dev",
            &["-n", "team-a"][..],
        ),
        (
            "delete",
            "architecturesearches.nasop.dev",
            &["-n", "team-a"][..],
        ),
        ("patch", "configmaps", &["-n", "team-a"][..]),
        ("watch", "configmaps", &["-n", "team-a"][..]),
        ("patch", "pods", &["-n", "team-a"][..]),
        ("patch", "childtrials.nasop.dev", &["-n", "team-a"][..]),
        ("list", "nodes", &[][..]),
        (
            "create",
            "leases.coordination.k8s.io",
            &["-n", "team-a"][..],
        ),
    ] {
        assert!(
            !cli.can(sa, verb, resource, scope),
            "{verb} {resource} {scope:?} must be denied"
        );
    }

    // The operator as the installed Deployment runs it, authenticated as its ServiceAccount.
    let token = cli.kubectl(&["-n", "nasop-system", "create", "token", "nasop"]);
    let sa_kubeconfig = cli.home.path().join("operator-kubeconfig");
    std::fs::copy(&server.kubeconfig, &sa_kubeconfig).unwrap();
    let sa_config = sa_kubeconfig.to_str().unwrap();
    cli.kubectl(&[
        "--kubeconfig",
        sa_config,
        "config",
        "set-credentials",
        "operator",
        "--token",
        token.trim(),
    ]);
    cli.kubectl(&[
        "--kubeconfig",
        sa_config,
        "config",
        "set-context",
        "--current",
        "--user",
        "operator",
    ]);
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(admin.clone(), "nasop-system");
    let deployment = deployments.get("nasop").await.unwrap();
    let pod_spec = deployment.spec.unwrap().template.spec.unwrap();
    assert_eq!(
        pod_spec.service_account_name.as_deref(),
        Some("nasop"),
        "the Deployment runs as the ServiceAccount whose token is used here"
    );
    let container = &pod_spec.containers[0];
    let metrics_port = nasop_tests::apiserver::free_port();
    let mut operator = std::process::Command::new(binary("nasop", "nasop"));
    operator
        .args(container.args.clone().unwrap())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("KUBECONFIG", &sa_kubeconfig)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(cli.home.path().join("operator.log")).unwrap());
    if let Some(v) = std::env::var_os("LD_LIBRARY_PATH") {
        operator.env("LD_LIBRARY_PATH", v);
    }
    for var in container.env.clone().unwrap() {
        let value = match (var.name.as_str(), var.value) {
            ("POD_NAME", None) => "nasop-7d4b9-x2x1q".to_string(),
            ("POD_NAMESPACE", None) => "nasop-system".to_string(),
            // One free loopback port instead of the pod's 0.0.0.0:8080.
            ("NASOP_METRICS_ADDR", Some(_)) => format!("127.0.0.1:{metrics_port}"),
            ("HOME", Some(_)) => cli.home.path().to_str().unwrap().to_string(),
            (_, Some(v)) => v,
            (name, None) => panic!("env {name} from a source this test does not stand in for"),
        };
        operator.env(&var.name, value);
    }
    let mut operator = operator.spawn().unwrap();
    // The NOTES' command names the active replica.
    let start = Instant::now();
    loop {
        let out = cli.try_run(
            &cli.kubectl,
            &[
                "-n",
                "nasop-system",
                "get",
                "lease",
                "nasop",
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ],
        );
        if out.stdout == b"nasop-7d4b9-x2x1q" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the operator never led: {}",
            std::fs::read_to_string(cli.home.path().join("operator.log")).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let work = tempfile::tempdir().unwrap();
    let _kubelet = kubelet(&admin, "team-a", work.path());

    // A search (the shipped Fashion-MNIST subset, a latency objective so probes run).
    let manifest = cli.home.path().join("search.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: nasop.dev/v1alpha1
kind: ArchitectureSearch
metadata: {name: fmnist}
spec:
  searchSpace: {nb201: {channels: 8, cellsPerStage: 1}}
  strategy: {algorithm: Evolution, seed: 3, evolution: {populationSize: 2, sampleSize: 2}}
  budget: {maxTrials: 3, parallelism: 1}
  objective:
    latency: {targetMs: 1.0, deviceClass: cpu-test}
  trial:
    image: nasop-trainer:test
    args: [--threads, '1']
    dataset: {format: FashionMNIST, path: /data/fashion-mnist, trainExamples: 256, validationExamples: 128}
    epochs: 1
    batchSize: 64
  probe: {repeats: 3, warmup: 1}
",
    )
    .unwrap();
    let applied = cli.kubectl(&["apply", "-n", "team-a", "-f", manifest.to_str().unwrap()]);
    assert_eq!(
        applied.trim(),
        "architecturesearch.nasop.dev/fmnist created"
    );

    // Suspend once the first trial exists: no trial starts while suspended.
    let trials_of = |cli: &Cli| -> Vec<String> {
        cli.kubectl(&[
            "get",
            "ct",
            "-n",
            "team-a",
            "-l",
            "nasop.dev/search=fmnist",
            "-o",
            "name",
        ])
        .lines()
        .map(str::to_string)
        .collect()
    };
    let start = Instant::now();
    while trials_of(&cli).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no trial created"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cli.kubectl(&[
        "patch",
        "nas",
        "fmnist",
        "-n",
        "team-a",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ]);
    cli.kubectl(&[
        "wait",
        "nas/fmnist",
        "-n",
        "team-a",
        "--for=jsonpath={.status.phase}=Suspended",
        "--timeout=60s",
    ]);
    let while_suspended = trials_of(&cli);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        trials_of(&cli),
        while_suspended,
        "a trial started while suspended"
    );
    assert!(while_suspended.len() < 3, "{while_suspended:?}");
    cli.kubectl(&[
        "patch",
        "nas",
        "fmnist",
        "-n",
        "team-a",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ]);
    cli.kubectl(&[
        "wait",
        "nas/fmnist",
        "-n",
        "team-a",
        "--for=jsonpath={.status.phase}=Succeeded",
        "--timeout=300s",
    ]);

    // kubectl get: the printer columns, short names and the `nasop` category.
    let get = cli.kubectl(&["get", "architecturesearches", "-n", "team-a"]);
    let mut lines = get.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "PHASE",
            "TRIALS",
            "BEST REWARD",
            "BEST ACC",
            "BEST LATENCY (MS)",
            "AGE"
        ],
        "{get}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["fmnist", "Succeeded", "3/3"], "{get}");
    let best_reward: f64 = row[3].parse().unwrap();
    let wide = cli.kubectl(&["get", "nas", "-n", "team-a", "-o", "wide"]);
    assert!(wide.lines().next().unwrap().contains("STRATEGY"), "{wide}");
    assert!(wide.contains("Evolution"), "{wide}");
    let ct = cli.kubectl(&["get", "ct", "-n", "team-a", "-l", "nasop.dev/search=fmnist"]);
    assert_eq!(ct.lines().count(), 4, "a header and 3 trials:\n{ct}");
    assert_eq!(ct.matches("Succeeded").count(), 3, "{ct}");
    let lp = cli.kubectl(&["get", "lp", "-n", "team-a"]);
    assert_eq!(lp.lines().count(), 4, "a header and 3 probes:\n{lp}");
    let all = cli.kubectl(&["get", "nasop", "-n", "team-a"]);
    for kind in [
        "architecturesearch.nasop.dev/fmnist",
        "childtrial.nasop.dev/fmnist-",
        "latencyprobe.nasop.dev/fmnist-",
    ] {
        assert!(all.contains(kind), "{kind} in:\n{all}");
    }

    // describe: the conditions and the Events the operator recorded.
    let described = cli.kubectl(&["describe", "nas", "fmnist", "-n", "team-a"]);
    for part in [
        "Conditions:",
        "Ready",
        "Progressing",
        "Degraded",
        "Events:",
        "TrialsCreated",
        "SearchSucceeded",
    ] {
        assert!(described.contains(part), "{part} in:\n{described}");
    }

    // Results: the best child, and every trial's genotype, accuracy and reward.
    let best: serde_json::Value = serde_json::from_str(&cli.kubectl(&[
        "get",
        "nas",
        "fmnist",
        "-n",
        "team-a",
        "-o",
        "jsonpath={.status.best}",
    ]))
    .unwrap();
    let genotype = best["genotype"].as_str().unwrap();
    assert!(genotype.starts_with('|'), "an NB201 cell: {genotype}");
    let columns = cli.kubectl(&[
        "get",
        "ct",
        "-n",
        "team-a",
        "-l",
        "nasop.dev/search=fmnist",
        "-o",
        r"custom-columns=NAME:.metadata.name,GENOTYPE:.metadata.annotations.nasop\.dev/genotype,ACC:.status.metrics.accuracy,REWARD:.status.reward",
    ]);
    let rewards: Vec<f64> = columns
        .lines()
        .skip(1)
        .map(|l| {
            let reward = l.split_whitespace().nth(3).unwrap();
            reward
                .parse()
                .unwrap_or_else(|e| panic!("{reward:?}: {e}\n{columns}"))
        })
        .collect();
    assert_eq!(rewards.len(), 3, "{columns}");
    let top = rewards.iter().cloned().fold(f64::MIN, f64::max);
    assert!(
        (best["reward"].as_f64().unwrap() - top).abs() < 1e-12,
        "{best} vs {columns}"
    );
    assert!(
        (best_reward - top).abs() < 1e-3 * top.abs().max(1.0),
        "{get}"
    );
    assert!(columns.contains(genotype), "{columns}");

    // Every call the operator made was allowed: nothing forbidden in its log.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &operator.id().to_string()])
        .status();
    let status = tokio::task::block_in_place(|| operator.wait().unwrap());
    let log = std::fs::read_to_string(cli.home.path().join("operator.log")).unwrap();
    assert!(status.success(), "{status}\n{log}");
    assert!(!log.to_lowercase().contains("forbidden"), "{log}");
    assert!(
        log.contains("nasop-7d4b9-x2x1q"),
        "the pod name is the identity:\n{log}"
    );

    // Uninstall: searches, the release, then the CRDs.
    cli.kubectl(&["delete", "nas", "--all", "-A"]);
    assert!(cli
        .kubectl(&["get", "nas", "-A", "-o", "name"])
        .trim()
        .is_empty());
    cli.helm(&["uninstall", "nasop", "-n", "nasop-system"]);
    assert!(deployments.get_opt("nasop").await.unwrap().is_none());
    let roles: Api<k8s_openapi::api::rbac::v1::Role> = Api::namespaced(admin.clone(), "team-a");
    assert!(roles
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
    cli.kubectl(&["delete", "-f", "charts/nasop/crds/"]);
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    let start = Instant::now();
    while crds
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .any(|c| c.spec.group == "nasop.dev")
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "CRDs left behind"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
