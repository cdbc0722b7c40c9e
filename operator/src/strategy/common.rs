//! What every strategy keeps: the generator, ids, pending proposals and the dedupe set.

use std::collections::{BTreeMap, BTreeSet};

use nasop_crds::space::{mutate_decisions, uniform_index};
use nasop_crds::{GenotypeHash, SearchSpace};
use num_bigint::BigUint;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Proposal, ProposalId, StrategyCounts, StrategyError};

/// Tries of uniform sampling for an unproposed child before enumerating the space.
const RANDOM_TRIES: usize = 256;
/// Spaces up to this size are enumerated when uniform sampling keeps hitting proposed children.
const ENUMERABLE: u64 = 1 << 20;

/// A proposal waiting for its result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    /// Its decision vector.
    pub decisions: Vec<usize>,
    /// Log-probability at sampling time (controllers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_prob: Option<f64>,
}

/// The common state of every strategy.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Core {
    /// The algorithm's name (checked on restore).
    pub algorithm: String,
    /// Choices per decision of the space (checked on restore).
    pub choices: Vec<usize>,
    /// Whether a genotype is ever proposed twice.
    pub dedupe: bool,
    /// The one source of randomness.
    pub rng: ChaCha8Rng,
    /// Id of the next proposal.
    pub next_id: ProposalId,
    /// Hashes of every proposed genotype, with dedupe (empty without).
    pub seen: BTreeSet<GenotypeHash>,
    /// Proposals waiting for a result, by id.
    pub pending: BTreeMap<ProposalId, Pending>,
    /// Counters.
    pub counts: StrategyCounts,
}

impl Core {
    /// A fresh state for `algorithm` on `space`, seeded with `seed`.
    pub fn new(algorithm: &str, space: &SearchSpace, dedupe: bool, seed: u64) -> Self {
        Self {
            algorithm: algorithm.to_string(),
            choices: choices(space),
            dedupe,
            rng: ChaCha8Rng::seed_from_u64(seed),
            next_id: 0,
            seen: BTreeSet::new(),
            pending: BTreeMap::new(),
            counts: StrategyCounts::default(),
        }
    }

    /// Checks a restored core against the space it is restored for.
    ///
    /// # Errors
    /// [`StrategyError::State`] when the space's decisions differ or a pending proposal does
    /// not fit them.
    pub fn check(&self, space: &SearchSpace) -> Result<(), StrategyError> {
        let here = choices(space);
        if self.choices != here {
            return Err(StrategyError::State(format!(
                "saved for a space with choices per decision {:?}; this space has {:?}",
                self.choices, here
            )));
        }
        if self.pending.values().any(|p| !fits(&here, &p.decisions)) {
            return Err(StrategyError::State(
                "a pending proposal does not fit the space".into(),
            ));
        }
        Ok(())
    }

    /// Records `decisions` as a proposal unless dedupe has seen its genotype; `None` then.
    pub fn admit(
        &mut self,
        space: &SearchSpace,
        decisions: Vec<usize>,
        log_prob: Option<f64>,
    ) -> Option<Proposal> {
        let genotype = space
            .decode(&decisions)
            .expect("strategies only build vectors within the decisions' ranges");
        // The set serves dedupe alone: without dedupe it stays empty (it would grow the state
        // by about 19 bytes of JSON per proposal).
        if self.dedupe && !self.seen.insert(genotype.hash()) {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.counts.proposed += 1;
        self.counts.pending += 1;
        self.pending.insert(
            id,
            Pending {
                decisions: decisions.clone(),
                log_prob,
            },
        );
        Some(Proposal {
            id,
            genotype,
            decisions,
            log_prob,
        })
    }

    /// Whether `decisions` would be admitted (not yet proposed, or dedupe off).
    pub fn is_new(&self, space: &SearchSpace, decisions: &[usize]) -> bool {
        !self.dedupe
            || !self.seen.contains(
                &space
                    .decode(decisions)
                    .expect("vectors within range")
                    .hash(),
            )
    }

    /// A uniformly drawn decision vector.
    pub fn uniform(&mut self) -> Vec<usize> {
        let rng = &mut self.rng;
        self.choices
            .iter()
            .map(|&n| uniform_index(rng, n))
            .collect()
    }

    /// A decision vector not proposed yet: uniform draws first; for a small space whose
    /// draws keep hitting proposed children, a uniform pick among the unproposed ones. `None`
    /// when every child was proposed.
    pub fn unproposed(&mut self, space: &SearchSpace) -> Option<Vec<usize>> {
        for _ in 0..RANDOM_TRIES {
            let v = self.uniform();
            if self.is_new(space, &v) {
                return Some(v);
            }
        }
        let size: BigUint = space.size();
        if size > BigUint::from(ENUMERABLE) {
            // Hundreds of misses in a space this large: practically never; give up this time.
            return None;
        }
        let fresh: Vec<Vec<usize>> = (0..u64::try_from(size).expect("enumerable size"))
            .map(|i| vector_of(&self.choices, i))
            .filter(|v| self.is_new(space, v))
            .collect();
        if fresh.is_empty() {
            return None;
        }
        let pick = uniform_index(&mut self.rng, fresh.len());
        Some(fresh[pick].clone())
    }

    /// A single-decision mutant of `parent` not proposed yet (up to `tries` mutations).
    pub fn mutant(
        &mut self,
        space: &SearchSpace,
        parent: &[usize],
        tries: usize,
    ) -> Option<Vec<usize>> {
        for _ in 0..tries {
            let mut child = parent.to_vec();
            mutate_decisions(space.decisions(), &mut child, &mut self.rng)?;
            if self.is_new(space, &child) {
                return Some(child);
            }
        }
        None
    }

    /// Removes a pending proposal for its result.
    ///
    /// # Errors
    /// [`StrategyError::UnknownProposal`] when `id` is not pending.
    pub fn take(&mut self, id: ProposalId) -> Result<Pending, StrategyError> {
        let pending = self
            .pending
            .remove(&id)
            .ok_or(StrategyError::UnknownProposal(id))?;
        self.counts.pending -= 1;
        Ok(pending)
    }

    /// Checks a reward before anything changes.
    ///
    /// # Errors
    /// [`StrategyError::UnknownProposal`] or [`StrategyError::BadReward`] (not finite).
    pub fn check_reward(&self, id: ProposalId, reward: f64) -> Result<(), StrategyError> {
        if !self.pending.contains_key(&id) {
            return Err(StrategyError::UnknownProposal(id));
        }
        if !reward.is_finite() {
            return Err(StrategyError::BadReward { id, reward });
        }
        Ok(())
    }

    /// Takes proposal `id` for its reward: checks both, counts it told.
    ///
    /// # Errors
    /// As [`Self::check_reward`]; nothing changes then.
    pub fn receive(&mut self, id: ProposalId, reward: f64) -> Result<Pending, StrategyError> {
        self.check_reward(id, reward)?;
        let p = self.take(id)?;
        self.counts.told += 1;
        Ok(p)
    }

    /// `fail` for every strategy: the proposal is dropped, its genotype stays seen.
    ///
    /// # Errors
    /// [`StrategyError::UnknownProposal`] when `id` is not pending.
    pub fn fail(&mut self, id: ProposalId) -> Result<Pending, StrategyError> {
        let p = self.take(id)?;
        self.counts.failed += 1;
        Ok(p)
    }
}

/// Choices per decision.
pub fn choices(space: &SearchSpace) -> Vec<usize> {
    space.decisions().iter().map(|d| d.choices.len()).collect()
}

fn fits(choices: &[usize], v: &[usize]) -> bool {
    v.len() == choices.len() && v.iter().zip(choices).all(|(c, n)| c < n)
}

/// The `i`-th decision vector in mixed-radix order (last decision fastest).
fn vector_of(choices: &[usize], mut i: u64) -> Vec<usize> {
    let mut v = vec![0; choices.len()];
    for (slot, &n) in v.iter_mut().zip(choices).rev() {
        *slot = (i % n as u64) as usize;
        i /= n as u64;
    }
    v
}

/// A uniform number in [0, 1) from 53 random bits.
pub fn unit(rng: &mut ChaCha8Rng) -> f64 {
    use rand_chacha::rand_core::RngCore;
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}
