//! NASNet networks (1707.07012 Sec. 3 and Fig. 2, CIFAR-10 architecture; cell details as in the
//! paper's released TF-slim code): a 3x3 conv stem with 3F filters, three stages of N Normal
//! cells with F, 2F, 4F filters, a Reduction cell before the second and third stages, then ReLU,
//! global average pooling, dropout and a linear classifier; an optional auxiliary head after the
//! second stage.
//!
//! A cell first squeezes its two inputs to F channels (1x1 ReLU-conv-BN on `h[i]`; on `h[i-1]`
//! the same when its channels differ, or a factorized reduction when its spatial size is twice
//! `h[i]`'s). Each block applies its two ops (stride 2 on the cell inputs in a Reduction cell)
//! and combines them; the cell output concatenates the listed hidden states, bringing any of a
//! different size to the last block's shape with a factorized reduction.

use nasop_crds::space::nasnet::{CellKind, Combine, NasnetCell, NasnetGenotype, NasnetOp};
use tch::{nn, Kind, Tensor};

use super::layers::{
    avg_pool3, global_avg_pool, max_pool, strided, BatchNorm, Builder, Conv, ConvBn, Linear,
    ReluConvBn,
};
use super::{Mode, Shape};

/// Weight of the auxiliary head's loss (1707.07012 App. A; TF-slim `aux_head` weight 0.4).
pub const AUX_LOSS_WEIGHT: f64 = 0.4;

/// Two depthwise-separable convolutions, each `relu -> k x k depthwise -> 1x1 pointwise -> bn`
/// (the paper applies separable convs twice; Sec. 4 and App. A).
#[derive(Debug)]
struct SepConvStack {
    units: Vec<(Conv, Conv, BatchNorm)>,
}

impl SepConvStack {
    fn new(
        b: &mut Builder,
        p: &nn::Path,
        input: Shape,
        c_out: i64,
        k: i64,
        stride: i64,
    ) -> (Self, Shape) {
        let mut shape = input;
        let mut units = Vec::with_capacity(2);
        for i in 0..2 {
            let p = p / format!("sep{i}");
            let s = if i == 0 { stride } else { 1 };
            let (dw, mid) = b.conv_same(&(&p / "depthwise"), shape, shape.c, k, s, shape.c);
            let (pw, out) = b.conv_same(&(&p / "pointwise"), mid, c_out, 1, 1, 1);
            let bn = b.bn(&(&p / "bn"), out);
            units.push((dw, pw, bn));
            shape = out;
        }
        (Self { units }, shape)
    }

    /// `relu` is the input's ReLU (shared with other ops reading the same hidden state).
    fn forward(&self, relu: &Tensor, train: bool) -> Tensor {
        let mut h = relu.shallow_clone();
        for (i, (dw, pw, bn)) in self.units.iter().enumerate() {
            if i > 0 {
                h = h.relu();
            }
            h = bn.forward(&pw.forward(&dw.forward(&h)), train);
        }
        h
    }
}

/// How a pooling op is computed.
#[derive(Clone, Copy, Debug)]
enum Pool {
    Avg,
    Max(i64),
}

/// One op of a block, already bound to its input shape and stride.
#[derive(Debug)]
enum Op {
    Identity,
    /// A plain conv op (or a projected identity): one or more ReLU-conv-BN units.
    Convs(Vec<ReluConvBn>),
    Pool {
        pool: Pool,
        stride: i64,
        project: Option<ConvBn>,
    },
    Sep(SepConvStack),
}

impl Op {
    fn new(
        b: &mut Builder,
        p: &nn::Path,
        op: NasnetOp,
        input: Shape,
        c_out: i64,
        stride: i64,
    ) -> (Self, Shape) {
        let unit = |b: &mut Builder, p: &nn::Path, k: (i64, i64), pad: (i64, i64), dil: i64| {
            ReluConvBn::new(b, p, input, c_out, k, stride, pad, dil)
        };
        match op {
            NasnetOp::Identity if stride == 1 && input.c == c_out => (Op::Identity, input),
            NasnetOp::Identity | NasnetOp::Conv1x1 => {
                let (u, out) = unit(b, &(p / "conv1x1"), (1, 1), (0, 0), 1);
                (Op::Convs(vec![u]), out)
            }
            NasnetOp::Conv3x3 => {
                let (u, out) = unit(b, &(p / "conv3x3"), (3, 3), (1, 1), 1);
                (Op::Convs(vec![u]), out)
            }
            NasnetOp::DilConv3x3 => {
                let (u, out) = unit(b, &(p / "dilconv3x3"), (3, 3), (2, 2), 2);
                (Op::Convs(vec![u]), out)
            }
            NasnetOp::Conv1x3Then3x1 | NasnetOp::Conv1x7Then7x1 => {
                let k = if op == NasnetOp::Conv1x3Then3x1 { 3 } else { 7 };
                let (first, mid) = unit(b, &(p / format!("conv1x{k}")), (1, k), (0, k / 2), 1);
                let (second, out) = ReluConvBn::new(
                    b,
                    &(p / format!("conv{k}x1")),
                    mid,
                    c_out,
                    (k, 1),
                    1,
                    (k / 2, 0),
                    1,
                );
                (Op::Convs(vec![first, second]), out)
            }
            NasnetOp::AvgPool3x3
            | NasnetOp::MaxPool3x3
            | NasnetOp::MaxPool5x5
            | NasnetOp::MaxPool7x7 => {
                let pool = match op {
                    NasnetOp::AvgPool3x3 => Pool::Avg,
                    NasnetOp::MaxPool3x3 => Pool::Max(3),
                    NasnetOp::MaxPool5x5 => Pool::Max(5),
                    _ => Pool::Max(7),
                };
                let pooled = strided(input, stride);
                b.note(&(p / "pool"), op.name(), pooled);
                // TF-slim projects pooled inputs whose channels differ with a 1x1 conv + BN.
                let project = (input.c != c_out)
                    .then(|| ConvBn::new(b, &(p / "project"), pooled, c_out, 1, 1, 1, false).0);
                (
                    Op::Pool {
                        pool,
                        stride,
                        project,
                    },
                    Shape { c: c_out, ..pooled },
                )
            }
            NasnetOp::SepConv3x3 | NasnetOp::SepConv5x5 | NasnetOp::SepConv7x7 => {
                let k = match op {
                    NasnetOp::SepConv3x3 => 3,
                    NasnetOp::SepConv5x5 => 5,
                    _ => 7,
                };
                let (stack, out) = SepConvStack::new(b, &(p / op.name()), input, c_out, k, stride);
                (Op::Sep(stack), out)
            }
        }
    }

    /// Applies the op to `x`; `relu` caches `relu(x)` for the ops that start with a ReLU, so
    /// that two ops of a cell reading the same hidden state compute it once.
    fn forward(&self, x: &Tensor, relu: &mut Option<Tensor>, train: bool) -> Tensor {
        let mut activated = || relu.get_or_insert_with(|| x.relu()).shallow_clone();
        match self {
            Op::Identity => x.shallow_clone(),
            Op::Convs(units) => {
                let mut h = units[0].forward_activated(&activated(), train);
                for unit in &units[1..] {
                    h = unit.forward(&h, train);
                }
                h
            }
            Op::Pool {
                pool,
                stride,
                project,
            } => {
                let h = match pool {
                    Pool::Avg => avg_pool3(x, *stride),
                    Pool::Max(k) => max_pool(x, *k, *stride),
                };
                match project {
                    Some(p) => p.forward(&h, train),
                    None => h,
                }
            }
            Op::Sep(stack) => stack.forward(&activated(), train),
        }
    }
}

/// Factorized reduction (TF-slim `factorized_reduction`): with stride 2, two 1x1 convs on the
/// even and the odd (shifted by one pixel) positions, each with half the filters, concatenated,
/// then batch norm; with stride 1, a 1x1 conv and batch norm.
#[derive(Debug)]
enum FactorizedReduction {
    Halves {
        even: Conv,
        odd: Conv,
        bn: BatchNorm,
    },
    Project(ConvBn),
}

impl FactorizedReduction {
    fn new(b: &mut Builder, p: &nn::Path, input: Shape, c_out: i64, stride: i64) -> (Self, Shape) {
        if stride == 1 {
            let (unit, out) = ConvBn::new(b, p, input, c_out, 1, 1, 1, false);
            return (FactorizedReduction::Project(unit), out);
        }
        let half = strided(input, 2);
        let (even, _) = b.conv(
            &(p / "even"),
            half,
            c_out / 2,
            (1, 1),
            1,
            (0, 0),
            1,
            1,
            false,
        );
        let (odd, _) = b.conv(
            &(p / "odd"),
            half,
            c_out - c_out / 2,
            (1, 1),
            1,
            (0, 0),
            1,
            1,
            false,
        );
        let out = Shape { c: c_out, ..half };
        let bn = b.bn(&(p / "bn"), out);
        (FactorizedReduction::Halves { even, odd, bn }, out)
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        match self {
            FactorizedReduction::Project(unit) => unit.forward(x, train),
            FactorizedReduction::Halves { even, odd, bn } => {
                let even_in = x.slice(2, 0, None, 2).slice(3, 0, None, 2);
                // Shift by one pixel (pad bottom/right, drop the first row and column).
                let shifted = x
                    .constant_pad_nd([0, 1, 0, 1])
                    .slice(2, 1, None, 2)
                    .slice(3, 1, None, 2);
                let y = Tensor::cat(&[even.forward(&even_in), odd.forward(&shifted)], 1);
                bn.forward(&y, train)
            }
        }
    }
}

/// How a cell prepares `h[i-1]`.
#[derive(Debug)]
enum Previous {
    AsIs,
    Squeeze(ReluConvBn),
    Reduce(FactorizedReduction),
}

#[derive(Debug)]
struct Block {
    input_a: usize,
    op_a: Op,
    input_b: usize,
    op_b: Op,
    combine: Combine,
}

/// A built cell. Inputs: `h[i-1]` and `h[i]`; output: the concatenated hidden states.
#[derive(Debug)]
struct Cell {
    previous: Previous,
    current: ReluConvBn,
    blocks: Vec<Block>,
    /// Hidden states concatenated into the output, each with the reduction it needs.
    concat: Vec<(usize, Option<FactorizedReduction>)>,
}

impl Cell {
    /// Builds a cell with `filters` (F) per block output from inputs of shapes `prev`
    /// (`h[i-1]`) and `cur` (`h[i]`). Returns the cell and its output shape.
    fn new(
        b: &mut Builder,
        p: &nn::Path,
        genotype: &NasnetCell,
        kind: CellKind,
        prev: Shape,
        cur: Shape,
        filters: i64,
    ) -> (Self, Shape) {
        let (current, cur_shape) =
            ReluConvBn::new(b, &(p / "squeeze_cur"), cur, filters, (1, 1), 1, (0, 0), 1);
        let (previous, prev_shape) = if prev.h != cur.h {
            let (fr, s) = FactorizedReduction::new(b, &(p / "reduce_prev"), prev, filters, 2);
            (Previous::Reduce(fr), s)
        } else if prev.c != filters {
            let (u, s) = ReluConvBn::new(
                b,
                &(p / "squeeze_prev"),
                prev,
                filters,
                (1, 1),
                1,
                (0, 0),
                1,
            );
            (Previous::Squeeze(u), s)
        } else {
            (Previous::AsIs, prev)
        };
        let mut states = vec![prev_shape, cur_shape];
        let mut blocks = Vec::with_capacity(genotype.blocks().len());
        for (i, block) in genotype.blocks().iter().enumerate() {
            let bp = p / format!("block{i}");
            let mut side = |input: u8, op: NasnetOp, name: &str| {
                let input = usize::from(input);
                let stride = if kind == CellKind::Reduction && input < 2 {
                    2
                } else {
                    1
                };
                let (op, shape) = Op::new(b, &(&bp / name), op, states[input], filters, stride);
                (input, op, shape)
            };
            let (input_a, op_a, shape_a) = side(block.input_a, block.op_a, "a");
            let (input_b, op_b, shape_b) = side(block.input_b, block.op_b, "b");
            let out = match block.combine {
                Combine::Add => shape_a,
                Combine::Concat => Shape {
                    c: shape_a.c + shape_b.c,
                    ..shape_a
                },
            };
            debug_assert_eq!((shape_a.h, shape_a.w), (shape_b.h, shape_b.w));
            states.push(out);
            blocks.push(Block {
                input_a,
                op_a,
                input_b,
                op_b,
                combine: block.combine,
            });
        }
        let last = *states.last().expect("a cell has at least one block");
        let mut concat = Vec::new();
        let mut out = Shape { c: 0, ..last };
        for index in genotype.concat() {
            let index = usize::from(index);
            let shape = states[index];
            let fix = (shape.h != last.h || shape.c != last.c).then(|| {
                let stride = if shape.h != last.h { 2 } else { 1 };
                FactorizedReduction::new(
                    b,
                    &(p / format!("concat_reduce{index}")),
                    shape,
                    last.c,
                    stride,
                )
                .0
            });
            out.c += if fix.is_some() { last.c } else { shape.c };
            concat.push((index, fix));
        }
        (
            Self {
                previous,
                current,
                blocks,
                concat,
            },
            out,
        )
    }

    fn forward(&self, prev: &Tensor, cur: &Tensor, train: bool, drop_path: f64) -> Tensor {
        let prev = match &self.previous {
            Previous::AsIs => prev.shallow_clone(),
            Previous::Squeeze(u) => u.forward(prev, train),
            Previous::Reduce(fr) => fr.forward(&prev.relu(), train),
        };
        let mut states = Vec::with_capacity(2 + self.blocks.len());
        states.push(prev);
        states.push(self.current.forward(cur, train));
        let mut relus: Vec<Option<Tensor>> = (0..2 + self.blocks.len()).map(|_| None).collect();
        for block in &self.blocks {
            let a = apply(
                &block.op_a,
                &states[block.input_a],
                &mut relus[block.input_a],
                train,
                drop_path,
            );
            let b = apply(
                &block.op_b,
                &states[block.input_b],
                &mut relus[block.input_b],
                train,
                drop_path,
            );
            states.push(match block.combine {
                Combine::Add => a + b,
                Combine::Concat => Tensor::cat(&[a, b], 1),
            });
        }
        let parts: Vec<Tensor> = self
            .concat
            .iter()
            .map(|(index, fix)| match fix {
                Some(fr) => fr.forward(&states[*index], train),
                None => states[*index].shallow_clone(),
            })
            .collect();
        Tensor::cat(&parts, 1)
    }
}

/// Applies an op and, while training with `drop_path > 0`, DropPath: the op's output is zeroed
/// for each example with probability `drop_path` and rescaled by `1 / (1 - drop_path)`.
/// Identity paths are never dropped (as in the paper's code).
fn apply(op: &Op, x: &Tensor, relu: &mut Option<Tensor>, train: bool, drop_path: f64) -> Tensor {
    let y = op.forward(x, relu, train);
    if !train || drop_path <= 0.0 || matches!(op, Op::Identity) {
        return y;
    }
    let keep = 1.0 - drop_path;
    let size = y.size();
    let mask = Tensor::empty([size[0], 1, 1, 1], (Kind::Float, y.device()))
        .bernoulli_float_(keep)
        .to_kind(y.kind());
    y * mask / keep
}

/// The auxiliary classifier (CIFAR version of TF-slim's `_build_aux_head`): ReLU, 5x5 average
/// pooling with stride 3, 1x1 conv to 128 + BN + ReLU, a conv over the whole remaining map to
/// 768 + BN + ReLU, then a linear layer.
#[derive(Debug)]
struct AuxHead {
    pool: i64,
    reduce: ConvBn,
    conv: Conv,
    bn: BatchNorm,
    classifier: Linear,
}

impl AuxHead {
    fn new(b: &mut Builder, p: &nn::Path, input: Shape, classes: i64) -> Self {
        let pool = input.h.min(input.w).min(5);
        let pooled = Shape {
            c: input.c,
            h: (input.h - pool) / 3 + 1,
            w: (input.w - pool) / 3 + 1,
        };
        b.note(&(p / "pool"), "avgpool", pooled);
        let (reduce, mid) = ConvBn::new(b, &(p / "reduce"), pooled, 128, 1, 1, 1, true);
        let (conv, out) = b.conv(
            &(p / "conv"),
            mid,
            768,
            (mid.h, mid.w),
            1,
            (0, 0),
            1,
            1,
            false,
        );
        let bn = b.bn(&(p / "bn"), out);
        let classifier = b.linear(&(p / "classifier"), out.c * out.h * out.w, classes);
        Self {
            pool,
            reduce,
            conv,
            bn,
            classifier,
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let h = x.relu().avg_pool2d(
            [self.pool, self.pool],
            [3, 3],
            [0, 0],
            false,
            true,
            None::<i64>,
        );
        let h = self.reduce.forward(&h, train);
        let h = self.bn.forward(&self.conv.forward(&h), train).relu();
        self.classifier.forward(&h.flatten(1, -1))
    }
}

/// Settings of a NASNet network beyond the genotype.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NasnetSettings {
    /// Normal cells per stage, N.
    pub cells_per_stage: i64,
    /// Filters of the first stage, F (doubled by each Reduction cell).
    pub filters: i64,
    /// Stem filters = `stem_multiplier * F` (TF-slim CIFAR config: 3).
    pub stem_multiplier: i64,
    /// Add the auxiliary head after the second stage.
    pub aux_head: bool,
    /// Dropout before the classifier (probability of dropping).
    pub dropout: f64,
}

/// A NASNet CIFAR-style network. Input `[N, C_in, H, W]`, logits `[N, classes]`.
#[derive(Debug)]
pub struct NasnetNet {
    stem: ConvBn,
    cells: Vec<Cell>,
    /// Index in `cells` after which the auxiliary head reads.
    aux_after: Option<usize>,
    aux: Option<AuxHead>,
    dropout: f64,
    classifier: Linear,
}

impl NasnetNet {
    /// Builds the network. `aux` layers are recorded in the table under the `aux` prefix.
    pub fn new(
        b: &mut Builder,
        p: &nn::Path,
        genotype: &NasnetGenotype,
        input: Shape,
        classes: i64,
        settings: NasnetSettings,
    ) -> Self {
        let (stem, stem_shape) = ConvBn::new(
            b,
            &(p / "stem"),
            input,
            settings.stem_multiplier * settings.filters,
            3,
            1,
            1,
            false,
        );
        let (mut prev, mut cur) = (stem_shape, stem_shape);
        let mut cells = Vec::new();
        let mut aux_after = None;
        let mut aux = None;
        let mut filters = settings.filters;
        for stage in 0..3 {
            let mut kinds = Vec::new();
            if stage > 0 {
                filters *= 2;
                kinds.push(CellKind::Reduction);
            }
            kinds.extend(std::iter::repeat_n(
                CellKind::Normal,
                settings.cells_per_stage as usize,
            ));
            for kind in kinds {
                let name = format!("cell{}", cells.len());
                let (cell, out) = Cell::new(
                    b,
                    &(p / name),
                    genotype.cell(kind),
                    kind,
                    prev,
                    cur,
                    filters,
                );
                cells.push(cell);
                (prev, cur) = (cur, out);
            }
            if stage == 1 && settings.aux_head {
                aux_after = Some(cells.len() - 1);
                aux = Some(AuxHead::new(b, &(p / "aux"), cur, classes));
            }
        }
        let classifier = b.classifier(p, cur, classes);
        Self {
            stem,
            cells,
            aux_after,
            aux,
            dropout: settings.dropout,
            classifier,
        }
    }

    /// Logits `[N, classes]`, and the auxiliary head's logits while training with the head.
    pub fn forward(&self, x: &Tensor, mode: Mode) -> (Tensor, Option<Tensor>) {
        let train = mode.is_train();
        let drop_path = mode.drop_path();
        let stem = self.stem.forward(x, train);
        let (mut prev, mut cur) = (stem.shallow_clone(), stem);
        let mut aux_logits = None;
        for (i, cell) in self.cells.iter().enumerate() {
            let out = cell.forward(&prev, &cur, train, drop_path);
            (prev, cur) = (cur, out);
            if train && Some(i) == self.aux_after {
                aux_logits = self.aux.as_ref().map(|head| head.forward(&cur, train));
            }
        }
        let features = global_avg_pool(&cur.relu()).dropout(self.dropout, train);
        (self.classifier.forward(&features), aux_logits)
    }
}
