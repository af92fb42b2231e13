//! `strata cluster status|remove`: the cluster as a node sees it, over the
//! HTTP API (`/v1/cluster`).

use clap::Subcommand;

use super::ClientOpts;
use super::output::{Out, Output};

#[derive(clap::Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Nodes, their liveness, the metadata leader, term and commit index.
    Status,
    /// Remove a node from the metadata group and the broker list.
    Remove { node: u64 },
}

async fn error_of(resp: reqwest::Response) -> anyhow::Error {
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    let message = body["error"]["message"].as_str().unwrap_or("no message");
    anyhow::anyhow!("{status}: {message}")
}

pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let base = super::server_url(&args.client.server);
    let http = reqwest::Client::new();
    let mut out = Out::default();
    let printed = match args.command {
        ClusterCommand::Status => {
            let resp = http.get(format!("{base}/v1/cluster")).send().await?;
            if !resp.status().is_success() {
                return Err(error_of(resp).await);
            }
            let status: serde_json::Value = resp.json().await?;
            match args.client.output {
                Output::Json => out.line(&status),
                Output::Human => print_status(&mut out, &status),
            }
        }
        ClusterCommand::Remove { node } => {
            let resp = http
                .delete(format!("{base}/v1/cluster/nodes/{node}"))
                .send()
                .await?;
            if !resp.status().is_success() {
                return Err(error_of(resp).await);
            }
            out.line(format_args!("removed node {node}"))
        }
    };
    Out::finish(printed.and_then(|()| out.flush()))
}

fn print_status(out: &mut Out, s: &serde_json::Value) -> std::io::Result<()> {
    let raft = &s["raft"];
    out.line(format_args!(
        "metadata leader: {}  term: {}  commit index: {}  (answered by node {}, {})",
        raft["leader"]
            .as_u64()
            .map_or("none".to_string(), |l| format!("node {l}")),
        raft["term"],
        raft["commit_index"],
        s["node_id"],
        raft["state"].as_str().unwrap_or("?"),
    ))?;
    out.line(format_args!(
        "{:<6} {:<6} {:<22} {:<22} {:<10} {:<12} ROLES",
        "NODE", "ALIVE", "API", "KAFKA", "ZONE", "RAFT"
    ))?;
    let voters: Vec<u64> = raft["voters"]
        .as_array()
        .map(|v| v.iter().filter_map(|x| x.as_u64()).collect())
        .unwrap_or_default();
    for b in s["brokers"].as_array().into_iter().flatten() {
        let id = b["node_id"].as_u64().unwrap_or(0);
        let role = if raft["leader"].as_u64() == Some(id) {
            "leader"
        } else if voters.contains(&id) {
            "voter"
        } else {
            "learner"
        };
        out.line(format_args!(
            "{:<6} {:<6} {:<22} {:<22} {:<10} {:<12} {}",
            id,
            if b["alive"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            b["api_addr"].as_str().unwrap_or(""),
            b["kafka_addr"].as_str().unwrap_or("-"),
            b["zone"].as_str().unwrap_or(""),
            role,
            b["roles"]
                .as_array()
                .map(|r| r
                    .iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(","))
                .unwrap_or_default(),
        ))?;
    }
    let partitions = s["partitions"].as_array().map_or(&[][..], |v| v.as_slice());
    if !partitions.is_empty() {
        out.line(format_args!(
            "{:<48} {:<7} {:<6} REPLICAS",
            "PARTITION", "LEADER", "EPOCH"
        ))?;
        for p in partitions {
            out.line(format_args!(
                "{:<48} {:<7} {:<6} {}",
                p["partition"].as_str().unwrap_or(""),
                p["leader"],
                p["leader_epoch"],
                p["replicas"]
            ))?;
        }
    }
    Ok(())
}
