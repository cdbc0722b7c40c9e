//! `nasop bench-search`: strategies on a tabular benchmark (NAS-Bench-201) without training.
//!
//! Each run asks one child at a time, looks its signal up in the table as the reward, and
//! tells it back: a search of K queries costs milliseconds. The result of a run at budget K is
//! the reported value of the best-by-signal child among its first K queries; a run at the
//! largest budget gives every smaller budget as a prefix (strategies do not know the budget).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use nasop_crds::api::{Algorithm, LatencyConstraint, StrategySpec};
use nasop_crds::reward::{mnasnet_reward, pareto_front, HARD, SOFT};
use nasop_crds::space::nb201::Nb201SpaceSpec;
use nasop_crds::space::SearchSpaceSpec;
use nasop_crds::{Genotype, GenotypeHash, SearchSpace, SpaceKind};
use serde::Serialize;

use crate::strategy::{self, Strategy};

/// One child of the table: its signal, reported value and (latency mode) latency in ms.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Entry {
    /// The search signal (e.g. validation accuracy, %).
    pub signal: f64,
    /// The reported result (e.g. test accuracy, %).
    pub report: f64,
    /// Latency, ms (latency mode only).
    pub latency_ms: Option<f64>,
}

/// A tabular benchmark: every child of a space with its values.
pub struct Table {
    /// The space of the table's genotypes (the default NB201 space).
    pub space: SearchSpace,
    /// Entries by genotype hash.
    pub entries: HashMap<GenotypeHash, Entry>,
    /// The best reported value in the table (the optimum).
    pub optimum: f64,
}

impl Table {
    /// Reads the accuracy table (`arch_column`, `signal`, `report` columns) and, in latency
    /// mode, a latency table (`arch_column` and `latency_column`).
    ///
    /// # Errors
    /// A missing file or column (the columns there are listed), a genotype outside the NB201
    /// space, a non-numeric value, or a latency table that misses a child.
    pub fn read(
        path: &Path,
        arch_column: &str,
        signal: &str,
        report: &str,
        latency: Option<(&Path, &str)>,
    ) -> Result<Self> {
        let space = SearchSpaceSpec::Nb201(Nb201SpaceSpec::default()).build()?;
        let rows = read_columns(path, arch_column, &[signal, report])
            .map_err(|e| anyhow::anyhow!("--table: {e:#}"))?;
        let latencies: Option<HashMap<GenotypeHash, f64>> = match latency {
            Some((file, column)) => {
                let rows = read_columns(file, arch_column, &[column])
                    .map_err(|e| anyhow::anyhow!("--latency-table: {e:#}"))?;
                if let Some((h, v)) = rows.iter().find(|(_, v)| v[0] <= 0.0) {
                    bail!(
                        "{}: column {column:?}: latency {} ms of genotype {h} is not positive",
                        file.display(),
                        v[0]
                    );
                }
                Some(rows.into_iter().map(|(h, v)| (h, v[0])).collect())
            }
            None => None,
        };
        let mut entries = HashMap::with_capacity(rows.len());
        for (hash, values) in rows {
            let latency_ms = match &latencies {
                Some(l) => Some(*l.get(&hash).with_context(|| {
                    format!("the latency table has no row for genotype {hash}")
                })?),
                None => None,
            };
            entries.insert(
                hash,
                Entry {
                    signal: values[0],
                    report: values[1],
                    latency_ms,
                },
            );
        }
        let optimum = entries
            .values()
            .map(|e| e.report)
            .fold(f64::NEG_INFINITY, f64::max);
        Ok(Self {
            space,
            entries,
            optimum,
        })
    }
}

fn read_columns(
    path: &Path,
    arch_column: &str,
    columns: &[&str],
) -> Result<Vec<(GenotypeHash, Vec<f64>)>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{}: not a CSV table", path.display()))?
        .clone();
    let find = |name: &str| {
        headers.iter().position(|h| h == name).with_context(|| {
            format!(
                "{}: no column {name:?}; columns: {}",
                path.display(),
                headers.iter().collect::<Vec<_>>().join(", ")
            )
        })
    };
    let arch = find(arch_column)?;
    let at: Vec<usize> = columns.iter().map(|c| find(c)).collect::<Result<_>>()?;
    let mut out = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.with_context(|| format!("{}:{line}", path.display()))?;
        let genotype: Genotype = record[arch]
            .parse()
            .with_context(|| format!("{}:{line}: column {arch_column:?}", path.display()))?;
        if genotype.kind() != SpaceKind::Nb201 {
            bail!("{}:{line}: not an NB201 genotype", path.display());
        }
        let values = at
            .iter()
            .zip(columns)
            .map(|(&j, name)| {
                record[j]
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .with_context(|| {
                        format!(
                            "{}:{line}: column {name:?}: {:?} is not a number",
                            path.display(),
                            &record[j]
                        )
                    })
            })
            .collect::<Result<Vec<f64>>>()?;
        out.push((genotype.hash(), values));
    }
    if out.is_empty() {
        bail!("{}: no rows", path.display());
    }
    Ok(out)
}

/// The latency-aware mode: MnasNet reward with a latency target.
#[derive(Clone, Copy, Debug)]
pub struct LatencyMode {
    /// Target T, ms.
    pub target_ms: f64,
    /// Soft or hard exponents.
    pub constraint: LatencyConstraint,
}

/// The reward a strategy sees for an entry: the signal as a fraction, or MnasNet's reward
/// ACC x (LAT/T)^w (1807.11626 Eq. 2) in latency mode.
pub fn reward_of(entry: &Entry, latency: Option<LatencyMode>) -> f64 {
    let acc = entry.signal / 100.0;
    match (latency, entry.latency_ms) {
        (Some(mode), Some(lat)) => {
            let (alpha, beta) = match mode.constraint {
                LatencyConstraint::Soft => SOFT,
                LatencyConstraint::Hard => HARD,
            };
            mnasnet_reward(acc, lat, mode.target_ms, alpha, beta)
                .expect("table latencies and the target are positive")
        }
        _ => acc,
    }
}

/// What one run found by each budget.
pub struct RunTrace {
    /// Reported value of the best-by-signal child after each query.
    pub best_report: Vec<f64>,
    /// (accuracy %, latency ms) of every queried child, in order (latency mode).
    pub points: Vec<(f64, f64)>,
}

/// Runs `strategy` for `budget` sequential queries (ask one, tell it at once).
///
/// # Errors
/// When a proposed child is missing from the table.
pub fn run(
    strategy: &mut dyn Strategy,
    table: &Table,
    budget: usize,
    latency: Option<LatencyMode>,
) -> Result<RunTrace> {
    let mut best: Option<(f64, f64)> = None;
    let mut trace = RunTrace {
        best_report: Vec::with_capacity(budget),
        points: Vec::new(),
    };
    while trace.best_report.len() < budget {
        let Some(p) = strategy.ask(1).pop() else {
            break; // every child was queried
        };
        let hash = p.genotype.hash();
        let entry = table
            .entries
            .get(&hash)
            .with_context(|| format!("child {} is not in the table", p.genotype))?;
        let reward = reward_of(entry, latency);
        strategy.tell(p.id, reward)?;
        // In latency mode the "best" child is the best by reward.
        let key = if latency.is_some() {
            reward
        } else {
            entry.signal
        };
        if best.is_none_or(|(k, _)| key > k) {
            best = Some((key, entry.report));
        }
        if let Some(lat) = entry.latency_ms {
            trace.points.push((entry.report, lat));
        }
        trace.best_report.push(best.expect("one child queried").1);
    }
    Ok(trace)
}

/// One row of the result table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// Strategy name.
    pub strategy: String,
    /// Queries K.
    pub budget: usize,
    /// Runs R.
    pub runs: usize,
    /// Mean over runs of the reported value of the best-by-signal child.
    pub mean: f64,
    /// Its standard deviation (population).
    pub std: f64,
    /// Runs whose best-by-signal child has the table's optimal reported value.
    pub optimum_hits: usize,
    /// Latency mode: mean hypervolume of the queried children's Pareto front.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hypervolume: Option<f64>,
}

/// Hypervolume (area) dominated by `points` (accuracy up, latency down) above the reference
/// (accuracy `ref_acc`, latency `ref_lat`): larger is better.
pub fn hypervolume(points: &[(f64, f64)], ref_acc: f64, ref_lat: f64) -> f64 {
    let mut front: Vec<(f64, f64)> = pareto_front(points)
        .into_iter()
        .map(|i| points[i])
        .filter(|&(a, l)| a > ref_acc && l < ref_lat)
        .collect();
    front.sort_by(|a, b| a.1.total_cmp(&b.1));
    // Sweep by latency ascending: accuracy rises along the front.
    let mut area = 0.0;
    for (i, &(acc, lat)) in front.iter().enumerate() {
        let next_lat = front.get(i + 1).map_or(ref_lat, |p| p.1);
        area += (acc - ref_acc) * (next_lat - lat);
    }
    area
}

/// Settings of a benchmark.
pub struct BenchSettings {
    /// Strategies to run (their specs: algorithm and settings).
    pub strategies: Vec<StrategySpec>,
    /// Budgets K, ascending.
    pub budgets: Vec<usize>,
    /// Runs R per strategy.
    pub runs: usize,
    /// Seed of run 0; run r uses `seed + r` (wrapping).
    pub seed: u64,
    /// Latency mode.
    pub latency: Option<LatencyMode>,
}

/// Runs every strategy R times at the largest budget and summarizes each budget.
///
/// # Errors
/// As [`run`], or strategy settings out of range.
pub fn bench(table: &Table, settings: &BenchSettings) -> Result<Vec<Row>> {
    let max_budget = *settings.budgets.iter().max().context("no --budget")?;
    let children = table.entries.len();
    if max_budget > children {
        bail!("--budget: {max_budget} is out of range; allowed: 1..={children} (the table's children)");
    }
    let (ref_acc, ref_lat) = reference(table);
    let mut rows = Vec::new();
    for spec in &settings.strategies {
        let mut traces = Vec::with_capacity(settings.runs);
        for r in 0..settings.runs {
            let mut s = strategy::build(&table.space, spec, settings.seed.wrapping_add(r as u64))?;
            traces.push(run(s.as_mut(), table, max_budget, settings.latency)?);
        }
        for &k in &settings.budgets {
            let values: Vec<f64> = traces
                .iter()
                .map(|t| t.best_report[k.min(t.best_report.len()) - 1])
                .collect();
            let n = values.len() as f64;
            let mean = values.iter().sum::<f64>() / n;
            let std = (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt();
            let hypervolume = settings.latency.map(|_| {
                traces
                    .iter()
                    .map(|t| hypervolume(&t.points[..k.min(t.points.len())], ref_acc, ref_lat))
                    .sum::<f64>()
                    / n
            });
            rows.push(Row {
                strategy: name(spec),
                budget: k,
                runs: settings.runs,
                mean,
                std,
                optimum_hits: values
                    .iter()
                    .filter(|&&v| (v - table.optimum).abs() < 1e-9)
                    .count(),
                hypervolume,
            });
        }
    }
    Ok(rows)
}

/// Hypervolume reference point: the worst accuracy and latency of the table.
fn reference(table: &Table) -> (f64, f64) {
    table
        .entries
        .values()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, l), e| {
            (a.min(e.report), l.max(e.latency_ms.unwrap_or(0.0)))
        })
}

/// The display name of a strategy spec.
pub fn name(spec: &StrategySpec) -> String {
    spec.algorithm.name().to_string()
}

/// A strategy spec by CLI name (`ppo`, `reinforce`, `evolution`, `random`; case-insensitive).
///
/// # Errors
/// Names the allowed values.
pub fn strategy_spec(name: &str) -> Result<StrategySpec> {
    let algorithm = Algorithm::from_name(name)
        .or_else(|| {
            [
                Algorithm::Ppo,
                Algorithm::Reinforce,
                Algorithm::Evolution,
                Algorithm::Random,
            ]
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
        })
        .with_context(|| {
            format!(
                "--strategy {name:?} is not a strategy; allowed: {}",
                Algorithm::allowed()
            )
        })?;
    Ok(StrategySpec {
        algorithm,
        seed: None,
        dedupe: true,
        controller: None,
        evolution: None,
    })
}

/// The table as text: strategy, budget, mean +- std, optimum hits (and hypervolume).
pub fn render(rows: &[Row]) -> String {
    let hv = rows.iter().any(|r| r.hypervolume.is_some());
    let mut out = format!(
        "{:<10} {:>6} {:>5} {:>8} {:>7} {:>9}{}\n",
        "strategy",
        "budget",
        "runs",
        "mean",
        "std",
        "optimum",
        if hv { "  hypervolume" } else { "" }
    );
    for r in rows {
        out.push_str(&format!(
            "{:<10} {:>6} {:>5} {:>8.3} {:>7.3} {:>4}/{:<4}{}\n",
            r.strategy,
            r.budget,
            r.runs,
            r.mean,
            r.std,
            r.optimum_hits,
            r.runs,
            r.hypervolume
                .map(|h| format!("  {h:>11.2}"))
                .unwrap_or_default()
        ));
    }
    out
}
