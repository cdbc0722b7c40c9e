//! The NAS-Bench-201 cell space (Dong & Yang 2020, arXiv 2001.00326, Sec. 3.1).
//!
//! A cell is a DAG of 4 nodes (node 0 is the cell input, node 3 its output); each of the
//! 6 edges `i -> j` (`i < j`) carries one of 5 ops, and node `j` sums its incoming edges.
//! 5^6 = 15,625 cells. The string form is the benchmark's own:
//! `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|` (node 1, node 2, node 3; `op~i` is the edge from node
//! `i`).

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::{check_choice_list, check_range, choice_index, join, GenotypeError, SpaceError};
use super::{
    check_decisions, named_enum, parse_digits, schema_as, split_with_offsets, CategoricalSpace,
    Decision, SpaceKind,
};

const SPACE: SpaceKind = SpaceKind::Nb201;

/// Nodes of a cell that have incoming edges (nodes 1, 2, 3).
pub const COMPUTE_NODES: usize = 3;
/// Edges of a cell: node `j` has `j` incoming edges, 1 + 2 + 3 = 6.
pub const EDGES: usize = 6;

/// The best cell on CIFAR-10 (test accuracy 94.37% after 200 epochs; NAS-Bench-201 index 6111,
/// see `../shared/data/nb201/README`).
pub const NB201_OPTIMUM: &str =
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|";

named_enum! {
    /// An edge op of NAS-Bench-201, in the benchmark's order (arXiv 2001.00326, Sec. 3.1).
    pub enum Nb201Op {
        /// Zero: the edge carries nothing.
        None => "none",
        /// Identity.
        SkipConnect => "skip_connect",
        /// ReLU, 1x1 convolution, batch norm.
        NorConv1x1 => "nor_conv_1x1",
        /// ReLU, 3x3 convolution, batch norm.
        NorConv3x3 => "nor_conv_3x3",
        /// 3x3 average pooling, stride 1.
        AvgPool3x3 => "avg_pool_3x3",
    }
}

/// Index in the flat edge list of the edge `from -> to` (`from < to`, `to` in 1..=3).
const fn edge_index(to: usize, from: usize) -> usize {
    to * (to - 1) / 2 + from
}

/// A NAS-Bench-201 cell: the op on each of its 6 edges.
///
/// JSON form: `{"nodes": [[op 0->1], [op 0->2, op 1->2], [op 0->3, op 1->3, op 2->3]]}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Nb201Nodes", into = "Nb201Nodes")]
pub struct Nb201Genotype {
    edges: [Nb201Op; EDGES],
}

/// The JSON form of [`Nb201Genotype`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Nb201Nodes {
    /// The incoming edges of nodes 1, 2 and 3: node `j` lists the ops of its edges from nodes
    /// 0..j-1, in that order.
    #[schemars(length(min = 3, max = 3), inner(length(min = 1, max = 3)))]
    nodes: Vec<Vec<Nb201Op>>,
}

schema_as!(Nb201Genotype, Nb201Nodes, "Nb201Genotype");

impl TryFrom<Nb201Nodes> for Nb201Genotype {
    type Error = GenotypeError;

    fn try_from(value: Nb201Nodes) -> Result<Self, Self::Error> {
        if value.nodes.len() != COMPUTE_NODES {
            return Err(GenotypeError::count(
                SPACE,
                "cell",
                "nodes with incoming edges",
                COMPUTE_NODES,
                value.nodes.len(),
            ));
        }
        let mut edges = [Nb201Op::None; EDGES];
        for (j, ops) in (1..).zip(&value.nodes) {
            if ops.len() != j {
                return Err(GenotypeError::count(
                    SPACE,
                    format!("node {j}"),
                    "incoming edges",
                    j,
                    ops.len(),
                ));
            }
            for (i, op) in ops.iter().enumerate() {
                edges[edge_index(j, i)] = *op;
            }
        }
        Ok(Self { edges })
    }
}

impl From<Nb201Genotype> for Nb201Nodes {
    fn from(g: Nb201Genotype) -> Self {
        Self {
            nodes: (1..=COMPUTE_NODES)
                .map(|j| (0..j).map(|i| g.edge(j, i)).collect())
                .collect(),
        }
    }
}

impl Nb201Genotype {
    /// A cell from its 6 edge ops in flat order `0->1, 0->2, 1->2, 0->3, 1->3, 2->3`.
    pub const fn from_edges(edges: [Nb201Op; EDGES]) -> Self {
        Self { edges }
    }

    /// The 6 edge ops in flat order `0->1, 0->2, 1->2, 0->3, 1->3, 2->3`.
    pub const fn edges(&self) -> &[Nb201Op; EDGES] {
        &self.edges
    }

    /// The op on the edge `from -> to`.
    ///
    /// # Panics
    /// Unless `1 <= to <= 3` and `from < to`.
    pub fn edge(&self, to: usize, from: usize) -> Nb201Op {
        assert!(
            (1..=COMPUTE_NODES).contains(&to) && from < to,
            "no edge {from} -> {to}"
        );
        self.edges[edge_index(to, from)]
    }

    /// Always `Ok`: every assignment of ops to the 6 edges is a cell of the benchmark
    /// (cells whose output is disconnected included). Kept for symmetry with the other spaces.
    ///
    /// # Errors
    /// None.
    pub fn validate(&self) -> Result<(), GenotypeError> {
        Ok(())
    }
}

impl fmt::Display for Nb201Genotype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for j in 1..=COMPUTE_NODES {
            if j > 1 {
                f.write_str("+")?;
            }
            f.write_str("|")?;
            for i in 0..j {
                write!(f, "{}~{i}|", self.edge(j, i))?;
            }
        }
        Ok(())
    }
}

impl FromStr for Nb201Genotype {
    type Err = GenotypeError;

    /// Parses `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`. Within a node the edges may come in any
    /// order, but each input node `0..j` must appear exactly once; [`fmt::Display`] writes them
    /// in input order.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let nodes = split_with_offsets(input, 0, '+');
        if nodes.len() != COMPUTE_NODES {
            return Err(GenotypeError::count(
                SPACE,
                "cell",
                "nodes separated by '+'",
                COMPUTE_NODES,
                nodes.len(),
            ));
        }
        let mut edges = [Nb201Op::None; EDGES];
        for (j, (offset, node)) in (1..).zip(nodes) {
            let inner = node
                .strip_prefix('|')
                .and_then(|n| n.strip_suffix('|'))
                .filter(|n| !n.is_empty())
                .ok_or_else(|| {
                    GenotypeError::syntax(
                        SPACE,
                        input,
                        offset,
                        format!("node {j} must look like |op~0|...|, found {node:?}"),
                    )
                })?;
            let parts = split_with_offsets(inner, offset + 1, '|');
            if parts.len() != j {
                return Err(GenotypeError::count(
                    SPACE,
                    format!("node {j}"),
                    "incoming edges",
                    j,
                    parts.len(),
                ));
            }
            let mut seen = [false; COMPUTE_NODES];
            for (offset, part) in parts {
                let (op, from) = part.split_once('~').ok_or_else(|| {
                    GenotypeError::syntax(
                        SPACE,
                        input,
                        offset,
                        format!("expected op~input, found {part:?}"),
                    )
                })?;
                let (op, from) = (op.trim(), from.trim());
                let allowed_inputs = join(0..j);
                let from = parse_digits(from).map(|f| f as usize).ok_or_else(|| {
                    GenotypeError::value(
                        SPACE,
                        format!("node {j}"),
                        "input node",
                        from,
                        allowed_inputs.clone(),
                    )
                })?;
                if from >= j {
                    return Err(GenotypeError::value(
                        SPACE,
                        format!("node {j}"),
                        "input node",
                        from,
                        allowed_inputs,
                    ));
                }
                if std::mem::replace(&mut seen[from], true) {
                    return Err(GenotypeError::value(
                        SPACE,
                        format!("node {j}"),
                        "input node",
                        format!("{from} (listed twice)"),
                        format!("each of {allowed_inputs} exactly once"),
                    ));
                }
                edges[edge_index(j, from)] = Nb201Op::from_name(op).ok_or_else(|| {
                    GenotypeError::value(
                        SPACE,
                        format!("node {j}, edge from node {from}"),
                        "op",
                        op,
                        Nb201Op::allowed(),
                    )
                })?;
            }
        }
        Ok(Self { edges })
    }
}

fn default_ops() -> Vec<Nb201Op> {
    Nb201Op::ALL.to_vec()
}

fn default_channels() -> u32 {
    16
}

fn default_cells_per_stage() -> u32 {
    5
}

/// Parameters of the NAS-Bench-201 space (`spec.searchSpace.nb201`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Nb201SpaceSpec {
    /// Ops an edge may carry (default: all five, giving the benchmark's 15,625 cells).
    #[serde(default = "default_ops")]
    #[schemars(length(min = 1, max = 5))]
    pub ops: Vec<Nb201Op>,
    /// Channels of the first stage, C (benchmark: 16; doubled at each of the two reductions).
    #[serde(default = "default_channels")]
    #[schemars(range(min = 1, max = 1024))]
    pub channels: u32,
    /// Cells per stage, N (benchmark: 5).
    #[serde(default = "default_cells_per_stage")]
    #[schemars(range(min = 1, max = 32))]
    pub cells_per_stage: u32,
}

impl Default for Nb201SpaceSpec {
    fn default() -> Self {
        Self {
            ops: default_ops(),
            channels: default_channels(),
            cells_per_stage: default_cells_per_stage(),
        }
    }
}

/// The validated NAS-Bench-201 space: 6 decisions (one per edge, in flat edge order), each over
/// the allowed ops.
#[derive(Clone, Debug)]
pub struct Nb201Space {
    spec: Nb201SpaceSpec,
    decisions: Vec<Decision>,
}

impl Nb201Space {
    /// Validates the parameters.
    ///
    /// # Errors
    /// [`SpaceError`] for an empty or repeated op list, or sizes out of range.
    pub fn new(spec: &Nb201SpaceSpec) -> Result<Self, SpaceError> {
        check_choice_list("searchSpace.nb201.ops", &spec.ops, Nb201Op::allowed)?;
        check_range("searchSpace.nb201.channels", spec.channels, 1, 1024)?;
        check_range(
            "searchSpace.nb201.cellsPerStage",
            spec.cells_per_stage,
            1,
            32,
        )?;
        let names: Vec<String> = spec.ops.iter().map(|o| o.name().to_string()).collect();
        let decisions = if names.len() > 1 {
            (1..=COMPUTE_NODES)
                .flat_map(|j| (0..j).map(move |i| (j, i)))
                .map(|(j, i)| Decision::new(format!("node{j}.from{i}"), names.clone()))
                .collect()
        } else {
            Vec::new()
        };
        Ok(Self {
            spec: spec.clone(),
            decisions,
        })
    }

    /// The parameters.
    pub fn spec(&self) -> &Nb201SpaceSpec {
        &self.spec
    }
}

impl CategoricalSpace for Nb201Space {
    type Genotype = Nb201Genotype;

    fn decisions(&self) -> &[Decision] {
        &self.decisions
    }

    fn encode(&self, genotype: &Nb201Genotype) -> Result<Vec<usize>, GenotypeError> {
        let mut indices = Vec::with_capacity(EDGES);
        for j in 1..=COMPUTE_NODES {
            for i in 0..j {
                indices.push(choice_index(
                    SPACE,
                    &self.spec.ops,
                    genotype.edge(j, i),
                    &format!("node {j}, edge from node {i}"),
                    "op",
                    "searchSpace.nb201.ops",
                )?);
            }
        }
        if self.decisions.is_empty() {
            indices.clear();
        }
        Ok(indices)
    }

    fn decode(&self, decisions: &[usize]) -> Result<Nb201Genotype, GenotypeError> {
        check_decisions(SPACE, &self.decisions, decisions)?;
        let mut edges = [self.spec.ops[0]; EDGES];
        for (edge, &d) in edges.iter_mut().zip(decisions) {
            *edge = self.spec.ops[d];
        }
        Ok(Nb201Genotype { edges })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Nb201Genotype, GenotypeError> {
        s.parse()
    }

    #[test]
    fn optimum_round_trips_and_reads_edges() {
        let g = parse(NB201_OPTIMUM).unwrap();
        assert_eq!(g.to_string(), NB201_OPTIMUM);
        assert_eq!(g.edge(1, 0), Nb201Op::NorConv3x3);
        assert_eq!(g.edge(3, 0), Nb201Op::SkipConnect);
        assert_eq!(g.edge(3, 2), Nb201Op::NorConv1x1);
        let json = serde_json::to_value(g).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"nodes": [
                ["nor_conv_3x3"],
                ["nor_conv_3x3", "nor_conv_3x3"],
                ["skip_connect", "nor_conv_3x3", "nor_conv_1x1"]
            ]})
        );
    }

    #[test]
    fn edges_in_any_order_are_canonicalized() {
        let g = parse("|none~0|+|avg_pool_3x3~1|skip_connect~0|+|none~2|none~0|none~1|").unwrap();
        assert_eq!(
            g.to_string(),
            "|none~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|none~1|none~2|"
        );
    }

    #[test]
    fn unknown_op_is_named_with_its_edge() {
        let err = parse("|nor_conv_3x3~0|+|conv_5x5~0|nor_conv_3x3~1|+|none~0|none~1|none~2|")
            .unwrap_err();
        assert_eq!(
            err,
            GenotypeError::Value {
                space: SpaceKind::Nb201,
                location: "node 2, edge from node 0".into(),
                field: "op",
                value: "conv_5x5".into(),
                allowed: "none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3".into(),
            }
        );
    }

    #[test]
    fn out_of_range_input_node_is_named() {
        let err = parse("|none~0|+|none~0|none~2|+|none~0|none~1|none~2|").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("node 2: input node = 2 is not allowed; allowed values: 0, 1"),
            "{msg}"
        );
    }

    #[test]
    fn repeated_input_node_is_named() {
        let err = parse("|none~0|+|none~0|none~0|+|none~0|none~1|none~2|").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("node 2: input node = 0 (listed twice)"),
            "{msg}"
        );
    }

    #[test]
    fn non_numeric_input_node_is_named() {
        let err = parse("|none~a|+|none~0|none~1|+|none~0|none~1|none~2|").unwrap_err();
        assert!(
            err.to_string()
                .contains("node 1: input node = a is not allowed; allowed values: 0"),
            "{err}"
        );
    }

    #[test]
    fn wrong_node_count_is_named() {
        let err = parse("|none~0|+|none~0|none~1|").unwrap_err();
        assert!(
            err.to_string()
                .contains("cell: expected 3 nodes separated by '+', found 2"),
            "{err}"
        );
    }

    #[test]
    fn wrong_edge_count_is_named() {
        let err = parse("|none~0|+|none~0|+|none~0|none~1|none~2|").unwrap_err();
        assert!(
            err.to_string()
                .contains("node 2: expected 2 incoming edges, found 1"),
            "{err}"
        );
    }

    #[test]
    fn missing_bars_and_tilde_are_syntax_errors_with_offsets() {
        let err = parse("|none~0|+none~0|none~1|+|none~0|none~1|none~2|").unwrap_err();
        assert!(
            matches!(err, GenotypeError::Syntax { offset: 9, .. }),
            "{err:?}"
        );
        let err = parse("|none~0|+|none0|none~1|+|none~0|none~1|none~2|").unwrap_err();
        assert!(
            matches!(err, GenotypeError::Syntax { offset: 10, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("expected op~input"), "{err}");
    }

    #[test]
    fn json_with_wrong_shape_is_rejected_by_name() {
        let err = serde_json::from_value::<Nb201Genotype>(serde_json::json!({
            "nodes": [["none"], ["none"], ["none", "none", "none"]]
        }))
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("node 2: expected 2 incoming edges, found 1"),
            "{err}"
        );
        let err = serde_json::from_value::<Nb201Genotype>(serde_json::json!({
            "nodes": [["conv"], ["none", "none"], ["none", "none", "none"]]
        }))
        .unwrap_err();
        assert!(err.to_string().contains("conv"), "{err}");
    }

    #[test]
    fn size_is_five_to_the_six() {
        let space = Nb201Space::new(&Nb201SpaceSpec::default()).unwrap();
        // 6 edges (1 + 2 + 3 incoming edges of nodes 1..3), 5 ops each.
        assert_eq!(space.decisions().len(), EDGES);
        assert_eq!(space.size(), num_bigint::BigUint::from(5u32.pow(6)));
        assert_eq!(space.size(), num_bigint::BigUint::from(15_625u32));
    }

    #[test]
    fn restricted_ops_shrink_the_space_and_reject_outside_cells() {
        let spec = Nb201SpaceSpec {
            ops: vec![Nb201Op::SkipConnect, Nb201Op::NorConv3x3],
            ..Nb201SpaceSpec::default()
        };
        let space = Nb201Space::new(&spec).unwrap();
        assert_eq!(space.size(), num_bigint::BigUint::from(64u32));
        let err = space.encode(&parse(NB201_OPTIMUM).unwrap()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("node 3, edge from node 2: op = nor_conv_1x1 is not allowed; allowed values: skip_connect, nor_conv_3x3"),
            "{msg}"
        );
    }

    #[test]
    fn bad_space_parameters_are_named() {
        let err = Nb201Space::new(&Nb201SpaceSpec {
            ops: vec![],
            ..Nb201SpaceSpec::default()
        })
        .unwrap_err();
        assert_eq!(err.field, "searchSpace.nb201.ops");
        let err = Nb201Space::new(&Nb201SpaceSpec {
            ops: vec![Nb201Op::None, Nb201Op::None],
            ..Nb201SpaceSpec::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("none is listed twice"), "{err}");
        let err = Nb201Space::new(&Nb201SpaceSpec {
            channels: 0,
            ..Nb201SpaceSpec::default()
        })
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("searchSpace.nb201.channels: 0 is out of range 1..=1024"),
            "{err}"
        );
    }

    #[test]
    fn flat_edge_order_matches_the_string_order() {
        let mut edges = [Nb201Op::None; EDGES];
        for (k, e) in edges.iter_mut().enumerate() {
            *e = Nb201Op::ALL[k % 5];
        }
        let g = Nb201Genotype::from_edges(edges);
        assert_eq!(
            g.to_string(),
            "|none~0|+|skip_connect~0|nor_conv_1x1~1|+|nor_conv_3x3~0|avg_pool_3x3~1|none~2|"
        );
    }
}
