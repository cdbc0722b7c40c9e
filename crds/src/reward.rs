//! Rewards of completed children and the accuracy/latency Pareto front; pure functions.
//!
//! - Without a latency objective the reward is the validation accuracy (NASNet, 1707.07012
//!   Sec. 4).
//! - With one it is MnasNet's ACC(m) x [LAT(m) / T]^w, w = alpha if LAT(m) <= T else beta
//!   (1807.11626 Eq. 2): soft constraint alpha = beta = -0.07, hard constraint alpha = 0,
//!   beta = -1 (Sec. 3).
//!
//! The raw accuracy and latency are always kept beside the reward (the reward is derived and
//! can be recomputed for another T).

use crate::api::{LatencyConstraint, LatencyObjective};

/// Exponents (alpha, beta) of the soft constraint (1807.11626 Sec. 3: -0.07 both).
pub const SOFT: (f64, f64) = (-0.07, -0.07);
/// Exponents (alpha, beta) of the hard constraint (1807.11626 Sec. 3: 0 and -1).
pub const HARD: (f64, f64) = (0.0, -1.0);

/// MnasNet's reward ACC x (LAT / T)^w with w = `alpha` when `latency_ms <= target_ms`, else
/// `beta`. `accuracy` is a fraction; latencies in ms. Returns `None` when the latency or target
/// is not a positive finite number or the accuracy is not finite.
pub fn mnasnet_reward(
    accuracy: f64,
    latency_ms: f64,
    target_ms: f64,
    alpha: f64,
    beta: f64,
) -> Option<f64> {
    if !(accuracy.is_finite()
        && latency_ms.is_finite()
        && latency_ms > 0.0
        && target_ms.is_finite()
        && target_ms > 0.0)
    {
        return None;
    }
    let w = if latency_ms <= target_ms { alpha } else { beta };
    Some(accuracy * (latency_ms / target_ms).powf(w))
}

impl LatencyObjective {
    /// The exponents (alpha, beta): the constraint's preset, overridden field by field by
    /// `alpha` and `beta` when given.
    pub fn exponents(&self) -> (f64, f64) {
        let (alpha, beta) = match self.constraint {
            LatencyConstraint::Soft => SOFT,
            LatencyConstraint::Hard => HARD,
        };
        (self.alpha.unwrap_or(alpha), self.beta.unwrap_or(beta))
    }
}

/// The reward of a child: its accuracy without a latency objective, MnasNet's reward with one.
/// `None` when a latency objective is set but the latency is missing or invalid.
pub fn reward(
    objective: Option<&LatencyObjective>,
    accuracy: f64,
    latency_ms: Option<f64>,
) -> Option<f64> {
    match objective {
        None => accuracy.is_finite().then_some(accuracy),
        Some(o) => {
            let (alpha, beta) = o.exponents();
            mnasnet_reward(accuracy, latency_ms?, o.target_ms, alpha, beta)
        }
    }
}

/// Indices of the Pareto-optimal points of (accuracy, latency ms): no other point has
/// accuracy >= and latency <= with one of them strict. Sorted by ascending latency (then
/// descending accuracy); exact duplicates are all kept. O(n log n).
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..points.len())
        .filter(|&i| points[i].0.is_finite() && points[i].1.is_finite())
        .collect();
    order.sort_by(|&i, &j| {
        points[i]
            .1
            .total_cmp(&points[j].1)
            .then(points[j].0.total_cmp(&points[i].0))
    });
    let mut front: Vec<usize> = Vec::new();
    let mut best = f64::NEG_INFINITY;
    for i in order {
        let (acc, lat) = points[i];
        let duplicate = front.last().is_some_and(|&k| points[k] == (acc, lat));
        if acc > best || duplicate {
            front.push(i);
            best = best.max(acc);
        }
    }
    front
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objective(
        constraint: LatencyConstraint,
        alpha: Option<f64>,
        beta: Option<f64>,
    ) -> LatencyObjective {
        LatencyObjective {
            target_ms: 75.0,
            constraint,
            alpha,
            beta,
            device_class: "pixel-1".into(),
        }
    }

    #[test]
    fn soft_and_hard_rewards_match_hand_computed_values() {
        // Soft: 0.75 * (50/75)^-0.07 = 0.75 * exp(0.07 * ln 1.5) = 0.75 * 1.028789 = 0.771592
        let r = mnasnet_reward(0.75, 50.0, 75.0, -0.07, -0.07).unwrap();
        assert!((r - 0.771_592).abs() < 1e-6, "{r}");
        // Soft above T: 0.75 * (100/75)^-0.07 = 0.75 * 0.980064... = 0.735048...
        let r = mnasnet_reward(0.75, 100.0, 75.0, -0.07, -0.07).unwrap();
        assert!((r - 0.735_048).abs() < 1e-6, "{r}");
        // Hard: no bonus below T, accuracy * T / LAT above.
        assert_eq!(mnasnet_reward(0.75, 50.0, 75.0, 0.0, -1.0), Some(0.75));
        assert!((mnasnet_reward(0.75, 150.0, 75.0, 0.0, -1.0).unwrap() - 0.375).abs() < 1e-12);
        // At T exactly the reward is the accuracy.
        assert_eq!(mnasnet_reward(0.6, 75.0, 75.0, -0.07, -0.07), Some(0.6));
        assert_eq!(mnasnet_reward(0.6, 0.0, 75.0, -0.07, -0.07), None);
        assert_eq!(mnasnet_reward(0.6, f64::NAN, 75.0, -0.07, -0.07), None);
    }

    #[test]
    fn presets_and_overrides_give_the_exponents() {
        assert_eq!(
            objective(LatencyConstraint::Soft, None, None).exponents(),
            (-0.07, -0.07)
        );
        assert_eq!(
            objective(LatencyConstraint::Hard, None, None).exponents(),
            (0.0, -1.0)
        );
        assert_eq!(
            objective(LatencyConstraint::Hard, None, Some(-0.5)).exponents(),
            (0.0, -0.5)
        );
        assert_eq!(reward(None, 0.9, None), Some(0.9));
        let hard = objective(LatencyConstraint::Hard, None, None);
        assert_eq!(reward(Some(&hard), 0.9, Some(150.0)), Some(0.45));
        assert_eq!(reward(Some(&hard), 0.9, None), None);
    }

    #[test]
    fn pareto_front_keeps_exactly_the_undominated_points() {
        let points = [
            (0.90, 80.0),
            (0.85, 40.0),
            (0.88, 60.0),
            (0.80, 45.0),
            (0.91, 120.0),
            (0.87, 60.0),
            (0.85, 40.0),
        ];
        // (0.80, 45) is dominated by (0.85, 40); (0.87, 60) by (0.88, 60).
        assert_eq!(pareto_front(&points), vec![1, 6, 2, 0, 4]);
        assert!(pareto_front(&[]).is_empty());
        assert_eq!(pareto_front(&[(f64::NAN, 1.0), (0.5, 2.0)]), vec![1]);
    }
}
