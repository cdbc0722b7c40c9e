//! A process-kubelet for the real-API-server tests: there is no kubelet, so this watches the
//! operator's pods, binds each to a fake node, runs its container's command as a local process
//! (the real `nasop-trainer`) with the pod's args and env (paths inside the pod mapped to local
//! ones), and writes the pod status as the kubelet does: phase, container state, exit code and
//! the termination message (at most 4096 bytes). It can be told to evict or fail pods.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::Client;
use serde_json::json;

/// The node name pods are bound to.
pub const NODE: &str = "process-kubelet";

/// Most bytes of a termination message the kubelet keeps (Kubernetes' limit per container).
pub const TERMINATION_MESSAGE_BYTES: usize = 4096;

/// How the kubelet runs pods.
#[derive(Clone, Debug)]
pub struct KubeletConfig {
    /// The binary run for the container command `nasop-trainer`.
    pub trainer: PathBuf,
    /// Pod path prefixes and the local paths they stand for (e.g. the dataset mount).
    pub paths: Vec<(String, PathBuf)>,
    /// Where each pod gets a working directory (its `/tmp` and termination log).
    pub work: PathBuf,
}

/// Faults to inject into the next pods.
#[derive(Debug, Default)]
pub struct Faults {
    /// Evict this many of the next trainer pods (phase Failed, reason Evicted), without
    /// running them.
    pub evict_trainers: usize,
    /// Fail this many of the next trainer pods with exit code 1 and no result.
    pub fail_trainers: usize,
    /// Keep every pod Pending this long before running it (a slow scheduler or image pull).
    pub delay: std::time::Duration,
    /// Leave this many of the next trainer pods Pending for good, their container waiting
    /// with `ImagePullBackOff` (an image that cannot be pulled).
    pub image_pull_errors: usize,
}

/// The running kubelet; stops (and kills its processes) on drop.
pub struct Kubelet {
    task: tokio::task::JoinHandle<()>,
    /// Faults for the next pods.
    pub faults: Arc<Mutex<Faults>>,
    /// Names of the pods started, in order (evicted ones included).
    pub started: Arc<Mutex<Vec<String>>>,
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Kubelet {
    /// Starts watching the pods of `namespace` labelled `app.kubernetes.io/managed-by=nasop`.
    pub fn start(client: Client, namespace: &str, config: KubeletConfig) -> Self {
        let faults = Arc::new(Mutex::new(Faults::default()));
        let started = Arc::new(Mutex::new(Vec::new()));
        let pods: Api<Pod> = Api::namespaced(client, namespace);
        let (f, s) = (faults.clone(), started.clone());
        let task = tokio::spawn(async move {
            let mut running: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
            let mut seen: HashSet<String> = HashSet::new();
            let stream = watcher(
                pods.clone(),
                watcher::Config::default().labels("app.kubernetes.io/managed-by=nasop"),
            );
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                let Ok(event) = event else { continue };
                let pod = match event {
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) => p,
                    watcher::Event::Delete(p) => {
                        if let Some(h) = running.remove(&name(&p)) {
                            h.abort();
                        }
                        continue;
                    }
                    _ => continue,
                };
                let n = name(&pod);
                if pod.metadata.deletion_timestamp.is_some() {
                    // The kubelet stops the container, then confirms the deletion.
                    if let Some(h) = running.remove(&n) {
                        h.abort();
                    }
                    let _ = pods
                        .delete(&n, &DeleteParams::default().grace_period(0))
                        .await;
                    continue;
                }
                let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
                if phase.is_some() && phase.as_deref() != Some("Pending") || !seen.insert(n.clone())
                {
                    continue;
                }
                s.lock().unwrap().push(n.clone());
                let handle = tokio::spawn(run_pod(pods.clone(), pod, config.clone(), f.clone()));
                running.insert(n, handle);
            }
        });
        Self {
            task,
            faults,
            started,
        }
    }
}

fn name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .unwrap()
        .to_string()
}

fn map_path(arg: &str, dir: &Path, config: &KubeletConfig) -> String {
    if arg == "/dev/termination-log" {
        return dir.join("termination-log").display().to_string();
    }
    if let Some(rest) = arg.strip_prefix("/tmp/") {
        return dir.join("tmp").join(rest).display().to_string();
    }
    for (prefix, local) in &config.paths {
        if let Some(rest) = arg.strip_prefix(prefix.as_str()) {
            return format!("{}{rest}", local.display());
        }
    }
    arg.to_string()
}

/// Retries an API call for up to 10 minutes (the API server may be restarting), as a kubelet keeps
/// trying; `false` when it never succeeded or the pod is gone.
async fn retried<F, Fut, T>(what: &str, mut call: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let start = std::time::Instant::now();
    loop {
        match call().await {
            Ok(_) => return true,
            Err(kube::Error::Api(e)) if e.code == 404 => return false,
            Err(e) if start.elapsed() > std::time::Duration::from_secs(600) => {
                eprintln!("process-kubelet: {what}: {e}");
                return false;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
        }
    }
}

async fn patch_status(pods: &Api<Pod>, name: &str, status: serde_json::Value) {
    let body = json!({"status": status});
    retried(&format!("status of {name}"), || {
        let (pods, body, name) = (pods.clone(), body.clone(), name.to_string());
        async move {
            pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
                .await
        }
    })
    .await;
}

async fn run_pod(pods: Api<Pod>, pod: Pod, config: KubeletConfig, faults: Arc<Mutex<Faults>>) {
    let n = name(&pod);
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": n},
                         "target": {"apiVersion": "v1", "kind": "Node", "name": NODE}});
    let bound = retried(&format!("binding {n}"), || {
        let (pods, binding, n) = (pods.clone(), binding.clone(), n.clone());
        async move {
            match pods
                .create_subresource::<_, serde_json::Value>(
                    "binding",
                    &n,
                    &PostParams::default(),
                    &binding,
                )
                .await
            {
                // Bound already: the answer to an earlier try was lost in a restart.
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(serde_json::Value::Null),
                other => other,
            }
        }
    })
    .await;
    if !bound {
        return;
    }
    let container = pod.spec.as_ref().unwrap().containers[0].clone();
    let is_trainer = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("nasop.dev/role"))
        .is_some_and(|r| r == "trainer");
    let delay = faults.lock().unwrap().delay;
    tokio::time::sleep(delay).await;
    let (evict, fail, pull_error) = {
        let mut f = faults.lock().unwrap();
        let pull_error = is_trainer && f.image_pull_errors > 0;
        if pull_error {
            f.image_pull_errors -= 1;
        }
        let evict = is_trainer && f.evict_trainers > 0;
        if evict {
            f.evict_trainers -= 1;
        }
        let fail = is_trainer && !evict && f.fail_trainers > 0;
        if fail {
            f.fail_trainers -= 1;
        }
        (evict, fail, pull_error)
    };
    let image = container.image.clone().unwrap_or_default();
    if pull_error {
        patch_status(
            &pods,
            &n,
            json!({"phase": "Pending", "containerStatuses": [{
                "name": container.name, "image": image, "imageID": "", "ready": false,
                "restartCount": 0, "started": false, "state": {"waiting": {
                    "reason": "ImagePullBackOff",
                    "message": format!("Back-off pulling image \"{image}\"")}}}]}),
        )
        .await;
        return;
    }
    if evict {
        patch_status(
            &pods,
            &n,
            json!({"phase": "Failed", "reason": "Evicted",
                   "message": "The node was low on resource: memory."}),
        )
        .await;
        return;
    }
    let started = now();
    patch_status(
        &pods,
        &n,
        json!({"phase": "Running", "startTime": started, "containerStatuses": [{
            "name": container.name, "image": image, "imageID": "", "ready": true,
            "restartCount": 0, "started": true, "state": {"running": {"startedAt": started}}}]}),
    )
    .await;
    let dir = config.work.join(&n);
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    let (code, message) = if fail {
        (1, String::new())
    } else {
        let args: Vec<String> = container
            .args
            .clone()
            .unwrap_or_default()
            .iter()
            .map(|a| map_path(a, &dir, &config))
            .collect();
        let mut cmd = tokio::process::Command::new(&config.trainer);
        cmd.args(&args)
            .kill_on_drop(true)
            .stdout(std::fs::File::create(dir.join("stdout.log")).unwrap())
            .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap());
        for e in container.env.iter().flatten() {
            match (&e.value, e.name.as_str()) {
                (Some(v), _) => {
                    cmd.env(&e.name, v);
                }
                (None, "NODE_NAME") => {
                    cmd.env("NODE_NAME", NODE);
                }
                _ => {}
            }
        }
        let status = cmd.status().await.expect("the trainer runs");
        let mut message = std::fs::read(dir.join("termination-log")).unwrap_or_default();
        message.truncate(TERMINATION_MESSAGE_BYTES);
        (
            status.code().unwrap_or(137),
            String::from_utf8_lossy(&message).into_owned(),
        )
    };
    let mut terminated = json!({"exitCode": code, "reason": if code == 0 {"Completed"} else {"Error"},
                                "startedAt": started, "finishedAt": now()});
    if !message.is_empty() {
        terminated["message"] = json!(message);
    }
    patch_status(
        &pods,
        &n,
        json!({"phase": if code == 0 {"Succeeded"} else {"Failed"}, "containerStatuses": [{
            "name": container.name, "image": image, "imageID": "", "ready": false,
            "restartCount": 0, "started": false, "state": {"terminated": terminated}}]}),
    )
    .await;
}

/// The validation accuracy a synthetic result reports for a genotype (`None`: 0.1).
pub type Accuracy = Arc<dyn Fn(&nasop_crds::Genotype) -> Option<f64> + Send + Sync>;

/// An instant fake kubelet for scale benchmarks: every new trainer pod finishes at once
/// (phase Succeeded, without binding or running anything) with a synthetic result whose
/// validation accuracy is `accuracy(genotype)` (e.g. the NAS-Bench-201 table's), or 0.1
/// when it gives none. One status patch per pod.
pub struct InstantKubelet {
    task: tokio::task::JoinHandle<()>,
    /// Pods finished so far.
    pub finished: Arc<std::sync::atomic::AtomicUsize>,
}

impl Drop for InstantKubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl InstantKubelet {
    /// Starts watching the trainer pods of `namespace`.
    pub fn start(client: Client, namespace: &str, accuracy: Accuracy) -> Self {
        let pods: Api<Pod> = Api::namespaced(client, namespace);
        let finished = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let done = finished.clone();
        let task = tokio::spawn(async move {
            let mut seen: HashSet<String> = HashSet::new();
            let stream = watcher(
                pods.clone(),
                watcher::Config::default().labels("nasop.dev/role=trainer"),
            );
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                let pod = match event {
                    Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => p,
                    _ => continue,
                };
                let n = name(&pod);
                let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
                if pod.metadata.deletion_timestamp.is_some()
                    || phase.is_some() && phase.as_deref() != Some("Pending")
                    || !seen.insert(n.clone())
                {
                    continue;
                }
                let (pods, accuracy, done) = (pods.clone(), accuracy.clone(), done.clone());
                tokio::spawn(async move {
                    let container = pod.spec.as_ref().unwrap().containers[0].clone();
                    let args = container.args.clone().unwrap_or_default();
                    let genotype: nasop_crds::Genotype = args
                        .iter()
                        .position(|a| a == "--genotype")
                        .and_then(|i| args.get(i + 1))
                        .and_then(|g| g.parse().ok())
                        .expect("a trainer pod names its genotype");
                    let report = nasop_crds::result::TrainReport {
                        genotype_hash: genotype.hash().as_str().to_string(),
                        space: genotype.kind(),
                        device: "cpu".into(),
                        seed: 0,
                        params: 1000,
                        macs: 100_000,
                        validation_accuracy: accuracy(&genotype).unwrap_or(0.1),
                        validation_loss: 1.0,
                        test_accuracy: None,
                        final_train_loss: 1.0,
                        epochs: 1,
                        steps: 1,
                        batch_size: 1,
                        train_examples: 1,
                        validation_examples: 1,
                        wall_seconds: 1.0,
                        train_seconds: 1.0,
                        samples_per_second: 1.0,
                        learning_curve: Vec::new(),
                    };
                    let message =
                        nasop_crds::result::TrainResult::succeeded(report).termination_message();
                    let at = now();
                    patch_status(
                        &pods,
                        &n,
                        json!({"phase": "Succeeded", "startTime": at, "containerStatuses": [{
                            "name": container.name, "image": container.image, "imageID": "",
                            "ready": false, "restartCount": 0, "started": false,
                            "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                "message": message, "startedAt": at, "finishedAt": at}}}]}),
                    )
                    .await;
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                });
            }
        });
        Self { task, finished }
    }
}
