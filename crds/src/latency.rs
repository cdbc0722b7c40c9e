//! An additive latency model over a search space's decisions: one learned latency per (decision,
//! choice), i.e. per op at each position, plus a constant, fit by ridge-regularized least squares
//! on probed children (the lookup-table model of FBNet, arXiv 1812.03443 Sec. 3.2, and
//! HW-NAS-Bench, arXiv 2103.10584). Used to rank or skip probes; it reports its own error.

use crate::space::Decision;

/// Ridge weight relative to the number of samples; it only makes the one-hot system (whose
/// columns sum to the constant per decision) solvable, not a regularizer of note.
pub const RIDGE: f64 = 1e-4;

/// A fitted lookup table: latency (ms) = `bias_ms` + sum over decisions of `table[d][choice]`.
#[derive(Clone, Debug, PartialEq)]
pub struct LatencyModel {
    /// Constant term, ms.
    pub bias_ms: f64,
    /// Per decision, the latency contribution of each choice, ms.
    pub table: Vec<Vec<f64>>,
}

/// Why a model cannot be fit.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    /// No samples.
    #[error("no samples to fit the latency model")]
    Empty,
    /// A sample does not match the decisions (count or a choice out of range).
    #[error("sample {index}: {message}")]
    Sample {
        /// Index of the sample.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// A latency is not a positive finite number of milliseconds.
    #[error("sample {index}: latency {value} ms is not a positive finite number")]
    Latency {
        /// Index of the sample.
        index: usize,
        /// The value.
        value: f64,
    },
}

impl LatencyModel {
    /// Fits the table to `samples` of (decision vector, measured latency in ms).
    ///
    /// # Errors
    /// [`ModelError`] for no samples, a decision vector that does not fit `decisions`, or a
    /// latency that is not positive and finite.
    pub fn fit(decisions: &[Decision], samples: &[(Vec<usize>, f64)]) -> Result<Self, ModelError> {
        if samples.is_empty() {
            return Err(ModelError::Empty);
        }
        let offsets: Vec<usize> = decisions
            .iter()
            .scan(1, |next, d| {
                let at = *next;
                *next += d.choices.len();
                Some(at)
            })
            .collect();
        let dim = 1 + decisions.iter().map(|d| d.choices.len()).sum::<usize>();
        let mut ata = vec![0.0; dim * dim];
        let mut aty = vec![0.0; dim];
        for (index, (vector, latency)) in samples.iter().enumerate() {
            if !(latency.is_finite() && *latency > 0.0) {
                return Err(ModelError::Latency {
                    index,
                    value: *latency,
                });
            }
            let active = active_columns(decisions, &offsets, vector)
                .map_err(|message| ModelError::Sample { index, message })?;
            for &i in &active {
                aty[i] += latency;
                for &j in &active {
                    ata[i * dim + j] += 1.0;
                }
            }
        }
        let ridge = RIDGE * samples.len() as f64;
        for i in 1..dim {
            ata[i * dim + i] += ridge;
        }
        let w = solve_spd(ata, aty, dim);
        let table = decisions
            .iter()
            .zip(&offsets)
            .map(|(d, &at)| w[at..at + d.choices.len()].to_vec())
            .collect();
        Ok(Self {
            bias_ms: w[0],
            table,
        })
    }

    /// Predicted latency of a decision vector, ms.
    ///
    /// # Panics
    /// When the vector has a different length than the table or a choice out of range.
    pub fn predict(&self, vector: &[usize]) -> f64 {
        assert_eq!(vector.len(), self.table.len(), "one choice per decision");
        self.bias_ms
            + vector
                .iter()
                .zip(&self.table)
                .map(|(&c, row)| row[c])
                .sum::<f64>()
    }
}

/// The model's own error estimate from probed children alone (no ground truth for the rest):
/// `folds`-fold cross-validated mean absolute percentage error, as a fraction. Sample `i` is
/// held out in fold `i % folds`, so the estimate is deterministic.
///
/// # Errors
/// [`ModelError`] as [`LatencyModel::fit`]; [`ModelError::Empty`] with fewer than 2 samples
/// or `folds < 2`.
pub fn cross_validated_mape(
    decisions: &[Decision],
    samples: &[(Vec<usize>, f64)],
    folds: usize,
) -> Result<f64, ModelError> {
    if samples.len() < 2 || folds < 2 {
        return Err(ModelError::Empty);
    }
    let folds = folds.min(samples.len());
    let mut predicted = Vec::with_capacity(samples.len());
    let mut actual = Vec::with_capacity(samples.len());
    for fold in 0..folds {
        let train: Vec<_> = samples
            .iter()
            .enumerate()
            .filter(|(i, _)| i % folds != fold)
            .map(|(_, s)| s.clone())
            .collect();
        let model = LatencyModel::fit(decisions, &train)?;
        for (_, (vector, latency)) in samples
            .iter()
            .enumerate()
            .filter(|(i, _)| i % folds == fold)
        {
            predicted.push(model.predict(vector));
            actual.push(*latency);
        }
    }
    Ok(mape(&predicted, &actual))
}

/// What to do about a child's latency once the model has predicted it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ProbePlan {
    /// Measure it on the device.
    Probe,
    /// Use the predicted latency (ms): the model is accurate enough and the child is far
    /// enough from the target that a measurement would not change which side of T it is on.
    UsePrediction(f64),
}

/// When a prediction may stand in for a probe.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProbePolicy {
    /// Largest cross-validated MAPE (fraction) at which predictions are trusted at all.
    pub max_model_error: f64,
    /// How many model errors a prediction must lie from the target T to be trusted.
    pub margin: f64,
}

impl Default for ProbePolicy {
    /// Trust a model within 5% error for children more than 3 errors (15%) from T.
    fn default() -> Self {
        Self {
            max_model_error: 0.05,
            margin: 3.0,
        }
    }
}

impl ProbePolicy {
    /// Probe or use the prediction, for a child predicted at `predicted_ms` by a model whose
    /// cross-validated MAPE is `model_error` (fraction), against latency target `target_ms`.
    /// Without a usable prediction (not positive and finite) the answer is to probe.
    pub fn plan(&self, predicted_ms: f64, model_error: f64, target_ms: f64) -> ProbePlan {
        let usable = predicted_ms.is_finite()
            && predicted_ms > 0.0
            && model_error.is_finite()
            && model_error <= self.max_model_error
            && target_ms > 0.0;
        if usable && (predicted_ms / target_ms).ln().abs() > self.margin * model_error {
            ProbePlan::UsePrediction(predicted_ms)
        } else {
            ProbePlan::Probe
        }
    }
}

/// Probe order key: children predicted nearest the latency target T come first (smaller key),
/// because their side of T, and so the reward's exponent, is least certain. `|ln(pred / T)|`;
/// an unusable prediction sorts first.
pub fn probe_priority(predicted_ms: f64, target_ms: f64) -> f64 {
    if predicted_ms > 0.0 && predicted_ms.is_finite() && target_ms > 0.0 {
        (predicted_ms / target_ms).ln().abs()
    } else {
        0.0
    }
}

fn active_columns(
    decisions: &[Decision],
    offsets: &[usize],
    vector: &[usize],
) -> Result<Vec<usize>, String> {
    if vector.len() != decisions.len() {
        return Err(format!(
            "{} choices for {} decisions",
            vector.len(),
            decisions.len()
        ));
    }
    let mut active = vec![0];
    for ((d, &at), &choice) in decisions.iter().zip(offsets).zip(vector) {
        if choice >= d.choices.len() {
            return Err(format!(
                "decision {} has {} choices; got {choice}",
                d.name,
                d.choices.len()
            ));
        }
        active.push(at + choice);
    }
    Ok(active)
}

/// Solves `A x = b` for symmetric positive-definite `A` (`n x n`, row-major) by Cholesky.
fn solve_spd(mut a: Vec<f64>, mut b: Vec<f64>, n: usize) -> Vec<f64> {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        let d = d.max(1e-12).sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
    }
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= a[i * n + k] * b[k];
        }
        b[i] = s / a[i * n + i];
    }
    for i in (0..n).rev() {
        let mut s = b[i];
        for k in i + 1..n {
            s -= a[k * n + i] * b[k];
        }
        b[i] = s / a[i * n + i];
    }
    b
}

/// Spearman's rank correlation of two equally long series (ties get their average rank).
///
/// # Panics
/// When the lengths differ.
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "equal lengths");
    pearson(&ranks(a), &ranks(b))
}

/// Mean absolute percentage error of `predicted` against `actual`, as a fraction.
///
/// # Panics
/// When the lengths differ.
pub fn mape(predicted: &[f64], actual: &[f64]) -> f64 {
    assert_eq!(predicted.len(), actual.len(), "equal lengths");
    let n = actual.len().max(1) as f64;
    predicted
        .iter()
        .zip(actual)
        .map(|(p, a)| ((p - a) / a).abs())
        .sum::<f64>()
        / n
}

fn ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&i, &j| x[i].total_cmp(&x[j]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            r[k] = rank;
        }
        i = j + 1;
    }
    r
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    sab / (saa * sbb).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decisions() -> Vec<Decision> {
        (0..3)
            .map(|i| Decision {
                name: format!("d{i}"),
                choices: vec!["a".into(), "b".into(), "c".into()],
            })
            .collect()
    }

    #[test]
    fn an_additive_latency_is_recovered_exactly_enough() {
        let truth = [[1.0, 2.0, 4.0], [0.5, 3.0, 0.0], [2.0, 2.5, 7.0]];
        let mut samples = Vec::new();
        for a in 0..3 {
            for b in 0..3 {
                for c in 0..3 {
                    let v = vec![a, b, c];
                    let lat = 10.0 + truth[0][a] + truth[1][b] + truth[2][c];
                    samples.push((v, lat));
                }
            }
        }
        let m = LatencyModel::fit(&decisions(), &samples).unwrap();
        for (v, lat) in &samples {
            assert!(
                (m.predict(v) - lat).abs() < 0.01,
                "{v:?}: {} vs {lat}",
                m.predict(v)
            );
        }
    }

    #[test]
    fn bad_samples_are_named() {
        assert_eq!(LatencyModel::fit(&decisions(), &[]), Err(ModelError::Empty));
        let e = LatencyModel::fit(&decisions(), &[(vec![0, 1], 3.0)]).unwrap_err();
        assert_eq!(e.to_string(), "sample 0: 2 choices for 3 decisions");
        let e = LatencyModel::fit(&decisions(), &[(vec![0, 1, 3], 3.0)]).unwrap_err();
        assert_eq!(e.to_string(), "sample 0: decision d2 has 3 choices; got 3");
        let e = LatencyModel::fit(&decisions(), &[(vec![0, 1, 2], f64::NAN)]).unwrap_err();
        assert!(matches!(e, ModelError::Latency { index: 0, .. }));
    }

    #[test]
    fn spearman_and_mape_match_hand_computed_values() {
        assert_eq!(
            spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 30.0, 40.0]),
            1.0
        );
        assert_eq!(spearman(&[1.0, 2.0, 3.0, 4.0], &[4.0, 3.0, 2.0, 1.0]), -1.0);
        // Ranks (1, 2, 3, 4) vs (2, 1, 4, 3): 1 - 6 * 4 / (4 * 15) = 0.6.
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[2.0, 1.0, 4.0, 3.0]) - 0.6).abs() < 1e-12);
        // Ties take the average rank: (1, 2.5, 2.5, 4).
        assert!(
            (spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 4.0]) - 0.948_683_298).abs() < 1e-6
        );
        assert!((mape(&[11.0, 9.0], &[10.0, 10.0]) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn cross_validation_reports_the_error_of_unseen_children() {
        let truth = [[1.0, 2.0, 4.0], [0.5, 3.0, 0.0], [2.0, 2.5, 7.0]];
        let all: Vec<(Vec<usize>, f64)> = (0..27)
            .map(|i| {
                let v = vec![i / 9, (i / 3) % 3, i % 3];
                let lat = 10.0 + truth[0][v[0]] + truth[1][v[1]] + truth[2][v[2]];
                (v, lat)
            })
            .collect();
        // Additive truth: held-out children are predicted exactly (up to the ridge).
        assert!(cross_validated_mape(&decisions(), &all, 5).unwrap() < 1e-3);
        // One interaction term the table cannot express: a real, positive error.
        let bent: Vec<_> = all
            .iter()
            .map(|(v, l)| (v.clone(), if v[0] == 2 && v[1] == 2 { l * 2.0 } else { *l }))
            .collect();
        let e = cross_validated_mape(&decisions(), &bent, 5).unwrap();
        assert!(e > 0.02 && e < 0.5, "{e}");
        assert_eq!(
            cross_validated_mape(&decisions(), &all[..1], 5),
            Err(ModelError::Empty)
        );
    }

    #[test]
    fn predictions_replace_probes_only_when_accurate_and_far_from_the_target() {
        let p = ProbePolicy::default();
        // 5% error, margin 3: trusted beyond |ln(pred/T)| > 0.15, i.e. below 8.61 or above 11.62 ms.
        assert_eq!(p.plan(8.0, 0.05, 10.0), ProbePlan::UsePrediction(8.0));
        assert_eq!(p.plan(12.0, 0.05, 10.0), ProbePlan::UsePrediction(12.0));
        assert_eq!(p.plan(9.0, 0.05, 10.0), ProbePlan::Probe);
        assert_eq!(p.plan(11.0, 0.05, 10.0), ProbePlan::Probe);
        assert_eq!(
            p.plan(2.0, 0.06, 10.0),
            ProbePlan::Probe,
            "model too inaccurate"
        );
        assert_eq!(p.plan(f64::NAN, 0.01, 10.0), ProbePlan::Probe);
        assert_eq!(p.plan(-1.0, 0.01, 10.0), ProbePlan::Probe);
        let mut keys = [(20.0, "far"), (10.5, "near"), (6.0, "mid")]
            .map(|(ms, name)| (probe_priority(ms, 10.0), name));
        keys.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert_eq!(keys.map(|k| k.1), ["near", "mid", "far"]);
        assert!((probe_priority(20.0, 10.0) - 2f64.ln()).abs() < 1e-12);
    }
}
