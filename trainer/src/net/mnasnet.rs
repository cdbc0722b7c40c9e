//! MnasNet networks (1807.11626 Sec. 4.1 and Fig. 7): a 3x3 stride-2 conv stem, the genotype's
//! blocks (each `layers` identical layers, the first with the block's stride), a 1x1 conv head,
//! global average pooling, dropout and a linear classifier.
//!
//! Layers, by conv op (each conv followed by batch norm; ReLU after all but the projection):
//! - `mbconv3` / `mbconv6`: 1x1 expansion, k x k depthwise, optional squeeze-and-excitation,
//!   1x1 linear projection (the inverted bottleneck of MobileNetV2, arXiv 1801.04381);
//! - `dconv`: k x k depthwise, optional SE, 1x1 linear projection (an expansion-1 MBConv);
//! - `conv`: one k x k convolution with ReLU, optional SE.
//!
//! Skip ops: `identity` adds the input when the shapes match; `pool` does the same, and where the
//! layer changes the shape it adds a 3x3 average pooling of the input (with the layer's stride)
//! projected by a 1x1 conv + BN when the channels change; `none` adds nothing.

use nasop_crds::space::mnasnet::{ConvOp, MnasnetGenotype, SkipOp};
use tch::{nn, Tensor};

use super::layers::{
    avg_pool3, global_avg_pool, strided, BnSettings, Builder, Conv, ConvBn, Linear,
};
use super::{Mode, Shape};

/// Batch norm of the MnasNet TF code: decay 0.99 (PyTorch momentum 0.01), epsilon 1e-3.
pub const MNASNET_BN: BnSettings = BnSettings {
    momentum: 0.01,
    eps: 1e-3,
};
/// Dropout before the classifier (MnasNet TF code, `dropout_rate` 0.2).
pub const MNASNET_DROPOUT: f64 = 0.2;

/// Squeeze-and-excitation (Hu et al. 2018): global pool, 1x1 conv down to `reduced` channels,
/// ReLU, 1x1 conv back up, sigmoid gate. `reduced = max(1, floor(filters_in * se_ratio))` as
/// in the MnasNet TF code.
#[derive(Debug)]
struct SqueezeExcite {
    reduce: Conv,
    expand: Conv,
}

impl SqueezeExcite {
    fn new(b: &mut Builder, p: &nn::Path, input: Shape, reduced: i64) -> Self {
        let pooled = Shape {
            h: 1,
            w: 1,
            ..input
        };
        let (reduce, mid) = b.conv(
            &(p / "reduce"),
            pooled,
            reduced,
            (1, 1),
            1,
            (0, 0),
            1,
            1,
            true,
        );
        let (expand, _) = b.conv(&(p / "expand"), mid, input.c, (1, 1), 1, (0, 0), 1, 1, true);
        Self { reduce, expand }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let s = x.adaptive_avg_pool2d([1, 1]);
        let gate = self
            .expand
            .forward(&self.reduce.forward(&s).relu())
            .sigmoid();
        x * gate
    }
}

#[derive(Debug)]
enum Skip {
    None,
    Identity,
    Pool {
        stride: i64,
        project: Option<ConvBn>,
    },
}

/// One layer of a block. Input `[N, C_in, H, W]`, output `[N, C_out, H / s, W / s]`.
#[derive(Debug)]
struct Layer {
    expand: Option<ConvBn>,
    main: ConvBn,
    se: Option<SqueezeExcite>,
    project: Option<ConvBn>,
    skip: Skip,
}

impl Layer {
    #[allow(clippy::too_many_arguments)]
    fn new(
        b: &mut Builder,
        p: &nn::Path,
        input: Shape,
        conv_op: ConvOp,
        kernel: i64,
        stride: i64,
        se_ratio: f64,
        skip: SkipOp,
        c_out: i64,
    ) -> (Self, Shape) {
        let se_filters = ((input.c as f64 * se_ratio).floor() as i64).max(1);
        let (expand, main, mid) = match conv_op {
            ConvOp::Conv => {
                let (main, mid) =
                    ConvBn::new(b, &(p / "conv"), input, c_out, kernel, stride, 1, true);
                (None, main, mid)
            }
            ConvOp::DConv | ConvOp::MbConv3 | ConvOp::MbConv6 => {
                let e = i64::from(conv_op.expansion());
                let (expand, wide) = if e > 1 {
                    let (u, s) = ConvBn::new(b, &(p / "expand"), input, input.c * e, 1, 1, 1, true);
                    (Some(u), s)
                } else {
                    (None, input)
                };
                let (dw, mid) = ConvBn::new(
                    b,
                    &(p / "depthwise"),
                    wide,
                    wide.c,
                    kernel,
                    stride,
                    wide.c,
                    true,
                );
                (expand, dw, mid)
            }
        };
        let se = (se_ratio > 0.0).then(|| SqueezeExcite::new(b, &(p / "se"), mid, se_filters));
        let (project, out) = if conv_op == ConvOp::Conv {
            (None, mid)
        } else {
            let (u, s) = ConvBn::new(b, &(p / "project"), mid, c_out, 1, 1, 1, false);
            (Some(u), s)
        };
        let same_shape = stride == 1 && input.c == c_out;
        let skip = match skip {
            SkipOp::None => Skip::None,
            SkipOp::Identity if same_shape => Skip::Identity,
            SkipOp::Identity => Skip::None,
            SkipOp::Pool if same_shape => Skip::Identity,
            SkipOp::Pool => {
                let pooled = strided(input, stride);
                if stride > 1 {
                    b.note(&(p / "skip_pool"), "avgpool3x3", pooled);
                }
                let project = (input.c != c_out).then(|| {
                    ConvBn::new(b, &(p / "skip_project"), pooled, c_out, 1, 1, 1, false).0
                });
                Skip::Pool { stride, project }
            }
        };
        (
            Self {
                expand,
                main,
                se,
                project,
                skip,
            },
            out,
        )
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let mut h = match &self.expand {
            Some(e) => e.forward(x, train),
            None => x.shallow_clone(),
        };
        h = self.main.forward(&h, train);
        if let Some(se) = &self.se {
            h = se.forward(&h);
        }
        if let Some(p) = &self.project {
            h = p.forward(&h, train);
        }
        match &self.skip {
            Skip::None => h,
            Skip::Identity => h + x,
            Skip::Pool { stride, project } => {
                let pooled = if *stride > 1 {
                    avg_pool3(x, *stride)
                } else {
                    x.shallow_clone()
                };
                let shortcut = match project {
                    Some(p) => p.forward(&pooled, train),
                    None => pooled,
                };
                h + shortcut
            }
        }
    }
}

/// A MnasNet network. Input `[N, C_in, H, W]` (224x224 on ImageNet), logits `[N, classes]`.
#[derive(Debug)]
pub struct MnasnetNet {
    stem: ConvBn,
    layers: Vec<Layer>,
    head: ConvBn,
    dropout: f64,
    classifier: Linear,
}

impl MnasnetNet {
    /// Builds the network with a 1x1 head conv of `head_filters` (MnasNet: 1280).
    pub fn new(
        b: &mut Builder,
        p: &nn::Path,
        genotype: &MnasnetGenotype,
        input: Shape,
        classes: i64,
        head_filters: i64,
        dropout: f64,
    ) -> Self {
        let (stem, mut shape) = ConvBn::new(
            b,
            &(p / "stem"),
            input,
            i64::from(genotype.stem_filters()),
            3,
            2,
            1,
            true,
        );
        let mut layers = Vec::new();
        for (i, block) in genotype.blocks().iter().enumerate() {
            for l in 0..block.layers {
                let stride = if l == 0 { i64::from(block.stride) } else { 1 };
                let (layer, out) = Layer::new(
                    b,
                    &(p / format!("block{i}") / format!("layer{l}")),
                    shape,
                    block.conv_op,
                    i64::from(block.kernel),
                    stride,
                    block.se_ratio,
                    block.skip,
                    i64::from(block.filters),
                );
                layers.push(layer);
                shape = out;
            }
        }
        let (head, shape) = ConvBn::new(b, &(p / "head"), shape, head_filters, 1, 1, 1, true);
        let classifier = b.classifier(p, shape, classes);
        Self {
            stem,
            layers,
            head,
            dropout,
            classifier,
        }
    }

    /// Logits `[N, classes]`.
    pub fn forward(&self, x: &Tensor, mode: Mode) -> Tensor {
        let train = mode.is_train();
        let mut h = self.stem.forward(x, train);
        for layer in &self.layers {
            h = layer.forward(&h, train);
        }
        let h = self.head.forward(&h, train);
        self.classifier
            .forward(&global_avg_pool(&h).dropout(self.dropout, train))
    }
}
