//! `nasop run`: the whole search on one machine. Trials run as local `nasop-trainer train`
//! processes (`parallelism` at a time, CPU threads split between them); latency probes as local
//! `nasop-trainer probe` processes, one at a time. The search core is the operator's
//! ([`crate::search`]); this is the thin driver: processes, files, progress.
//!
//! The state directory holds `search.yaml` (the manifest), `trials.jsonl` (every start and
//! result, appended as it happens), `strategy.safetensors` (the strategy state, replaced
//! atomically after every change) and `children/<id>/` (result, probe, weights, log). Running
//! again resumes: finished trials are not rerun; trials that were running start again, exactly
//! the children the strategy is waiting for.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nasop_crds::api::ArchitectureSearch;
use nasop_crds::result::{FailureReason, ProbeOutcome, ProbeResult, TrainOutcome, TrainResult};
use nasop_crds::SearchSpace;
use serde::{Deserialize, Serialize};

use crate::commands::{probe_args, train_args, Outputs};
use crate::search::{summarize, Metrics, Phase, Search, Summary, Trial, TrialState};
use crate::strategy::{self, ProposalId};

/// One line of `trials.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum Event {
    /// A trial started.
    #[serde(rename_all = "camelCase")]
    Started {
        /// Proposal id.
        id: ProposalId,
        /// Genotype.
        genotype: String,
        /// Its hash.
        hash: String,
    },
    /// A trial finished with a reward.
    #[serde(rename_all = "camelCase")]
    Succeeded {
        /// Proposal id.
        id: ProposalId,
        /// Training metrics.
        metrics: Metrics,
        /// Latency, ms.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        latency_ms: Option<f64>,
        /// Reward.
        reward: f64,
    },
    /// A trial failed.
    #[serde(rename_all = "camelCase")]
    Failed {
        /// Proposal id.
        id: ProposalId,
        /// Why.
        reason: FailureReason,
        /// Details.
        message: String,
    },
}

/// How `nasop run` reports progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// A progress bar on stderr and the summary table.
    Human,
    /// The summary table only.
    Quiet,
    /// One JSON object per event on stdout, then the summary as JSON.
    JsonLines,
}

/// Settings of a local run.
pub struct RunSettings {
    /// The manifest file.
    pub manifest: PathBuf,
    /// State directory (default `./nasop-runs/<name>`).
    pub state_dir: Option<PathBuf>,
    /// The `nasop-trainer` binary.
    pub trainer: PathBuf,
    /// CPU threads in all (default: the machine's).
    pub threads: Option<usize>,
    /// Output mode.
    pub output: Output,
    /// GPUs to give trials, one each (default: the NVIDIA GPUs the driver lists; 0: CPU only).
    pub gpus: Option<usize>,
}

/// Puts a trainer command on GPU `slot`: `--device cuda` before the template's own
/// `template_args` (the last ones), and the environment that makes the slot the process's
/// only CUDA device.
pub fn on_gpu(args: &mut Vec<String>, template_args: usize, slot: usize) -> Vec<(String, String)> {
    let at = args.len() - template_args;
    args.splice(at..at, ["--device".to_string(), "cuda".to_string()]);
    vec![("CUDA_VISIBLE_DEVICES".to_string(), slot.to_string())]
}

/// NVIDIA GPUs the driver lists (`/proc/driver/nvidia/gpus/*`); 0 without the driver.
pub fn detect_gpus() -> usize {
    fs::read_dir("/proc/driver/nvidia/gpus").map_or(0, |d| d.count())
}

/// Reads the trials of a state directory from its event log (a torn last line, from a crash
/// while writing it, is ignored).
///
/// # Errors
/// Unreadable file, or a line other than the last that does not parse.
pub fn read_trials(dir: &Path) -> Result<Vec<Trial>> {
    let path = dir.join("trials.jsonl");
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("{}", path.display())),
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut trials: BTreeMap<ProposalId, Trial> = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let event: Event = match serde_json::from_str(line) {
            Ok(e) => e,
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => break,
            Err(e) => bail!("{}:{}: {e}", path.display(), i + 1),
        };
        match event {
            Event::Started { id, genotype, hash } => {
                trials.insert(
                    id,
                    Trial {
                        id,
                        genotype,
                        hash,
                        state: TrialState::Running,
                    },
                );
            }
            Event::Succeeded {
                id,
                metrics,
                latency_ms,
                reward,
            } => {
                if let Some(t) = trials.get_mut(&id) {
                    t.state = TrialState::Succeeded {
                        metrics,
                        latency_ms,
                        reward,
                    };
                }
            }
            Event::Failed {
                id,
                reason,
                message,
            } => {
                if let Some(t) = trials.get_mut(&id) {
                    t.state = TrialState::Failed { reason, message };
                }
            }
        }
    }
    Ok(trials.into_values().collect())
}

/// The state directory of a search: `dir` or `./nasop-runs/<name>`.
pub fn state_dir(search: &ArchitectureSearch, dir: Option<&Path>) -> PathBuf {
    dir.map(Path::to_path_buf).unwrap_or_else(|| {
        PathBuf::from("nasop-runs").join(search.metadata.name.as_deref().unwrap_or("search"))
    })
}

struct Log {
    file: File,
    json: bool,
}

impl Log {
    fn append(&mut self, event: &Event) -> Result<()> {
        let line = serde_json::to_string(event)?;
        writeln!(self.file, "{line}")?;
        self.file.sync_data()?;
        if self.json {
            println!("{line}");
        }
        Ok(())
    }
}

/// Cuts a partly written last line (a crash in the middle of an append) off the event log, so
/// that the next append starts on a line of its own.
fn repair_torn_tail(path: &Path) -> Result<()> {
    let Ok(bytes) = fs::read(path) else {
        return Ok(());
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(());
    }
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    eprintln!(
        "warning: {}: dropping a partly written last line ({} bytes)",
        path.display(),
        bytes.len() - keep
    );
    let f = OpenOptions::new().write(true).open(path)?;
    f.set_len(keep as u64)?;
    f.sync_all()?;
    Ok(())
}

/// Replaces `path` with `bytes` atomically (write beside, sync, rename).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp).with_context(|| format!("{}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path).with_context(|| format!("{}", path.display()))?;
    Ok(())
}

enum JobKind {
    Train,
    Probe { metrics: Metrics },
}

struct Job {
    id: ProposalId,
    kind: JobKind,
    child: Child,
    /// The GPU slot a trainer holds.
    gpu: Option<usize>,
}

/// Runs (or resumes) the search of `settings.manifest`; returns its summary.
///
/// # Errors
/// A bad manifest (the field named), a state directory of another search, an unusable
/// trainer binary, or I/O errors on the state directory.
pub fn run(settings: &RunSettings, stop: Arc<AtomicBool>) -> Result<(PathBuf, Summary)> {
    let (mut search_obj, space) = crate::manifest::load(&settings.manifest)
        .map_err(|e| anyhow::anyhow!("{}: {e}", settings.manifest.display()))?;
    // Checks before anything is written or run.
    let manifest_dir = settings
        .manifest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let data = {
        let p = Path::new(&search_obj.spec.trial.dataset.path);
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            manifest_dir.join(p)
        };
        fs::canonicalize(&p).with_context(|| {
            format!(
                "spec.trial.dataset.path: {} does not exist on this machine (a relative path is relative to the manifest)",
                p.display()
            )
        })?
    };
    // The state keeps the resolved path: the same search resumes from a moved manifest.
    search_obj.spec.trial.dataset.path = data.display().to_string();
    let spec = &search_obj.spec;
    check_trial_args(&spec.trial.args)?;
    if !settings.trainer.is_file() {
        bail!(
            "--trainer {}: not a file (build it with `cargo build --release -p nasop-trainer`)",
            settings.trainer.display()
        );
    }
    if settings.threads == Some(0) {
        bail!("--threads: 0 is out of range; allowed: at least 1");
    }
    let detected = detect_gpus();
    if let Some(g) = settings.gpus.filter(|&g| g > detected) {
        bail!("--gpus: {g} is more than the {detected} GPUs the NVIDIA driver lists here");
    }
    let dir = state_dir(&search_obj, settings.state_dir.as_deref());
    fs::create_dir_all(dir.join("children"))
        .with_context(|| format!("state directory {}", dir.display()))?;
    let _lock = StateLock::take(&dir)?;
    check_same_search(&dir, &search_obj)?;

    // One GPU per trial where GPUs exist: no more trials at once than GPUs.
    let gpus = settings.gpus.unwrap_or_else(detect_gpus);
    let mut local_spec = spec.clone();
    if gpus > 0 {
        local_spec.budget.parallelism = local_spec.budget.parallelism.min(gpus as i32);
    }
    let mut gpu_free: Vec<bool> = vec![true; gpus];
    let mut search = resume(&local_spec, &space, &dir)?;
    let mut log = Log {
        file: OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("trials.jsonl"))?,
        json: settings.output == Output::JsonLines,
    };
    let total_threads = settings
        .threads
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1);
    let parallelism = (local_spec.budget.parallelism.max(1) as usize).min(total_threads.max(1));
    let threads_per_trial = (total_threads / parallelism).max(1);

    let bar = (settings.output == Output::Human).then(|| {
        let bar = indicatif::ProgressBar::new(spec.budget.max_trials as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} trials, ETA {eta} {msg}",
            )
            .expect("template")
            .progress_chars("=> "),
        );
        bar
    });
    // Without a terminal the bar is hidden: one line per finished trial instead.
    let lines = settings.output == Output::Human && bar.as_ref().is_some_and(|b| b.is_hidden());
    if settings.output == Output::JsonLines {
        // Trials a resumed run starts again: their `started` events are in the log already.
        for t in search.trials().filter(|t| t.state == TrialState::Running) {
            println!(
                "{}",
                serde_json::to_string(&Event::Started {
                    id: t.id,
                    genotype: t.genotype.clone(),
                    hash: t.hash.clone(),
                })?
            );
        }
    }
    // Progress is redrawn only when the counts change (the best reward needs a pass over the
    // trials; the loop below turns every 100 ms).
    let mut shown = search.counts();
    let progress = |search: &Search| {
        let c = search.counts();
        let best = search.summary(1).best.first().and_then(Trial::reward);
        let best = best.map_or("-".into(), |b| format!("{b:.4}"));
        if let Some(bar) = bar.as_ref().filter(|_| !lines) {
            bar.set_position((c.succeeded + c.failed) as u64);
            bar.set_message(format!(
                "| running {} failed {} best reward {best}",
                c.running, c.failed
            ));
        } else if lines {
            eprintln!(
                "{}/{} trials done, {} running, {} failed, best reward {best}",
                c.succeeded + c.failed,
                spec.budget.max_trials,
                c.running,
                c.failed
            );
        }
    };

    let mut jobs: Vec<Job> = Vec::new();
    let mut probes: VecDeque<(ProposalId, Metrics)> = VecDeque::new();
    // Trials that were running when the last run stopped start again.
    let mut to_start: VecDeque<ProposalId> = search
        .trials()
        .filter(|t| t.state == TrialState::Running)
        .map(|t| t.id)
        .collect();
    let genotypes: BTreeMap<ProposalId, String> = search
        .trials()
        .map(|t| (t.id, t.genotype.clone()))
        .collect();
    let mut genotypes = genotypes;

    loop {
        if stop.load(Ordering::SeqCst) {
            for mut j in jobs {
                let _ = j.child.kill();
                let _ = j.child.wait();
            }
            if let Some(bar) = &bar {
                bar.abandon_with_message("interrupted: run again to resume");
            }
            let summary = search.summary(10);
            let trials: Vec<Trial> = search.trials().cloned().collect();
            write_summary(&dir, &summary, &trials)?;
            return Ok((dir, summary));
        }
        // New trials.
        if search.phase() == Phase::Running {
            let proposals = search.launch();
            if !proposals.is_empty() {
                write_atomic(&dir.join("strategy.safetensors"), &search.strategy().save())?;
            }
            for p in proposals {
                let genotype = p.genotype.to_string();
                log.append(&Event::Started {
                    id: p.id,
                    genotype: genotype.clone(),
                    hash: p.genotype.hash().as_str().to_string(),
                })?;
                genotypes.insert(p.id, genotype);
                to_start.push_back(p.id);
            }
        }
        while let Some(id) = to_start.pop_front() {
            let cdir = dir.join("children").join(id.to_string());
            fs::create_dir_all(&cdir)?;
            let outputs = Outputs {
                result: cdir.join("result.json").display().to_string(),
                termination_log: "/dev/null".into(),
                checkpoint: Some(cdir.join("child.safetensors").display().to_string()),
            };
            let _ = fs::remove_file(&outputs.result);
            let mut args = train_args(
                spec,
                &genotypes[&id],
                &data.display().to_string(),
                id,
                Some(threads_per_trial),
                &outputs,
            );
            let gpu = gpu_free.iter().position(|&f| f);
            let mut env = Vec::new();
            if let Some(g) = gpu {
                gpu_free[g] = false;
                env = on_gpu(&mut args, spec.trial.args.len(), g);
            }
            let child = spawn(&settings.trainer, &args, &env, &cdir.join("train.log"))?;
            jobs.push(Job {
                id,
                kind: JobKind::Train,
                child,
                gpu,
            });
        }
        // One probe at a time.
        if !jobs.iter().any(|j| matches!(j.kind, JobKind::Probe { .. })) {
            if let Some((id, metrics)) = probes.pop_front() {
                let cdir = dir.join("children").join(id.to_string());
                let outputs = Outputs {
                    result: cdir.join("probe.json").display().to_string(),
                    termination_log: "/dev/null".into(),
                    checkpoint: None,
                };
                let _ = fs::remove_file(&outputs.result);
                let weights = cdir.join("child.safetensors").display().to_string();
                match probe_args(spec, &genotypes[&id], Some(&weights), &outputs) {
                    Some(args) => {
                        let child = spawn(&settings.trainer, &args, &[], &cdir.join("probe.log"))?;
                        jobs.push(Job {
                            id,
                            kind: JobKind::Probe { metrics },
                            child,
                            gpu: None,
                        });
                    }
                    None => record(
                        &mut search,
                        &mut log,
                        &dir,
                        id,
                        Err((
                            FailureReason::InvalidInput,
                            "no probe input shape: set probe.inputShape for an ImageFolder dataset"
                                .into(),
                        )),
                    )?,
                }
            }
        }
        // Finished processes.
        let mut i = 0;
        while i < jobs.len() {
            // After Ctrl-C the trainers stop too (same process group): their Terminated
            // results are not failures; those trials run again on resume.
            if stop.load(Ordering::SeqCst) {
                break;
            }
            if jobs[i].child.try_wait()?.is_none() {
                i += 1;
                continue;
            }
            let mut job = jobs.swap_remove(i);
            let status = job.child.wait()?;
            if let Some(g) = job.gpu {
                gpu_free[g] = true;
            }
            let cdir = dir.join("children").join(job.id.to_string());
            match job.kind {
                JobKind::Train => match read_train(&cdir, status) {
                    Ok(metrics) if search.latency_objective().is_some() => {
                        probes.push_back((job.id, metrics))
                    }
                    Ok(metrics) => {
                        record(&mut search, &mut log, &dir, job.id, Ok((metrics, None)))?
                    }
                    Err(f) => record(&mut search, &mut log, &dir, job.id, Err(f))?,
                },
                JobKind::Probe { metrics } => {
                    let outcome = read_probe(&cdir, status).map(|l| (metrics, Some(l)));
                    record(&mut search, &mut log, &dir, job.id, outcome)?;
                }
            }
        }
        let c = search.counts();
        // Without a terminal, a line per finished trial; with one, the bar follows every change.
        let done = |c: crate::search::Counts| c.succeeded + c.failed;
        if (lines && done(c) != done(shown)) || (!lines && c != shown) {
            shown = c;
            progress(&search);
        }
        if search.phase() != Phase::Running && jobs.is_empty() && probes.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Some(bar) = &bar {
        bar.finish();
    }
    let summary = search.summary(10);
    let trials: Vec<Trial> = search.trials().cloned().collect();
    write_summary(&dir, &summary, &trials)?;
    Ok((dir, summary))
}

fn spawn(trainer: &Path, args: &[String], env: &[(String, String)], log: &Path) -> Result<Child> {
    let log = File::create(log)?;
    Command::new(trainer)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", trainer.display()))
}

type Outcome = std::result::Result<(Metrics, Option<f64>), (FailureReason, String)>;

fn record(
    search: &mut Search,
    log: &mut Log,
    dir: &Path,
    id: ProposalId,
    outcome: Outcome,
) -> Result<()> {
    match outcome {
        Ok((metrics, latency_ms)) => {
            // Check first (a refused result becomes a failure); log; then tell.
            match search.check_result(&metrics, latency_ms) {
                Ok(reward) => {
                    log.append(&Event::Succeeded {
                        id,
                        metrics: metrics.clone(),
                        latency_ms,
                        reward,
                    })?;
                    search.succeed(id, metrics, latency_ms)?;
                }
                Err(message) => {
                    log.append(&Event::Failed {
                        id,
                        reason: FailureReason::Internal,
                        message: message.clone(),
                    })?;
                    search.fail(id, FailureReason::Internal, message)?;
                }
            }
        }
        Err((reason, message)) => {
            log.append(&Event::Failed {
                id,
                reason,
                message: message.clone(),
            })?;
            search.fail(id, reason, message)?;
        }
    }
    write_atomic(&dir.join("strategy.safetensors"), &search.strategy().save())
}

fn read_train(
    cdir: &Path,
    status: std::process::ExitStatus,
) -> std::result::Result<Metrics, (FailureReason, String)> {
    let text = fs::read_to_string(cdir.join("result.json")).map_err(|_| {
        (
            FailureReason::Internal,
            format!(
                "the trainer wrote no result ({status}): {}",
                log_tail(&cdir.join("train.log"))
            ),
        )
    })?;
    match TrainResult::parse(text.trim()) {
        Ok(TrainResult {
            outcome: TrainOutcome::Succeeded(r),
            ..
        }) => Ok(Metrics {
            validation_accuracy: r.validation_accuracy,
            test_accuracy: r.test_accuracy,
            params: r.params,
            macs: r.macs,
            wall_seconds: r.wall_seconds,
        }),
        Ok(TrainResult {
            outcome: TrainOutcome::Failed(f),
            ..
        }) => Err((f.reason, f.message)),
        Err(e) => Err((FailureReason::Internal, format!("bad result: {e}"))),
    }
}

fn read_probe(
    cdir: &Path,
    status: std::process::ExitStatus,
) -> std::result::Result<f64, (FailureReason, String)> {
    let text = fs::read_to_string(cdir.join("probe.json")).map_err(|_| {
        (
            FailureReason::Internal,
            format!(
                "the probe wrote no result ({status}): {}",
                log_tail(&cdir.join("probe.log"))
            ),
        )
    })?;
    match ProbeResult::parse(text.trim()) {
        Ok(ProbeResult {
            outcome: ProbeOutcome::Succeeded(r),
            ..
        }) => Ok(r.latency.median_ms),
        Ok(ProbeResult {
            outcome: ProbeOutcome::Failed(f),
            ..
        }) => Err((f.reason, format!("probe: {}", f.message))),
        Err(e) => Err((FailureReason::Internal, format!("bad probe result: {e}"))),
    }
}

fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(3).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// Restores the search of a state directory: the strategy state, then the results logged
/// after its last save (told again, in log order), then the children the strategy waits for
/// but the log never saw start.
fn resume(
    spec: &nasop_crds::api::ArchitectureSearchSpec,
    space: &SearchSpace,
    dir: &Path,
) -> Result<Search> {
    let state = dir.join("strategy.safetensors");
    repair_torn_tail(&dir.join("trials.jsonl"))?;
    let logged = read_trials(dir)?;
    let strategy = match fs::read(&state) {
        Ok(bytes) => strategy::restore(space, &spec.strategy, &bytes)
            .with_context(|| format!("{}", state.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !logged.is_empty() {
                bail!(
                    "{}: trials are logged but the strategy state is missing; the state directory is damaged",
                    dir.display()
                );
            }
            strategy::build(space, &spec.strategy, strategy::DEFAULT_SEED)?
        }
        Err(e) => return Err(e).with_context(|| format!("{}", state.display())),
    };
    if logged.is_empty() && strategy.counts().told + strategy.counts().failed > 0 {
        bail!(
            "{}: the strategy has results but trials.jsonl has none; the state directory is damaged (remove it to start over)",
            dir.display()
        );
    }
    let resumed = crate::search::resume(spec, space, strategy, logged)?;
    if !resumed.missing.is_empty() {
        // Started by the strategy, never logged: log the start before running them.
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("trials.jsonl"))?;
        for t in &resumed.missing {
            writeln!(
                log,
                "{}",
                serde_json::to_string(&Event::Started {
                    id: t.id,
                    genotype: t.genotype.to_string(),
                    hash: t.genotype.hash().as_str().to_string(),
                })?
            )?;
        }
        log.sync_data()?;
    }
    let search = resumed.search;
    Ok(search)
}

/// Refuses a state directory that holds another search (a different spec), or trials without
/// their search; writes `search.yaml` (the spec with the resolved dataset path) on a first run.
fn check_same_search(dir: &Path, search: &ArchitectureSearch) -> Result<()> {
    let saved = dir.join("search.yaml");
    match fs::read_to_string(&saved) {
        Ok(text) => {
            let before = crate::manifest::parse(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", saved.display()))?;
            if serde_json::to_value(&before.spec)? != serde_json::to_value(&search.spec)? {
                bail!(
                    "state directory {} holds another search (its spec differs from this manifest's); pass --state-dir or remove it",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(_) => {
            for f in ["trials.jsonl", "strategy.safetensors"] {
                if dir.join(f).exists() {
                    bail!(
                        "state directory {}: {f} exists but search.yaml is missing; the directory is damaged (remove it to start over)",
                        dir.display()
                    );
                }
            }
            // Through JSON: enums as the API writes them (keys), not YAML tags.
            let value = serde_json::to_value(search)?;
            write_atomic(&saved, serde_yaml::to_string(&value)?.as_bytes())
        }
    }
}

/// Flags of `nasop-trainer train` the runner (and the operator) set for every child; a
/// search's `trial.args` may not override them.
pub const RESERVED_TRAINER_FLAGS: &[&str] = &[
    "--genotype",
    "-g",
    "--data",
    "--dataset-format",
    "--result",
    "--termination-log",
    "--checkpoint",
    "--device",
    "--threads",
    "--seed",
];

/// Refuses `trial.args` that set a flag the runner owns.
///
/// # Errors
/// Names the flag and `spec.trial.args`.
pub fn check_trial_args(args: &[String]) -> Result<()> {
    for a in args {
        let flag = a.split('=').next().unwrap_or(a);
        if RESERVED_TRAINER_FLAGS.contains(&flag) {
            bail!(
                "spec.trial.args: {flag} is set by nasop for every child; allowed: other nasop-trainer train flags (reserved: {})",
                RESERVED_TRAINER_FLAGS.join(", ")
            );
        }
    }
    Ok(())
}

/// The state directory's lock: `lock` holds the pid of the `nasop run` using it. A lock left by
/// a process that no longer runs is taken over.
struct StateLock(PathBuf);

impl StateLock {
    fn take(dir: &Path) -> Result<Self> {
        let path = dir.join("lock");
        for _ in 0..2 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    writeln!(f, "{}", std::process::id())?;
                    f.sync_all()?;
                    return Ok(Self(path));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let pid = fs::read_to_string(&path).unwrap_or_default();
                    let pid = pid.trim();
                    if !pid.is_empty() && Path::new("/proc").join(pid).exists() {
                        bail!(
                            "state directory {} is in use by nasop run (pid {pid}); wait for it or stop it",
                            dir.display()
                        );
                    }
                    // Stale: its process is gone.
                    let _ = fs::remove_file(&path);
                }
                Err(e) => return Err(e).with_context(|| format!("{}", path.display())),
            }
        }
        bail!("state directory {}: cannot take the lock", dir.display())
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Writes `summary.json`, `best-genotype.txt` and the plots.
fn write_summary(dir: &Path, summary: &Summary, trials: &[Trial]) -> Result<()> {
    crate::plots::write(dir, trials, &summary.pareto)?;
    write_atomic(
        &dir.join("summary.json"),
        serde_json::to_string_pretty(summary)?.as_bytes(),
    )?;
    if let Some(best) = summary.best.first() {
        write_atomic(
            &dir.join("best-genotype.txt"),
            format!("{}\n", best.genotype).as_bytes(),
        )?;
    }
    Ok(())
}

/// The summary of a state directory (for `nasop results`).
///
/// # Errors
/// A directory without `search.yaml`, or an unreadable log.
pub fn results(dir: &Path) -> Result<Summary> {
    let saved = dir.join("search.yaml");
    let text = fs::read_to_string(&saved)
        .with_context(|| format!("{}: not a nasop run state directory", dir.display()))?;
    let search =
        crate::manifest::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", saved.display()))?;
    let trials = read_trials(dir)?;
    let max = search.spec.budget.max_trials.max(0) as usize;
    let failed = trials
        .iter()
        .filter(|t| matches!(t.state, TrialState::Failed { .. }))
        .count();
    let running = trials
        .iter()
        .filter(|t| t.state == TrialState::Running)
        .count();
    let phase = if search
        .spec
        .budget
        .max_failed_trials
        .is_some_and(|m| failed > m.max(0) as usize)
    {
        Phase::Failed
    } else if trials.len() >= max && running == 0 {
        Phase::Succeeded
    } else {
        Phase::Running
    };
    Ok(summarize(trials.iter(), 10, phase))
}

/// The summary as a table: counts, then the best trials.
pub fn render(summary: &Summary) -> String {
    let c = summary.counts;
    let mut out = format!(
        "phase {:?}: {} trials ({} succeeded, {} failed, {} running)\n",
        summary.phase, c.started, c.succeeded, c.failed, c.running
    );
    if let (Some(best), Some(median)) = (summary.best.first(), summary.median_reward) {
        out.push_str(&format!(
            "best reward {:.4} (trial {}), median reward {:.4}\n",
            best.reward().unwrap_or(f64::NAN),
            best.id,
            median
        ));
    }
    for f in &summary.failures {
        out.push_str(&format!(
            "failed: {} trial(s) {:?}, e.g. trial {}: {}\n",
            f.count, f.reason, f.trial, f.message
        ));
    }
    out.push_str(&format!(
        "{:>5} {:>8} {:>8} {:>8} {:>10} {:>10}  genotype\n",
        "trial", "reward", "val acc", "test acc", "latency ms", "params"
    ));
    for t in &summary.best {
        if let TrialState::Succeeded {
            metrics,
            latency_ms,
            reward,
        } = &t.state
        {
            out.push_str(&format!(
                "{:>5} {:>8.4} {:>8.4} {:>8} {:>10} {:>10}  {}\n",
                t.id,
                reward,
                metrics.validation_accuracy,
                metrics
                    .test_accuracy
                    .map_or("-".into(), |a| format!("{a:.4}")),
                latency_ms.map_or("-".into(), |l| format!("{l:.3}")),
                metrics.params,
                t.genotype
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gpu_trial_asks_for_cuda_before_the_template_args_and_sees_one_device() {
        let mut args: Vec<String> = ["train", "-g", "x", "--epochs", "3", "--cutout", "16"]
            .map(String::from)
            .to_vec();
        let env = on_gpu(&mut args, 2, 3);
        assert_eq!(
            args,
            ["train", "-g", "x", "--epochs", "3", "--device", "cuda", "--cutout", "16"]
        );
        assert_eq!(env, [("CUDA_VISIBLE_DEVICES".to_string(), "3".to_string())]);
    }

    #[test]
    fn reserved_trainer_flags_in_trial_args_are_refused() {
        assert!(check_trial_args(&["--cutout".into(), "16".into()]).is_ok());
        let e = check_trial_args(&["--device=cpu".into()]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("spec.trial.args: --device is set by nasop"),
            "{e}"
        );
    }
}
