//! Command-line interface of the `nasop` binary.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use nasop_crds::SpaceKind;

/// nasop: neural architecture search on Kubernetes (and on one machine).
#[derive(Parser, Debug)]
#[command(name = "nasop", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the CustomResourceDefinitions (YAML), or write one file per CRD into a directory.
    Crds {
        /// Write `<plural>.yaml` files here instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Check ArchitectureSearch manifests: types, CRD rules (CEL) and search-space parameters.
    Validate {
        /// Manifest files (YAML or JSON).
        #[arg(required = true)]
        manifests: Vec<PathBuf>,
    },
    /// Fit the additive per-op latency table on a few measured children of a table (e.g.
    /// `nb201_latency_ms.csv`), predict all, and print Spearman rank correlation and mean
    /// absolute percentage error per latency column; the last line is JSON.
    LatencyModel {
        /// CSV with a genotype column and latency columns (ms).
        #[arg(long)]
        table: PathBuf,
        /// Latency column(s) to model (default: every column but the genotype and `index`).
        #[arg(long)]
        column: Vec<String>,
        /// The genotype column.
        #[arg(long, default_value = "arch_str")]
        arch_column: String,
        /// Children to fit on (drawn uniformly without replacement).
        #[arg(long, default_value_t = 100)]
        fit: usize,
        /// Seed of the draw.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Run search strategies on a tabular benchmark (NAS-Bench-201) without training: each
    /// strategy R times for K queries; prints mean and std of the reported value of the
    /// best-by-signal child and how often it is the table's optimum.
    BenchSearch(Box<BenchSearchArgs>),
    /// Run an ArchitectureSearch manifest on this machine: trials as local nasop-trainer
    /// processes, the state in a directory (run again to resume), a summary at the end.
    Run {
        /// The manifest (the same `kubectl apply` takes).
        manifest: PathBuf,
        /// State directory (default `./nasop-runs/<name>`).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// The nasop-trainer binary (default: beside this nasop, then `$PATH`).
        #[arg(long, env = "NASOP_TRAINER")]
        trainer: Option<PathBuf>,
        /// CPU threads for all trials together (default: all of this machine's).
        #[arg(long)]
        threads: Option<usize>,
        /// GPUs, one per trial (default: the NVIDIA GPUs the driver lists; 0: CPU only).
        #[arg(long)]
        gpus: Option<usize>,
        /// Only the summary at the end.
        #[arg(long, conflicts_with = "json")]
        quiet: bool,
        /// Every event as one JSON line on stdout, then the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the summary of a `nasop run` state directory.
    Results {
        /// The state directory (e.g. `nasop-runs/<name>`), or the search's manifest (its
        /// default state directory).
        dir: PathBuf,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the Kubernetes operator: reconcile ArchitectureSearches, ChildTrials and
    /// LatencyProbes; serve /metrics, /healthz and /readyz. Uses the in-cluster service
    /// account, or $KUBECONFIG / ~/.kube/config outside a cluster.
    Operator(OperatorArgs),
    /// Inspect search spaces and genotypes.
    Space {
        /// What to inspect.
        #[command(subcommand)]
        command: SpaceCommand,
    },
}

/// `nasop space` subcommands.
#[derive(Subcommand, Debug)]
pub enum SpaceCommand {
    /// Size and decisions of a space.
    Info {
        /// The space.
        #[command(flatten)]
        space: SpaceArg,
        /// List every decision with its choices.
        #[arg(long, short)]
        verbose: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Genotypes drawn uniformly from a space.
    Sample {
        /// The space.
        #[command(flatten)]
        space: SpaceArg,
        /// How many.
        #[arg(short, long, default_value_t = 5)]
        n: usize,
        /// Seed of the generator (ChaCha8).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Parse a genotype (string or known name), print its canonical form, hash and JSON, and
    /// place it in a space.
    Check {
        /// Genotype string, or nasnet-a, mnasnet-a1, nb201-optimum.
        genotype: String,
        /// The space to place it in (default: its kind's default space).
        #[command(flatten)]
        space: OptionalSpaceArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Single-decision mutants of a genotype (as regularized evolution makes them).
    Mutate {
        /// Genotype string or known name.
        genotype: String,
        /// The space (default: the genotype's kind's default space).
        #[command(flatten)]
        space: OptionalSpaceArg,
        /// How many.
        #[arg(short, long, default_value_t = 5)]
        n: usize,
        /// Seed of the generator (ChaCha8).
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

/// A space kind as typed on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum KindArg {
    /// NASNet cells (arXiv 1707.07012).
    Nasnet,
    /// MnasNet blocks (arXiv 1807.11626).
    Mnasnet,
    /// NAS-Bench-201 cells (arXiv 2001.00326).
    Nb201,
}

impl From<KindArg> for SpaceKind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Nasnet => SpaceKind::Nasnet,
            KindArg::Mnasnet => SpaceKind::Mnasnet,
            KindArg::Nb201 => SpaceKind::Nb201,
        }
    }
}

/// A space: a kind with default parameters, or the `searchSpace` of a manifest.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct SpaceArg {
    /// A space kind with the papers' parameters.
    #[arg(long)]
    pub space: Option<KindArg>,
    /// The `spec.searchSpace` of an ArchitectureSearch manifest.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
}

/// An optional space.
#[derive(Args, Debug)]
#[group(required = false, multiple = false)]
pub struct OptionalSpaceArg {
    /// A space kind with the papers' parameters.
    #[arg(long)]
    pub space: Option<KindArg>,
    /// The `spec.searchSpace` of an ArchitectureSearch manifest.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
}

/// Arguments of `nasop bench-search`.
#[derive(clap::Args, Debug)]
pub struct BenchSearchArgs {
    /// Accuracy table: a genotype column and numeric columns (e.g. `nb201_cifar10.csv`).
    #[arg(long)]
    pub table: PathBuf,
    /// The genotype column (of both tables).
    #[arg(long, default_value = "arch_str")]
    pub arch_column: String,
    /// Column the strategies see as the reward (as a fraction: value / 100).
    #[arg(long, default_value = "c10valid_valid_200")]
    pub signal: String,
    /// Column reported for the best-by-signal child.
    #[arg(long, default_value = "c10_test_200")]
    pub report: String,
    /// Strategy (repeatable): PPO, REINFORCE, Evolution, Random (default: all four).
    #[arg(long)]
    pub strategy: Vec<String>,
    /// Budget K in queries (repeatable; default 100, 150, 300, 500).
    #[arg(long)]
    pub budget: Vec<usize>,
    /// Independent runs R per strategy.
    #[arg(long, default_value_t = 50)]
    pub runs: usize,
    /// Seed of the first run (run r uses seed + r).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Controller settings as JSON (fields of `strategy.controller`, e.g.
    /// '{"learningRate": 0.01}').
    #[arg(long)]
    pub controller: Option<String>,
    /// Evolution settings as JSON (fields of `strategy.evolution`).
    #[arg(long)]
    pub evolution: Option<String>,
    /// Latency-aware mode: latency table (e.g. `nb201_latency_ms.csv`).
    #[arg(long, requires_all = ["latency_column", "target_ms"])]
    pub latency_table: Option<PathBuf>,
    /// Latency column (device), e.g. `pixel3`.
    #[arg(long, requires = "latency_table")]
    pub latency_column: Option<String>,
    /// Latency target T, ms.
    #[arg(long, requires = "latency_table")]
    pub target_ms: Option<f64>,
    /// Soft (alpha = beta = -0.07) or Hard (alpha = 0, beta = -1).
    #[arg(long, default_value = "Soft")]
    pub constraint: String,
    /// One JSON object per row instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

/// `nasop operator` flags (each also read from the environment).
#[derive(Args, Debug, Clone)]
pub struct OperatorArgs {
    /// Namespaces to watch, comma-separated or repeated (default: all namespaces).
    #[arg(long = "namespace", env = "NASOP_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Reconciles run at once per controller (0: unbounded). Each reconcile waits on the API
    /// server; more at once queue more calls there. In `make bench-scale` (3,000 trials, 2
    /// cores shared with the API server) 4 instead of 8 cut the p99 over all reconciles from
    /// 233 / 242 ms to 168 / 148 ms for 8% fewer trials per second (README, operator scale).
    #[arg(long, env = "NASOP_CONCURRENCY", default_value_t = 4)]
    pub concurrency: u16,
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "NASOP_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: std::net::SocketAddr,
    /// Log format.
    #[arg(long, env = "NASOP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter (tracing-subscriber EnvFilter syntax, e.g. `info,nasop=debug`).
    #[arg(long, env = "NASOP_LOG", default_value = "info")]
    pub log: String,
    /// Elect one active replica with a coordination.k8s.io Lease (others wait).
    #[arg(long, env = "NASOP_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the Lease.
    #[arg(long, env = "NASOP_LEASE_NAME", default_value = "nasop-operator")]
    pub lease_name: String,
    /// Namespace of the Lease (default: $POD_NAMESPACE, else `default`).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// This replica's identity in the Lease and in Events (default: $POD_NAME, else the host
    /// name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Seconds a Lease holds without renewal (Kubernetes' own components use 15).
    #[arg(long, env = "NASOP_LEASE_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub lease_seconds: u64,
}
