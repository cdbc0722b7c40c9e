//! `nasop latency-model`: fit the additive per-op latency table
//! ([`nasop_crds::latency::LatencyModel`]) on a few measured children of a table, predict every
//! child, and report rank correlation and error against the measurements.

use std::path::Path;

use anyhow::{bail, Context, Result};
use nasop_crds::latency::{cross_validated_mape, mape, spearman, LatencyModel};
use nasop_crds::space::rng::uniform_index;
use nasop_crds::Genotype;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::space_tool::default_space;

/// How well the model fit on `fit` children predicts all of them, for one latency column.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ColumnReport {
    /// The latency column (device).
    pub column: String,
    /// Children the table was fit on.
    pub fit: usize,
    /// Children predicted (every row of the table).
    pub predicted: usize,
    /// Spearman rank correlation of predicted and measured latency over all rows.
    pub spearman: f64,
    /// Mean absolute percentage error over all rows, as a fraction.
    pub mape: f64,
    /// Spearman over the rows not used for fitting.
    pub held_out_spearman: f64,
    /// The model's own estimate from the fit rows alone: 5-fold cross-validated MAPE, as a
    /// fraction (what a search without the full table can know).
    pub cv_mape: f64,
}

/// A table of children (genotype strings) and their measured latencies, ms.
pub struct LatencyTable {
    /// Decision vector of each row (in the default space of the genotypes' kind).
    pub vectors: Vec<Vec<usize>>,
    /// Column name and the latency of each row.
    pub columns: Vec<(String, Vec<f64>)>,
    decisions: Vec<nasop_crds::Decision>,
}

impl LatencyTable {
    /// Reads a CSV with a genotype column and latency columns (all numeric columns other than
    /// `index` when `columns` is empty).
    ///
    /// # Errors
    /// A missing file or column, a genotype that does not parse, genotypes of different spaces,
    /// or a latency that is not a positive number (naming the row and column).
    pub fn read(path: &Path, arch_column: &str, columns: &[String]) -> Result<Self> {
        let mut reader =
            csv::Reader::from_path(path).with_context(|| format!("{}", path.display()))?;
        let headers = reader.headers()?.clone();
        let position = |name: &str| {
            headers.iter().position(|h| h == name).with_context(|| {
                format!(
                    "{}: no column {name:?}; columns: {}",
                    path.display(),
                    headers.iter().collect::<Vec<_>>().join(", ")
                )
            })
        };
        let arch = position(arch_column)?;
        let wanted: Vec<String> = if columns.is_empty() {
            headers
                .iter()
                .filter(|h| *h != arch_column && *h != "index")
                .map(String::from)
                .collect()
        } else {
            columns.to_vec()
        };
        let indices = wanted
            .iter()
            .map(|c| position(c))
            .collect::<Result<Vec<_>>>()?;
        let mut vectors = Vec::new();
        let mut values: Vec<Vec<f64>> = vec![Vec::new(); wanted.len()];
        let mut space = None;
        for (row, record) in reader.records().enumerate() {
            let record = record.with_context(|| format!("{}: row {}", path.display(), row + 1))?;
            let genotype: Genotype = record[arch]
                .parse()
                .with_context(|| format!("{}: row {}: {arch_column}", path.display(), row + 1))?;
            let space = space.get_or_insert_with(|| default_space(genotype.kind()));
            let vector = space
                .encode(&genotype)
                .with_context(|| format!("{}: row {}: {arch_column}", path.display(), row + 1))?;
            vectors.push(vector);
            for ((column, &i), out) in wanted.iter().zip(&indices).zip(&mut values) {
                let v: f64 = record[i].trim().parse().unwrap_or(f64::NAN);
                if !(v.is_finite() && v > 0.0) {
                    bail!(
                        "{}: row {}: {column} is {:?}; expected a positive number of ms",
                        path.display(),
                        row + 1,
                        &record[i]
                    );
                }
                out.push(v);
            }
        }
        let Some(space) = space else {
            bail!("{}: no rows", path.display())
        };
        Ok(Self {
            vectors,
            columns: wanted.into_iter().zip(values).collect(),
            decisions: space.decisions().to_vec(),
        })
    }

    /// Fits on `fit` rows drawn uniformly without replacement (seeded) and evaluates on all.
    ///
    /// # Errors
    /// When `fit` is 0 or more than the rows, or the fit fails.
    pub fn evaluate(&self, fit: usize, seed: u64) -> Result<Vec<ColumnReport>> {
        let n = self.vectors.len();
        if fit == 0 || fit > n {
            bail!("--fit: {fit} is out of range; allowed: 1..={n} (the table's rows)");
        }
        let mut order: Vec<usize> = (0..n).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for i in 0..fit {
            let j = i + uniform_index(&mut rng, n - i);
            order.swap(i, j);
        }
        let (chosen, rest) = order.split_at(fit);
        self.columns
            .iter()
            .map(|(column, latency)| {
                let samples: Vec<(Vec<usize>, f64)> = chosen
                    .iter()
                    .map(|&i| (self.vectors[i].clone(), latency[i]))
                    .collect();
                let model = LatencyModel::fit(&self.decisions, &samples)?;
                let cv_mape = if fit >= 2 {
                    cross_validated_mape(&self.decisions, &samples, 5)?
                } else {
                    f64::NAN
                };
                let predicted: Vec<f64> = self.vectors.iter().map(|v| model.predict(v)).collect();
                let held: (Vec<f64>, Vec<f64>) =
                    rest.iter().map(|&i| (predicted[i], latency[i])).unzip();
                Ok(ColumnReport {
                    column: column.clone(),
                    fit,
                    predicted: n,
                    spearman: spearman(&predicted, latency),
                    mape: mape(&predicted, latency),
                    held_out_spearman: if held.0.len() > 1 {
                        spearman(&held.0, &held.1)
                    } else {
                        f64::NAN
                    },
                    cv_mape,
                })
            })
            .collect()
    }
}
