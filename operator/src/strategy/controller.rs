//! NASNet's controller (Zoph et al. 2018, arXiv 1707.07012, Sec. 3 and App. A): a one-layer
//! LSTM that samples one decision per step from a softmax over that decision's choices; the
//! embedding of the choice just made is the next step's input, a learned start embedding the
//! first's. Trained with PPO (clipped ratio) or REINFORCE, an exponential-moving-average reward
//! baseline, an entropy bonus, Adam, and optionally a replay of the best children so far.
//! Runs on the CPU with libtorch (tch).
//!
//! Tensor shapes (B children, H LSTM units = embedding size, C = total choices of all
//! decisions): start `[1, H]`, embeddings `[C, H]` (row `offset[d] + choice`), LSTM
//! `w_ih [4H, H]`, `w_hh [4H, H]`, `b_ih`, `b_hh [4H]`, softmax heads `head_w [C, H]`,
//! `head_b [C]` (rows of decision d: `offset[d] .. offset[d] + choices[d]`).

use nasop_crds::api::{Advantage, Algorithm, ControllerSpec};
use nasop_crds::SearchSpace;
use rand_chacha::ChaCha8Rng;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::common::{choices, unit, Core};
use super::{
    check_controller, Proposal, ProposalId, SavedState, Strategy, StrategyCounts, StrategyError,
};

/// Sampling rounds before the controller falls back to mutants of its own samples (a policy
/// that has converged keeps proposing children already tried).
const SAMPLE_ROUNDS: usize = 8;
/// Mutations tried per fallback child before a uniform unproposed one.
const MUTATION_TRIES: usize = 32;
/// Adam's constants (Kingma & Ba 2015, the paper's defaults).
const ADAM_BETA1: f64 = 0.9;
const ADAM_BETA2: f64 = 0.999;
const ADAM_EPS: f64 = 1e-8;

/// How the policy learns from a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyGradient {
    /// Proximal policy optimization (Schulman et al. 2017): clipped probability ratio against
    /// the policy that sampled the child, `update_epochs` passes per batch.
    Ppo,
    /// REINFORCE (Williams 1992): one step along advantage x grad log-probability per batch.
    Reinforce,
}

/// Controller settings, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct ControllerSettings {
    /// PPO or REINFORCE.
    pub rule: PolicyGradient,
    /// LSTM units H (also the embedding size).
    pub units: i64,
    /// Initial weights uniform in [-init_range, init_range].
    pub init_range: f64,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Entropy bonus weight.
    pub entropy_weight: f64,
    /// EMA baseline decay.
    pub baseline_decay: f64,
    /// Results per policy update.
    pub batch_size: usize,
    /// PPO clip epsilon.
    pub ppo_clip: f64,
    /// Passes over each batch (PPO; REINFORCE makes one).
    pub update_epochs: usize,
    /// How rewards become advantages.
    pub advantage: Advantage,
    /// Best children replayed in every update (0: none).
    pub replay_top: usize,
}

impl ControllerSettings {
    /// Settings from the `strategy.controller` spec.
    ///
    /// # Errors
    /// [`StrategyError::Settings`] naming the field out of range.
    pub fn from_spec(spec: &ControllerSpec, rule: PolicyGradient) -> Result<Self, StrategyError> {
        check_controller(spec)?;
        Ok(Self {
            rule,
            units: i64::from(spec.lstm_units),
            init_range: spec.init_range,
            learning_rate: spec.learning_rate,
            entropy_weight: spec.entropy_weight,
            baseline_decay: spec.baseline_decay,
            batch_size: spec.batch_size as usize,
            ppo_clip: spec.ppo_clip,
            update_epochs: if rule == PolicyGradient::Ppo {
                spec.update_epochs as usize
            } else {
                1
            },
            advantage: spec.advantage,
            replay_top: spec.replay_top as usize,
        })
    }
}

/// A result waiting for its batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Completed {
    decisions: Vec<usize>,
    log_prob: f64,
    reward: f64,
}

/// What a policy update reads and changes besides the weights and Adam moments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Learner {
    baseline: Option<f64>,
    completed: Vec<Completed>,
    adam_steps: i64,
    elite: Vec<Completed>,
    updates: u64,
}

/// The results told since the last checkpoint (weights and Adam moments stored apart), with
/// the learner state at that checkpoint: told again, in order, to the checkpoint's policy they
/// make the same updates and so give the current weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Journal {
    base: Learner,
    told: Vec<Completed>,
}

/// The saved JSON state, as read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct State {
    core: Core,
    /// EMA of rewards; `None` until the first batch (then its mean).
    baseline: Option<f64>,
    /// Results not yet used for an update, in arrival order.
    completed: Vec<Completed>,
    /// Adam steps taken.
    adam_steps: i64,
    /// The best results so far (at most `replay_top`), best first (replayed in updates).
    elite: Vec<Completed>,
    /// Since the last checkpoint (`None` before the first).
    #[serde(default)]
    journal: Option<Journal>,
}

impl State {
    /// The learner's part (its update count is the core's).
    fn learner(&self) -> Learner {
        Learner {
            baseline: self.baseline,
            completed: self.completed.clone(),
            adam_steps: self.adam_steps,
            elite: self.elite.clone(),
            updates: self.core.counts.updates,
        }
    }
}

/// The saved JSON state, as written (the same fields as [`State`], borrowed).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StateOut<'a> {
    core: &'a Core,
    baseline: Option<f64>,
    completed: &'a [Completed],
    adam_steps: i64,
    elite: &'a [Completed],
    #[serde(skip_serializing_if = "Option::is_none")]
    journal: Option<&'a Journal>,
}

/// The LSTM policy's parameters and Adam moments.
struct Policy {
    /// Choices per decision and the first row of each decision in the stacked tensors.
    choices: Vec<i64>,
    offsets: Vec<i64>,
    start: Tensor,
    embed: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
    head_w: Tensor,
    head_b: Tensor,
    /// Adam first and second moments, in [`Policy::NAMES`] order.
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl Policy {
    const NAMES: [&'static str; 8] = [
        "start", "embed", "w_ih", "w_hh", "b_ih", "b_hh", "head_w", "head_b",
    ];

    fn shapes(choices: &[i64], h: i64) -> [Vec<i64>; 8] {
        let c: i64 = choices.iter().sum();
        [
            vec![1, h],
            vec![c.max(1), h],
            vec![4 * h, h],
            vec![4 * h, h],
            vec![4 * h],
            vec![4 * h],
            vec![c.max(1), h],
            vec![c.max(1)],
        ]
    }

    /// Parameters uniform in [-range, range], drawn from `rng` (not libtorch's generator, so
    /// that the seed alone fixes them).
    fn new(choices: Vec<i64>, h: i64, range: f64, rng: &mut ChaCha8Rng) -> Self {
        let shapes = Self::shapes(&choices, h);
        let params: Vec<Tensor> = shapes
            .iter()
            .map(|shape| {
                let n: i64 = shape.iter().product();
                let values: Vec<f32> = (0..n)
                    .map(|_| ((2.0 * unit(rng) - 1.0) * range) as f32)
                    .collect();
                Tensor::from_slice(&values).view(shape.as_slice())
            })
            .collect();
        let zeros = || {
            shapes
                .iter()
                .map(|s| Tensor::zeros(s.as_slice(), (Kind::Float, tch::Device::Cpu)))
                .collect()
        };
        Self::assemble(choices, params, zeros(), zeros())
    }

    fn assemble(choices: Vec<i64>, params: Vec<Tensor>, m: Vec<Tensor>, v: Vec<Tensor>) -> Self {
        let offsets = choices
            .iter()
            .scan(0, |next, &c| {
                let at = *next;
                *next += c;
                Some(at)
            })
            .collect();
        let mut p = params.into_iter().map(|t| t.set_requires_grad(true));
        let mut next = || p.next().expect("eight parameters");
        Self {
            choices,
            offsets,
            start: next(),
            embed: next(),
            w_ih: next(),
            w_hh: next(),
            b_ih: next(),
            b_hh: next(),
            head_w: next(),
            head_b: next(),
            m,
            v,
        }
    }

    /// A deep copy (weights and moments), for an update made apart from this policy: into
    /// `spare` (a policy of the same shapes, its buffers reused) when given.
    fn fork(&self, spare: Option<Self>) -> Self {
        match spare {
            Some(mut into) => {
                tch::no_grad(|| {
                    let (params, m, v) = into.parts_mut();
                    for (to, from) in params.into_iter().zip(self.params()) {
                        to.copy_(from);
                    }
                    let moments = m.iter_mut().zip(&self.m);
                    for (to, from) in moments.chain(v.iter_mut().zip(&self.v)) {
                        to.copy_(from);
                    }
                });
                into
            }
            None => {
                let params = self.params().iter().map(|t| t.detach().copy()).collect();
                let copy = |ts: &[Tensor]| ts.iter().map(Tensor::copy).collect();
                Self::assemble(self.choices.clone(), params, copy(&self.m), copy(&self.v))
            }
        }
    }

    /// The parameters (in [`Policy::NAMES`] order) and the Adam moments, to change.
    fn parts_mut(&mut self) -> ([&mut Tensor; 8], &mut [Tensor], &mut [Tensor]) {
        (
            [
                &mut self.start,
                &mut self.embed,
                &mut self.w_ih,
                &mut self.w_hh,
                &mut self.b_ih,
                &mut self.b_hh,
                &mut self.head_w,
                &mut self.head_b,
            ],
            &mut self.m,
            &mut self.v,
        )
    }

    /// Log-probability of decision vector `v` (no gradients).
    fn log_prob(&self, v: &[usize]) -> f64 {
        tch::no_grad(|| f64::try_from(self.evaluate(&[v.to_vec()]).0).expect("scalar"))
    }

    fn params(&self) -> [&Tensor; 8] {
        [
            &self.start,
            &self.embed,
            &self.w_ih,
            &self.w_hh,
            &self.b_ih,
            &self.b_hh,
            &self.head_w,
            &self.head_b,
        ]
    }

    fn units(&self) -> i64 {
        self.w_hh.size()[1]
    }

    /// Logits `[B, choices[d]]` of decision `d` from hidden state `h` `[B, H]`.
    fn logits(&self, d: usize, h: &Tensor) -> Tensor {
        let (at, n) = (self.offsets[d], self.choices[d]);
        h.matmul(&self.head_w.narrow(0, at, n).tr()) + self.head_b.narrow(0, at, n)
    }

    fn step(&self, x: &Tensor, state: &(Tensor, Tensor)) -> (Tensor, Tensor) {
        x.lstm_cell(
            &[&state.0, &state.1],
            &self.w_ih,
            &self.w_hh,
            Some(&self.b_ih),
            Some(&self.b_hh),
        )
    }

    fn initial(&self, b: i64) -> (Tensor, (Tensor, Tensor)) {
        let h = self.units();
        let zeros = Tensor::zeros([b, h], (Kind::Float, tch::Device::Cpu));
        (
            self.start.expand([b, h], false),
            (zeros.shallow_clone(), zeros),
        )
    }

    /// Samples `b` decision vectors with `rng`; returns them with their log-probabilities.
    fn sample(&self, b: usize, rng: &mut ChaCha8Rng) -> Vec<(Vec<usize>, f64)> {
        tch::no_grad(|| {
            let (mut x, mut state) = self.initial(b as i64);
            let mut out: Vec<(Vec<usize>, f64)> = vec![(Vec::new(), 0.0); b];
            for d in 0..self.choices.len() {
                state = self.step(&x, &state);
                let logp = self.logits(d, &state.0).log_softmax(-1, Kind::Float);
                let n = self.choices[d] as usize;
                let flat = Vec::<f32>::try_from(logp.contiguous().view([-1]))
                    .expect("float log-probabilities");
                let mut picked = Vec::with_capacity(b);
                for (row, (decisions, total)) in out.iter_mut().enumerate() {
                    let lp = &flat[row * n..(row + 1) * n];
                    let c = draw(lp, rng);
                    decisions.push(c);
                    *total += f64::from(lp[c]);
                    picked.push(self.offsets[d] + c as i64);
                }
                x = self.embed.index_select(0, &Tensor::from_slice(&picked));
            }
            out
        })
    }

    /// Log-probability `[B]` and entropy `[B]` (sums over decisions) of given vectors, with
    /// gradients.
    fn evaluate(&self, vectors: &[Vec<usize>]) -> (Tensor, Tensor) {
        let b = vectors.len() as i64;
        let (mut x, mut state) = self.initial(b);
        let zeros = || Tensor::zeros([b], (Kind::Float, tch::Device::Cpu));
        let (mut log_probs, mut entropies) = (vec![zeros()], vec![zeros()]);
        for d in 0..self.choices.len() {
            state = self.step(&x, &state);
            let logp = self.logits(d, &state.0).log_softmax(-1, Kind::Float);
            let chosen: Vec<i64> = vectors.iter().map(|v| v[d] as i64).collect();
            let index = Tensor::from_slice(&chosen);
            log_probs.push(logp.gather(1, &index.unsqueeze(1), false).squeeze_dim(1));
            entropies.push(-(logp.exp() * &logp).sum_dim_intlist(1, false, Kind::Float));
            x = self.embed.index_select(0, &(index + self.offsets[d]));
        }
        let total =
            |terms: Vec<Tensor>| Tensor::stack(&terms, 0).sum_dim_intlist(0, false, Kind::Float);
        (total(log_probs), total(entropies))
    }

    /// One Adam step (step number `t`, from 1) on the gradients in the parameters.
    fn adam(&mut self, lr: f64, t: i64) {
        tch::no_grad(|| {
            let c1 = 1.0 - ADAM_BETA1.powi(t as i32);
            let c2 = 1.0 - ADAM_BETA2.powi(t as i32);
            let (params, m, v) = self.parts_mut();
            for ((p, m), v) in params.into_iter().zip(m).zip(v) {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                *m = &*m * ADAM_BETA1 + &g * (1.0 - ADAM_BETA1);
                *v = &*v * ADAM_BETA2 + (&g * &g) * (1.0 - ADAM_BETA2);
                let update = (&*m / c1) / ((&*v / c2).sqrt() + ADAM_EPS) * lr;
                let _ = p.f_sub_(&update).expect("in-place update");
                p.zero_grad();
            }
        });
    }

    fn tensors(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let mut out = Vec::new();
        let all = self
            .params()
            .into_iter()
            .zip(Self::NAMES)
            .map(|(t, n)| (n, t));
        let moments = self
            .m
            .iter()
            .zip(Self::NAMES)
            .map(|(t, n)| (t, format!("adam_m.{n}")))
            .chain(
                self.v
                    .iter()
                    .zip(Self::NAMES)
                    .map(|(t, n)| (t, format!("adam_v.{n}"))),
            );
        for (name, t) in all {
            out.push(export(name.to_string(), t));
        }
        for (t, name) in moments {
            out.push(export(name, t));
        }
        out
    }

    fn from_saved(choices: Vec<i64>, h: i64, saved: &SavedState) -> Result<Self, StrategyError> {
        let shapes = Self::shapes(&choices, h);
        let load = |name: String, shape: &Vec<i64>| -> Result<Tensor, StrategyError> {
            let (s, values) = saved
                .tensors
                .get(&name)
                .ok_or_else(|| StrategyError::State(format!("tensor {name} is missing")))?;
            let want: Vec<usize> = shape.iter().map(|&x| x as usize).collect();
            if *s != want {
                return Err(StrategyError::State(format!(
                    "tensor {name} has shape {s:?}; the controller needs {want:?} (lstmUnits or the space changed?)"
                )));
            }
            Ok(Tensor::from_slice(values).view(shape.as_slice()))
        };
        let mut params = Vec::new();
        let mut m = Vec::new();
        let mut v = Vec::new();
        for (name, shape) in Self::NAMES.iter().zip(&shapes) {
            params.push(load(name.to_string(), shape)?);
            m.push(load(format!("adam_m.{name}"), shape)?);
            v.push(load(format!("adam_v.{name}"), shape)?);
        }
        Ok(Self::assemble(choices, params, m, v))
    }
}

/// Centered ranks of `rewards`, evenly spaced from -1 (lowest) to +1 (highest); tied
/// rewards share their mean rank; a single reward gets 0.
fn centered_ranks(rewards: &[f64]) -> Vec<f32> {
    let n = rewards.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| rewards[a].total_cmp(&rewards[b]));
    let mut out = vec![0f32; n];
    let span = (n.max(2) - 1) as f64;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && rewards[order[j + 1]] == rewards[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0;
        for &k in &order[i..=j] {
            out[k] = (2.0 * rank / span - 1.0) as f32;
        }
        i = j + 1;
    }
    if n == 1 {
        out[0] = 0.0;
    }
    out
}

fn export(name: String, t: &Tensor) -> (String, Vec<usize>, Vec<f32>) {
    let shape = t.size().iter().map(|&s| s as usize).collect();
    let values = Vec::<f32>::try_from(t.detach().contiguous().view([-1])).expect("float tensor");
    (name, shape, values)
}

/// A choice drawn from log-probabilities `lp` with one uniform number (inverse CDF).
fn draw(lp: &[f32], rng: &mut ChaCha8Rng) -> usize {
    let u = unit(rng);
    let mut acc = 0.0;
    for (i, &l) in lp.iter().enumerate() {
        acc += f64::from(l).exp();
        if u < acc {
            return i;
        }
    }
    lp.len() - 1
}

/// The policy and what its updates read and change: the part of a controller that a
/// background learner works on.
struct Learning {
    policy: Policy,
    learner: Learner,
    /// The policy an update replaced, whose buffers the next fork reuses (a background
    /// learner allocates no new 1 MB policy per update).
    spare: Option<Policy>,
}

impl Learning {
    /// Updates the policy can make now (full batches of results not yet learned from).
    fn behind(&self, batch: usize) -> u64 {
        (self.learner.completed.len() / batch) as u64
    }

    /// A copy to make the next update on, apart from this one (the first batch of results
    /// only).
    fn fork(&mut self, batch: usize) -> Self {
        Self {
            policy: self.policy.fork(self.spare.take()),
            learner: Learner {
                completed: self.learner.completed[..batch].to_vec(),
                ..self.learner.clone()
            },
            spare: None,
        }
    }

    /// Takes the result of one update made on [`Learning::fork`]: its weights and state, and
    /// the batch it learned from leaves the queue (results told since stay).
    fn install(&mut self, updated: Self, batch: usize) {
        self.learner.completed.drain(..batch);
        self.spare = Some(std::mem::replace(&mut self.policy, updated.policy));
        self.learner = Learner {
            completed: std::mem::take(&mut self.learner.completed),
            ..updated.learner
        };
    }

    /// One policy update from the first `batch_size` results not yet learned from.
    fn update(&mut self, settings: &ControllerSettings) {
        let state = &mut self.learner;
        let fresh: Vec<Completed> = state.completed.drain(..settings.batch_size).collect();
        // Priority-queue replay (Abolafia et al. 2018, arXiv 1801.03526): the best children so
        // far join every update, ranked with the fresh ones, their log-probabilities taken
        // under the current policy (ratio 1 at the first PPO epoch).
        let replay: Vec<Completed> = state
            .elite
            .iter()
            .map(|e| Completed {
                log_prob: self.policy.log_prob(&e.decisions),
                ..e.clone()
            })
            .collect();
        let top = settings.replay_top;
        if top > 0 {
            state.elite.extend(fresh.iter().cloned());
            // Stable sort: among equal rewards the earlier result stays ahead.
            state.elite.sort_by(|a, b| b.reward.total_cmp(&a.reward));
            state.elite.truncate(top);
        }
        let batch: Vec<Completed> = fresh.iter().cloned().chain(replay).collect();
        let rewards: Vec<f64> = batch.iter().map(|c| c.reward).collect();
        let n = rewards.len() as f64;
        let mean = rewards.iter().sum::<f64>() / n;
        // The baseline before this batch (the first batch's mean to start).
        let baseline = state.baseline.unwrap_or(mean);
        let decay = settings.baseline_decay;
        let advantages: Vec<f32> = match settings.advantage {
            Advantage::BatchRank => centered_ranks(&rewards),
            Advantage::Baseline => {
                // The spread of the batch scales the advantages, so that the learning rate
                // means the same for any reward scale.
                let spread =
                    (rewards.iter().map(|r| (r - mean) * (r - mean)).sum::<f64>() / n).sqrt();
                let scale = if spread > 1e-12 { spread } else { 1.0 };
                rewards
                    .iter()
                    .map(|r| ((r - baseline) / scale) as f32)
                    .collect()
            }
        };
        state.baseline = Some(
            fresh
                .iter()
                .map(|c| c.reward)
                .fold(baseline, |b, r| decay * b + (1.0 - decay) * r),
        );
        let vectors: Vec<Vec<usize>> = batch.iter().map(|c| c.decisions.clone()).collect();
        let old: Vec<f32> = batch.iter().map(|c| c.log_prob as f32).collect();
        let advantage = Tensor::from_slice(&advantages);
        let old = Tensor::from_slice(&old);
        for _ in 0..settings.update_epochs {
            let (log_prob, entropy) = self.policy.evaluate(&vectors);
            let objective = match settings.rule {
                PolicyGradient::Ppo => {
                    let ratio = (&log_prob - &old).exp();
                    let eps = settings.ppo_clip;
                    let clipped = ratio.clamp(1.0 - eps, 1.0 + eps);
                    (&ratio * &advantage).minimum(&(clipped * &advantage))
                }
                PolicyGradient::Reinforce => &log_prob * &advantage,
            };
            let loss = -(objective.mean(Kind::Float)
                + entropy.mean(Kind::Float) * settings.entropy_weight);
            loss.backward();
            state.adam_steps += 1;
            self.policy.adam(settings.learning_rate, state.adam_steps);
        }
        state.updates += 1;
    }
}

/// Called once by a background learner when it has caught up (see
/// [`LearnerHandle::wake_when_behind_at_most`]).
pub type Wake = Box<dyn FnOnce() + Send>;

/// What a controller shares with its background learner.
struct Shared {
    inner: Mutex<Inner>,
    /// Signalled when results arrive, an update is installed, or the learner stops.
    changed: Condvar,
    batch: usize,
}

struct Inner {
    learning: Learning,
    /// The controller was dropped: the learner thread ends.
    stop: bool,
    /// Why the learner thread ended with results left (a panic in an update).
    failed: Option<String>,
    /// Called once the learner is at most this many updates behind.
    waiter: Option<(u64, Wake)>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // An update runs on a copy (`Learning::fork`): a panic in one leaves this consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A handle on a controller's background learner (see [`Strategy::learn_in_background`]).
#[derive(Clone)]
pub struct LearnerHandle(Arc<Shared>);

impl LearnerHandle {
    /// Updates the policy can make but has not made yet: full batches of results told and not
    /// yet learned from.
    ///
    /// # Errors
    /// [`StrategyError::State`] when the learner thread failed (an update panicked); the
    /// results it had not learned from are still in the state, and a restore learns from them.
    pub fn behind(&self) -> Result<u64, StrategyError> {
        let inner = self.0.lock();
        match &inner.failed {
            Some(why) => Err(StrategyError::State(format!(
                "the background policy learner stopped: {why}"
            ))),
            None => Ok(inner.learning.behind(self.0.batch)),
        }
    }

    /// Calls `wake` once the learner is at most `limit` updates behind (at once if it is
    /// already, or has failed), on the caller's thread or the learner's. Replaces a wake
    /// registered before and not yet called (that one is dropped uncalled).
    pub fn wake_when_behind_at_most(&self, limit: u64, wake: Wake) {
        let mut inner = self.0.lock();
        if inner.failed.is_some() || inner.learning.behind(self.0.batch) <= limit {
            drop(inner);
            wake();
        } else {
            inner.waiter = Some((limit, wake));
        }
    }

    /// Results per update (the controller's batch size).
    pub fn batch_size(&self) -> usize {
        self.0.batch
    }

    /// Blocks until the learner has made every update the results told so far allow.
    ///
    /// # Errors
    /// As [`LearnerHandle::behind`].
    pub fn wait_caught_up(&self) -> Result<(), StrategyError> {
        let mut inner = self.0.lock();
        while inner.failed.is_none() && inner.learning.behind(self.0.batch) > 0 {
            inner = self
                .0
                .changed
                .wait(inner)
                .unwrap_or_else(|e| e.into_inner());
        }
        drop(inner);
        self.behind().map(|_| ())
    }
}

/// The background learner's loop: one update at a time on a copy of the policy, installed
/// when done, so that proposals are sampled from the newest weights meanwhile without waiting
/// for an update. Updates are made in the order of the results, as inline ones are.
fn learn(shared: Arc<Shared>, settings: ControllerSettings) {
    // libtorch's OpenMP setting is per thread: without this the learner's updates would run
    // on one OpenMP thread per core (each with its own buffers) for matrices of a few hundred
    // elements, and could sum in another order than the inline learner.
    tch::set_num_threads(1);
    let batch = shared.batch;
    loop {
        let mut work = {
            let mut inner = shared.lock();
            loop {
                if inner.stop {
                    return;
                }
                if inner.learning.behind(batch) > 0 {
                    break;
                }
                inner = shared
                    .changed
                    .wait(inner)
                    .unwrap_or_else(|e| e.into_inner());
            }
            inner.learning.fork(batch)
        };
        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            work.update(&settings);
            work
        }));
        let mut inner = shared.lock();
        let wake = match done {
            Ok(work) => {
                inner.learning.install(work, batch);
                let behind = inner.learning.behind(batch);
                match inner.waiter.take() {
                    Some((limit, wake)) if behind <= limit => Some(wake),
                    other => {
                        inner.waiter = other;
                        None
                    }
                }
            }
            Err(panic) => {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "an update panicked".into());
                inner.failed = Some(why);
                inner.waiter.take().map(|(_, wake)| wake)
            }
        };
        let failed = inner.failed.is_some();
        drop(inner);
        shared.changed.notify_all();
        if let Some(wake) = wake {
            wake();
        }
        if failed {
            return;
        }
    }
}

/// The controller strategy (PPO or REINFORCE).
///
/// Learns inline by default: `tell` makes the updates a full batch allows before it returns.
/// After [`Strategy::learn_in_background`] a thread of its own makes them, and `ask` samples
/// from the newest weights installed (the operator: a reconcile never waits for an update).
/// The updates are the same either way, made from the results in the order told; only which
/// weights a proposal is sampled from depends on timing, and its log-probability under those
/// is kept with it (PPO's ratio corrects for the difference).
pub struct Controller {
    space: SearchSpace,
    settings: ControllerSettings,
    /// Generator, ids, pending proposals, counters (`counts.updates` is the learner's).
    core: Core,
    /// Since the last checkpoint (`None` before the first).
    journal: Option<Journal>,
    shared: Arc<Shared>,
    background: bool,
}

impl Drop for Controller {
    fn drop(&mut self) {
        if self.background {
            self.shared.lock().stop = true;
            self.shared.changed.notify_all();
        }
    }
}

impl Controller {
    /// A new controller with weights drawn from `seed`.
    ///
    /// Sets libtorch to one CPU thread for the process: the controller's tensors are small
    /// enough that a thread pool only adds overhead, and a fixed thread count keeps the float
    /// results, and so the proposals, the same on every machine (a search resumed on another
    /// node continues exactly).
    ///
    /// # Errors
    /// None yet; settings are checked by [`ControllerSettings::from_spec`].
    pub fn new(
        space: &SearchSpace,
        settings: ControllerSettings,
        dedupe: bool,
        seed: u64,
    ) -> Result<Self, StrategyError> {
        tch::set_num_threads(1);
        let name = algorithm(&settings).name();
        let mut core = Core::new(name, space, dedupe, seed);
        let ch: Vec<i64> = choices(space).iter().map(|&c| c as i64).collect();
        let policy = Policy::new(ch, settings.units, settings.init_range, &mut core.rng);
        let learner = Learner {
            baseline: None,
            completed: Vec::new(),
            adam_steps: 0,
            elite: Vec::new(),
            updates: 0,
        };
        Ok(Self::assemble(space, settings, core, None, policy, learner))
    }

    fn assemble(
        space: &SearchSpace,
        settings: ControllerSettings,
        core: Core,
        journal: Option<Journal>,
        policy: Policy,
        learner: Learner,
    ) -> Self {
        let batch = settings.batch_size;
        Self {
            space: space.clone(),
            settings,
            core,
            journal,
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner {
                    learning: Learning {
                        policy,
                        learner,
                        spare: None,
                    },
                    stop: false,
                    failed: None,
                    waiter: None,
                }),
                changed: Condvar::new(),
                batch,
            }),
            background: false,
        }
    }

    pub(super) fn restore(
        space: &SearchSpace,
        settings: ControllerSettings,
        saved: SavedState,
    ) -> Result<Self, StrategyError> {
        tch::set_num_threads(1);
        let state: State = saved.json()?;
        state.core.check(space)?;
        let ch: Vec<i64> = choices(space).iter().map(|&c| c as i64).collect();
        let policy = Policy::from_saved(ch, settings.units, &saved)?;
        let learner = state.learner();
        Ok(Self::assemble(
            space,
            settings,
            state.core,
            state.journal,
            policy,
            learner,
        ))
    }

    /// Restores a controller from a checkpoint (a [`Strategy::checkpoint`]) and a later
    /// [`Strategy::save_journal`]: the results the journal records are told again to the
    /// checkpoint's policy, which makes the same updates up to the number the journal records
    /// (a background learner may have been behind; the rest are made after), and the journal's
    /// state (generator, pending proposals, counters) is taken as it was saved. Exact on the
    /// same build and CPU (one libtorch thread); elsewhere the weights may differ in the last
    /// bits, never the proposals already made.
    ///
    /// # Errors
    /// [`StrategyError::State`] for a journal that is not JSON of this controller, that does
    /// not start at this checkpoint, or whose replay does not reproduce its recorded baseline,
    /// batch and update count.
    pub(super) fn restore_journal(
        space: &SearchSpace,
        settings: ControllerSettings,
        checkpoint: SavedState,
        journal: &[u8],
    ) -> Result<Self, StrategyError> {
        let mut c = Self::restore(space, settings, checkpoint)?;
        let bad = |m: String| StrategyError::State(format!("policy journal: {m}"));
        let state: State = serde_json::from_slice(journal).map_err(|e| bad(e.to_string()))?;
        state.core.check(space)?;
        if state.core.algorithm != c.core.algorithm {
            return Err(bad(format!(
                "written by {}, the checkpoint by {}",
                state.core.algorithm, c.core.algorithm
            )));
        }
        let j = state
            .journal
            .clone()
            .ok_or_else(|| bad("no checkpoint recorded".into()))?;
        if c.learner_state() != j.base {
            return Err(bad(
                "it does not start at this checkpoint (another update's weights)".into(),
            ));
        }
        let recorded = state.learner();
        {
            let mut inner = c.shared.lock();
            let learning = &mut inner.learning;
            learning.learner.completed.extend(j.told);
            while learning.learner.updates < recorded.updates
                && learning.behind(c.settings.batch_size) > 0
            {
                learning.update(&c.settings);
            }
        }
        if c.learner_state() != recorded {
            return Err(bad(
                "told again, its results do not give its recorded baseline, batch and updates"
                    .into(),
            ));
        }
        c.core = state.core;
        c.journal = state.journal;
        Ok(c)
    }

    fn learner_state(&self) -> Learner {
        self.shared.lock().learning.learner.clone()
    }

    /// The EMA reward baseline (`None` before the first update).
    pub fn baseline(&self) -> Option<f64> {
        self.shared.lock().learning.learner.baseline
    }

    /// Probability of the policy's most likely choice for each decision, given the most
    /// likely choices before it (how far the policy has converged).
    pub fn greedy(&self) -> (Vec<usize>, f64) {
        let inner = self.shared.lock();
        let policy = &inner.learning.policy;
        tch::no_grad(|| {
            let (mut x, mut state) = policy.initial(1);
            let mut v = Vec::new();
            let mut lp = 0.0;
            for d in 0..policy.choices.len() {
                state = policy.step(&x, &state);
                let logp = policy.logits(d, &state.0).log_softmax(-1, Kind::Float);
                let flat = Vec::<f32>::try_from(logp.view([-1])).expect("floats");
                let (c, l) = flat
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .expect("choices");
                v.push(c);
                lp += f64::from(*l);
                x = policy.embed.narrow(0, policy.offsets[d] + c as i64, 1);
            }
            (v, lp.exp())
        })
    }

    fn log_prob(&self, v: &[usize]) -> f64 {
        self.shared.lock().learning.policy.log_prob(v)
    }

    /// The JSON state of `learning` with this controller's core and journal.
    fn json(&self, learning: &Learning) -> serde_json::Value {
        let l = &learning.learner;
        let mut value = serde_json::to_value(StateOut {
            core: &self.core,
            baseline: l.baseline,
            completed: &l.completed,
            adam_steps: l.adam_steps,
            elite: &l.elite,
            journal: self.journal.as_ref(),
        })
        .expect("state serializes");
        // The update count is the learner's (a background learner counts them).
        value["core"]["counts"]["updates"] = serde_json::json!(l.updates);
        value
    }

    /// [`Strategy::save`] of `learning` (one consistent snapshot).
    fn save_with(&self, learning: &Learning) -> Vec<u8> {
        SavedState::encode(&self.json(learning), &learning.policy.tensors())
    }
}

fn algorithm(settings: &ControllerSettings) -> Algorithm {
    match settings.rule {
        PolicyGradient::Ppo => Algorithm::Ppo,
        PolicyGradient::Reinforce => Algorithm::Reinforce,
    }
}

impl Strategy for Controller {
    fn algorithm(&self) -> Algorithm {
        algorithm(&self.settings)
    }

    fn ask(&mut self, n: usize) -> Vec<Proposal> {
        let mut out = Vec::with_capacity(n);
        let mut rejected: Vec<Vec<usize>> = Vec::new();
        {
            // One set of weights for the whole call (a background learner installs after it).
            let inner = self.shared.lock();
            let policy = &inner.learning.policy;
            for _ in 0..SAMPLE_ROUNDS {
                if out.len() == n {
                    break;
                }
                let samples = policy.sample(n - out.len(), &mut self.core.rng);
                for (v, lp) in samples {
                    match self.core.admit(&self.space, v.clone(), Some(lp)) {
                        Some(p) => out.push(p),
                        None => rejected.push(v),
                    }
                }
            }
            // The policy keeps proposing children already tried: propose single-decision
            // mutants of its samples (its neighbourhood), then uniform unproposed children.
            let mut next = 0;
            while out.len() < n {
                let mut v = None;
                if !rejected.is_empty() {
                    let base = rejected[next % rejected.len()].clone();
                    next += 1;
                    v = self.core.mutant(&self.space, &base, MUTATION_TRIES);
                }
                let Some(v) = v.or_else(|| self.core.unproposed(&self.space)) else {
                    break;
                };
                let lp = policy.log_prob(&v);
                out.extend(self.core.admit(&self.space, v, Some(lp)));
            }
        }
        out
    }

    fn tell(&mut self, id: ProposalId, reward: f64) -> Result<(), StrategyError> {
        let p = self.core.receive(id, reward)?;
        // Proposals carry their sampling-time log-probability; one restored without it (a
        // hand-edited state) is scored by the current policy.
        let log_prob = p.log_prob.unwrap_or_else(|| self.log_prob(&p.decisions));
        let done = Completed {
            decisions: p.decisions,
            log_prob,
            reward,
        };
        if let Some(journal) = &mut self.journal {
            journal.told.push(done.clone());
        }
        let mut inner = self.shared.lock();
        inner.learning.learner.completed.push(done);
        if self.background {
            drop(inner);
            self.shared.changed.notify_all();
        } else {
            while inner.learning.behind(self.settings.batch_size) > 0 {
                inner.learning.update(&self.settings);
            }
        }
        Ok(())
    }

    fn counts(&self) -> StrategyCounts {
        StrategyCounts {
            updates: self.shared.lock().learning.learner.updates,
            ..self.core.counts
        }
    }

    fn save(&self) -> Vec<u8> {
        self.save_with(&self.shared.lock().learning)
    }

    fn core(&self) -> &Core {
        &self.core
    }

    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }

    fn state_json(&self) -> serde_json::Value {
        self.json(&self.shared.lock().learning)
    }

    fn tensors(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        self.shared.lock().learning.policy.tensors()
    }

    fn journal_len(&self) -> Option<usize> {
        self.journal.as_ref().map(|j| j.told.len())
    }

    fn save_journal(&self) -> Option<Vec<u8>> {
        self.journal.as_ref()?;
        Some(serde_json::to_vec(&self.state_json()).expect("state serializes"))
    }

    fn checkpoint(&mut self) -> Vec<u8> {
        let inner = self.shared.lock();
        // The journal restarts at this snapshot; the checkpoint holds no journal.
        self.journal = None;
        let bytes = self.save_with(&inner.learning);
        let base = inner.learning.learner.clone();
        drop(inner);
        self.journal = Some(Journal {
            base,
            told: Vec::new(),
        });
        bytes
    }

    fn learn_in_background(&mut self) -> Option<LearnerHandle> {
        if !self.background {
            self.background = true;
            let (shared, settings) = (self.shared.clone(), self.settings.clone());
            std::thread::Builder::new()
                .name("nasop-learner".into())
                .spawn(move || learn(shared, settings))
                .expect("a thread for the policy learner");
            // Results told before now.
            self.shared.changed.notify_all();
        }
        Strategy::learner(self)
    }

    fn learner(&self) -> Option<LearnerHandle> {
        self.background.then(|| LearnerHandle(self.shared.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::centered_ranks;

    #[test]
    fn centered_ranks_span_minus_one_to_one_and_share_ties() {
        assert_eq!(centered_ranks(&[0.3, 0.9, 0.1]), [0.0, 1.0, -1.0]);
        assert_eq!(
            centered_ranks(&[0.5, 0.2, 0.5, 0.9, 0.0]),
            [0.25, -0.5, 0.25, 1.0, -1.0]
        );
        assert_eq!(centered_ranks(&[0.7]), [0.0]);
        assert_eq!(centered_ranks(&[0.7, 0.7]), [0.0, 0.0]);
    }
}
