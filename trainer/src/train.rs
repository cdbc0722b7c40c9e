//! Training and evaluation of a child network: SGD with Nesterov momentum and cosine decay by
//! default (RMSProp with exponential decay as MnasNet, 1807.11626 Sec. 5), weight decay on
//! weights only (not on batch-norm parameters or biases), label smoothing, ScheduledDropPath
//! for NASNet (1707.07012 Sec. 4), an auxiliary loss when the network has the auxiliary head,
//! and per-epoch validation on the held-out examples.

use std::sync::Arc;
use std::time::Instant;

use nasop_crds::result::{EpochRecord, TrainReport};
use nasop_crds::space::Genotype;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Reduction, Tensor};

use crate::data::loader::{Augment, Loader};
use crate::data::{Normalization, Splits};
use crate::net::layers::NO_DECAY_GROUP;
use crate::net::nasnet::AUX_LOSS_WEIGHT;
use crate::net::{to_channels_last, Mode, Net, NetConfig, NetError};

/// The optimizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Optimizer {
    /// SGD with Nesterov momentum.
    Sgd,
    /// RMSProp (decay 0.9, epsilon 1e-3, as the MnasNet TF code).
    RmsProp,
}

/// How the learning rate changes over training (after the warm-up).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Cosine decay to 0 over the training steps (Loshchilov & Hutter 2017).
    Cosine,
    /// x0.97 every 2.4 epochs (MnasNet, 1807.11626 Sec. 5).
    Exponential,
    /// Constant.
    Constant,
}

/// Decay factor and period of [`Schedule::Exponential`] (1807.11626 Sec. 5).
pub const EXPONENTIAL_DECAY: (f64, f64) = (0.97, 2.4);

/// Training hyperparameters.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Passes over the training examples.
    pub epochs: u32,
    /// Examples per step.
    pub batch_size: usize,
    /// Optimizer.
    pub optimizer: Optimizer,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Momentum (SGD) or RMSProp momentum.
    pub momentum: f64,
    /// L2 weight decay on conv and linear weights.
    pub weight_decay: f64,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// Linear warm-up from 0, in epochs (fractions allowed).
    pub warmup_epochs: f64,
    /// Label smoothing of the cross-entropy, in `[0, 1)`.
    pub label_smoothing: f64,
    /// Clip the gradient's global L2 norm to this (none: no clipping).
    pub grad_clip: Option<f64>,
    /// Largest ScheduledDropPath probability (reached at the last step; NASNet only).
    pub drop_path: f64,
    /// Augmentation of training batches.
    pub augment: Augment,
    /// Seed of weights, shuffle, augmentation, dropout and DropPath.
    pub seed: u64,
    /// Stop after this many steps (the schedule spans them); none: all epochs.
    pub max_steps: Option<u64>,
}

impl Default for TrainConfig {
    /// 10 epochs of SGD (lr 0.05, momentum 0.9, weight decay 5e-4, cosine), batch 64, the
    /// standard CIFAR augmentation (crop with padding 4, flip).
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 64,
            optimizer: Optimizer::Sgd,
            learning_rate: 0.05,
            momentum: 0.9,
            weight_decay: 5e-4,
            schedule: Schedule::Cosine,
            warmup_epochs: 0.0,
            label_smoothing: 0.0,
            grad_clip: Some(5.0),
            drop_path: 0.0,
            augment: Augment {
                crop_padding: 4,
                flip: true,
                cutout: 0,
            },
            seed: 0,
            max_steps: None,
        }
    }
}

/// Where and how tensors are computed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Runtime {
    /// Device.
    pub device: Device,
    /// Mixed precision: convolutions and linear layers in bfloat16.
    pub bf16: bool,
    /// Channels-last (NHWC) memory order for weights and inputs.
    pub channels_last: bool,
}

impl Runtime {
    /// CPU, `f32`, NCHW.
    pub const CPU: Runtime = Runtime {
        device: Device::Cpu,
        bf16: false,
        channels_last: false,
    };
}

/// Why training stopped without a result.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A hyperparameter is out of range (names the flag and the allowed range).
    #[error("{field}: {message}")]
    Config {
        /// The flag.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The network cannot be built.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The training or validation loss became NaN or infinite.
    #[error("the {which} loss became {loss} at step {step} (epoch {epoch}); the child diverged (try a lower learning rate)")]
    Diverged {
        /// `training` or `validation`.
        which: &'static str,
        /// The non-finite loss.
        loss: f64,
        /// Step number (1-based).
        step: u64,
        /// Epoch (1-based).
        epoch: u32,
    },
    /// The observer asked to stop (SIGTERM, SIGINT).
    #[error("stopped by a signal at step {step} (epoch {epoch}) before training finished")]
    Interrupted {
        /// Steps completed.
        step: u64,
        /// Epoch (1-based).
        epoch: u32,
    },
}

impl TrainConfig {
    /// Checks the ranges.
    ///
    /// # Errors
    /// [`TrainError::Config`] naming the flag.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |field, message: String| Err(TrainError::Config { field, message });
        if self.epochs == 0 || self.epochs > 10_000 {
            return bad(
                "--epochs",
                format!("{} is out of range; allowed: 1..=10000", self.epochs),
            );
        }
        if self.batch_size == 0 || self.batch_size > 65_536 {
            return bad(
                "--batch-size",
                format!("{} is out of range; allowed: 1..=65536", self.batch_size),
            );
        }
        if !(self.learning_rate.is_finite()
            && self.learning_rate > 0.0
            && self.learning_rate <= 100.0)
        {
            return bad(
                "--learning-rate",
                format!("{} is out of range; allowed: (0, 100]", self.learning_rate),
            );
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad(
                "--momentum",
                format!("{} is out of range; allowed: [0, 1)", self.momentum),
            );
        }
        if !(0.0..=1.0).contains(&self.weight_decay) {
            return bad(
                "--weight-decay",
                format!("{} is out of range; allowed: [0, 1]", self.weight_decay),
            );
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad(
                "--label-smoothing",
                format!("{} is out of range; allowed: [0, 1)", self.label_smoothing),
            );
        }
        if !(0.0..1.0).contains(&self.drop_path) {
            return bad(
                "--drop-path",
                format!("{} is out of range; allowed: [0, 1)", self.drop_path),
            );
        }
        if !(self.warmup_epochs.is_finite()
            && self.warmup_epochs >= 0.0
            && self.warmup_epochs < f64::from(self.epochs))
        {
            return bad(
                "--warmup-epochs",
                format!(
                    "{} is out of range; allowed: [0, epochs = {})",
                    self.warmup_epochs, self.epochs
                ),
            );
        }
        if let Some(c) = self.grad_clip {
            if !(c.is_finite() && c > 0.0) {
                return bad(
                    "--grad-clip",
                    format!("{c} is out of range; allowed: a positive number"),
                );
            }
        }
        if self.max_steps == Some(0) {
            return bad(
                "--max-steps",
                "0 is out of range; allowed: at least 1".into(),
            );
        }
        Ok(())
    }

    /// Learning rate at `step` (0-based) of `total` steps with `per_epoch` steps per epoch.
    pub fn learning_rate_at(&self, step: u64, total: u64, per_epoch: u64) -> f64 {
        let warmup = (self.warmup_epochs * per_epoch as f64).round() as u64;
        if step < warmup {
            return self.learning_rate * (step + 1) as f64 / warmup as f64;
        }
        let t = (step - warmup) as f64;
        let span = total.saturating_sub(warmup).max(1) as f64;
        match self.schedule {
            Schedule::Cosine => {
                self.learning_rate * 0.5 * (1.0 + (std::f64::consts::PI * t / span).cos())
            }
            Schedule::Exponential => {
                let (factor, period) = EXPONENTIAL_DECAY;
                let epoch = t / per_epoch.max(1) as f64;
                self.learning_rate * factor.powf((epoch / period).floor())
            }
            Schedule::Constant => self.learning_rate,
        }
    }
}

/// Loss and accuracy over a set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    /// Mean cross-entropy (no label smoothing).
    pub loss: f64,
    /// Fraction classified correctly.
    pub accuracy: f64,
}

/// Evaluates `net` on every example of `loader` (eval mode, no gradients).
pub fn evaluate(net: &Net, loader: &Loader, runtime: Runtime) -> Evaluation {
    tch::no_grad(|| {
        let mut loss = Tensor::zeros([], (Kind::Double, runtime.device));
        let mut correct = Tensor::zeros([], (Kind::Int64, runtime.device));
        let mut n = 0i64;
        for batch in loader.epoch(0) {
            let (x, y) = to_device(&batch.images, &batch.labels, runtime);
            let (logits, _) = net.forward(&x, Mode::Eval);
            let logits = logits.to_kind(Kind::Float);
            loss += logits
                .cross_entropy_loss(&y, None::<Tensor>, Reduction::Sum, -100, 0.0)
                .to_kind(Kind::Double);
            correct += logits.argmax(-1, false).eq_tensor(&y).sum(Kind::Int64);
            n += y.size()[0];
        }
        let n = n.max(1) as f64;
        Evaluation {
            loss: f64::try_from(&loss).unwrap_or(f64::NAN) / n,
            accuracy: i64::try_from(&correct).unwrap_or(0) as f64 / n,
        }
    })
}

fn to_device(images: &Tensor, labels: &Tensor, runtime: Runtime) -> (Tensor, Tensor) {
    let non_blocking = runtime.device.is_cuda();
    let x = images.to_device_(runtime.device, Kind::Float, non_blocking, false);
    let x = if runtime.channels_last {
        to_channels_last(&x)
    } else {
        x
    };
    (
        x,
        labels.to_device_(runtime.device, Kind::Int64, non_blocking, false),
    )
}

/// What happens after each epoch (progress display, logs).
pub trait Observer {
    /// Called after each epoch with its record and the number of epochs the run will have.
    fn epoch(&mut self, _record: &EpochRecord, _epochs: u32, _samples_per_second: f64) {}

    /// Checked before every step: `true` stops training with [`TrainError::Interrupted`].
    fn should_stop(&self) -> bool {
        false
    }
}

/// An observer that ignores everything.
pub struct Silent;
impl Observer for Silent {}

/// Trains the child of `genotype` on `splits` and evaluates it; returns the report and the
/// trained network.
///
/// # Errors
/// [`TrainError`] for out-of-range settings, a network that cannot be built, or divergence.
pub fn train(
    genotype: &Genotype,
    net_config: &NetConfig,
    splits: &Splits,
    config: &TrainConfig,
    runtime: Runtime,
    observer: &mut dyn Observer,
) -> Result<(TrainReport, Net), TrainError> {
    let started = Instant::now();
    config.validate()?;
    tch::manual_seed(config.seed as i64);
    if runtime.device.is_cuda() {
        tch::Cuda::manual_seed_all(config.seed);
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let norm = Normalization::of(&splits.train);
    let train_loader = Loader::new(Arc::new(splits.train.clone()), &norm, config.batch_size)
        .training(config.seed, config.augment)
        .pinned_for(runtime.device);
    let per_epoch = train_loader.batches_per_epoch() as u64;
    let total = config
        .max_steps
        .map_or(per_epoch * u64::from(config.epochs), |m| {
            m.min(per_epoch * u64::from(config.epochs))
        });
    let mut net_config = net_config.clone();
    if net_config.bn_momentum.is_none() {
        net_config.bn_momentum = Some(short_run_bn_momentum(genotype, total));
    }
    let mut net = Net::new(genotype, &net_config, runtime.device)?;
    if runtime.channels_last {
        net.to_channels_last();
    }
    let mut opt = match config.optimizer {
        Optimizer::Sgd => nn::Sgd {
            momentum: config.momentum,
            dampening: 0.0,
            wd: config.weight_decay,
            nesterov: config.momentum > 0.0,
        }
        .build(net.var_store(), config.learning_rate),
        Optimizer::RmsProp => nn::RmsProp {
            alpha: 0.9,
            eps: 1e-3,
            wd: config.weight_decay,
            momentum: config.momentum,
            centered: false,
        }
        .build(net.var_store(), config.learning_rate),
    }
    .map_err(|e| TrainError::Config {
        field: "--optimizer",
        message: e.to_string(),
    })?;
    opt.set_weight_decay_group(NO_DECAY_GROUP, 0.0);
    let params = net.var_store().trainable_variables();

    let eval_batch = config.batch_size.max(256);
    let validation_loader = Loader::new(Arc::new(splits.validation.clone()), &norm, eval_batch)
        .pinned_for(runtime.device);

    let mut step = 0u64;
    let mut curve = Vec::new();
    let mut train_seconds = 0.0;
    let mut examples = 0u64;
    let mut lr = config.learning_rate_at(0, total, per_epoch);
    let mut last_loss = f64::NAN;
    for epoch in 1..=config.epochs {
        if step >= total {
            break;
        }
        let epoch_start = Instant::now();
        let mut loss_sum = Tensor::zeros([], (Kind::Double, runtime.device));
        let mut correct = Tensor::zeros([], (Kind::Int64, runtime.device));
        let mut seen = 0i64;
        for batch in train_loader.epoch(u64::from(epoch - 1)) {
            if step >= total {
                break;
            }
            if observer.should_stop() {
                return Err(TrainError::Interrupted { step, epoch });
            }
            lr = config.learning_rate_at(step, total, per_epoch);
            opt.set_lr(lr);
            let (x, y) = to_device(&batch.images, &batch.labels, runtime);
            let drop_path = config.drop_path * step as f64 / total as f64;
            let (logits, aux) = net.forward(&x, Mode::Train { drop_path });
            let logits = logits.to_kind(Kind::Float);
            let main_loss = logits.cross_entropy_loss(
                &y,
                None::<Tensor>,
                Reduction::Mean,
                -100,
                config.label_smoothing,
            );
            let loss = match aux {
                Some(aux) => {
                    let aux_loss = aux.to_kind(Kind::Float).cross_entropy_loss(
                        &y,
                        None::<Tensor>,
                        Reduction::Mean,
                        -100,
                        config.label_smoothing,
                    );
                    main_loss + aux_loss * AUX_LOSS_WEIGHT
                }
                None => main_loss,
            };
            opt.zero_grad();
            loss.backward();
            if let Some(c) = config.grad_clip {
                clip_grad_norm(&params, c);
            }
            opt.step();
            let n = y.size()[0];
            tch::no_grad(|| {
                loss_sum += loss.detach().to_kind(Kind::Double) * n as f64;
                correct += logits.argmax(-1, false).eq_tensor(&y).sum(Kind::Int64);
            });
            seen += n;
            step += 1;
            // A cheap host sync every 50 steps catches divergence early.
            if step.is_multiple_of(50) {
                let l = f64::try_from(&loss).unwrap_or(f64::NAN);
                if !l.is_finite() {
                    return Err(TrainError::Diverged {
                        which: "training",
                        loss: l,
                        step,
                        epoch,
                    });
                }
            }
        }
        let train_loss = f64::try_from(&loss_sum).unwrap_or(f64::NAN) / seen.max(1) as f64;
        if !train_loss.is_finite() {
            return Err(TrainError::Diverged {
                which: "training",
                loss: train_loss,
                step,
                epoch,
            });
        }
        let train_accuracy = i64::try_from(&correct).unwrap_or(0) as f64 / seen.max(1) as f64;
        train_seconds += epoch_start.elapsed().as_secs_f64();
        examples += seen as u64;
        last_loss = train_loss;
        let validation = evaluate(&net, &validation_loader, runtime);
        if !validation.loss.is_finite() {
            return Err(TrainError::Diverged {
                which: "validation",
                loss: validation.loss,
                step,
                epoch,
            });
        }
        let record = EpochRecord {
            epoch,
            train_loss,
            train_accuracy,
            validation_loss: validation.loss,
            validation_accuracy: validation.accuracy,
            learning_rate: lr,
            seconds: started.elapsed().as_secs_f64(),
        };
        observer.epoch(
            &record,
            total.div_ceil(per_epoch.max(1)) as u32,
            examples as f64 / train_seconds.max(1e-9),
        );
        curve.push(record);
    }
    let last = curve.last().expect("at least one epoch ran").clone();
    let test_accuracy = splits.test.as_ref().map(|test| {
        let loader =
            Loader::new(Arc::new(test.clone()), &norm, eval_batch).pinned_for(runtime.device);
        evaluate(&net, &loader, runtime).accuracy
    });
    let summary = net.summary();
    let report = TrainReport {
        genotype_hash: genotype.hash().as_str().to_string(),
        space: genotype.kind(),
        device: device_name(runtime.device),
        seed: config.seed,
        params: summary.params,
        macs: summary.macs,
        validation_accuracy: last.validation_accuracy,
        validation_loss: last.validation_loss,
        test_accuracy,
        final_train_loss: last_loss,
        epochs: curve.len() as u32,
        steps: step,
        batch_size: config.batch_size as u32,
        train_examples: splits.train.len() as u64,
        validation_examples: splits.validation.len() as u64,
        wall_seconds: started.elapsed().as_secs_f64(),
        train_seconds,
        samples_per_second: examples as f64 / train_seconds.max(1e-9),
        learning_curve: curve,
    };
    Ok((report, net))
}

/// Batch-norm momentum for a run of `steps` steps: the space's own (MnasNet 0.01, others 0.1)
/// unless the run is too short for the running statistics to forget their initial values;
/// then the smallest momentum that leaves at most 1% weight on them, `1 - 0.01^(1/steps)`.
/// (With MnasNet's 0.01, a 50-step proxy run would evaluate with statistics that are still 60%
/// the initial zeros and ones, and its validation accuracy would be noise.)
pub fn short_run_bn_momentum(genotype: &Genotype, steps: u64) -> f64 {
    let space = match genotype {
        Genotype::Mnasnet(_) => crate::net::mnasnet::MNASNET_BN.momentum,
        _ => crate::net::layers::BN_DEFAULT.momentum,
    };
    let needed = 1.0 - 0.01f64.powf(1.0 / steps.max(1) as f64);
    space.max(needed)
}

/// Scales the gradients so that their global L2 norm is at most `max`, without a device-to-host
/// sync (the scale is computed and applied on the device).
pub fn clip_grad_norm(params: &[Tensor], max: f64) {
    tch::no_grad(|| {
        let grads: Vec<Tensor> = params
            .iter()
            .map(Tensor::grad)
            .filter(Tensor::defined)
            .collect();
        if grads.is_empty() {
            return;
        }
        let norms: Vec<Tensor> = grads.iter().map(|g| g.norm()).collect();
        let total = Tensor::stack(&norms, 0).norm();
        let scale = (total + 1e-6)
            .reciprocal()
            .multiply_scalar(max)
            .clamp_max(1.0);
        for mut g in grads {
            let _ = g.g_mul_(&scale);
        }
    })
}

/// `cpu`, `cuda:N`, ...
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(schedule: Schedule, warmup_epochs: f64) -> TrainConfig {
        TrainConfig {
            learning_rate: 0.1,
            schedule,
            warmup_epochs,
            ..TrainConfig::default()
        }
    }

    #[test]
    fn cosine_decays_from_the_peak_to_zero_after_a_linear_warmup() {
        let c = config(Schedule::Cosine, 1.0);
        // 10 steps per epoch, 110 steps: 10 of warm-up, then 100 of cosine.
        assert!((c.learning_rate_at(0, 110, 10) - 0.01).abs() < 1e-12);
        assert!((c.learning_rate_at(9, 110, 10) - 0.1).abs() < 1e-12);
        assert!((c.learning_rate_at(10, 110, 10) - 0.1).abs() < 1e-12);
        assert!((c.learning_rate_at(60, 110, 10) - 0.05).abs() < 1e-12);
        assert!(c.learning_rate_at(109, 110, 10) < 1e-4);
    }

    #[test]
    fn exponential_decays_by_0_97_every_2_4_epochs() {
        let c = config(Schedule::Exponential, 0.0);
        assert_eq!(c.learning_rate_at(23, 1000, 10), 0.1);
        assert!((c.learning_rate_at(24, 1000, 10) - 0.097).abs() < 1e-12);
        assert!((c.learning_rate_at(48, 1000, 10) - 0.1 * 0.97 * 0.97).abs() < 1e-12);
        assert_eq!(
            config(Schedule::Constant, 0.0).learning_rate_at(999, 1000, 10),
            0.1
        );
    }

    #[test]
    fn short_runs_raise_the_batch_norm_momentum_until_the_initial_statistics_fade() {
        let mnasnet: Genotype = "mnasnet-a1".parse().unwrap();
        let nb201: Genotype = "nb201-optimum".parse().unwrap();
        assert_eq!(short_run_bn_momentum(&mnasnet, 10_000), 0.01);
        assert_eq!(short_run_bn_momentum(&nb201, 10_000), 0.1);
        let m = short_run_bn_momentum(&mnasnet, 48);
        assert!((0.09..0.1).contains(&m), "{m}");
        // The initial statistics keep at most 1% weight at the end of the run.
        assert!((1.0 - m).powi(48) <= 0.010_000_1);
        assert_eq!(short_run_bn_momentum(&mnasnet, 1), 0.99);
    }

    #[test]
    fn gradient_clipping_scales_to_the_max_norm_and_leaves_small_gradients() {
        let w = Tensor::from_slice(&[1.0f32, 2.0]).set_requires_grad(true);
        let v = Tensor::from_slice(&[3.0f32]).set_requires_grad(true);
        // Gradients (3, 4) and (12): global norm 13.
        (w.dot(&Tensor::from_slice(&[3.0f32, 4.0])) + &v * 12.0)
            .sum(Kind::Float)
            .backward();
        clip_grad_norm(&[w.shallow_clone(), v.shallow_clone()], 6.5);
        let g: Vec<f32> = Vec::try_from(w.grad()).unwrap();
        assert!(
            (g[0] - 1.5).abs() < 1e-5 && (g[1] - 2.0).abs() < 1e-5,
            "{g:?}"
        );
        clip_grad_norm(&[w.shallow_clone(), v.shallow_clone()], 100.0);
        let g: Vec<f32> = Vec::try_from(v.grad()).unwrap();
        assert!((g[0] - 6.0).abs() < 1e-5, "{g:?}");
    }
}
