//! The NASNet cell space (Zoph et al. 2018, arXiv 1707.07012, Sec. 3).
//!
//! A genotype is a Normal cell and a Reduction cell of B blocks each. Block `b` (1-based)
//! chooses two hidden states among `h[i-1]`, `h[i]` and the outputs of blocks `1..b`, an op for
//! each from the 13-op list, and a method to combine the two results (element-wise `add`, or
//! `concat` along the channels). Hidden states are numbered `0 = h[i-1]`, `1 = h[i]`,
//! `k + 1 = output of block k`. The cell output concatenates the hidden states listed in its
//! `concat`; by default (the paper's rule for searched cells) every block output that no block
//! of the cell consumes.
//!
//! String form (one line):
//! `normal=|opA~a|opB~b|+|...|;reduction=|...|` where each `|opA~a|opB~b|` is a block (with a
//! third field `concat|` when the block concatenates instead of adding), and
//! `;normal_concat=0,2,3` / `;reduction_concat=...` follow their cell only when the cell's output
//! list differs from the default rule.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::{check_choice_list, check_range, choice_index, join, GenotypeError, SpaceError};
use super::{
    check_decisions, named_enum, parse_digits, schema_as, split_with_offsets, CategoricalSpace,
    Decision, SpaceKind,
};

const SPACE: SpaceKind = SpaceKind::Nasnet;

/// The keys of a NASNet genotype string (`key=value`, separated by `;`).
pub const KEYS: [&str; 4] = ["normal", "normal_concat", "reduction", "reduction_concat"];

/// Most blocks a cell may have (the paper uses B = 5).
pub const MAX_BLOCKS: usize = 10;

/// NASNet-A as released with the paper (1707.07012 Fig. 4; the cells of TF-slim's
/// `nasnet_utils.py`, `NasNetANormalCell` and `NasNetAReductionCell`, in this module's hidden-state
/// numbering). The released cells concatenate `h[i-1]` and all five blocks (normal) and blocks
/// 2..5 (reduction), which differs from the default "unused states" rule, hence the explicit
/// `concat` lists. With N = 6 cells per stage and F = 32 filters it is "NASNet-A (6 @ 768)":
/// 3.3M parameters on CIFAR-10 (paper Table 1).
pub const NASNET_A: &str = concat!(
    "normal=|sep_conv_5x5~1|sep_conv_3x3~0|+|sep_conv_5x5~0|sep_conv_3x3~0|",
    "+|avg_pool_3x3~1|identity~0|+|avg_pool_3x3~0|avg_pool_3x3~0|+|sep_conv_3x3~1|identity~1|",
    ";normal_concat=0,2,3,4,5,6",
    ";reduction=|sep_conv_5x5~1|sep_conv_7x7~0|+|max_pool_3x3~1|sep_conv_7x7~0|",
    "+|avg_pool_3x3~1|sep_conv_5x5~0|+|identity~3|avg_pool_3x3~2|+|sep_conv_3x3~2|max_pool_3x3~1|",
    ";reduction_concat=3,4,5,6",
);

named_enum! {
    /// The 13 ops of the NASNet search space (1707.07012 Sec. 3), in the paper's order.
    pub enum NasnetOp {
        /// Identity.
        Identity => "identity",
        /// 1x3 then 3x1 convolution.
        Conv1x3Then3x1 => "conv_1x3_3x1",
        /// 1x7 then 7x1 convolution.
        Conv1x7Then7x1 => "conv_1x7_7x1",
        /// 3x3 dilated convolution (dilation 2).
        DilConv3x3 => "dil_conv_3x3",
        /// 3x3 average pooling.
        AvgPool3x3 => "avg_pool_3x3",
        /// 3x3 max pooling.
        MaxPool3x3 => "max_pool_3x3",
        /// 5x5 max pooling.
        MaxPool5x5 => "max_pool_5x5",
        /// 7x7 max pooling.
        MaxPool7x7 => "max_pool_7x7",
        /// 1x1 convolution.
        Conv1x1 => "conv_1x1",
        /// 3x3 convolution.
        Conv3x3 => "conv_3x3",
        /// 3x3 depthwise-separable convolution, applied twice.
        SepConv3x3 => "sep_conv_3x3",
        /// 5x5 depthwise-separable convolution, applied twice.
        SepConv5x5 => "sep_conv_5x5",
        /// 7x7 depthwise-separable convolution, applied twice.
        SepConv7x7 => "sep_conv_7x7",
    }
}

named_enum! {
    /// How a block combines its two results (1707.07012 Sec. 3, step 5).
    #[derive(Default)]
    pub enum Combine {
        /// Element-wise addition (the only method NASNet-A uses).
        #[default]
        Add => "add",
        /// Concatenation along the channel axis.
        Concat => "concat",
    }
}

named_enum! {
    /// The two cells of a NASNet genotype.
    pub enum CellKind {
        /// Keeps the spatial size.
        Normal => "normal",
        /// Halves the spatial size (its ops on `h[i-1]` and `h[i]` use stride 2).
        Reduction => "reduction",
    }
}

/// One block of a cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NasnetBlock {
    /// First hidden state: `0 = h[i-1]`, `1 = h[i]`, `k + 1 = output of block k`.
    #[schemars(range(max = 10))]
    pub input_a: u8,
    /// Op applied to the first hidden state.
    pub op_a: NasnetOp,
    /// Second hidden state (same numbering).
    #[schemars(range(max = 10))]
    pub input_b: u8,
    /// Op applied to the second hidden state.
    pub op_b: NasnetOp,
    /// How the two results are combined (default `add`).
    #[serde(default)]
    pub combine: Combine,
}

/// A Normal or Reduction cell: its blocks and the hidden states its output concatenates.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NasnetCell {
    blocks: Vec<NasnetBlock>,
    /// `Some` only when it differs from the default rule (keeps one canonical value).
    concat: Option<Vec<u8>>,
}

impl NasnetCell {
    /// A validated cell. `concat` lists the hidden states concatenated into the cell output;
    /// `None` applies the default rule (every block output no block consumes).
    ///
    /// # Errors
    /// [`GenotypeError`] naming the cell, block and field: a block count outside
    /// `1..=MAX_BLOCKS`, an input that is not an earlier hidden state, a `concat` entry out of
    /// range or listed twice, or a `concat` list that leaves out a block output no block
    /// consumes (that block would be computed for nothing).
    pub fn new(
        kind: CellKind,
        blocks: Vec<NasnetBlock>,
        concat: Option<Vec<u8>>,
    ) -> Result<Self, GenotypeError> {
        let cell = format!("{kind} cell");
        if blocks.is_empty() || blocks.len() > MAX_BLOCKS {
            return Err(GenotypeError::count(
                SPACE,
                cell,
                "blocks",
                format!("1..={MAX_BLOCKS}"),
                blocks.len(),
            ));
        }
        for (b, block) in blocks.iter().enumerate() {
            let states = 2 + b;
            for (field, input) in [("inputA", block.input_a), ("inputB", block.input_b)] {
                if usize::from(input) >= states {
                    return Err(GenotypeError::value(
                        SPACE,
                        format!("{cell}, block {}", b + 1),
                        field,
                        input,
                        input_allowed(b),
                    ));
                }
            }
        }
        let states = 2 + blocks.len();
        let concat = match concat {
            None => None,
            Some(mut list) => {
                let location = format!("{cell}, concat");
                if list.is_empty() {
                    return Err(GenotypeError::count(
                        SPACE,
                        location,
                        "hidden states",
                        format!("1..={states}"),
                        0,
                    ));
                }
                list.sort_unstable();
                for (i, &s) in list.iter().enumerate() {
                    if usize::from(s) >= states {
                        return Err(GenotypeError::value(
                            SPACE,
                            location,
                            "hidden state",
                            s,
                            format!("0..={} (each at most once)", states - 1),
                        ));
                    }
                    if i > 0 && list[i - 1] == s {
                        return Err(GenotypeError::value(
                            SPACE,
                            location,
                            "hidden state",
                            format!("{s} (listed twice)"),
                            format!("0..={} (each at most once)", states - 1),
                        ));
                    }
                }
                let default = default_concat(&blocks);
                if let Some(dropped) = default.iter().find(|s| !list.contains(s)) {
                    return Err(GenotypeError::value(
                        SPACE,
                        location,
                        "concat",
                        join(&list).replace(' ', ""),
                        format!(
                            "lists holding every block output that no block consumes ({}); \
                             block {}'s output ({dropped}) would be computed and dropped",
                            join(&default),
                            dropped - 1
                        ),
                    ));
                }
                (list != default).then_some(list)
            }
        };
        Ok(Self { blocks, concat })
    }

    /// The blocks, in order.
    pub fn blocks(&self) -> &[NasnetBlock] {
        &self.blocks
    }

    /// The hidden states concatenated into the cell output, ascending.
    pub fn concat(&self) -> Vec<u8> {
        self.concat
            .clone()
            .unwrap_or_else(|| default_concat(&self.blocks))
    }

    /// Whether the output list was given explicitly (differs from the default rule).
    pub fn has_explicit_concat(&self) -> bool {
        self.concat.is_some()
    }
}

/// The default output rule: every block output that no block of the cell consumes.
fn default_concat(blocks: &[NasnetBlock]) -> Vec<u8> {
    let mut used = vec![false; blocks.len() + 2];
    for block in blocks {
        used[usize::from(block.input_a)] = true;
        used[usize::from(block.input_b)] = true;
    }
    (2..used.len())
        .filter(|&s| !used[s])
        .map(|s| s as u8)
        .collect()
}

fn input_allowed(block_index: usize) -> String {
    let last = block_index + 1;
    if last == 1 {
        "0, 1 (0 = h[i-1], 1 = h[i])".to_string()
    } else {
        format!("0..={last} (0 = h[i-1], 1 = h[i], k >= 2 = output of block k-1)")
    }
}

/// A NASNet genotype: a Normal and a Reduction cell.
///
/// JSON form: `{"normal": {"blocks": [{"inputA": 1, "opA": "sep_conv_5x5", "inputB": 0,
/// "opB": "sep_conv_3x3", "combine": "add"}, ...], "concat": [0, 2, 3]}, "reduction": {...}}`
/// (`concat` optional, `combine` defaults to `add`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawGenotype", into = "RawGenotype")]
pub struct NasnetGenotype {
    normal: NasnetCell,
    reduction: NasnetCell,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawCell {
    /// The blocks of the cell, in order (B of them).
    #[schemars(length(min = 1, max = 10))]
    blocks: Vec<NasnetBlock>,
    /// Hidden states concatenated into the cell output (`0 = h[i-1]`, `1 = h[i]`,
    /// `k + 1 = block k`); default: every block output that no block consumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 12), inner(range(max = 11)))]
    concat: Option<Vec<u8>>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawGenotype {
    /// The Normal cell.
    normal: RawCell,
    /// The Reduction cell.
    reduction: RawCell,
}

schema_as!(NasnetGenotype, RawGenotype, "NasnetGenotype");

impl TryFrom<RawGenotype> for NasnetGenotype {
    type Error = GenotypeError;

    fn try_from(raw: RawGenotype) -> Result<Self, Self::Error> {
        Ok(Self {
            normal: NasnetCell::new(CellKind::Normal, raw.normal.blocks, raw.normal.concat)?,
            reduction: NasnetCell::new(
                CellKind::Reduction,
                raw.reduction.blocks,
                raw.reduction.concat,
            )?,
        })
    }
}

impl From<NasnetGenotype> for RawGenotype {
    fn from(g: NasnetGenotype) -> Self {
        let raw = |c: NasnetCell| RawCell {
            blocks: c.blocks,
            concat: c.concat,
        };
        Self {
            normal: raw(g.normal),
            reduction: raw(g.reduction),
        }
    }
}

impl NasnetGenotype {
    /// A genotype from two validated cells.
    pub fn new(normal: NasnetCell, reduction: NasnetCell) -> Self {
        Self { normal, reduction }
    }

    /// The Normal cell.
    pub fn normal(&self) -> &NasnetCell {
        &self.normal
    }

    /// The Reduction cell.
    pub fn reduction(&self) -> &NasnetCell {
        &self.reduction
    }

    /// A cell by kind.
    pub fn cell(&self, kind: CellKind) -> &NasnetCell {
        match kind {
            CellKind::Normal => &self.normal,
            CellKind::Reduction => &self.reduction,
        }
    }

    /// Re-checks the structural rules (see [`NasnetCell::new`]).
    ///
    /// # Errors
    /// As [`NasnetCell::new`].
    pub fn validate(&self) -> Result<(), GenotypeError> {
        for kind in CellKind::ALL {
            let cell = self.cell(*kind);
            NasnetCell::new(*kind, cell.blocks.clone(), cell.concat.clone())?;
        }
        Ok(())
    }

    /// The canonical string with the operands of every `add` block in ascending
    /// `(input, op)` order: `add` is commutative, so both orders build the same network.
    pub(crate) fn dedupe_key(&self) -> String {
        let mut g = self.clone();
        for cell in [&mut g.normal, &mut g.reduction] {
            for block in &mut cell.blocks {
                if block.combine == Combine::Add
                    && (block.input_b, block.op_b) < (block.input_a, block.op_a)
                {
                    std::mem::swap(&mut block.input_a, &mut block.input_b);
                    std::mem::swap(&mut block.op_a, &mut block.op_b);
                }
            }
        }
        g.to_string()
    }
}

impl fmt::Display for NasnetGenotype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for kind in CellKind::ALL {
            if *kind != CellKind::Normal {
                f.write_str(";")?;
            }
            let cell = self.cell(*kind);
            write!(f, "{kind}=")?;
            for (b, block) in cell.blocks.iter().enumerate() {
                if b > 0 {
                    f.write_str("+")?;
                }
                write!(
                    f,
                    "|{}~{}|{}~{}|",
                    block.op_a, block.input_a, block.op_b, block.input_b
                )?;
                if block.combine != Combine::Add {
                    write!(f, "{}|", block.combine)?;
                }
            }
            if let Some(concat) = &cell.concat {
                write!(f, ";{kind}_concat={}", join(concat).replace(' ', ""))?;
            }
        }
        Ok(())
    }
}

type CellParts = (Option<Vec<NasnetBlock>>, Option<Vec<u8>>);

impl FromStr for NasnetGenotype {
    type Err = GenotypeError;

    /// Parses the string form (see the module documentation).
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        // Per cell kind: its blocks and its explicit concat list, as parsed so far.
        let mut cells: [CellParts; 2] = Default::default();
        for (offset, part) in split_with_offsets(input, 0, ';') {
            let (key, value) = part.split_once('=').ok_or_else(|| {
                GenotypeError::syntax(
                    SPACE,
                    input,
                    offset,
                    format!("expected key=value, found {part:?}"),
                )
            })?;
            let value_offset = offset + key.len() + 1 + (value.len() - value.trim_start().len());
            let (key, value) = (key.trim(), value.trim());
            let (kind, is_concat) = match key {
                "normal" => (CellKind::Normal, false),
                "reduction" => (CellKind::Reduction, false),
                "normal_concat" => (CellKind::Normal, true),
                "reduction_concat" => (CellKind::Reduction, true),
                _ => {
                    return Err(GenotypeError::syntax(
                        SPACE,
                        input,
                        offset,
                        format!("unknown key {key:?}; allowed keys: {}", KEYS.join(", ")),
                    ))
                }
            };
            let slot = &mut cells[kind as usize];
            let duplicate = if is_concat {
                slot.1
                    .replace(parse_concat(input, value_offset, value, kind)?)
                    .is_some()
            } else {
                slot.0
                    .replace(parse_blocks(input, value_offset, value, kind)?)
                    .is_some()
            };
            if duplicate {
                return Err(GenotypeError::syntax(
                    SPACE,
                    input,
                    offset,
                    format!("key {key:?} appears twice"),
                ));
            }
        }
        let [(normal_blocks, normal_concat), (reduction_blocks, reduction_concat)] = cells;
        let missing = |key: &str| {
            GenotypeError::syntax(SPACE, input, input.len(), format!("missing key {key:?}"))
        };
        let normal_blocks = normal_blocks.ok_or_else(|| missing("normal"))?;
        let reduction_blocks = reduction_blocks.ok_or_else(|| missing("reduction"))?;
        Ok(Self {
            normal: NasnetCell::new(CellKind::Normal, normal_blocks, normal_concat)?,
            reduction: NasnetCell::new(CellKind::Reduction, reduction_blocks, reduction_concat)?,
        })
    }
}

fn parse_blocks(
    input: &str,
    base: usize,
    text: &str,
    kind: CellKind,
) -> Result<Vec<NasnetBlock>, GenotypeError> {
    split_with_offsets(text, base, '+')
        .into_iter()
        .enumerate()
        .map(|(b, (offset, part))| {
            let location = format!("{kind} cell, block {}", b + 1);
            let inner = part
                .strip_prefix('|')
                .and_then(|p| p.strip_suffix('|'))
                .filter(|p| !p.is_empty())
                .ok_or_else(|| {
                    GenotypeError::syntax(
                        SPACE,
                        input,
                        offset,
                        format!("{location} must look like |op~input|op~input|, found {part:?}"),
                    )
                })?;
            let fields = split_with_offsets(inner, offset + 1, '|');
            if !(2..=3).contains(&fields.len()) {
                return Err(GenotypeError::syntax(
                    SPACE,
                    input,
                    offset,
                    format!(
                        "{location} must have two op~input fields and an optional combine, found {} fields",
                        fields.len()
                    ),
                ));
            }
            let operand = |(offset, field): (usize, &str), name_in, name_op| {
                let (op, state) = field.split_once('~').ok_or_else(|| {
                    GenotypeError::syntax(
                        SPACE,
                        input,
                        offset,
                        format!("{location}: expected op~input, found {field:?}"),
                    )
                })?;
                let (op, state) = (op.trim(), state.trim());
                let op = NasnetOp::from_name(op).ok_or_else(|| {
                    GenotypeError::value(SPACE, &location, name_op, op, NasnetOp::allowed())
                })?;
                let state = parse_digits(state)
                    .and_then(|s| u8::try_from(s).ok())
                    .ok_or_else(|| {
                        GenotypeError::value(
                            SPACE,
                            &location,
                            name_in,
                            state,
                            input_allowed(b),
                        )
                    })?;
                Ok::<_, GenotypeError>((state, op))
            };
            let (input_a, op_a) = operand(fields[0], "inputA", "opA")?;
            let (input_b, op_b) = operand(fields[1], "inputB", "opB")?;
            let combine = match fields.get(2) {
                None => Combine::Add,
                Some((_, c)) => Combine::from_name(c).ok_or_else(|| {
                    GenotypeError::value(SPACE, &location, "combine", c, Combine::allowed())
                })?,
            };
            Ok(NasnetBlock {
                input_a,
                op_a,
                input_b,
                op_b,
                combine,
            })
        })
        .collect()
}

fn parse_concat(
    input: &str,
    base: usize,
    text: &str,
    kind: CellKind,
) -> Result<Vec<u8>, GenotypeError> {
    split_with_offsets(text, base, ',')
        .into_iter()
        .map(|(offset, s)| {
            parse_digits(s).and_then(|v| u8::try_from(v).ok()).ok_or_else(|| {
                GenotypeError::syntax(
                    SPACE,
                    input,
                    offset,
                    format!("{kind}_concat: expected hidden-state numbers separated by ',', found {s:?}"),
                )
            })
        })
        .collect()
}

fn default_blocks() -> u32 {
    5
}

fn default_ops() -> Vec<NasnetOp> {
    NasnetOp::ALL.to_vec()
}

fn default_combine() -> Vec<Combine> {
    vec![Combine::Add]
}

fn default_cells_per_stage() -> u32 {
    2
}

fn default_filters() -> u32 {
    32
}

/// Parameters of the NASNet space (`spec.searchSpace.nasnet`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NasnetSpaceSpec {
    /// Blocks per cell, B (paper: 5).
    #[serde(default = "default_blocks")]
    #[schemars(range(min = 1, max = 10))]
    pub blocks: u32,
    /// Ops a block may apply (default: the paper's 13).
    #[serde(default = "default_ops")]
    #[schemars(length(min = 1, max = 13))]
    pub ops: Vec<NasnetOp>,
    /// Combine methods a block may use (default: `add` only, as NASNet-A; the paper also allows
    /// `concat`).
    #[serde(default = "default_combine")]
    #[schemars(length(min = 1, max = 2))]
    pub combine: Vec<Combine>,
    /// Normal cells per stage, N, of the child network trained during the search (default 2;
    /// the final NASNet-A CIFAR-10 model uses 6).
    #[serde(default = "default_cells_per_stage")]
    #[schemars(range(min = 1, max = 20))]
    pub cells_per_stage: u32,
    /// Filters of the first stage, F (default 32, doubled after each reduction cell).
    #[serde(default = "default_filters")]
    #[schemars(range(min = 1, max = 1024))]
    pub filters: u32,
}

impl Default for NasnetSpaceSpec {
    fn default() -> Self {
        Self {
            blocks: default_blocks(),
            ops: default_ops(),
            combine: default_combine(),
            cells_per_stage: default_cells_per_stage(),
            filters: default_filters(),
        }
    }
}

/// The validated NASNet space. Decisions, per cell (Normal first, then Reduction, as the
/// paper's controller predicts them) and per block: `inputA`, `inputB`, `opA`, `opB`, and
/// `combine` when more than one method is allowed.
#[derive(Clone, Debug)]
pub struct NasnetSpace {
    spec: NasnetSpaceSpec,
    decisions: Vec<Decision>,
}

impl NasnetSpace {
    /// Validates the parameters and lays out the decisions.
    ///
    /// # Errors
    /// [`SpaceError`] naming the field: `blocks` outside `1..=10`, empty or repeated `ops` or
    /// `combine`, sizes out of range.
    pub fn new(spec: &NasnetSpaceSpec) -> Result<Self, SpaceError> {
        check_range(
            "searchSpace.nasnet.blocks",
            spec.blocks,
            1,
            MAX_BLOCKS as u32,
        )?;
        check_choice_list("searchSpace.nasnet.ops", &spec.ops, NasnetOp::allowed)?;
        check_choice_list(
            "searchSpace.nasnet.combine",
            &spec.combine,
            Combine::allowed,
        )?;
        check_range(
            "searchSpace.nasnet.cellsPerStage",
            spec.cells_per_stage,
            1,
            20,
        )?;
        check_range("searchSpace.nasnet.filters", spec.filters, 1, 1024)?;
        let ops: Vec<String> = spec.ops.iter().map(|o| o.name().to_string()).collect();
        let combine: Vec<String> = spec.combine.iter().map(|c| c.name().to_string()).collect();
        let mut decisions = Vec::new();
        for kind in CellKind::ALL {
            for b in 0..spec.blocks as usize {
                let states: Vec<String> = (0..2 + b).map(|s| s.to_string()).collect();
                let prefix = format!("{kind}.block{}", b + 1);
                decisions.push(Decision::new(format!("{prefix}.inputA"), states.clone()));
                decisions.push(Decision::new(format!("{prefix}.inputB"), states));
                if ops.len() > 1 {
                    decisions.push(Decision::new(format!("{prefix}.opA"), ops.clone()));
                    decisions.push(Decision::new(format!("{prefix}.opB"), ops.clone()));
                }
                if combine.len() > 1 {
                    decisions.push(Decision::new(format!("{prefix}.combine"), combine.clone()));
                }
            }
        }
        Ok(Self {
            spec: spec.clone(),
            decisions,
        })
    }

    /// The parameters.
    pub fn spec(&self) -> &NasnetSpaceSpec {
        &self.spec
    }
}

const OPS: &str = "searchSpace.nasnet.ops";

impl CategoricalSpace for NasnetSpace {
    type Genotype = NasnetGenotype;

    fn decisions(&self) -> &[Decision] {
        &self.decisions
    }

    fn encode(&self, genotype: &NasnetGenotype) -> Result<Vec<usize>, GenotypeError> {
        let spec = &self.spec;
        let mut indices = Vec::with_capacity(self.decisions.len());
        for kind in CellKind::ALL {
            let cell = genotype.cell(*kind);
            if cell.blocks.len() != spec.blocks as usize {
                return Err(GenotypeError::count(
                    SPACE,
                    format!("{kind} cell"),
                    "blocks (searchSpace.nasnet.blocks)",
                    spec.blocks,
                    cell.blocks.len(),
                ));
            }
            for (b, block) in cell.blocks.iter().enumerate() {
                let location = format!("{kind} cell, block {}", b + 1);
                indices.push(usize::from(block.input_a));
                indices.push(usize::from(block.input_b));
                let op_a = choice_index(SPACE, &spec.ops, block.op_a, &location, "opA", OPS)?;
                let op_b = choice_index(SPACE, &spec.ops, block.op_b, &location, "opB", OPS)?;
                let combine = choice_index(
                    SPACE,
                    &spec.combine,
                    block.combine,
                    &location,
                    "combine",
                    "searchSpace.nasnet.combine",
                )?;
                if spec.ops.len() > 1 {
                    indices.extend([op_a, op_b]);
                }
                if spec.combine.len() > 1 {
                    indices.push(combine);
                }
            }
            if cell.has_explicit_concat() {
                return Err(GenotypeError::value(
                    SPACE,
                    format!("{kind} cell"),
                    "concat",
                    join(cell.concat()).replace(' ', ""),
                    format!(
                        "{} (the space's rule: the block outputs no block consumes; an explicit \
                         output list is not one of its decisions)",
                        join(default_concat(&cell.blocks)).replace(' ', "")
                    ),
                ));
            }
        }
        Ok(indices)
    }

    fn decode(&self, decisions: &[usize]) -> Result<NasnetGenotype, GenotypeError> {
        check_decisions(SPACE, &self.decisions, decisions)?;
        let spec = &self.spec;
        let mut next = decisions.iter().copied();
        let mut take = |n: usize| if n > 1 { next.next().unwrap_or(0) } else { 0 };
        let mut cells = Vec::with_capacity(2);
        for kind in CellKind::ALL {
            let blocks = (0..spec.blocks as usize)
                .map(|b| {
                    let input_a = take(2 + b) as u8;
                    let input_b = take(2 + b) as u8;
                    let op_a = spec.ops[take(spec.ops.len())];
                    let op_b = spec.ops[take(spec.ops.len())];
                    let combine = spec.combine[take(spec.combine.len())];
                    NasnetBlock {
                        input_a,
                        op_a,
                        input_b,
                        op_b,
                        combine,
                    }
                })
                .collect();
            cells.push(NasnetCell::new(*kind, blocks, None)?);
        }
        let reduction = cells.pop().expect("two cells");
        let normal = cells.pop().expect("two cells");
        Ok(NasnetGenotype { normal, reduction })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_bigint::BigUint;

    fn parse(s: &str) -> Result<NasnetGenotype, GenotypeError> {
        s.parse()
    }

    fn small(normal: &str, reduction: &str) -> String {
        format!("normal={normal};reduction={reduction}")
    }

    #[test]
    fn nasnet_a_round_trips_with_its_released_concat_lists() {
        let g = parse(NASNET_A).unwrap();
        assert_eq!(g.to_string(), NASNET_A);
        assert_eq!(g.normal().concat(), vec![0, 2, 3, 4, 5, 6]);
        assert_eq!(g.reduction().concat(), vec![3, 4, 5, 6]);
        assert_eq!(g.normal().blocks().len(), 5);
        assert_eq!(
            g.reduction().blocks()[3],
            NasnetBlock {
                input_a: 3,
                op_a: NasnetOp::Identity,
                input_b: 2,
                op_b: NasnetOp::AvgPool3x3,
                combine: Combine::Add
            }
        );
        let json = serde_json::to_value(&g).unwrap();
        assert_eq!(
            json["normal"]["concat"],
            serde_json::json!([0, 2, 3, 4, 5, 6])
        );
        assert_eq!(json["reduction"]["blocks"][0]["opA"], "sep_conv_5x5");
        assert_eq!(serde_json::from_value::<NasnetGenotype>(json).unwrap(), g);
    }

    #[test]
    fn default_concat_is_the_unused_block_outputs() {
        // Block 2 consumes block 1's output (state 2); blocks 2 and 3 are unused.
        let text = small(
            "|conv_3x3~0|identity~1|+|sep_conv_3x3~2|max_pool_3x3~0|+|identity~1|identity~0|",
            "|conv_1x1~0|conv_1x1~1|",
        );
        let g = parse(&text).unwrap();
        assert_eq!(g.normal().concat(), vec![3, 4]);
        assert!(!g.normal().has_explicit_concat());
        assert_eq!(g.reduction().concat(), vec![2]);
        // Writing the default list explicitly gives the same genotype and the same string.
        let explicit = parse(&format!("{text};normal_concat=4,3")).unwrap();
        assert_eq!(explicit, g);
        assert_eq!(explicit.to_string(), text);
    }

    #[test]
    fn concat_combine_is_written_and_read() {
        let text = small("|conv_3x3~0|identity~1|concat|", "|conv_1x1~0|conv_1x1~1|");
        let g = parse(&text).unwrap();
        assert_eq!(g.normal().blocks()[0].combine, Combine::Concat);
        assert_eq!(g.to_string(), text);
        // An explicit "add" is accepted and dropped from the canonical form.
        let add = parse(&small(
            "|conv_3x3~0|identity~1|add|",
            "|conv_1x1~0|conv_1x1~1|",
        ))
        .unwrap();
        assert_eq!(
            add.to_string(),
            small("|conv_3x3~0|identity~1|", "|conv_1x1~0|conv_1x1~1|")
        );
    }

    #[test]
    fn out_of_range_input_is_named_with_cell_and_block() {
        let err = parse(&small(
            "|conv_3x3~0|identity~1|+|conv_3x3~3|identity~1|",
            "|conv_1x1~0|conv_1x1~1|",
        ))
        .unwrap_err();
        assert_eq!(
            err,
            GenotypeError::Value {
                space: SpaceKind::Nasnet,
                location: "normal cell, block 2".into(),
                field: "inputA",
                value: "3".into(),
                allowed: "0..=2 (0 = h[i-1], 1 = h[i], k >= 2 = output of block k-1)".into(),
            }
        );
        let err = parse(&small("|conv_1x1~0|conv_1x1~1|", "|conv_1x1~0|conv_1x1~2|")).unwrap_err();
        assert!(
            err.to_string().contains(
                "reduction cell, block 1: inputB = 2 is not allowed; allowed values: 0, 1"
            ),
            "{err}"
        );
    }

    #[test]
    fn unknown_op_is_named() {
        let err = parse(&small("|conv_3x3~0|conv_9x9~1|", "|conv_1x1~0|conv_1x1~1|")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("normal cell, block 1: opB = conv_9x9 is not allowed"),
            "{msg}"
        );
        assert!(
            msg.contains("identity, conv_1x3_3x1") && msg.contains("sep_conv_7x7"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_combine_is_named() {
        let err = parse(&small(
            "|conv_3x3~0|identity~1|mul|",
            "|conv_1x1~0|conv_1x1~1|",
        ))
        .unwrap_err();
        assert!(
            err.to_string().contains(
                "normal cell, block 1: combine = mul is not allowed; allowed values: add, concat"
            ),
            "{err}"
        );
    }

    #[test]
    fn wrong_block_count_is_named() {
        let blocks = ["|conv_3x3~0|identity~1|"; 11].join("+");
        let err = parse(&small(&blocks, "|conv_1x1~0|conv_1x1~1|")).unwrap_err();
        assert!(
            err.to_string()
                .contains("normal cell: expected 1..=10 blocks, found 11"),
            "{err}"
        );
        let space = NasnetSpace::new(&NasnetSpaceSpec::default()).unwrap();
        let g = parse(&small("|conv_3x3~0|identity~1|", "|conv_1x1~0|conv_1x1~1|")).unwrap();
        let err = space.encode(&g).unwrap_err();
        assert!(
            err.to_string()
                .contains("normal cell: expected 5 blocks (searchSpace.nasnet.blocks), found 1"),
            "{err}"
        );
    }

    #[test]
    fn bad_concat_lists_are_named() {
        let base = small("|conv_3x3~0|identity~1|", "|conv_1x1~0|conv_1x1~1|");
        let err = parse(&format!("{base};normal_concat=0,3")).unwrap_err();
        assert!(
            err.to_string().contains(
                "normal cell, concat: hidden state = 3 is not allowed; allowed values: 0..=2"
            ),
            "{err}"
        );
        let err = parse(&format!("{base};reduction_concat=2,2")).unwrap_err();
        assert!(err.to_string().contains("2 (listed twice)"), "{err}");
        let err = parse(&format!("{base};normal_concat=x")).unwrap_err();
        assert!(matches!(err, GenotypeError::Syntax { .. }), "{err:?}");
    }

    #[test]
    fn syntax_errors_name_keys_and_offsets() {
        let err = parse("normal=|conv_3x3~0|identity~1|").unwrap_err();
        assert!(
            err.to_string().contains("missing key \"reduction\""),
            "{err}"
        );
        let err =
            parse("normal=|conv_3x3~0|identity~1|;reduce=|conv_1x1~0|conv_1x1~1|").unwrap_err();
        assert!(
            matches!(&err, GenotypeError::Syntax { offset: 31, message, .. } if message.contains("unknown key \"reduce\"")),
            "{err:?}"
        );
        let err = parse(&format!(
            "{};normal=|conv_3x3~0|identity~1|",
            small("|conv_3x3~0|identity~1|", "|conv_1x1~0|conv_1x1~1|")
        ))
        .unwrap_err();
        assert!(err.to_string().contains("appears twice"), "{err}");
        let err = parse(&small("|conv_3x3~0|", "|conv_1x1~0|conv_1x1~1|")).unwrap_err();
        assert!(err.to_string().contains("found 1 fields"), "{err}");
        let err = parse(&small("|conv_3x3-0|identity~1|", "|conv_1x1~0|conv_1x1~1|")).unwrap_err();
        assert!(
            matches!(err, GenotypeError::Syntax { offset: 8, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn operand_order_of_add_blocks_does_not_change_the_hash() {
        let a = parse(&small(
            "|conv_3x3~0|identity~1|",
            "|conv_1x1~0|max_pool_3x3~1|",
        ))
        .unwrap();
        let b = parse(&small(
            "|identity~1|conv_3x3~0|",
            "|max_pool_3x3~1|conv_1x1~0|",
        ))
        .unwrap();
        assert_ne!(a, b);
        let ga = super::super::Genotype::Nasnet(a);
        let gb = super::super::Genotype::Nasnet(b);
        assert_eq!(ga.hash(), gb.hash());
        // With concat, operand order changes channel order: a different child.
        let c = parse(&small(
            "|conv_3x3~0|identity~1|concat|",
            "|conv_1x1~0|conv_1x1~1|",
        ))
        .unwrap();
        let d = parse(&small(
            "|identity~1|conv_3x3~0|concat|",
            "|conv_1x1~0|conv_1x1~1|",
        ))
        .unwrap();
        assert_ne!(
            super::super::Genotype::Nasnet(c).hash(),
            super::super::Genotype::Nasnet(d).hash()
        );
    }

    #[test]
    fn size_follows_the_papers_rules() {
        // Per block b (1-based): inputs from h[i-1], h[i] and blocks 1..b-1, so (b + 1) choices
        // for each of the two inputs; 13 ops for each of the two ops; 1 combine method (add).
        // Per cell: prod_{b=1..5} (b+1)^2 * 13^2 = (2*3*4*5*6)^2 * 13^10. Two cells: squared.
        let space = NasnetSpace::new(&NasnetSpaceSpec::default()).unwrap();
        let per_cell = BigUint::from(720u32).pow(2) * BigUint::from(13u32).pow(10);
        assert_eq!(space.size(), per_cell.pow(2));
        assert_eq!(space.decisions().len(), 2 * 5 * 4);
        // ~5.1e33 distinct genotypes.
        assert_eq!(space.size().to_string().len(), 34);
        assert!(space.size().to_string().starts_with("51"));
        // Allowing concat too doubles each block's choices: x 2^10.
        let with_concat = NasnetSpace::new(&NasnetSpaceSpec {
            combine: vec![Combine::Add, Combine::Concat],
            ..NasnetSpaceSpec::default()
        })
        .unwrap();
        assert_eq!(with_concat.size(), per_cell.pow(2) * BigUint::from(1024u32));
        assert_eq!(with_concat.decisions().len(), 2 * 5 * 5);
    }

    #[test]
    fn decisions_follow_the_controller_order() {
        let space = NasnetSpace::new(&NasnetSpaceSpec::default()).unwrap();
        let names: Vec<&str> = space.decisions()[..5]
            .iter()
            .map(|d| d.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "normal.block1.inputA",
                "normal.block1.inputB",
                "normal.block1.opA",
                "normal.block1.opB",
                "normal.block2.inputA"
            ]
        );
        assert_eq!(space.decisions()[4].choices, ["0", "1", "2"]);
        assert_eq!(space.decisions()[20].name, "reduction.block1.inputA");
    }

    #[test]
    fn nasnet_a_lies_outside_the_default_space_only_by_its_concat_lists() {
        // The released cells' output lists are not decisions of the search space: encoding them
        // would lose them, so NASNet-A is reported outside the space, naming the list.
        let space = NasnetSpace::new(&NasnetSpaceSpec::default()).unwrap();
        let g = parse(NASNET_A).unwrap();
        let err = space.encode(&g).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid NASNet genotype: normal cell: concat = 0,2,3,4,5,6 is not allowed; allowed values: 2,3,4,5,6 (the space's rule: the block outputs no block consumes; an explicit output list is not one of its decisions)"
        );
        // The same blocks with the default output rule lie in the space and round-trip.
        let blocks_only = NasnetGenotype::new(
            NasnetCell::new(CellKind::Normal, g.normal().blocks().to_vec(), None).unwrap(),
            NasnetCell::new(CellKind::Reduction, g.reduction().blocks().to_vec(), None).unwrap(),
        );
        let d = space.encode(&blocks_only).unwrap();
        assert_eq!(space.decode(&d).unwrap(), blocks_only);
        assert_eq!(blocks_only.reduction().concat(), vec![4, 5, 6]);
    }

    #[test]
    fn concat_lists_that_drop_a_block_are_rejected() {
        // Blocks 1..2 are consumed by nobody: a list without them computes them for nothing.
        let base = small(
            "|conv_3x3~0|identity~1|+|conv_1x1~0|conv_1x1~1|",
            "|conv_1x1~0|conv_1x1~1|",
        );
        let err = parse(&format!("{base};normal_concat=0,1")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid NASNet genotype: normal cell, concat: concat = 0,1 is not allowed; allowed values: lists holding every block output that no block consumes (2, 3); block 1's output (2) would be computed and dropped"
        );
        // Adding states to the default list is allowed (NASNet-A adds h[i-1]).
        let g = parse(&format!("{base};normal_concat=0,2,3")).unwrap();
        assert_eq!(g.normal().concat(), vec![0, 2, 3]);
    }

    #[test]
    fn ops_outside_a_restricted_space_are_named() {
        let space = NasnetSpace::new(&NasnetSpaceSpec {
            ops: vec![NasnetOp::Identity, NasnetOp::SepConv3x3],
            ..NasnetSpaceSpec::default()
        })
        .unwrap();
        let err = space.encode(&parse(NASNET_A).unwrap()).unwrap_err();
        assert!(
            err.to_string().contains(
                "normal cell, block 1: opA = sep_conv_5x5 is not allowed; allowed values: identity, sep_conv_3x3 (searchSpace.nasnet.ops)"
            ),
            "{err}"
        );
    }

    #[test]
    fn bad_space_parameters_are_named() {
        let err = NasnetSpace::new(&NasnetSpaceSpec {
            blocks: 0,
            ..NasnetSpaceSpec::default()
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid search space: searchSpace.nasnet.blocks: 0 is out of range 1..=10"
        );
        let err = NasnetSpace::new(&NasnetSpaceSpec {
            combine: vec![],
            ..NasnetSpaceSpec::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("searchSpace.nasnet.combine: must list at least one value; allowed values: add, concat"), "{err}");
    }
}
