//! Search strategies behind one ask/tell interface, shared by the operator and `nasop run`.
//!
//! `ask(n)` proposes up to `n` children. `tell(id, reward)` credits a reward to exactly the
//! decisions that proposal `id` was sampled with. `fail(id)` drops a proposal that will never
//! have a reward. Results may arrive in any order, and some never arrive. A strategy learns when
//! enough results are in: a controller batch, or each result for evolution.
//!
//! `save()` gives bytes that `restore` turns back into a strategy that makes exactly the same
//! proposals from then on. The bytes are a safetensors file: the controller's weights and Adam
//! moments as tensors, everything else (baseline, counters, RNG state, pending proposals, the
//! dedupe set) as JSON in the metadata key [`STATE_KEY`].
//!
//! Pure: no I/O, no clocks. All randomness comes from one seeded ChaCha8 generator in the state.

mod common;
mod controller;
mod evolution;
mod random;

use std::collections::HashMap;

use nasop_crds::api::{Algorithm, ControllerSpec, EvolutionSpec, StrategySpec};
use nasop_crds::{Genotype, SearchSpace};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

pub use common::{Core, Pending};
pub use controller::{Controller, ControllerSettings, LearnerHandle, PolicyGradient, Wake};
pub use evolution::Evolution;
pub use random::RandomSearch;

/// Identifies a proposal within one search: 0, 1, 2, ... in the order they were made.
pub type ProposalId = u64;

/// A child proposed by a strategy.
#[derive(Clone, Debug, PartialEq)]
pub struct Proposal {
    /// The proposal's id; pass it to `tell` or `fail`.
    pub id: ProposalId,
    /// The child.
    pub genotype: Genotype,
    /// Its decision vector (one choice index per decision of the space).
    pub decisions: Vec<usize>,
    /// Log-probability of the decisions under the policy when they were sampled (controller
    /// strategies; `None` for evolution and random search).
    pub log_prob: Option<f64>,
}

/// Why a strategy call failed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StrategyError {
    /// `tell`/`fail` for an id that is not pending.
    #[error("proposal {0} is not pending (never proposed, or its result was already given)")]
    UnknownProposal(ProposalId),
    /// A reward that is not a finite number.
    #[error("reward of proposal {id} is {reward}; allowed: a finite number")]
    BadReward {
        /// The proposal.
        id: ProposalId,
        /// The value given.
        reward: f64,
    },
    /// Settings out of range (the field is named).
    #[error("{0}")]
    Settings(String),
    /// Saved state that cannot be restored.
    #[error("strategy state cannot be restored: {0}")]
    State(String),
}

/// Counters every strategy keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StrategyCounts {
    /// Proposals made.
    pub proposed: u64,
    /// Rewards received.
    pub told: u64,
    /// Proposals failed (no reward will come).
    pub failed: u64,
    /// Proposals still waiting for a reward or a failure.
    pub pending: u64,
    /// Policy updates made (controller batches; 0 for the others).
    pub updates: u64,
}

/// The ask/tell interface of every search strategy.
pub trait Strategy: Send {
    /// The algorithm.
    fn algorithm(&self) -> Algorithm;

    /// Proposes up to `n` children. With dedupe, none was proposed before in this search.
    /// Fewer than `n` (possibly none) means the space has no unproposed child left.
    fn ask(&mut self, n: usize) -> Vec<Proposal>;

    /// Gives the reward of proposal `id`; a controller updates its policy when a batch is full.
    ///
    /// # Errors
    /// [`StrategyError::UnknownProposal`] when `id` is not pending, [`StrategyError::BadReward`]
    /// for a reward that is not finite (the proposal stays pending).
    fn tell(&mut self, id: ProposalId, reward: f64) -> Result<(), StrategyError>;

    /// Drops proposal `id`: it failed and will give no reward. Its genotype stays proposed
    /// (dedupe does not propose it again).
    ///
    /// # Errors
    /// [`StrategyError::UnknownProposal`] when `id` is not pending.
    fn fail(&mut self, id: ProposalId) -> Result<(), StrategyError> {
        self.core_mut().fail(id).map(|_| ())
    }

    /// Ids of the proposals waiting for a result, ascending.
    fn pending(&self) -> Vec<ProposalId> {
        self.core().pending.keys().copied().collect()
    }

    /// Counters.
    fn counts(&self) -> StrategyCounts {
        self.core().counts
    }

    /// The whole state as bytes (safetensors with the JSON state in the metadata).
    fn save(&self) -> Vec<u8> {
        SavedState::encode(&self.state_json(), &self.tensors())
    }

    /// The state every strategy keeps (generator, ids, pending proposals, dedupe set).
    fn core(&self) -> &Core;

    /// The same, to change.
    fn core_mut(&mut self) -> &mut Core;

    /// The strategy's JSON state (saved in the metadata).
    fn state_json(&self) -> serde_json::Value;

    /// Named float32 tensors of the state as (name, shape, values); none by default.
    fn tensors(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        Vec::new()
    }

    /// Results told since the last [`Strategy::checkpoint`]; `None` before the first, and
    /// always for strategies without tensors (their whole state is small JSON).
    fn journal_len(&self) -> Option<usize> {
        None
    }

    /// The state without its tensors, as JSON, with the results told since the last
    /// checkpoint: [`restore_journal`] of the checkpoint's bytes and these gives this strategy
    /// back. For a controller about 100 bytes per result since the checkpoint plus the
    /// generator, counters and pending proposals, against about 1.05 MB for [`Strategy::save`]
    /// at 100 LSTM units. `None` without a checkpoint (see [`Strategy::journal_len`]).
    fn save_journal(&self) -> Option<Vec<u8>> {
        None
    }

    /// The whole state as [`Strategy::save`] gives it, stored as the checkpoint: the journal
    /// restarts, empty, from this state (one snapshot, also with a background learner).
    /// Strategies without tensors keep no journal and just save.
    fn checkpoint(&mut self) -> Vec<u8> {
        self.save()
    }

    /// Moves the policy updates to a thread of their own and returns a handle on it
    /// (controllers; called again, the same learner). `tell` then only queues the result, and
    /// `ask` samples from the newest weights the learner has installed. `None`: the strategy
    /// learns inline (evolution, random search: their updates are cheap).
    fn learn_in_background(&mut self) -> Option<LearnerHandle> {
        None
    }

    /// The background learner, once [`Strategy::learn_in_background`] started one.
    fn learner(&self) -> Option<LearnerHandle> {
        None
    }
}

/// Default seed of a strategy whose spec gives none (the operator passes one derived from the
/// search's UID instead).
pub const DEFAULT_SEED: u64 = 0;

/// Builds the strategy of `spec` for `space`, seeded with `spec.seed` or `seed`.
///
/// # Errors
/// [`StrategyError::Settings`] naming the field of settings that are out of range.
pub fn build(
    space: &SearchSpace,
    spec: &StrategySpec,
    seed: u64,
) -> Result<Box<dyn Strategy>, StrategyError> {
    let seed = spec.seed.map_or(seed, |s| s as u64);
    Ok(match spec.algorithm {
        Algorithm::Random => Box::new(RandomSearch::new(space, spec.dedupe, seed)),
        Algorithm::Evolution => Box::new(Evolution::new(
            space,
            &spec.evolution.clone().unwrap_or_default(),
            spec.dedupe,
            seed,
        )?),
        Algorithm::Ppo | Algorithm::Reinforce => Box::new(Controller::new(
            space,
            controller_settings(spec)?,
            spec.dedupe,
            seed,
        )?),
    })
}

/// Restores a strategy from [`Strategy::save`] bytes, for the same space and spec.
///
/// # Errors
/// [`StrategyError::State`] for bytes that are not a saved state, a state of another
/// algorithm, or one saved for a space with other decisions; [`StrategyError::Settings`] as
/// [`build`].
pub fn restore(
    space: &SearchSpace,
    spec: &StrategySpec,
    bytes: &[u8],
) -> Result<Box<dyn Strategy>, StrategyError> {
    let saved = SavedState::decode(bytes)?;
    check_algorithm(&saved, spec)?;
    Ok(match spec.algorithm {
        Algorithm::Random => Box::new(RandomSearch::restore(space, saved)?),
        Algorithm::Evolution => Box::new(Evolution::restore(
            space,
            &spec.evolution.clone().unwrap_or_default(),
            saved,
        )?),
        Algorithm::Ppo | Algorithm::Reinforce => Box::new(Controller::restore(
            space,
            controller_settings(spec)?,
            saved,
        )?),
    })
}

/// Restores a controller from a checkpoint (the bytes of
/// [`Strategy::checkpoint`]) and a later [`Strategy::save_journal`], for the same space and
/// spec.
///
/// # Errors
/// As [`restore`] for the checkpoint; [`StrategyError::State`] for an algorithm without
/// journals (evolution, random search), or a journal that does not belong to the checkpoint.
pub fn restore_journal(
    space: &SearchSpace,
    spec: &StrategySpec,
    checkpoint: &[u8],
    journal: &[u8],
) -> Result<Box<dyn Strategy>, StrategyError> {
    let saved = SavedState::decode(checkpoint)?;
    check_algorithm(&saved, spec)?;
    match spec.algorithm {
        Algorithm::Ppo | Algorithm::Reinforce => Ok(Box::new(Controller::restore_journal(
            space,
            controller_settings(spec)?,
            saved,
            journal,
        )?)),
        other => Err(StrategyError::State(format!(
            "a policy journal is kept by controllers (PPO, REINFORCE) only, the spec says {:?}",
            other.name()
        ))),
    }
}

/// Checks that `saved` was saved by the algorithm of `spec`.
fn check_algorithm(saved: &SavedState, spec: &StrategySpec) -> Result<(), StrategyError> {
    let algorithm = saved
        .json
        .get("core")
        .and_then(|c| c.get("algorithm"))
        .and_then(|a| a.as_str())
        .unwrap_or("");
    if algorithm != spec.algorithm.name() {
        return Err(StrategyError::State(format!(
            "saved by algorithm {algorithm:?}, the spec says {:?}",
            spec.algorithm.name()
        )));
    }
    Ok(())
}

/// The controller settings of a PPO or REINFORCE spec.
fn controller_settings(spec: &StrategySpec) -> Result<ControllerSettings, StrategyError> {
    let rule = if spec.algorithm == Algorithm::Ppo {
        PolicyGradient::Ppo
    } else {
        PolicyGradient::Reinforce
    };
    ControllerSettings::from_spec(&spec.controller.clone().unwrap_or_default(), rule)
}

/// The metadata key of a saved state's JSON.
pub const STATE_KEY: &str = "nasop.strategy";

/// A decoded saved state: the JSON and the float32 tensors by name.
pub struct SavedState {
    json: serde_json::Value,
    text: String,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl SavedState {
    pub(crate) fn encode(
        json: &serde_json::Value,
        tensors: &[(String, Vec<usize>, Vec<f32>)],
    ) -> Vec<u8> {
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
            .iter()
            .map(|(name, shape, values)| {
                let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                (name.clone(), shape.clone(), raw)
            })
            .collect();
        let views: Vec<(String, TensorView<'_>)> = bytes
            .iter()
            .map(|(name, shape, raw)| {
                let view = TensorView::new(Dtype::F32, shape.clone(), raw)
                    .expect("shape matches the data");
                (name.clone(), view)
            })
            .collect();
        let metadata = Some(HashMap::from([(
            STATE_KEY.to_string(),
            serde_json::to_string(json).expect("state serializes"),
        )]));
        safetensors::tensor::serialize(views, metadata).expect("tensors serialize")
    }

    fn decode(bytes: &[u8]) -> Result<Self, StrategyError> {
        let bad = |e: String| StrategyError::State(e);
        let (_, meta) = SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("not a safetensors state ({e:?})")))?;
        let text = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get(STATE_KEY))
            .ok_or_else(|| bad(format!("no {STATE_KEY} metadata")))?;
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(format!("{STATE_KEY}: {e}")))?;
        let text = text.clone();
        let file = SafeTensors::deserialize(bytes).map_err(|e| bad(format!("{e:?}")))?;
        let mut tensors = HashMap::new();
        for (name, view) in file.tensors() {
            if view.dtype() != Dtype::F32 {
                return Err(bad(format!("tensor {name} is {:?}, not F32", view.dtype())));
            }
            let values = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            tensors.insert(name, (view.shape().to_vec(), values));
        }
        Ok(Self {
            json,
            text,
            tensors,
        })
    }

    fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, StrategyError> {
        // From the text, not the value: JSON object keys (proposal ids) parse as integers only so.
        serde_json::from_str(&self.text).map_err(|e| StrategyError::State(e.to_string()))
    }
}

/// Checks the evolution settings (also enforced by the CRD schema; the local runner and the
/// benchmark build strategies without the API server).
fn check_evolution(spec: &EvolutionSpec) -> Result<(usize, usize), StrategyError> {
    if !(2..=100_000).contains(&spec.population_size) {
        return Err(StrategyError::Settings(format!(
            "strategy.evolution.populationSize: {} is out of range; allowed: 2..=100000",
            spec.population_size
        )));
    }
    if spec.sample_size < 1 || spec.sample_size > spec.population_size {
        return Err(StrategyError::Settings(format!(
            "strategy.evolution.sampleSize: {} is out of range; allowed: 1..=populationSize ({})",
            spec.sample_size, spec.population_size
        )));
    }
    Ok((spec.population_size as usize, spec.sample_size as usize))
}

/// Checks a controller spec's ranges (also enforced by the CRD schema).
fn check_controller(spec: &ControllerSpec) -> Result<(), StrategyError> {
    let range = |field: &str, value: f64, lo: f64, hi: f64| {
        if value.is_finite() && (lo..=hi).contains(&value) {
            Ok(())
        } else {
            Err(StrategyError::Settings(format!(
                "strategy.controller.{field}: {value} is out of range; allowed: {lo}..={hi}"
            )))
        }
    };
    range("lstmUnits", spec.lstm_units as f64, 1.0, 4096.0)?;
    range("initRange", spec.init_range, 0.0, 1.0)?;
    range("learningRate", spec.learning_rate, 0.0, 1.0)?;
    range("entropyWeight", spec.entropy_weight, 0.0, 1.0)?;
    range("baselineDecay", spec.baseline_decay, 0.0, 1.0)?;
    range("batchSize", spec.batch_size as f64, 1.0, 10000.0)?;
    range("ppoClip", spec.ppo_clip, 0.0, 1.0)?;
    range("updateEpochs", spec.update_epochs as f64, 1.0, 100.0)?;
    range("replayTop", spec.replay_top as f64, 0.0, 1000.0)?;
    Ok(())
}

#[cfg(test)]
mod tests;
