use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Relays X account activity into Kafka, NATS JetStream and RabbitMQ as CloudEvents.
#[derive(Debug, Parser)]
#[command(name = "activity-relay", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the relay.
    Run(activity_relay::cli::RunArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => activity_relay::cli::run(&args),
    }
}
