//! Child networks of the three search spaces, built with libtorch (tch) from a genotype.
//!
//! [`Net::new`] builds the network into its own `VarStore` and, while building, computes the
//! layer table: output shape, parameters and multiply-adds of every layer ([`Summary`]). Counts
//! follow the convention of the papers and of NAS-Bench-201's own counter: multiply-adds of
//! convolutions and linear layers for one example; parameters are the trainable variables
//! (batch-norm scales and shifts included, running statistics excluded).

pub mod layers;
pub mod mnasnet;
pub mod nasnet;
pub mod nb201;

use nasop_crds::space::mnasnet::MnasnetSpaceSpec;
use nasop_crds::space::nasnet::NasnetSpaceSpec;
use nasop_crds::space::nb201::Nb201SpaceSpec;
use nasop_crds::space::{Genotype, SpaceKind};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Tensor};

use layers::{BnSettings, Builder, BN_DEFAULT};

/// Channels and spatial size of one example's activations (`[C, H, W]`, no batch axis).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Channels.
    pub c: i64,
    /// Height, pixels.
    pub h: i64,
    /// Width, pixels.
    pub w: i64,
}

impl Shape {
    /// `C * H * W`.
    pub fn elements(self) -> i64 {
        self.c * self.h * self.w
    }
}

/// One row of the layer table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LayerInfo {
    /// Dotted variable path of the layer (`stage0.cell1.edge2.conv`).
    pub name: String,
    /// Layer kind (`conv3x3`, `dwconv5x5`, `batchnorm`, `linear`, `avgpool3x3`, ...).
    pub kind: String,
    /// Output shape `[C, H, W]` for one example.
    pub output: [i64; 3],
    /// Trainable parameters.
    pub params: i64,
    /// Multiply-adds for one example.
    pub macs: i64,
}

/// Whether a forward pass trains (batch statistics, dropout, DropPath) or evaluates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// Inference: running statistics, no dropout.
    Eval,
    /// Training, with the current DropPath probability (NASNet; ignored by the other spaces).
    Train {
        /// Probability of dropping each non-identity path of a NASNet cell, in `[0, 1)`.
        drop_path: f64,
    },
}

impl Mode {
    /// Whether this is a training pass.
    pub fn is_train(self) -> bool {
        matches!(self, Mode::Train { .. })
    }

    /// The DropPath probability (0 when evaluating).
    pub fn drop_path(self) -> f64 {
        match self {
            Mode::Eval => 0.0,
            Mode::Train { drop_path } => drop_path,
        }
    }
}

/// How to build a network from a genotype: input, classes, and the macro settings of the
/// genotype's space. Fields left `None` take the space's default (the search space spec's
/// defaults: NASNet N = 2, F = 32; NB201 N = 5, C = 16; MnasNet head 1280).
#[derive(Clone, Debug, PartialEq)]
pub struct NetConfig {
    /// Input channels, height and width of one example.
    pub input: Shape,
    /// Number of classes (logits).
    pub classes: i64,
    /// Cells per stage, N (NASNet, NB201).
    pub cells_per_stage: Option<i64>,
    /// Filters of the first stage: F (NASNet) or C (NB201).
    pub filters: Option<i64>,
    /// Filters of the 1x1 head conv (MnasNet).
    pub head_filters: Option<i64>,
    /// Add the NASNet auxiliary head (its loss weighs [`nasnet::AUX_LOSS_WEIGHT`]).
    pub aux_head: bool,
    /// Dropout before the classifier; `None`: 0.2 for MnasNet (paper), 0 otherwise.
    pub dropout: Option<f64>,
    /// Run convolutions and linear layers in bfloat16 (mixed precision for CUDA).
    pub bf16: bool,
    /// Batch-norm momentum (PyTorch convention, weight of the new batch); `None`: 0.01 for
    /// MnasNet (its TF decay 0.99), 0.1 otherwise.
    pub bn_momentum: Option<f64>,
}

impl NetConfig {
    /// CIFAR-10 input (`3 x 32 x 32`, 10 classes) and every other setting at its default.
    pub fn cifar10() -> Self {
        Self::new(Shape { c: 3, h: 32, w: 32 }, 10)
    }

    /// This input and number of classes, every other setting at its default.
    pub fn new(input: Shape, classes: i64) -> Self {
        Self {
            input,
            classes,
            cells_per_stage: None,
            filters: None,
            head_filters: None,
            aux_head: false,
            dropout: None,
            bf16: false,
            bn_momentum: None,
        }
    }
}

/// A network that could not be built from these settings.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A setting is out of range for this space (names the setting and the allowed range).
    #[error("{field}: {message}")]
    Setting {
        /// The setting (`--input-size`, `--filters`, ...).
        field: &'static str,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// The genotype fails its own validation.
    #[error(transparent)]
    Genotype(#[from] nasop_crds::space::GenotypeError),
}

/// Parameters and multiply-adds of a built network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// The genotype's search space.
    pub space: SpaceKind,
    /// Input `[C, H, W]` of one example.
    pub input: [i64; 3],
    /// Classes.
    pub classes: i64,
    /// Trainable parameters of the network used for inference (the auxiliary head excluded, as
    /// the papers count).
    pub params: i64,
    /// Trainable parameters of the auxiliary head (0 without one).
    pub aux_params: i64,
    /// Multiply-adds of one inference forward pass of one example (auxiliary head excluded).
    pub macs: i64,
    /// The layer table, in build order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerInfo>,
}

/// The network of one space.
#[derive(Debug)]
enum Network {
    Nb201(nb201::Nb201Net),
    Nasnet(nasnet::NasnetNet),
    Mnasnet(mnasnet::MnasnetNet),
}

/// A child network with its variables. Input `[N, C, H, W]` (`f32`, normalized), logits
/// `[N, classes]` (`f32`).
#[derive(Debug)]
pub struct Net {
    vs: nn::VarStore,
    network: Network,
    summary: Summary,
}

fn positive(field: &'static str, value: i64, max: i64) -> Result<i64, NetError> {
    if (1..=max).contains(&value) {
        Ok(value)
    } else {
        Err(NetError::Setting {
            field,
            message: format!("{value} is out of range; allowed: 1..={max}"),
        })
    }
}

impl Net {
    /// Builds the network of `genotype` on `device` with freshly initialised weights (seed them
    /// with `tch::manual_seed` first for reproducibility).
    ///
    /// # Errors
    /// [`NetError::Setting`] for an input smaller than 8x8 or larger than 4096x4096, more than
    /// 64 input channels, classes outside `1..=100000`, cells outside `1..=32`, filters outside
    /// `1..=4096`, a dropout outside `[0, 1)`, or an NB201 input whose size is not a multiple of
    /// 4 (its reductions halve it twice); [`NetError::Genotype`] for an invalid genotype.
    pub fn new(genotype: &Genotype, config: &NetConfig, device: Device) -> Result<Self, NetError> {
        let (vs, network, summary) = Self::build(genotype, config, device, false)?;
        Ok(Self {
            vs,
            network,
            summary,
        })
    }

    /// The layer table and totals of the network `new` would build, computed without
    /// allocating any weight (milliseconds and kilobytes, whatever the network's size).
    ///
    /// # Errors
    /// As [`Net::new`].
    pub fn summarize(genotype: &Genotype, config: &NetConfig) -> Result<Summary, NetError> {
        Ok(Self::build(genotype, config, Device::Cpu, true)?.2)
    }

    fn build(
        genotype: &Genotype,
        config: &NetConfig,
        device: Device,
        dry: bool,
    ) -> Result<(nn::VarStore, Network, Summary), NetError> {
        genotype.validate()?;
        let input = config.input;
        positive("--channels", input.c, 64)?;
        for (field, v) in [
            ("--input-size (height)", input.h),
            ("--input-size (width)", input.w),
        ] {
            if !(8..=4096).contains(&v) {
                return Err(NetError::Setting {
                    field,
                    message: format!("{v} is out of range; allowed: 8..=4096 pixels"),
                });
            }
        }
        let classes = positive("--classes", config.classes, 100_000)?;
        let dropout = config.dropout.unwrap_or(match genotype {
            Genotype::Mnasnet(_) => mnasnet::MNASNET_DROPOUT,
            _ => 0.0,
        });
        if !(0.0..1.0).contains(&dropout) {
            return Err(NetError::Setting {
                field: "--dropout",
                message: format!("{dropout} is out of range; allowed: [0, 1)"),
            });
        }
        let mut bn: BnSettings = match genotype {
            Genotype::Mnasnet(_) => mnasnet::MNASNET_BN,
            _ => BN_DEFAULT,
        };
        if let Some(m) = config.bn_momentum {
            if !(m > 0.0 && m <= 1.0) {
                return Err(NetError::Setting {
                    field: "--bn-momentum",
                    message: format!("{m} is out of range; allowed: (0, 1]"),
                });
            }
            bn.momentum = m;
        }
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let mut b = if dry {
            Builder::counting(bn)
        } else {
            Builder::new(config.bf16, bn)
        };
        let network = match genotype {
            Genotype::Nb201(g) => {
                let spec = Nb201SpaceSpec::default();
                if input.h % 4 != 0 || input.w % 4 != 0 {
                    return Err(NetError::Setting {
                        field: "--input-size",
                        message: format!(
                            "{}x{} does not divide by 4; the NB201 network halves it twice",
                            input.h, input.w
                        ),
                    });
                }
                let c = positive(
                    "--filters",
                    config.filters.unwrap_or(i64::from(spec.channels)),
                    4096,
                )?;
                let n = positive(
                    "--cells-per-stage",
                    config
                        .cells_per_stage
                        .unwrap_or(i64::from(spec.cells_per_stage)),
                    32,
                )?;
                Network::Nb201(nb201::Nb201Net::new(&mut b, &root, g, input, classes, c, n))
            }
            Genotype::Nasnet(g) => {
                let spec = NasnetSpaceSpec::default();
                let settings = nasnet::NasnetSettings {
                    cells_per_stage: positive(
                        "--cells-per-stage",
                        config
                            .cells_per_stage
                            .unwrap_or(i64::from(spec.cells_per_stage)),
                        32,
                    )?,
                    filters: positive(
                        "--filters",
                        config.filters.unwrap_or(i64::from(spec.filters)),
                        4096,
                    )?,
                    stem_multiplier: 3,
                    aux_head: config.aux_head,
                    dropout,
                };
                Network::Nasnet(nasnet::NasnetNet::new(
                    &mut b, &root, g, input, classes, settings,
                ))
            }
            Genotype::Mnasnet(g) => {
                let head = positive(
                    "--head-filters",
                    config
                        .head_filters
                        .unwrap_or(i64::from(MnasnetSpaceSpec::default().head_filters)),
                    4096,
                )?;
                Network::Mnasnet(mnasnet::MnasnetNet::new(
                    &mut b, &root, g, input, classes, head, dropout,
                ))
            }
        };
        let is_aux = |l: &LayerInfo| l.name.starts_with("aux.");
        let summary = Summary {
            space: genotype.kind(),
            input: [input.c, input.h, input.w],
            classes,
            params: b
                .layers
                .iter()
                .filter(|l| !is_aux(l))
                .map(|l| l.params)
                .sum(),
            aux_params: b
                .layers
                .iter()
                .filter(|l| is_aux(l))
                .map(|l| l.params)
                .sum(),
            macs: b.layers.iter().filter(|l| !is_aux(l)).map(|l| l.macs).sum(),
            layers: b.layers,
        };
        Ok((vs, network, summary))
    }

    /// Logits `[N, classes]` and, while training a NASNet with its auxiliary head, the head's
    /// logits.
    pub fn forward(&self, x: &Tensor, mode: Mode) -> (Tensor, Option<Tensor>) {
        match &self.network {
            Network::Nb201(n) => (n.forward(x, mode), None),
            Network::Nasnet(n) => n.forward(x, mode),
            Network::Mnasnet(n) => (n.forward(x, mode), None),
        }
    }

    /// The layer table and totals.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// The variables (for optimizers, checkpoints).
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    /// The variables, mutably (to load a checkpoint).
    pub fn var_store_mut(&mut self) -> &mut nn::VarStore {
        &mut self.vs
    }

    /// Trainable parameters actually allocated (auxiliary head included); equals
    /// `summary().params + summary().aux_params`.
    pub fn allocated_params(&self) -> i64 {
        self.vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum()
    }

    /// Stores every 4-D weight in channels-last (NHWC) memory order, which cuDNN's fastest
    /// convolution kernels use; feed inputs in the same order ([`to_channels_last`]).
    pub fn to_channels_last(&mut self) {
        tch::no_grad(|| {
            for (_, mut t) in self.vs.variables() {
                if t.dim() == 4 {
                    let nhwc = to_channels_last(&t);
                    t.set_data(&nhwc);
                }
            }
        });
    }
}

/// The same `[N, C, H, W]` tensor with channels-last (NHWC) strides.
pub fn to_channels_last(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}
