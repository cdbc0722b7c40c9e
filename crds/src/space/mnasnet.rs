//! MnasNet's factorized hierarchical search space (Tan et al. 2019, arXiv 1807.11626, Sec. 4.1).
//!
//! The network is a fixed skeleton of blocks (7 by default, after MobileNetV2); each block
//! repeats one layer `layers` times and searches, independently of the other blocks:
//! the conv op (regular conv, depthwise-separable conv, MBConv with expansion 3 or 6), the kernel
//! (3x3, 5x5), the squeeze-and-excitation ratio (0, 0.25), the skip op (pooling, identity
//! residual, none), the output filters (x0.75, x1.0, x1.25 of the reference) and the number of
//! layers (-1, 0, +1 of the reference). With these choices a block has S = 4 x 2 x 2 x 3 x 3 x 3
//! = 432 options, the number the paper gives.
//!
//! String form: the block strings of the released MnasNet code, comma-separated, e.g.
//! `r1_k3_s11_e1_i32_o16_noskip,r2_k3_s22_e6_i16_o24,...`: `r` layers, `k` kernel, `s` stride
//! (written twice), `e` expansion (1 = depthwise-separable conv, 3 or 6 = MBConv), `i`/`o` input
//! and output filters, `se` SE ratio (omitted when 0), `noskip` for no skip (identity residual is
//! the default); and two tokens of nasop's own: `poolskip` (pooling skip) and `conv` (regular
//! convolution, with `e1`).

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::{check_choice_list, check_range, choice_index, join, GenotypeError, SpaceError};
use super::{
    check_decisions, named_enum, parse_digits, schema_as, split_with_offsets, CategoricalSpace,
    Decision, SpaceKind,
};

const SPACE: SpaceKind = SpaceKind::Mnasnet;

/// Most blocks a genotype may have.
pub const MAX_BLOCKS: usize = 16;
/// Most layers a block may repeat.
pub const MAX_LAYERS: u32 = 16;
/// Most filters a layer may have.
pub const MAX_FILTERS: u32 = 8192;
/// Kernel sizes a genotype may use.
pub const KERNELS: [u32; 4] = [1, 3, 5, 7];

/// MnasNet-A1 as released (1807.11626 Fig. 7; block strings of the released model, listed in
/// DESIGN.md): 3.9M parameters and 312M multiply-adds at 224x224 with 1000 classes.
pub const MNASNET_A1: &str = concat!(
    "r1_k3_s11_e1_i32_o16_noskip,r2_k3_s22_e6_i16_o24,r3_k5_s22_e3_i24_o40_se0.25,",
    "r4_k3_s22_e6_i40_o80,r2_k3_s11_e6_i80_o112_se0.25,r3_k5_s22_e6_i112_o160_se0.25,",
    "r1_k3_s11_e6_i160_o320",
);

named_enum! {
    /// The conv op of a layer (1807.11626 Sec. 4.1, ConvOp).
    pub enum ConvOp {
        /// Regular k x k convolution.
        Conv => "conv",
        /// Depthwise-separable convolution: k x k depthwise, then 1x1 pointwise (expansion 1).
        DConv => "dconv",
        /// Mobile inverted bottleneck with expansion 3 (Sandler et al. 2018).
        MbConv3 => "mbconv3",
        /// Mobile inverted bottleneck with expansion 6.
        MbConv6 => "mbconv6",
    }
}

impl ConvOp {
    /// Expansion ratio of the layer's first 1x1 conv (1 = none).
    pub const fn expansion(self) -> u32 {
        match self {
            Self::Conv | Self::DConv => 1,
            Self::MbConv3 => 3,
            Self::MbConv6 => 6,
        }
    }
}

named_enum! {
    /// The skip op of a layer (1807.11626 Sec. 4.1, SkipOp).
    #[derive(Default)]
    pub enum SkipOp {
        /// A pooling skip path (also where the layer changes the shape).
        Pool => "pool",
        /// Identity residual, on layers whose input and output shapes match.
        #[default]
        Identity => "identity",
        /// No skip.
        None => "none",
    }
}

/// Allowed SE ratios: none, or one that keeps at least 1% of the channels in the squeeze.
const SE_ALLOWED: &str = "0 (no SE) or a ratio in [0.01, 1]";

fn valid_se_ratio(ratio: f64) -> bool {
    ratio == 0.0 || (0.01..=1.0).contains(&ratio)
}

/// One block of the skeleton: `layers` identical layers, the first with `stride`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MnasnetBlock {
    /// Conv op of every layer.
    pub conv_op: ConvOp,
    /// Kernel size k (k x k).
    #[schemars(range(min = 1, max = 7))]
    pub kernel: u32,
    /// Stride of the first layer (1 or 2); the other layers use 1.
    #[schemars(range(min = 1, max = 2))]
    pub stride: u32,
    /// Squeeze-and-excitation ratio (0 = no SE block).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub se_ratio: f64,
    /// Skip op of every layer.
    #[serde(default)]
    pub skip: SkipOp,
    /// Input filters of the block (the previous block's `filters`, or the stem's).
    #[schemars(range(min = 1, max = 8192))]
    pub filters_in: u32,
    /// Output filters of every layer.
    #[schemars(range(min = 1, max = 8192))]
    pub filters: u32,
    /// Number of layers.
    #[schemars(range(min = 1, max = 16))]
    pub layers: u32,
}

impl PartialEq for MnasnetBlock {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for MnasnetBlock {}

impl Hash for MnasnetBlock {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl MnasnetBlock {
    #[allow(clippy::type_complexity)]
    fn key(&self) -> (ConvOp, u32, u32, u64, SkipOp, u32, u32, u32) {
        (
            self.conv_op,
            self.kernel,
            self.stride,
            // +0.0 and -0.0 are the same ratio.
            (self.se_ratio + 0.0).to_bits(),
            self.skip,
            self.filters_in,
            self.filters,
            self.layers,
        )
    }
}

/// A MnasNet genotype: one [`MnasnetBlock`] per skeleton block.
///
/// JSON form: `{"blocks": [{"convOp": "dconv", "kernel": 3, "stride": 1, "seRatio": 0,
/// "skip": "none", "filtersIn": 32, "filters": 16, "layers": 1}, ...]}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawGenotype", into = "RawGenotype")]
pub struct MnasnetGenotype {
    blocks: Vec<MnasnetBlock>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawGenotype {
    /// The blocks, from the stem to the head.
    #[schemars(length(min = 1, max = 16))]
    blocks: Vec<MnasnetBlock>,
}

schema_as!(MnasnetGenotype, RawGenotype, "MnasnetGenotype");

impl TryFrom<RawGenotype> for MnasnetGenotype {
    type Error = GenotypeError;

    fn try_from(raw: RawGenotype) -> Result<Self, Self::Error> {
        Self::new(raw.blocks)
    }
}

impl From<MnasnetGenotype> for RawGenotype {
    fn from(g: MnasnetGenotype) -> Self {
        Self { blocks: g.blocks }
    }
}

impl MnasnetGenotype {
    /// A validated genotype.
    ///
    /// # Errors
    /// [`GenotypeError`] naming the block and field: block count outside `1..=16`, a kernel
    /// not in 1, 3, 5, 7, a stride not 1 or 2, an SE ratio outside `[0, 1]`, zero or too many
    /// filters or layers, or `filtersIn` different from the previous block's `filters`.
    pub fn new(blocks: Vec<MnasnetBlock>) -> Result<Self, GenotypeError> {
        if blocks.is_empty() || blocks.len() > MAX_BLOCKS {
            return Err(GenotypeError::count(
                SPACE,
                "genotype",
                "blocks",
                format!("1..={MAX_BLOCKS}"),
                blocks.len(),
            ));
        }
        for (b, block) in blocks.iter().enumerate() {
            let location = format!("block {}", b + 1);
            let bad = |field, value: &dyn fmt::Display, allowed: String| {
                Err(GenotypeError::value(
                    SPACE, &location, field, value, allowed,
                ))
            };
            if !KERNELS.contains(&block.kernel) {
                return bad("kernel", &block.kernel, join(KERNELS));
            }
            if !(1..=2).contains(&block.stride) {
                return bad("stride", &block.stride, "1, 2".into());
            }
            if !valid_se_ratio(block.se_ratio) {
                return bad("seRatio", &block.se_ratio, SE_ALLOWED.into());
            }
            if !(1..=MAX_FILTERS).contains(&block.filters_in) {
                return bad("filtersIn", &block.filters_in, format!("1..={MAX_FILTERS}"));
            }
            if !(1..=MAX_FILTERS).contains(&block.filters) {
                return bad("filters", &block.filters, format!("1..={MAX_FILTERS}"));
            }
            if !(1..=MAX_LAYERS).contains(&block.layers) {
                return bad("layers", &block.layers, format!("1..={MAX_LAYERS}"));
            }
            if b > 0 && block.filters_in != blocks[b - 1].filters {
                return bad(
                    "filtersIn",
                    &block.filters_in,
                    format!("{} (the filters of block {b})", blocks[b - 1].filters),
                );
            }
        }
        Ok(Self { blocks })
    }

    /// The blocks, from the stem to the head.
    pub fn blocks(&self) -> &[MnasnetBlock] {
        &self.blocks
    }

    /// Filters of the stem conv (the first block's input filters).
    pub fn stem_filters(&self) -> u32 {
        self.blocks[0].filters_in
    }

    /// Re-checks the structural rules (see [`MnasnetGenotype::new`]).
    ///
    /// # Errors
    /// As [`MnasnetGenotype::new`].
    pub fn validate(&self) -> Result<(), GenotypeError> {
        Self::new(self.blocks.clone()).map(|_| ())
    }
}

impl fmt::Display for MnasnetGenotype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (b, block) in self.blocks.iter().enumerate() {
            if b > 0 {
                f.write_str(",")?;
            }
            write!(
                f,
                "r{}_k{}_s{s}{s}_e{}_i{}_o{}",
                block.layers,
                block.kernel,
                block.conv_op.expansion(),
                block.filters_in,
                block.filters,
                s = block.stride,
            )?;
            if block.se_ratio > 0.0 {
                write!(f, "_se{}", block.se_ratio)?;
            }
            match block.skip {
                SkipOp::Identity => {}
                SkipOp::None => f.write_str("_noskip")?,
                SkipOp::Pool => f.write_str("_poolskip")?,
            }
            if block.conv_op == ConvOp::Conv {
                f.write_str("_conv")?;
            }
        }
        Ok(())
    }
}

impl FromStr for MnasnetGenotype {
    type Err = GenotypeError;

    /// Parses comma-separated block strings (white space around the separators is allowed).
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let blocks = split_with_offsets(input, 0, ',')
            .into_iter()
            .enumerate()
            .map(|(b, (offset, text))| parse_block(input, offset, text, b))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(blocks)
    }
}

/// The numeric tokens of a block string: letter, field, allowed values.
const NUMERIC_TOKENS: [(char, &str, &str); 6] = [
    ('r', "layers", "1..=16"),
    ('k', "kernel", "1, 3, 5, 7"),
    ('s', "stride", "s11, s22"),
    ('e', "expansion", "e1, e3, e6"),
    ('i', "filtersIn", "1..=8192"),
    ('o', "filters", "1..=8192"),
];

/// Digits with an optional fraction (`0.25`, `1`): the SE ratio's form.
fn is_decimal(text: &str) -> bool {
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match text.split_once('.') {
        Some((whole, fraction)) => all_digits(whole) && all_digits(fraction),
        None => all_digits(text),
    }
}

fn parse_block(
    input: &str,
    base: usize,
    text: &str,
    b: usize,
) -> Result<MnasnetBlock, GenotypeError> {
    let location = format!("block {}", b + 1);
    let mut numbers: [Option<u32>; 6] = [None; 6]; // r, k, s, e, i, o
    let mut se_ratio = None;
    let mut skip = None;
    let mut conv = false;
    let unknown = |offset: usize, token: &str| {
        GenotypeError::syntax(
            SPACE,
            input,
            offset,
            format!(
                "{location}: unknown token {token:?}; allowed: r<layers>, k<kernel>, \
                 s<stride><stride>, e<expansion>, i<filters in>, o<filters out>, se<ratio>, \
                 noskip, poolskip, conv"
            ),
        )
    };
    for (offset, token) in split_with_offsets(text, base, '_') {
        let duplicate = || {
            GenotypeError::syntax(
                SPACE,
                input,
                offset,
                format!("{location}: token {token:?} repeats an earlier one"),
            )
        };
        match token {
            "noskip" | "poolskip" => {
                let op = if token == "noskip" {
                    SkipOp::None
                } else {
                    SkipOp::Pool
                };
                if skip.replace(op).is_some() {
                    return Err(duplicate());
                }
            }
            "conv" => {
                if std::mem::replace(&mut conv, true) {
                    return Err(duplicate());
                }
            }
            _ if token.starts_with("se") => {
                let ratio = Some(&token[2..])
                    .filter(|r| is_decimal(r))
                    .and_then(|r| r.parse::<f64>().ok())
                    .ok_or_else(|| {
                        GenotypeError::syntax(
                            SPACE,
                            input,
                            offset,
                            format!(
                                "{location}: SE ratio in {token:?} must be a decimal like 0.25"
                            ),
                        )
                    })?;
                if se_ratio.replace(ratio).is_some() {
                    return Err(duplicate());
                }
            }
            _ => {
                let mut chars = token.chars();
                let first = chars.next();
                let digits = chars.as_str();
                let slot = NUMERIC_TOKENS
                    .iter()
                    .position(|(c, ..)| Some(*c) == first)
                    .filter(|_| !digits.is_empty() && digits.bytes().all(|d| d.is_ascii_digit()))
                    .ok_or_else(|| unknown(offset, token))?;
                let (_, field, allowed) = NUMERIC_TOKENS[slot];
                let value = parse_digits(digits)
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(|| {
                        GenotypeError::value(SPACE, &location, field, digits, allowed)
                    })?;
                if numbers[slot].replace(value).is_some() {
                    return Err(duplicate());
                }
            }
        }
    }
    let missing = ["r", "k", "s", "e", "i", "o"]
        .iter()
        .zip(&numbers)
        .filter(|(_, v)| v.is_none())
        .map(|(n, _)| *n)
        .collect::<Vec<_>>();
    if !missing.is_empty() {
        return Err(GenotypeError::syntax(
            SPACE,
            input,
            base,
            format!("{location}: missing token(s) {}", missing.join(", ")),
        ));
    }
    let [layers, kernel, stride, expansion, filters_in, filters] = numbers.map(Option::unwrap);
    let stride = match stride {
        11 => 1,
        22 => 2,
        other => {
            return Err(GenotypeError::value(
                SPACE,
                location,
                "stride",
                format!("s{other}"),
                "s11, s22",
            ))
        }
    };
    let conv_op = match (expansion, conv) {
        (1, true) => ConvOp::Conv,
        (1, false) => ConvOp::DConv,
        (3, false) => ConvOp::MbConv3,
        (6, false) => ConvOp::MbConv6,
        (e, true) => {
            return Err(GenotypeError::value(
                SPACE,
                location,
                "expansion",
                format!("e{e} with conv"),
                "e1 (a regular conv has no expansion)",
            ))
        }
        (e, false) => {
            return Err(GenotypeError::value(
                SPACE,
                location,
                "expansion",
                format!("e{e}"),
                "e1 (depthwise-separable conv), e3, e6 (MBConv)",
            ))
        }
    };
    Ok(MnasnetBlock {
        conv_op,
        kernel,
        stride,
        se_ratio: se_ratio.unwrap_or(0.0),
        skip: skip.unwrap_or_default(),
        filters_in,
        filters,
        layers,
    })
}

/// One block of the reference network the filter and layer choices are relative to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceBlock {
    /// Output filters of the reference block.
    #[schemars(range(min = 1, max = 8192))]
    pub filters: u32,
    /// Layers of the reference block.
    #[schemars(range(min = 1, max = 16))]
    pub layers: u32,
    /// Stride of the block's first layer.
    #[schemars(range(min = 1, max = 2))]
    pub stride: u32,
}

/// MobileNetV2's 7 bottleneck blocks (Sandler et al. 2018, arXiv 1801.04381, Table 2: c, n, s),
/// the reference of MnasNet's space.
pub const MOBILENET_V2_REFERENCE: [ReferenceBlock; 7] = [
    ReferenceBlock {
        filters: 16,
        layers: 1,
        stride: 1,
    },
    ReferenceBlock {
        filters: 24,
        layers: 2,
        stride: 2,
    },
    ReferenceBlock {
        filters: 32,
        layers: 3,
        stride: 2,
    },
    ReferenceBlock {
        filters: 64,
        layers: 4,
        stride: 2,
    },
    ReferenceBlock {
        filters: 96,
        layers: 3,
        stride: 1,
    },
    ReferenceBlock {
        filters: 160,
        layers: 3,
        stride: 2,
    },
    ReferenceBlock {
        filters: 320,
        layers: 1,
        stride: 1,
    },
];

fn default_conv_ops() -> Vec<ConvOp> {
    ConvOp::ALL.to_vec()
}
fn default_kernels() -> Vec<u32> {
    vec![3, 5]
}
fn default_se_ratios() -> Vec<f64> {
    vec![0.0, 0.25]
}
fn default_skip_ops() -> Vec<SkipOp> {
    SkipOp::ALL.to_vec()
}
fn default_filter_multipliers() -> Vec<f64> {
    vec![0.75, 1.0, 1.25]
}
fn default_layer_deltas() -> Vec<i32> {
    vec![-1, 0, 1]
}
fn default_stem_filters() -> u32 {
    32
}
fn default_head_filters() -> u32 {
    1280
}
fn default_reference() -> Vec<ReferenceBlock> {
    MOBILENET_V2_REFERENCE.to_vec()
}

/// Parameters of the MnasNet space (`spec.searchSpace.mnasnet`); the defaults are the paper's
/// (1807.11626 Sec. 4.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MnasnetSpaceSpec {
    /// Conv ops a block may use.
    #[serde(default = "default_conv_ops")]
    #[schemars(length(min = 1, max = 4))]
    pub conv_ops: Vec<ConvOp>,
    /// Kernel sizes (each one of 1, 3, 5, 7).
    #[serde(default = "default_kernels")]
    #[schemars(length(min = 1, max = 4))]
    pub kernels: Vec<u32>,
    /// SE ratios (0 = no SE; each in [0, 1]).
    #[serde(default = "default_se_ratios")]
    #[schemars(length(min = 1, max = 8))]
    pub se_ratios: Vec<f64>,
    /// Skip ops a block may use.
    #[serde(default = "default_skip_ops")]
    #[schemars(length(min = 1, max = 3))]
    pub skip_ops: Vec<SkipOp>,
    /// Output filters as multiples of the reference block's (rounded to the nearest integer).
    #[serde(default = "default_filter_multipliers")]
    #[schemars(length(min = 1, max = 8))]
    pub filter_multipliers: Vec<f64>,
    /// Layers relative to the reference block's (results below 1 are dropped).
    #[serde(default = "default_layer_deltas")]
    #[schemars(length(min = 1, max = 7))]
    pub layer_deltas: Vec<i32>,
    /// Filters of the stem conv (3x3, stride 2).
    #[serde(default = "default_stem_filters")]
    #[schemars(range(min = 1, max = 8192))]
    pub stem_filters: u32,
    /// Filters of the head's 1x1 conv before pooling.
    #[serde(default = "default_head_filters")]
    #[schemars(range(min = 1, max = 8192))]
    pub head_filters: u32,
    /// The reference skeleton (default: MobileNetV2's 7 blocks).
    #[serde(default = "default_reference")]
    #[schemars(length(min = 1, max = 16))]
    pub reference: Vec<ReferenceBlock>,
}

impl Default for MnasnetSpaceSpec {
    fn default() -> Self {
        Self {
            conv_ops: default_conv_ops(),
            kernels: default_kernels(),
            se_ratios: default_se_ratios(),
            skip_ops: default_skip_ops(),
            filter_multipliers: default_filter_multipliers(),
            layer_deltas: default_layer_deltas(),
            stem_filters: default_stem_filters(),
            head_filters: default_head_filters(),
            reference: default_reference(),
        }
    }
}

/// Per-block choices derived from the reference.
#[derive(Clone, Debug)]
struct BlockChoices {
    filters: Vec<u32>,
    layers: Vec<u32>,
    stride: u32,
}

/// The validated MnasNet space. Decisions per block, in order: `convOp`, `kernel`, `seRatio`,
/// `skip`, `filters`, `layers` (each only when it has more than one choice).
#[derive(Clone, Debug)]
pub struct MnasnetSpace {
    spec: MnasnetSpaceSpec,
    blocks: Vec<BlockChoices>,
    decisions: Vec<Decision>,
}

const FIELD: &str = "searchSpace.mnasnet";

impl MnasnetSpace {
    /// Validates the parameters and derives each block's filter and layer choices.
    ///
    /// # Errors
    /// [`SpaceError`] naming the field: empty or repeated choice lists, a kernel not in 1, 3, 5,
    /// 7, an SE ratio outside `[0, 1]`, a multiplier outside `(0, 4]`, a layer delta outside
    /// `-3..=3`, multipliers that round to the same filter count, or a reference block left with
    /// no layer count of at least 1.
    pub fn new(spec: &MnasnetSpaceSpec) -> Result<Self, SpaceError> {
        check_choice_list(&format!("{FIELD}.convOps"), &spec.conv_ops, ConvOp::allowed)?;
        check_choice_list(&format!("{FIELD}.kernels"), &spec.kernels, || join(KERNELS))?;
        for k in &spec.kernels {
            if !KERNELS.contains(k) {
                return Err(SpaceError::new(
                    format!("{FIELD}.kernels"),
                    format!("{k} is not allowed; allowed values: {}", join(KERNELS)),
                ));
            }
        }
        check_choice_list(&format!("{FIELD}.seRatios"), &spec.se_ratios, || {
            SE_ALLOWED.into()
        })?;
        if let Some(r) = spec.se_ratios.iter().find(|r| !valid_se_ratio(**r)) {
            return Err(SpaceError::new(
                format!("{FIELD}.seRatios"),
                format!("{r} is not allowed; allowed values: {SE_ALLOWED}"),
            ));
        }
        check_choice_list(&format!("{FIELD}.skipOps"), &spec.skip_ops, SkipOp::allowed)?;
        check_choice_list(
            &format!("{FIELD}.filterMultipliers"),
            &spec.filter_multipliers,
            || "multipliers in (0, 4]".into(),
        )?;
        for m in &spec.filter_multipliers {
            if !(*m > 0.0 && *m <= 4.0) {
                return Err(SpaceError::new(
                    format!("{FIELD}.filterMultipliers"),
                    format!("{m} is out of range (0, 4]"),
                ));
            }
        }
        check_choice_list(&format!("{FIELD}.layerDeltas"), &spec.layer_deltas, || {
            "integers in -3..=3".into()
        })?;
        for d in &spec.layer_deltas {
            check_range(&format!("{FIELD}.layerDeltas"), *d, -3, 3)?;
        }
        check_range(
            &format!("{FIELD}.stemFilters"),
            spec.stem_filters,
            1,
            MAX_FILTERS,
        )?;
        check_range(
            &format!("{FIELD}.headFilters"),
            spec.head_filters,
            1,
            MAX_FILTERS,
        )?;
        if spec.reference.is_empty() || spec.reference.len() > MAX_BLOCKS {
            return Err(SpaceError::new(
                format!("{FIELD}.reference"),
                format!(
                    "must list 1..={MAX_BLOCKS} blocks, found {}",
                    spec.reference.len()
                ),
            ));
        }
        let mut blocks = Vec::with_capacity(spec.reference.len());
        for (b, r) in spec.reference.iter().enumerate() {
            let field = format!("{FIELD}.reference[{b}]");
            check_range(&format!("{field}.filters"), r.filters, 1, MAX_FILTERS)?;
            check_range(&format!("{field}.layers"), r.layers, 1, MAX_LAYERS)?;
            check_range(&format!("{field}.stride"), r.stride, 1, 2)?;
            let filters: Vec<u32> = spec
                .filter_multipliers
                .iter()
                .map(|m| (f64::from(r.filters) * m).round() as u32)
                .collect();
            if let Some((m, f)) = spec
                .filter_multipliers
                .iter()
                .zip(&filters)
                .find(|(_, f)| !(1..=MAX_FILTERS).contains(*f))
            {
                return Err(SpaceError::new(
                    format!("{FIELD}.filterMultipliers"),
                    format!(
                        "reference block {} has {} filters; x{m} gives {f}, outside 1..={MAX_FILTERS}",
                        b + 1,
                        r.filters
                    ),
                ));
            }
            if let Some(i) = (1..filters.len()).find(|&i| filters[..i].contains(&filters[i])) {
                let first = filters[..i]
                    .iter()
                    .position(|f| *f == filters[i])
                    .expect("found");
                return Err(SpaceError::new(
                    format!("{FIELD}.filterMultipliers"),
                    format!(
                        "reference block {} has {} filters; multipliers {} and {} round to the same count ({})",
                        b + 1,
                        r.filters,
                        spec.filter_multipliers[first],
                        spec.filter_multipliers[i],
                        filters[i]
                    ),
                ));
            }
            let mut layers: Vec<u32> = Vec::new();
            for d in &spec.layer_deltas {
                let n = i64::from(r.layers) + i64::from(*d);
                if (1..=i64::from(MAX_LAYERS)).contains(&n) && !layers.contains(&(n as u32)) {
                    layers.push(n as u32);
                }
            }
            if layers.is_empty() {
                return Err(SpaceError::new(
                    format!("{FIELD}.layerDeltas"),
                    format!(
                        "reference block {} has {} layers; no delta of {} gives 1..={MAX_LAYERS} layers",
                        b + 1,
                        r.layers,
                        join(&spec.layer_deltas)
                    ),
                ));
            }
            blocks.push(BlockChoices {
                filters,
                layers,
                stride: r.stride,
            });
        }
        let names = |v: &[String]| v.to_vec();
        let conv_ops: Vec<String> = spec.conv_ops.iter().map(|c| c.to_string()).collect();
        let kernels: Vec<String> = spec.kernels.iter().map(|k| k.to_string()).collect();
        let se: Vec<String> = spec.se_ratios.iter().map(|r| r.to_string()).collect();
        let skips: Vec<String> = spec.skip_ops.iter().map(|s| s.to_string()).collect();
        let mut decisions = Vec::new();
        for (b, choices) in blocks.iter().enumerate() {
            let prefix = format!("block{}", b + 1);
            let lists = [
                ("convOp", names(&conv_ops)),
                ("kernel", names(&kernels)),
                ("seRatio", names(&se)),
                ("skip", names(&skips)),
                (
                    "filters",
                    choices.filters.iter().map(u32::to_string).collect(),
                ),
                (
                    "layers",
                    choices.layers.iter().map(u32::to_string).collect(),
                ),
            ];
            for (field, list) in lists {
                if list.len() > 1 {
                    decisions.push(Decision::new(format!("{prefix}.{field}"), list));
                }
            }
        }
        Ok(Self {
            spec: spec.clone(),
            blocks,
            decisions,
        })
    }

    /// The parameters.
    pub fn spec(&self) -> &MnasnetSpaceSpec {
        &self.spec
    }

    /// Filter choices of each block (reference filters times each multiplier, rounded).
    pub fn filter_choices(&self) -> Vec<Vec<u32>> {
        self.blocks.iter().map(|b| b.filters.clone()).collect()
    }

    /// Layer-count choices of each block (reference layers plus each delta, at least 1).
    pub fn layer_choices(&self) -> Vec<Vec<u32>> {
        self.blocks.iter().map(|b| b.layers.clone()).collect()
    }
}

impl CategoricalSpace for MnasnetSpace {
    type Genotype = MnasnetGenotype;

    fn decisions(&self) -> &[Decision] {
        &self.decisions
    }

    fn encode(&self, genotype: &MnasnetGenotype) -> Result<Vec<usize>, GenotypeError> {
        let spec = &self.spec;
        if genotype.blocks.len() != self.blocks.len() {
            return Err(GenotypeError::count(
                SPACE,
                "genotype",
                "blocks (searchSpace.mnasnet.reference)",
                self.blocks.len(),
                genotype.blocks.len(),
            ));
        }
        if genotype.stem_filters() != spec.stem_filters {
            return Err(GenotypeError::value(
                SPACE,
                "block 1",
                "filtersIn",
                genotype.stem_filters(),
                format!("{} ({FIELD}.stemFilters)", spec.stem_filters),
            ));
        }
        let mut indices = Vec::with_capacity(self.decisions.len());
        for (b, (block, choices)) in genotype.blocks.iter().zip(&self.blocks).enumerate() {
            if block.stride != choices.stride {
                return Err(GenotypeError::value(
                    SPACE,
                    format!("block {}", b + 1),
                    "stride",
                    block.stride,
                    format!("{} ({FIELD}.reference[{b}].stride)", choices.stride),
                ));
            }
            let location = format!("block {}", b + 1);
            let param = |name: &str| format!("{FIELD}.{name}");
            let all = [
                (
                    choice_index(
                        SPACE,
                        &spec.conv_ops,
                        block.conv_op,
                        &location,
                        "convOp",
                        &param("convOps"),
                    )?,
                    spec.conv_ops.len(),
                ),
                (
                    choice_index(
                        SPACE,
                        &spec.kernels,
                        block.kernel,
                        &location,
                        "kernel",
                        &param("kernels"),
                    )?,
                    spec.kernels.len(),
                ),
                (
                    choice_index(
                        SPACE,
                        &spec.se_ratios,
                        block.se_ratio,
                        &location,
                        "seRatio",
                        &param("seRatios"),
                    )?,
                    spec.se_ratios.len(),
                ),
                (
                    choice_index(
                        SPACE,
                        &spec.skip_ops,
                        block.skip,
                        &location,
                        "skip",
                        &param("skipOps"),
                    )?,
                    spec.skip_ops.len(),
                ),
                (
                    choice_index(
                        SPACE,
                        &choices.filters,
                        block.filters,
                        &location,
                        "filters",
                        &param(&format!("reference[{b}].filters x filterMultipliers")),
                    )?,
                    choices.filters.len(),
                ),
                (
                    choice_index(
                        SPACE,
                        &choices.layers,
                        block.layers,
                        &location,
                        "layers",
                        &param(&format!("reference[{b}].layers + layerDeltas")),
                    )?,
                    choices.layers.len(),
                ),
            ];
            indices.extend(all.iter().filter(|(_, n)| *n > 1).map(|(i, _)| *i));
        }
        Ok(indices)
    }

    fn decode(&self, decisions: &[usize]) -> Result<MnasnetGenotype, GenotypeError> {
        check_decisions(SPACE, &self.decisions, decisions)?;
        let spec = &self.spec;
        let mut next = decisions.iter().copied();
        let mut take = |n: usize| if n > 1 { next.next().unwrap_or(0) } else { 0 };
        let mut filters_in = spec.stem_filters;
        let mut blocks = Vec::with_capacity(self.blocks.len());
        for choices in &self.blocks {
            let block = MnasnetBlock {
                conv_op: spec.conv_ops[take(spec.conv_ops.len())],
                kernel: spec.kernels[take(spec.kernels.len())],
                se_ratio: spec.se_ratios[take(spec.se_ratios.len())],
                skip: spec.skip_ops[take(spec.skip_ops.len())],
                filters: choices.filters[take(choices.filters.len())],
                layers: choices.layers[take(choices.layers.len())],
                stride: choices.stride,
                filters_in,
            };
            filters_in = block.filters;
            blocks.push(block);
        }
        MnasnetGenotype::new(blocks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_bigint::BigUint;

    fn parse(s: &str) -> Result<MnasnetGenotype, GenotypeError> {
        s.parse()
    }

    fn default_space() -> MnasnetSpace {
        MnasnetSpace::new(&MnasnetSpaceSpec::default()).unwrap()
    }

    #[test]
    fn a1_round_trips_and_reads_its_blocks() {
        let g = parse(MNASNET_A1).unwrap();
        assert_eq!(g.to_string(), MNASNET_A1);
        assert_eq!(g.blocks().len(), 7);
        assert_eq!(g.stem_filters(), 32);
        let b1 = g.blocks()[0];
        assert_eq!(b1.conv_op, ConvOp::DConv);
        assert_eq!(b1.skip, SkipOp::None);
        let b3 = g.blocks()[2];
        assert_eq!(
            (
                b3.conv_op,
                b3.kernel,
                b3.stride,
                b3.se_ratio,
                b3.filters,
                b3.layers
            ),
            (ConvOp::MbConv3, 5, 2, 0.25, 40, 3)
        );
        let json = serde_json::to_value(&g).unwrap();
        assert_eq!(json["blocks"][2]["convOp"], "mbconv3");
        assert_eq!(json["blocks"][2]["seRatio"], 0.25);
        assert_eq!(serde_json::from_value::<MnasnetGenotype>(json).unwrap(), g);
    }

    #[test]
    fn released_spaced_form_parses_to_the_canonical_string() {
        let spaced = MNASNET_A1.replace(',', ", ");
        assert_eq!(parse(&spaced).unwrap().to_string(), MNASNET_A1);
    }

    #[test]
    fn own_tokens_round_trip() {
        let text = "r2_k5_s22_e1_i32_o24_poolskip_conv,r1_k3_s11_e6_i24_o24_se0.5";
        let g = parse(text).unwrap();
        assert_eq!(g.blocks()[0].conv_op, ConvOp::Conv);
        assert_eq!(g.blocks()[0].skip, SkipOp::Pool);
        assert_eq!(g.to_string(), text);
    }

    #[test]
    fn broken_filter_chain_is_named() {
        let err = parse("r1_k3_s11_e1_i32_o16,r2_k3_s22_e6_i24_o24").unwrap_err();
        assert_eq!(
            err,
            GenotypeError::Value {
                space: SpaceKind::Mnasnet,
                location: "block 2".into(),
                field: "filtersIn",
                value: "24".into(),
                allowed: "16 (the filters of block 1)".into(),
            }
        );
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            ("r1_k4_s11_e1_i32_o16", "block 1: kernel = 4 is not allowed; allowed values: 1, 3, 5, 7"),
            ("r1_k3_s12_e1_i32_o16", "block 1: stride = s12 is not allowed; allowed values: s11, s22"),
            ("r1_k3_s11_e4_i32_o16", "block 1: expansion = e4 is not allowed; allowed values: e1 (depthwise-separable conv), e3, e6 (MBConv)"),
            ("r1_k3_s11_e6_i32_o16_conv", "block 1: expansion = e6 with conv is not allowed"),
            ("r1_k3_s11_e1_i32_o16_se1.5", "block 1: seRatio = 1.5 is not allowed; allowed values: 0 (no SE) or a ratio in [0.01, 1]"),
            ("r1_k3_s11_e1_i32_o16_se0.001", "block 1: seRatio = 0.001 is not allowed"),
            ("r1_k3_s11_e1_i32_o4294967296", "block 1: filters = 4294967296 is not allowed; allowed values: 1..=8192"),
            ("r0_k3_s11_e1_i32_o16", "block 1: layers = 0 is not allowed; allowed values: 1..=16"),
            ("r1_k3_s11_e1_i32_o0", "block 1: filters = 0 is not allowed"),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn syntax_errors_name_the_token() {
        let err = parse("r1_k3_s11_e1_i32").unwrap_err();
        assert!(
            err.to_string().contains("block 1: missing token(s) o"),
            "{err}"
        );
        let err = parse("r1_k3_s11_e1_i32_o16,r2_x3_s22_e6_i16_o24").unwrap_err();
        assert!(
            matches!(&err, GenotypeError::Syntax { offset: 24, message, .. } if message.contains("unknown token \"x3\"")),
            "{err:?}"
        );
        let err = parse("r1_k3_k5_s11_e1_i32_o16").unwrap_err();
        assert!(err.to_string().contains("token \"k5\" repeats"), "{err}");
        for token in ["kx", "k+3", "identity", "sé", "o-1"] {
            let err = parse(&format!("r1_{token}_s11_e1_i32_o16")).unwrap_err();
            assert!(
                err.to_string()
                    .contains(&format!("unknown token {token:?}")),
                "{token}: {err}"
            );
        }
        for token in ["se1e-3", "se.25", "se0.25.1", "se"] {
            let err = parse(&format!("r1_k3_s11_e1_i32_o16_{token}")).unwrap_err();
            assert!(
                err.to_string().contains("must be a decimal like 0.25"),
                "{token}: {err}"
            );
        }
    }

    #[test]
    fn too_many_blocks_are_named() {
        let block = "r1_k3_s11_e1_i16_o16";
        let text = [block; 17].join(",");
        let err = parse(&text).unwrap_err();
        assert!(
            err.to_string()
                .contains("genotype: expected 1..=16 blocks, found 17"),
            "{err}"
        );
    }

    #[test]
    fn size_follows_the_papers_rules() {
        let space = default_space();
        // Per block: 4 conv ops x 2 kernels x 2 SE ratios x 3 skip ops x 3 filter sizes x
        // 3 layer counts = 432, the paper's S (1807.11626 Sec. 4.1), except the two reference
        // blocks of 1 layer, where "-1" would leave no layer: 2 layer counts, 288 options.
        let full = 4 * 2 * 2 * 3 * 3 * 3;
        assert_eq!(full, 432);
        let layer_counts: Vec<usize> = space.layer_choices().iter().map(Vec::len).collect();
        assert_eq!(layer_counts, [2, 3, 3, 3, 3, 3, 2]);
        let expected = BigUint::from(432u32).pow(5) * BigUint::from(288u32).pow(2);
        assert_eq!(space.size(), expected);
        // The paper's size for B = 5 blocks of S = 432 is "about 10^13".
        let five = BigUint::from(432u32).pow(5).to_string();
        assert_eq!(five.len(), 14, "{five}");
        assert_eq!(space.decisions().len(), 7 * 6);
    }

    #[test]
    fn filter_choices_are_the_reference_times_the_multipliers() {
        let space = default_space();
        assert_eq!(
            space.filter_choices(),
            vec![
                vec![12, 16, 20],
                vec![18, 24, 30],
                vec![24, 32, 40],
                vec![48, 64, 80],
                vec![72, 96, 120],
                vec![120, 160, 200],
                vec![240, 320, 400]
            ]
        );
    }

    #[test]
    fn a1_lies_in_the_default_space_except_block_5_filters() {
        // MnasNet-A1's fifth block has 112 filters: 96 x 1.1667, not one of the x0.75/x1/x1.25
        // choices the paper describes; everything else is in the space.
        let space = default_space();
        let err = space.encode(&parse(MNASNET_A1).unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid MnasNet genotype: block 5: filters = 112 is not allowed; allowed values: 72, 96, 120 (searchSpace.mnasnet.reference[4].filters x filterMultipliers)"
        );
        let in_space = MNASNET_A1.replace("o112", "o120").replace("i112", "i120");
        let g = parse(&in_space).unwrap();
        let d = space.encode(&g).unwrap();
        assert_eq!(space.decode(&d).unwrap(), g);
    }

    #[test]
    fn stem_and_stride_mismatches_are_named() {
        let space = default_space();
        let err = space
            .encode(&parse(&MNASNET_A1.replace("i32_", "i16_")).unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("block 1: filtersIn = 16 is not allowed; allowed values: 32 (searchSpace.mnasnet.stemFilters)"), "{err}");
        let err = space
            .encode(&parse(&MNASNET_A1.replacen("r2_k3_s22", "r2_k3_s11", 1)).unwrap())
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("block 2: stride = 1 is not allowed; allowed values: 2"),
            "{err}"
        );
        let err = space
            .encode(&parse("r1_k3_s11_e1_i32_o16").unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("expected 7 blocks"), "{err}");
    }

    #[test]
    fn bad_space_parameters_are_named() {
        let err = MnasnetSpace::new(&MnasnetSpaceSpec {
            filter_multipliers: vec![1.0, 1.01],
            ..MnasnetSpaceSpec::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("searchSpace.mnasnet.filterMultipliers: reference block 1 has 16 filters; multipliers 1 and 1.01 round to the same count (16)"), "{err}");
        let err = MnasnetSpace::new(&MnasnetSpaceSpec {
            filter_multipliers: vec![0.01, 1.0],
            ..MnasnetSpaceSpec::default()
        })
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("reference block 1 has 16 filters; x0.01 gives 0, outside 1..=8192"),
            "{err}"
        );
        let err = MnasnetSpace::new(&MnasnetSpaceSpec {
            kernels: vec![3, 9],
            ..MnasnetSpaceSpec::default()
        })
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("searchSpace.mnasnet.kernels: 9 is not allowed"),
            "{err}"
        );
        let err = MnasnetSpace::new(&MnasnetSpaceSpec {
            layer_deltas: vec![-1],
            ..MnasnetSpaceSpec::default()
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("reference block 1 has 1 layers"),
            "{err}"
        );
    }

    #[test]
    fn se_ratio_sign_of_zero_does_not_split_equality() {
        let a = parse("r1_k3_s11_e1_i32_o16").unwrap();
        let mut blocks = a.blocks().to_vec();
        blocks[0].se_ratio = -0.0;
        let b = MnasnetGenotype::new(blocks).unwrap();
        assert_eq!(a, b);
    }
}
