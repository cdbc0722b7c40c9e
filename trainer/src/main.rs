//! `nasop-trainer`: runs inside trainer and probe pods, and locally under `nasop run`.
#![forbid(unsafe_code)]

use anyhow::Result;
use clap::{Parser, Subcommand};

mod info;

/// The nasop trainer: builds child networks with libtorch and trains or probes them.
#[derive(Parser, Debug)]
#[command(name = "nasop-trainer", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the libtorch build this binary runs against (devices, threads) as JSON, after a
    /// small computation that proves libtorch loads and computes.
    Info,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Info => println!("{}", serde_json::to_string_pretty(&info::collect()?)?),
    }
    Ok(())
}
