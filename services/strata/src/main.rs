//! `strata`: the server, the command-line client and the load generator in one binary.

mod bench;
mod cli;
mod cluster;
mod config;
mod grpc;
mod http;
mod server;
mod state;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "Strata: an event streaming platform (Kafka's model, rebuilt for the cloud)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a Strata node.
    Server(Box<config::ServerArgs>),
    /// Manage tenants.
    Tenant(cli::tenant::TenantArgs),
    /// Manage topics.
    Topic(cli::topic::TopicArgs),
    /// Produce records read from stdin, one per line.
    Produce(cli::produce::ProduceArgs),
    /// Consume records and print them, one per line.
    Consume(cli::consume::ConsumeArgs),
    /// Consumer group offsets.
    Group(cli::group::GroupArgs),
    /// Load generator: produce, consume or end-to-end over gRPC sessions.
    Bench(bench::BenchArgs),
    /// The cluster: nodes, liveness, the metadata leader.
    Cluster(cli::cluster::ClusterArgs),
    /// The metadata group: restore it from the bucket.
    Meta(cli::meta::MetaArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => server::run(*args).await,
            Command::Tenant(args) => cli::tenant::run(args).await,
            Command::Topic(args) => cli::topic::run(args).await,
            Command::Produce(args) => cli::produce::run(args).await,
            Command::Consume(args) => cli::consume::run(args).await,
            Command::Group(args) => cli::group::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Cluster(args) => cli::cluster::run(args).await,
            Command::Meta(args) => cli::meta::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
