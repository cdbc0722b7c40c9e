//! Regularized (aging) evolution, Real et al. 2019 (arXiv 1802.01548, Algorithm 1): a
//! population of the P newest children; each new child is a single-decision mutant of the best
//! of S children drawn from it; the oldest leaves when a new one arrives.

use std::collections::VecDeque;

use nasop_crds::api::{Algorithm, EvolutionSpec};
use nasop_crds::space::uniform_index;
use nasop_crds::SearchSpace;
use serde::{Deserialize, Serialize};

use super::common::Core;
use super::{check_evolution, Proposal, ProposalId, SavedState, Strategy, StrategyError};

/// Mutations tried (each from a new tournament) before a duplicate-free random child is used.
const MUTATION_TRIES: usize = 64;

/// A child in the population.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Member {
    decisions: Vec<usize>,
    reward: f64,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct State {
    core: Core,
    /// Oldest first, in the order results arrived.
    population: VecDeque<Member>,
}

/// Regularized evolution.
pub struct Evolution {
    space: SearchSpace,
    population_size: usize,
    sample_size: usize,
    state: State,
}

impl Evolution {
    /// A new search with population P and tournament size S from `spec`.
    ///
    /// # Errors
    /// [`StrategyError::Settings`] when P < 2 or S is not in 1..=P.
    pub fn new(
        space: &SearchSpace,
        spec: &EvolutionSpec,
        dedupe: bool,
        seed: u64,
    ) -> Result<Self, StrategyError> {
        let (population_size, sample_size) = check_evolution(spec)?;
        Ok(Self {
            space: space.clone(),
            population_size,
            sample_size,
            state: State {
                core: Core::new(Algorithm::Evolution.name(), space, dedupe, seed),
                population: VecDeque::new(),
            },
        })
    }

    pub(super) fn restore(
        space: &SearchSpace,
        spec: &EvolutionSpec,
        saved: SavedState,
    ) -> Result<Self, StrategyError> {
        let mut e = Self::new(space, spec, true, 0)?;
        let state: State = saved.json()?;
        state.core.check(space)?;
        e.state = state;
        Ok(e)
    }

    /// The parent: the best of S members drawn without replacement (ties: the older).
    fn tournament(&mut self) -> Vec<usize> {
        let State { core, population } = &mut self.state;
        let n = population.len();
        let mut order: Vec<usize> = (0..n).collect();
        let s = self.sample_size.min(n);
        for i in 0..s {
            let j = i + uniform_index(&mut core.rng, n - i);
            order.swap(i, j);
        }
        let best = order[..s]
            .iter()
            .copied()
            .max_by(|&a, &b| {
                population[a]
                    .reward
                    .total_cmp(&population[b].reward)
                    .then(b.cmp(&a))
            })
            .expect("population not empty");
        population[best].decisions.clone()
    }
}

impl Strategy for Evolution {
    fn algorithm(&self) -> Algorithm {
        Algorithm::Evolution
    }

    fn ask(&mut self, n: usize) -> Vec<Proposal> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let mut child = None;
            if self.state.population.len() >= self.population_size {
                for _ in 0..MUTATION_TRIES {
                    let parent = self.tournament();
                    if let Some(c) = self.state.core.mutant(&self.space, &parent, 1) {
                        child = Some(c);
                        break;
                    }
                }
            }
            let core = &mut self.state.core;
            let Some(v) = child.or_else(|| core.unproposed(&self.space)) else {
                break;
            };
            out.extend(core.admit(&self.space, v, None));
        }
        out
    }

    fn tell(&mut self, id: ProposalId, reward: f64) -> Result<(), StrategyError> {
        let State { core, population } = &mut self.state;
        let p = core.receive(id, reward)?;
        population.push_back(Member {
            decisions: p.decisions,
            reward,
        });
        while population.len() > self.population_size {
            population.pop_front();
        }
        Ok(())
    }

    fn core(&self) -> &Core {
        &self.state.core
    }

    fn core_mut(&mut self) -> &mut Core {
        &mut self.state.core
    }

    fn state_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.state).expect("state serializes")
    }
}
