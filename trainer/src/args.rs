//! Command-line arguments shared by the subcommands that build a network.

use clap::Args;
use nasop_crds::space::Genotype;

use crate::net::{NetConfig, Shape};

/// The child network: genotype and macro settings.
#[derive(Args, Debug, Clone)]
pub struct NetArgs {
    /// Genotype: a canonical string of any space, its JSON form (`{"nb201": ...}`), or a known
    /// name (`nasnet-a`, `mnasnet-a1`, `nb201-optimum`).
    #[arg(long, short = 'g')]
    pub genotype: String,
    /// Cells per stage N (NASNet default 2, NB201 default 5).
    #[arg(long)]
    pub cells_per_stage: Option<i64>,
    /// First-stage filters: F for NASNet (default 32), C for NB201 (default 16).
    #[arg(long)]
    pub filters: Option<i64>,
    /// Filters of the MnasNet head conv (default 1280).
    #[arg(long)]
    pub head_filters: Option<i64>,
    /// Add the NASNet auxiliary head (trained with weight 0.4).
    #[arg(long)]
    pub aux_head: bool,
    /// Dropout before the classifier (default 0.2 for MnasNet, 0 otherwise).
    #[arg(long)]
    pub dropout: Option<f64>,
}

/// Parses a genotype given on the command line: JSON when it starts with `{`, otherwise a
/// canonical string or known name.
///
/// # Errors
/// The parser's message, which names the block and field of a bad value.
pub fn parse_genotype(text: &str) -> anyhow::Result<Genotype> {
    let text = text.trim();
    if text.starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| anyhow::anyhow!("--genotype: not valid JSON: {e}"))?;
        let keys: Vec<String> = value
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        if keys.len() != 1 || !["nasnet", "mnasnet", "nb201"].contains(&keys[0].as_str()) {
            anyhow::bail!(
                "--genotype: a genotype JSON object has exactly one key, its space: nasnet, mnasnet or nb201 (found {keys:?})"
            );
        }
        let genotype: Genotype = serde_json::from_value(value)
            .map_err(|e| anyhow::anyhow!("--genotype: not a valid {} genotype: {e}", keys[0]))?;
        genotype
            .validate()
            .map_err(|e| anyhow::anyhow!("--genotype: {e}"))?;
        Ok(genotype)
    } else {
        text.parse().map_err(|e| anyhow::anyhow!("--genotype: {e}"))
    }
}

impl NetArgs {
    /// The network settings for this input and class count.
    pub fn config(&self, input: Shape, classes: i64, bf16: bool) -> NetConfig {
        NetConfig {
            input,
            classes,
            cells_per_stage: self.cells_per_stage,
            filters: self.filters,
            head_filters: self.head_filters,
            aux_head: self.aux_head,
            dropout: self.dropout,
            bf16,
            bn_momentum: None,
        }
    }
}
