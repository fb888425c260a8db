use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Relays X account activity into Kafka, NATS JetStream and RabbitMQ as CloudEvents.
#[derive(Parser)]
#[command(name = "activity-relay", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start; the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the relay (or, with --check, validate its configuration).
    Run(activity_relay::cli::RunArgs),
    /// Normalize deliveries (files or stdin) to envelopes, one JSON line each.
    Normalize(activity_relay::cli_normalize::NormalizeArgs),
    /// Manage X webhooks, subscriptions and replays.
    X(relay_xapi::cli::XArgs),
    /// GET a URL and exit 0 on a 2xx answer (a health probe for images without curl).
    Probe(activity_relay::probe::ProbeArgs),
    /// Print the envelope's JSON Schema, or an AsyncAPI 3.0 document of what a
    /// configuration publishes (for event catalogs).
    Schema(activity_relay::cli::SchemaArgs),
    /// Put the events of dead letters back into the spool, once their cause is fixed (the
    /// relay must be stopped).
    DeadLetters(activity_relay::cli::DeadLettersArgs),
    /// Deliver the records left in a spool directory by a member that is gone (scaled in),
    /// then exit: 0 once every sink confirmed them, 1 if some are left after --timeout.
    Drain(activity_relay::cli::DrainArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => activity_relay::cli::run(&args),
        Command::Normalize(args) => activity_relay::cli::normalize(&args),
        Command::X(args) => activity_relay::cli::x(args),
        Command::Probe(args) => activity_relay::cli::probe(&args),
        Command::Schema(args) => activity_relay::cli::schema(&args),
        Command::DeadLetters(args) => activity_relay::cli::dead_letters(&args),
        Command::Drain(args) => activity_relay::cli::drain(&args),
    }
}
