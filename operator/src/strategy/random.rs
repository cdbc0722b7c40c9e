//! Random search: every child drawn uniformly (the NAS baseline that is hard to beat by much;
//! Li & Talwalkar 2019, arXiv 1902.07638).

use nasop_crds::api::Algorithm;
use nasop_crds::SearchSpace;
use serde::{Deserialize, Serialize};

use super::common::Core;
use super::{Proposal, ProposalId, SavedState, Strategy, StrategyError};

/// Uniform random search (with dedupe: uniform over the children not yet proposed).
pub struct RandomSearch {
    space: SearchSpace,
    state: State,
}

#[derive(Serialize, Deserialize)]
struct State {
    core: Core,
}

impl RandomSearch {
    /// A new search seeded with `seed`.
    pub fn new(space: &SearchSpace, dedupe: bool, seed: u64) -> Self {
        Self {
            space: space.clone(),
            state: State {
                core: Core::new(Algorithm::Random.name(), space, dedupe, seed),
            },
        }
    }

    pub(super) fn restore(space: &SearchSpace, saved: SavedState) -> Result<Self, StrategyError> {
        let state: State = saved.json()?;
        state.core.check(space)?;
        Ok(Self {
            space: space.clone(),
            state,
        })
    }
}

impl Strategy for RandomSearch {
    fn algorithm(&self) -> Algorithm {
        Algorithm::Random
    }

    fn ask(&mut self, n: usize) -> Vec<Proposal> {
        let core = &mut self.state.core;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let Some(v) = core.unproposed(&self.space) else {
                break;
            };
            out.extend(core.admit(&self.space, v, None));
        }
        out
    }

    fn tell(&mut self, id: ProposalId, reward: f64) -> Result<(), StrategyError> {
        self.state.core.receive(id, reward).map(|_| ())
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
