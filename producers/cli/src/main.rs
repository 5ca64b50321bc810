//! `zenvelope`: the command-line tool.
//!
//! Thin by design: parse arguments, call into the library crates.

mod demo;
mod inspect;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// End-to-end-encrypted AI processing of sensitive data over Kafka.
///
/// Backends and browsers seal data into envelopes; only attested enclave workers can open
/// them, call the model and seal the answer; an audit sink keeps a tamper-evident log.
#[derive(Parser, Debug)]
#[command(name = "zenvelope", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the pipeline locally on sample journal entries and show every stage.
    ///
    /// Starts an embedded Kafka-protocol broker (or uses --bootstrap), the enclave host
    /// and the enclave application in this process, then seals each entry with the
    /// producer SDK (user key from a passphrase with PBKDF2, fleet key wrap, producer
    /// signature), shows what the broker holds, lets the enclave open it and answer with
    /// the clearly labelled offline analyser (not a model), opens the sealed answer as the
    /// user, and prints the audit trail. Dev keys only; nothing is kept.
    ///
    /// Example: zenvelope demo --entries 2 --iterations 100000
    Demo(demo::Args),
    /// Print the public header of a sealed envelope (no keys needed, nothing decrypted).
    ///
    /// Reads Avro bytes, raw or Confluent-framed (0x00 + 4-byte schema id), from a file
    /// or from standard input, as binary or hex.
    ///
    /// Example: zenvelope inspect --hex envelope.hex
    Inspect {
        /// File to read; standard input when absent or `-`.
        path: Option<PathBuf>,
        /// The input is hex text rather than binary.
        #[arg(long)]
        hex: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Inspect { path, hex } => inspect::run(path.as_deref(), hex),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
