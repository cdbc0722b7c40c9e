//! The `nasop` binary: thin dispatch over the library.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use nasop::cli::{Cli, Command, KindArg, SpaceCommand};
use nasop::manifest::{self, ManifestError};
use nasop::space_tool;
use nasop_crds::{Genotype, SearchSpace};

fn main() -> ExitCode {
    let stdout = std::io::stdout();
    match run(Cli::parse(), &mut stdout.lock()) {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(code)) => ExitCode::from(code),
        // A closed pipe (`nasop crds | head`) is not an error of ours.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A manifest error, prefixed with the file unless the message already names it.
fn in_file(path: &Path, error: ManifestError) -> anyhow::Error {
    match error {
        ManifestError::Io { .. } => error.into(),
        other => anyhow!("{}: {other}", path.display()),
    }
}

fn resolve(
    space: Option<KindArg>,
    manifest: Option<&Path>,
    genotype: Option<&Genotype>,
) -> Result<SearchSpace> {
    if let Some(path) = manifest {
        let (_, space) = manifest::load(path).map_err(|e| in_file(path, e))?;
        return Ok(space);
    }
    match (space, genotype) {
        (Some(kind), _) => Ok(space_tool::default_space(kind.into())),
        (None, Some(g)) => Ok(space_tool::default_space(g.kind())),
        (None, None) => bail!("give --space or --manifest"),
    }
}

/// Runs a command; `Some(code)` asks for that exit code.
fn run(cli: Cli, out: &mut impl Write) -> Result<Option<u8>> {
    match cli.command {
        Command::Crds { out_dir } => {
            let files = nasop_crds::api::crd_files()?;
            match out_dir {
                Some(dir) => {
                    std::fs::create_dir_all(&dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                    for (name, yaml) in files {
                        let path: PathBuf = dir.join(name);
                        std::fs::write(&path, yaml)
                            .with_context(|| format!("writing {}", path.display()))?;
                        writeln!(out, "wrote {}", path.display())?;
                    }
                }
                None => {
                    let docs: Vec<String> = files.into_iter().map(|(_, y)| y).collect();
                    write!(out, "{}", docs.join("---\n"))?;
                }
            }
        }
        Command::Validate { manifests } => {
            let (mut failed, mut total) = (0, 0);
            for path in &manifests {
                let searches = match manifest::read(path).and_then(|t| manifest::parse_all(&t)) {
                    Ok(searches) => searches,
                    Err(e) => {
                        (failed, total) = (failed + 1, total + 1);
                        eprintln!("invalid: {}", in_file(path, e));
                        continue;
                    }
                };
                let several = searches.len() > 1;
                for (k, parsed) in searches.into_iter().enumerate() {
                    total += 1;
                    let label = if several {
                        format!("{} (search {} of the file)", path.display(), k + 1)
                    } else {
                        path.display().to_string()
                    };
                    match parsed.and_then(|s| manifest::check(&s).map(|space| (s, space))) {
                        Ok((search, space)) => writeln!(
                            out,
                            "{label}: ok (ArchitectureSearch {:?}, {} space of {} children, {})",
                            search.metadata.name.unwrap_or_default(),
                            space.kind(),
                            space_tool::scientific(&space.size()),
                            search.spec.strategy.algorithm,
                        )?,
                        Err(e) => {
                            failed += 1;
                            eprintln!("invalid: {label}: {e}");
                        }
                    }
                }
            }
            if failed > 0 {
                bail!("{failed} of {total} searches are invalid");
            }
        }
        Command::LatencyModel {
            table,
            column,
            arch_column,
            fit,
            seed,
        } => {
            let table = nasop::latency_tool::LatencyTable::read(&table, &arch_column, &column)?;
            let reports = table.evaluate(fit, seed)?;
            for r in &reports {
                writeln!(
                    out,
                    "{:<12} fit on {} of {}: Spearman {:.4} (held-out {:.4}), MAPE {:.1}% (its own 5-fold estimate {:.1}%)",
                    r.column,
                    r.fit,
                    r.predicted,
                    r.spearman,
                    r.held_out_spearman,
                    100.0 * r.mape,
                    100.0 * r.cv_mape
                )?;
            }
            let worst = reports
                .iter()
                .map(|r| r.spearman)
                .fold(f64::INFINITY, f64::min);
            let summary = if let [one] = reports.as_slice() {
                serde_json::to_value(one)?
            } else {
                serde_json::json!({
                    "spearman": worst,
                    "mape": reports.iter().map(|r| r.mape).fold(0.0, f64::max),
                    "fit": fit,
                    "seed": seed,
                    "columns": reports,
                })
            };
            writeln!(out, "{summary}")?;
        }
        Command::Run {
            manifest,
            state_dir,
            trainer,
            threads,
            gpus,
            quiet,
            json,
        } => {
            use nasop::local::{render, run, Output, RunSettings};
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(signal, stop.clone())?;
            }
            let output = if json {
                Output::JsonLines
            } else if quiet {
                Output::Quiet
            } else {
                Output::Human
            };
            let settings = RunSettings {
                manifest,
                state_dir,
                trainer: trainer.unwrap_or_else(default_trainer),
                threads,
                output,
                gpus,
            };
            let (dir, summary) = run(&settings, stop.clone())?;
            if json {
                writeln!(out, "{}", serde_json::to_string(&summary)?)?;
            } else {
                write!(out, "{}", render(&summary))?;
                writeln!(out, "state: {}", dir.display())?;
            }
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                eprintln!("interrupted; run the same command again to resume");
                // The shell's convention for a process stopped by SIGINT.
                return Ok(Some(130));
            }
            if summary.phase == nasop::search::Phase::Failed {
                eprintln!(
                    "error: the search failed: {} trials failed (spec.budget.maxFailedTrials exceeded)",
                    summary.counts.failed
                );
                return Ok(Some(1));
            }
        }
        Command::Results { dir, json } => {
            // A manifest names its default state directory.
            let dir = if dir.is_file() {
                let (search, _) =
                    nasop::manifest::load(&dir).map_err(|e| anyhow!("{}: {e}", dir.display()))?;
                nasop::local::state_dir(&search, None)
            } else {
                dir
            };
            let summary = nasop::local::results(&dir)?;
            if json {
                writeln!(out, "{}", serde_json::to_string(&summary)?)?;
            } else {
                write!(out, "{}", nasop::local::render(&summary))?;
            }
        }
        Command::Operator(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let result = runtime.block_on(nasop::serve::run(args));
            // Tasks still running after the grace period are dropped, not waited for.
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            result?;
        }
        Command::BenchSearch(args) => {
            let rows = bench_search(&args)?;
            if args.json {
                for r in &rows {
                    writeln!(out, "{}", serde_json::to_string(r)?)?;
                }
            } else {
                write!(out, "{}", nasop::bench_search::render(&rows))?;
            }
        }
        Command::Space { command } => match command {
            SpaceCommand::Info {
                space,
                verbose,
                json,
            } => {
                let space = resolve(space.space, space.manifest.as_deref(), None)?;
                let info = space_tool::info(&space);
                if json {
                    writeln!(out, "{}", serde_json::to_string_pretty(&info)?)?;
                } else {
                    write!(out, "{}", space_tool::render_info(&info, verbose))?;
                }
            }
            SpaceCommand::Sample {
                space,
                n,
                seed,
                json,
            } => {
                let space = resolve(space.space, space.manifest.as_deref(), None)?;
                for line in space_tool::sample(&space, n, seed) {
                    if json {
                        writeln!(out, "{}", serde_json::to_string(&line)?)?;
                    } else {
                        writeln!(out, "{}  {}", line.hash, line.genotype)?;
                    }
                }
            }
            SpaceCommand::Check {
                genotype,
                space,
                json,
            } => {
                let parsed: Genotype = genotype.parse()?;
                let explicit = space.space.is_some() || space.manifest.is_some();
                let space = resolve(space.space, space.manifest.as_deref(), Some(&parsed))?;
                let report = space_tool::check(&genotype, Some(&space))?;
                if json {
                    writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
                } else {
                    write!(out, "{}", space_tool::render_check(&report))?;
                }
                // Outside the space the user named is a failed check; outside the default space
                // of its kind (MnasNet-A1, NASNet-A) is only a fact about the genotype.
                if explicit && report.outside_space.is_some() {
                    bail!("the genotype lies outside the given search space");
                }
            }
            SpaceCommand::Mutate {
                genotype,
                space,
                n,
                seed,
            } => {
                let parent: Genotype = genotype.parse()?;
                let space = resolve(space.space, space.manifest.as_deref(), Some(&parent))?;
                for line in space_tool::mutate(&space, &parent, n, seed)? {
                    writeln!(out, "{}  {}", line.hash, line.genotype)?;
                }
            }
        },
    }
    Ok(None)
}

fn bench_search(
    args: &nasop::cli::BenchSearchArgs,
) -> anyhow::Result<Vec<nasop::bench_search::Row>> {
    use anyhow::Context;
    use nasop::bench_search::{bench, strategy_spec, BenchSettings, LatencyMode, Table};
    use nasop_crds::api::LatencyConstraint;
    let names: Vec<String> = if args.strategy.is_empty() {
        ["PPO", "REINFORCE", "Evolution", "Random"]
            .map(String::from)
            .to_vec()
    } else {
        args.strategy.clone()
    };
    // Settings are checked whether or not a chosen strategy uses them.
    let controller = args
        .controller
        .as_deref()
        .map(|json| {
            settings_json(
                "--controller",
                json,
                &nasop_crds::api::ControllerSpec::default(),
            )
        })
        .transpose()?;
    let evolution = args
        .evolution
        .as_deref()
        .map(|json| {
            settings_json(
                "--evolution",
                json,
                &nasop_crds::api::EvolutionSpec::default(),
            )
        })
        .transpose()?;
    let mut strategies: Vec<nasop_crds::api::StrategySpec> = Vec::new();
    for name in &names {
        let mut spec = strategy_spec(name)?;
        if strategies.iter().any(|s| s.algorithm == spec.algorithm) {
            continue;
        }
        spec.controller = controller.clone();
        spec.evolution = evolution.clone();
        if !matches!(
            spec.algorithm,
            nasop_crds::api::Algorithm::Ppo | nasop_crds::api::Algorithm::Reinforce
        ) {
            spec.controller = None;
        }
        if spec.algorithm != nasop_crds::api::Algorithm::Evolution {
            spec.evolution = None;
        }
        strategies.push(spec);
    }
    let mut budgets = if args.budget.is_empty() {
        vec![100, 150, 300, 500]
    } else {
        args.budget.clone()
    };
    if let Some(b) = budgets.iter().find(|&&b| b == 0) {
        anyhow::bail!("--budget: {b} is out of range; allowed: at least 1");
    }
    if args.runs == 0 {
        anyhow::bail!("--runs: 0 is out of range; allowed: at least 1");
    }
    budgets.sort_unstable();
    budgets.dedup();
    let latency = match (&args.latency_table, &args.latency_column, args.target_ms) {
        (Some(_), Some(_), Some(t)) => {
            if !(t.is_finite() && t > 0.0) {
                anyhow::bail!("--target-ms: {t} is out of range; allowed: a positive number of ms");
            }
            let constraint = LatencyConstraint::from_name(&args.constraint)
                .or_else(|| {
                    [LatencyConstraint::Soft, LatencyConstraint::Hard]
                        .into_iter()
                        .find(|c| c.name().eq_ignore_ascii_case(&args.constraint))
                })
                .with_context(|| {
                    format!(
                        "--constraint {:?} is not a constraint; allowed: {}",
                        args.constraint,
                        LatencyConstraint::allowed()
                    )
                })?;
            Some(LatencyMode {
                target_ms: t,
                constraint,
            })
        }
        _ => None,
    };
    let table = Table::read(
        &args.table,
        &args.arch_column,
        &args.signal,
        &args.report,
        args.latency_table
            .as_deref()
            .zip(args.latency_column.as_deref()),
    )?;
    bench(
        &table,
        &BenchSettings {
            strategies,
            budgets,
            runs: args.runs,
            seed: args.seed,
            latency,
        },
    )
}

/// Settings given as JSON on the command line: fields of `defaults`' type (camelCase), others
/// rejected by name (the API server would prune them silently; a typo here is an error).
fn settings_json<T>(flag: &str, json: &str, defaults: &T) -> anyhow::Result<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    use anyhow::Context;
    let value: serde_json::Value =
        serde_json::from_str(json).with_context(|| format!("{flag}: not JSON"))?;
    let known = serde_json::to_value(defaults)?;
    let (Some(given), Some(known)) = (value.as_object(), known.as_object()) else {
        anyhow::bail!("{flag}: expected a JSON object of settings");
    };
    if let Some(k) = given.keys().find(|k| !known.contains_key(*k)) {
        anyhow::bail!(
            "{flag}: unknown field {k:?}; allowed: {}",
            known.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    serde_path_to_error::deserialize(value)
        .map_err(|e| anyhow::anyhow!("{flag}: field {}: {}", e.path(), e.inner()))
}

/// `nasop-trainer` beside this executable, else the name (found on `$PATH`).
fn default_trainer() -> std::path::PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("nasop-trainer")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| which_trainer().unwrap_or_else(|| "nasop-trainer".into()))
}

fn which_trainer() -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nasop-trainer"))
            .find(|p| p.is_file())
    })
}
