//! Primitive layers of the child networks, each recording its parameters and multiply-adds.
//!
//! Every constructor takes the input [`Shape`] and returns the layer with its output shape, so a
//! network is shape-checked and costed while it is built, before any tensor exists.

use tch::nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use super::{LayerInfo, Shape};

/// He-normal initialisation over fan-out, as ResNet and the TF NASNet/MnasNet code use for convs.
const CONV_INIT: Init = Init::Kaiming {
    dist: NormalOrUniform::Normal,
    fan: FanInOut::FanOut,
    non_linearity: NonLinearity::ReLU,
};

/// Optimizer group of weights that take weight decay.
pub const DECAY_GROUP: usize = 0;
/// Optimizer group of batch-norm scales/shifts and biases (no weight decay).
pub const NO_DECAY_GROUP: usize = 1;

/// Batch-norm settings of a network (PyTorch convention: `momentum` weights the new batch).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BnSettings {
    /// Weight of the current batch in the running statistics (PyTorch's `momentum`).
    pub momentum: f64,
    /// Added to the variance, for numerical stability.
    pub eps: f64,
}

/// PyTorch's defaults (momentum 0.1, eps 1e-5).
pub const BN_DEFAULT: BnSettings = BnSettings {
    momentum: 0.1,
    eps: 1e-5,
};

/// Collects the layer table while a network is built.
#[derive(Debug)]
pub struct Builder {
    pub(crate) layers: Vec<LayerInfo>,
    /// Compute convolutions and linear layers in bfloat16 (CUDA autocast-style mixed precision:
    /// weights stay `f32`, the op runs on `bf16` copies).
    pub(crate) bf16: bool,
    pub(crate) bn: BnSettings,
    /// Count only: create no variables (layers hold undefined tensors and cannot run).
    pub(crate) dry: bool,
}

impl Builder {
    /// A builder with no layers yet.
    pub fn new(bf16: bool, bn: BnSettings) -> Self {
        Self {
            layers: Vec::new(),
            bf16,
            bn,
            dry: false,
        }
    }

    /// A builder that only computes the layer table, allocating no weights (for summaries of
    /// networks of any size).
    pub fn counting(bn: BnSettings) -> Self {
        Self {
            layers: Vec::new(),
            bf16: false,
            bn,
            dry: true,
        }
    }

    fn variable(&self, p: &nn::Path, name: &str, group: usize, dims: &[i64], init: Init) -> Tensor {
        if self.dry {
            Tensor::new()
        } else {
            p.set_group(group).var(name, dims, init)
        }
    }

    fn record(&mut self, p: &nn::Path, kind: &str, output: Shape, params: i64, macs: i64) {
        self.layers.push(LayerInfo {
            name: p.components().collect::<Vec<_>>().join("."),
            kind: kind.to_string(),
            output: [output.c, output.h, output.w],
            params,
            macs,
        });
    }

    /// A convolution (no bias unless asked). `kernel`, `stride`, `padding`, `dilation` are
    /// (height, width) pairs; `groups = c_in` gives a depthwise convolution.
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        &mut self,
        p: &nn::Path,
        input: Shape,
        c_out: i64,
        kernel: (i64, i64),
        stride: i64,
        padding: (i64, i64),
        dilation: i64,
        groups: i64,
        bias: bool,
    ) -> (Conv, Shape) {
        let dims = [c_out, input.c / groups, kernel.0, kernel.1];
        let weight = self.variable(p, "weight", DECAY_GROUP, &dims, CONV_INIT);
        let bias =
            bias.then(|| self.variable(p, "bias", NO_DECAY_GROUP, &[c_out], Init::Const(0.0)));
        let out = Shape {
            c: c_out,
            h: (input.h + 2 * padding.0 - dilation * (kernel.0 - 1) - 1) / stride + 1,
            w: (input.w + 2 * padding.1 - dilation * (kernel.1 - 1) - 1) / stride + 1,
        };
        let per_output = (input.c / groups) * kernel.0 * kernel.1;
        let params = dims.iter().product::<i64>() + if bias.is_some() { c_out } else { 0 };
        let kind = if groups == 1 {
            format!("conv{}x{}", kernel.0, kernel.1)
        } else {
            format!("dwconv{}x{}", kernel.0, kernel.1)
        };
        self.record(p, &kind, out, params, out.elements() * per_output);
        let conv = Conv {
            weight,
            bias,
            stride,
            padding: [padding.0, padding.1],
            dilation,
            groups,
            bf16: self.bf16,
        };
        (conv, out)
    }

    /// A square `k x k` convolution with "same" padding (`dilation * (k - 1) / 2`).
    pub fn conv_same(
        &mut self,
        p: &nn::Path,
        input: Shape,
        c_out: i64,
        k: i64,
        stride: i64,
        groups: i64,
    ) -> (Conv, Shape) {
        self.conv(
            p,
            input,
            c_out,
            (k, k),
            stride,
            ((k - 1) / 2, (k - 1) / 2),
            1,
            groups,
            false,
        )
    }

    /// Batch normalization over the channels of `input`, with learned scale and shift.
    pub fn bn(&mut self, p: &nn::Path, input: Shape) -> BatchNorm {
        let weight = self.variable(p, "weight", NO_DECAY_GROUP, &[input.c], Init::Const(1.0));
        let bias = self.variable(p, "bias", NO_DECAY_GROUP, &[input.c], Init::Const(0.0));
        let (running_mean, running_var) = if self.dry {
            (Tensor::new(), Tensor::new())
        } else {
            (
                p.zeros_no_train("running_mean", &[input.c]),
                p.ones_no_train("running_var", &[input.c]),
            )
        };
        self.record(p, "batchnorm", input, 2 * input.c, 0);
        BatchNorm {
            weight,
            bias,
            running_mean,
            running_var,
            settings: self.bn,
        }
    }

    /// A fully connected layer with bias.
    pub fn linear(&mut self, p: &nn::Path, inputs: i64, outputs: i64) -> Linear {
        let bound = 1.0 / (inputs as f64).sqrt();
        let init = Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let weight = self.variable(p, "weight", DECAY_GROUP, &[outputs, inputs], init);
        let bias = self.variable(p, "bias", NO_DECAY_GROUP, &[outputs], init);
        self.record(
            p,
            "linear",
            Shape {
                c: outputs,
                h: 1,
                w: 1,
            },
            inputs * outputs + outputs,
            inputs * outputs,
        );
        Linear {
            weight,
            bias,
            bf16: self.bf16,
        }
    }

    /// The classifier every network ends with: global average pooling of `input`, then a
    /// linear layer to `classes` logits (recorded as `pool` and `classifier` under `p`).
    pub fn classifier(&mut self, p: &nn::Path, input: Shape, classes: i64) -> Linear {
        self.note(
            &(p / "pool"),
            "globalavgpool",
            Shape {
                c: input.c,
                h: 1,
                w: 1,
            },
        );
        self.linear(&(p / "classifier"), input.c, classes)
    }

    /// Records a layer without parameters (pooling), for the table.
    pub fn note(&mut self, p: &nn::Path, kind: &str, output: Shape) {
        self.record(p, kind, output, 0, 0);
    }
}

/// A 2-D convolution. Input `[N, C_in, H, W]`, output `[N, C_out, H', W']`.
#[derive(Debug)]
pub struct Conv {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: i64,
    padding: [i64; 2],
    dilation: i64,
    groups: i64,
    bf16: bool,
}

impl Conv {
    /// Applies the convolution.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        if self.bf16 {
            let weight = self.weight.to_kind(Kind::BFloat16);
            let bias = self.bias.as_ref().map(|b| b.to_kind(Kind::BFloat16));
            x.to_kind(Kind::BFloat16).conv2d(
                &weight,
                bias.as_ref(),
                [self.stride, self.stride],
                self.padding,
                [self.dilation, self.dilation],
                self.groups,
            )
        } else {
            x.conv2d(
                &self.weight,
                self.bias.as_ref(),
                [self.stride, self.stride],
                self.padding,
                [self.dilation, self.dilation],
                self.groups,
            )
        }
    }
}

/// Batch normalization of `[N, C, H, W]` (or `[N, C]`) activations.
#[derive(Debug)]
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    settings: BnSettings,
}

impl BatchNorm {
    /// Normalizes with batch statistics when `train` (updating the running ones), else with
    /// the running statistics.
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        x.batch_norm(
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            train,
            self.settings.momentum,
            self.settings.eps,
            true,
        )
    }
}

/// A fully connected layer. Input `[N, in]`, output `[N, out]` (always `f32`).
#[derive(Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Tensor,
    bf16: bool,
}

impl Linear {
    /// Applies the layer.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        if self.bf16 {
            x.to_kind(Kind::BFloat16)
                .linear(
                    &self.weight.to_kind(Kind::BFloat16),
                    Some(&self.bias.to_kind(Kind::BFloat16)),
                )
                .to_kind(Kind::Float)
        } else {
            x.linear(&self.weight, Some(&self.bias))
        }
    }
}

/// `relu -> conv -> bn`, the op unit of NASNet and NAS-Bench-201.
#[derive(Debug)]
pub struct ReluConvBn {
    conv: Conv,
    bn: BatchNorm,
}

impl ReluConvBn {
    /// Builds the unit; arguments as [`Builder::conv`] (no bias).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        b: &mut Builder,
        p: &nn::Path,
        input: Shape,
        c_out: i64,
        kernel: (i64, i64),
        stride: i64,
        padding: (i64, i64),
        dilation: i64,
    ) -> (Self, Shape) {
        let (conv, out) = b.conv(
            &(p / "conv"),
            input,
            c_out,
            kernel,
            stride,
            padding,
            dilation,
            1,
            false,
        );
        let bn = b.bn(&(p / "bn"), out);
        (Self { conv, bn }, out)
    }

    /// `bn(conv(relu(x)))`.
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        self.forward_activated(&x.relu(), train)
    }

    /// `bn(conv(a))` for `a = relu(x)` computed by the caller, so that several units reading
    /// the same hidden state share one ReLU (forward and backward).
    pub fn forward_activated(&self, a: &Tensor, train: bool) -> Tensor {
        self.bn.forward(&self.conv.forward(a), train)
    }
}

/// `conv -> bn`, optionally followed by ReLU.
#[derive(Debug)]
pub struct ConvBn {
    conv: Conv,
    bn: BatchNorm,
    relu: bool,
}

impl ConvBn {
    /// A square `k x k` conv with "same" padding, batch norm, and ReLU when `relu`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        b: &mut Builder,
        p: &nn::Path,
        input: Shape,
        c_out: i64,
        k: i64,
        stride: i64,
        groups: i64,
        relu: bool,
    ) -> (Self, Shape) {
        let (conv, out) = b.conv_same(&(p / "conv"), input, c_out, k, stride, groups);
        let bn = b.bn(&(p / "bn"), out);
        (Self { conv, bn, relu }, out)
    }

    /// `relu?(bn(conv(x)))`.
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let y = self.bn.forward(&self.conv.forward(x), train);
        if self.relu {
            y.relu()
        } else {
            y
        }
    }
}

/// Global average pooling: `[N, C, H, W]` to `[N, C]`.
pub fn global_avg_pool(x: &Tensor) -> Tensor {
    x.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
}

/// 3x3 average pooling with padding 1 that does not count the padding (NASNet, NB201).
pub fn avg_pool3(x: &Tensor, stride: i64) -> Tensor {
    x.avg_pool2d([3, 3], [stride, stride], [1, 1], false, false, None::<i64>)
}

/// `k x k` max pooling with padding `k / 2`.
pub fn max_pool(x: &Tensor, k: i64, stride: i64) -> Tensor {
    x.max_pool2d([k, k], [stride, stride], [k / 2, k / 2], [1, 1], false)
}

/// Output shape of a "same"-padded pooling or conv with this stride.
pub fn strided(input: Shape, stride: i64) -> Shape {
    Shape {
        c: input.c,
        h: (input.h - 1) / stride + 1,
        w: (input.w - 1) / stride + 1,
    }
}
