//! The NAS-Bench-201 network (arXiv 2001.00326, Sec. 3.1 and Fig. 1): a 3x3 conv stem, three
//! stages of N cells with C, 2C, 4C channels, a residual reduction block between stages, then
//! batch norm, ReLU, global average pooling and a linear classifier.

use nasop_crds::space::nb201::{Nb201Genotype, Nb201Op, COMPUTE_NODES};
use tch::{nn, Tensor};

use super::layers::{avg_pool3, global_avg_pool, BatchNorm, Builder, Conv, Linear, ReluConvBn};
use super::{Mode, Shape};

/// One edge op.
#[derive(Debug)]
enum Edge {
    Zero,
    Identity,
    Conv(ReluConvBn),
    AvgPool,
}

impl Edge {
    /// `None` for the zero op: the edge adds nothing to its target node. `relu` gives the
    /// node's ReLU, computed at most once per node and shared by its conv edges.
    fn forward(&self, x: &Tensor, relu: &mut Option<Tensor>, train: bool) -> Option<Tensor> {
        match self {
            Edge::Zero => None,
            Edge::Identity => Some(x.shallow_clone()),
            Edge::Conv(unit) => {
                Some(unit.forward_activated(relu.get_or_insert_with(|| x.relu()), train))
            }
            Edge::AvgPool => Some(avg_pool3(x, 1)),
        }
    }
}

/// A cell: node `j` (1..=3) is the sum of the ops on its incoming edges; node 3 is the output.
#[derive(Debug)]
struct Cell {
    /// In flat edge order: (1<-0), (2<-0), (2<-1), (3<-0), (3<-1), (3<-2).
    edges: Vec<Edge>,
}

impl Cell {
    fn new(b: &mut Builder, p: &nn::Path, genotype: &Nb201Genotype, shape: Shape) -> Self {
        let edges = genotype
            .edges()
            .iter()
            .enumerate()
            .map(|(i, op)| {
                let p = p / format!("edge{i}");
                match op {
                    Nb201Op::None => Edge::Zero,
                    Nb201Op::SkipConnect => Edge::Identity,
                    Nb201Op::NorConv1x1 => {
                        Edge::Conv(ReluConvBn::new(b, &p, shape, shape.c, (1, 1), 1, (0, 0), 1).0)
                    }
                    Nb201Op::NorConv3x3 => {
                        Edge::Conv(ReluConvBn::new(b, &p, shape, shape.c, (3, 3), 1, (1, 1), 1).0)
                    }
                    Nb201Op::AvgPool3x3 => {
                        b.note(&p, "avgpool3x3", shape);
                        Edge::AvgPool
                    }
                }
            })
            .collect();
        Self { edges }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let mut nodes: Vec<Option<Tensor>> = Vec::with_capacity(COMPUTE_NODES + 1);
        let mut relus: [Option<Tensor>; COMPUTE_NODES] = Default::default();
        nodes.push(Some(x.shallow_clone()));
        let mut edge = 0;
        for to in 1..=COMPUTE_NODES {
            let mut sum: Option<Tensor> = None;
            for (from, node) in nodes.iter().take(to).enumerate() {
                let op = &self.edges[edge];
                edge += 1;
                // A node that is all zeros (every incoming edge `none`) still feeds its
                // out-edges, so that e.g. a conv's batch norm shift is applied as in the
                // benchmark's own network.
                let input = match node {
                    Some(t) => t.shallow_clone(),
                    None if matches!(op, Edge::Zero) => continue,
                    None => x.zeros_like(),
                };
                if let Some(y) = op.forward(&input, &mut relus[from], train) {
                    sum = Some(match sum {
                        Some(s) => s + y,
                        None => y,
                    });
                }
            }
            nodes.push(sum);
        }
        nodes.pop().flatten().unwrap_or_else(|| x.zeros_like())
    }
}

/// The residual reduction block between stages (a ResNet basic block with stride 2: two
/// ReLU-conv-BN units, and a 2x2 average pool + 1x1 conv shortcut).
#[derive(Debug)]
struct Reduction {
    conv_a: ReluConvBn,
    conv_b: ReluConvBn,
    shortcut: Conv,
}

impl Reduction {
    fn new(b: &mut Builder, p: &nn::Path, input: Shape, c_out: i64) -> (Self, Shape) {
        let (conv_a, mid) = ReluConvBn::new(b, &(p / "conv_a"), input, c_out, (3, 3), 2, (1, 1), 1);
        let (conv_b, out) = ReluConvBn::new(b, &(p / "conv_b"), mid, c_out, (3, 3), 1, (1, 1), 1);
        let pooled = Shape {
            c: input.c,
            h: input.h / 2,
            w: input.w / 2,
        };
        b.note(&(p / "shortcut_pool"), "avgpool2x2", pooled);
        let (shortcut, _) = b.conv(
            &(p / "shortcut"),
            pooled,
            c_out,
            (1, 1),
            1,
            (0, 0),
            1,
            1,
            false,
        );
        (
            Self {
                conv_a,
                conv_b,
                shortcut,
            },
            out,
        )
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let residual = self.conv_b.forward(&self.conv_a.forward(x, train), train);
        let pooled = x.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>);
        residual + self.shortcut.forward(&pooled)
    }
}

#[derive(Debug)]
enum Layer {
    Cell(Cell),
    Reduction(Box<Reduction>),
}

/// The NAS-Bench-201 network of one cell. Input `[N, C_in, H, W]` (H, W even after each
/// reduction: 32x32 in the benchmark), output logits `[N, classes]`.
#[derive(Debug)]
pub struct Nb201Net {
    stem: Conv,
    stem_bn: BatchNorm,
    layers: Vec<Layer>,
    last_bn: BatchNorm,
    classifier: Linear,
}

impl Nb201Net {
    /// Builds the network with `channels` (C) and `cells_per_stage` (N).
    pub fn new(
        b: &mut Builder,
        p: &nn::Path,
        genotype: &Nb201Genotype,
        input: Shape,
        classes: i64,
        channels: i64,
        cells_per_stage: i64,
    ) -> Self {
        let (stem, mut shape) = b.conv_same(&(p / "stem"), input, channels, 3, 1, 1);
        let stem_bn = b.bn(&(p / "stem_bn"), shape);
        let mut layers = Vec::new();
        for stage in 0..3 {
            if stage > 0 {
                let (reduction, out) =
                    Reduction::new(b, &(p / format!("reduction{stage}")), shape, shape.c * 2);
                layers.push(Layer::Reduction(Box::new(reduction)));
                shape = out;
            }
            for i in 0..cells_per_stage {
                let cell_path = p / format!("stage{stage}") / format!("cell{i}");
                layers.push(Layer::Cell(Cell::new(b, &cell_path, genotype, shape)));
            }
        }
        let last_bn = b.bn(&(p / "last_bn"), shape);
        let classifier = b.classifier(p, shape, classes);
        Self {
            stem,
            stem_bn,
            layers,
            last_bn,
            classifier,
        }
    }

    /// Logits `[N, classes]`.
    pub fn forward(&self, x: &Tensor, mode: Mode) -> Tensor {
        let train = mode.is_train();
        let mut h = self.stem_bn.forward(&self.stem.forward(x), train);
        for layer in &self.layers {
            h = match layer {
                Layer::Cell(cell) => cell.forward(&h, train),
                Layer::Reduction(reduction) => reduction.forward(&h, train),
            };
        }
        let h = self.last_bn.forward(&h, train).relu();
        self.classifier.forward(&global_avg_pool(&h))
    }
}
