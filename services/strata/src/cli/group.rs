//! `strata group`.

use clap::Subcommand;
use serde_json::json;
use strata_api::proto;

use super::output::{Out, Output, table};
use super::{ClientOpts, status_error};

#[derive(clap::Args)]
pub struct GroupArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    #[command(subcommand)]
    pub command: GroupCommand,
}

#[derive(Subcommand)]
pub enum GroupCommand {
    /// Print a group's committed offsets.
    Offsets {
        group: String,
        /// Only this topic's offsets.
        #[arg(long)]
        topic: Option<String>,
    },
    /// Set a group's offset for one partition (e.g. to rewind it).
    Commit {
        group: String,
        #[arg(long)]
        topic: String,
        #[arg(long, short = 'p')]
        partition: u32,
        /// The next offset the group will consume.
        #[arg(long)]
        offset: u64,
    },
}

pub async fn run(args: GroupArgs) -> anyhow::Result<()> {
    let opts = args.client;
    let mut client = opts.connect().await?;
    let mut out = Out::default();
    let result = match args.command {
        GroupCommand::Offsets { group, topic } => {
            let req = proto::FetchOffsetsRequest {
                tenant: opts.tenant.clone(),
                group: group.clone(),
            };
            let mut offsets = client
                .fetch_offsets(req)
                .await
                .map_err(status_error)?
                .into_inner()
                .offsets;
            if let Some(topic) = &topic {
                offsets.retain(|o| &o.topic == topic);
            }
            offsets.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
            print_offsets(&mut out, opts.output, &group, &offsets)
        }
        GroupCommand::Commit {
            group,
            topic,
            partition,
            offset,
        } => {
            let offsets = vec![proto::GroupOffset {
                topic,
                partition,
                offset,
                metadata: String::new(),
            }];
            let req = proto::CommitOffsetsRequest {
                tenant: opts.tenant.clone(),
                group: group.clone(),
                offsets,
            };
            client
                .commit_offsets(req.clone())
                .await
                .map_err(status_error)?;
            print_offsets(&mut out, opts.output, &group, &req.offsets)
        }
    };
    Out::finish(result.and_then(|()| out.flush()))
}

fn print_offsets(
    out: &mut Out,
    output: Output,
    group: &str,
    offsets: &[proto::GroupOffset],
) -> std::io::Result<()> {
    match output {
        Output::Json => {
            let list: Vec<_> = offsets
                .iter()
                .map(|o| json!({"topic": o.topic, "partition": o.partition, "offset": o.offset, "metadata": o.metadata}))
                .collect();
            out.line(json!({"group": group, "offsets": list}))
        }
        Output::Human => {
            let mut rows = vec![vec![
                "TOPIC".into(),
                "PARTITION".into(),
                "OFFSET".into(),
                "METADATA".into(),
            ]];
            for o in offsets {
                rows.push(vec![
                    o.topic.clone(),
                    o.partition.to_string(),
                    o.offset.to_string(),
                    o.metadata.clone(),
                ]);
            }
            for line in table(&rows) {
                out.line(line.trim_end())?;
            }
            Ok(())
        }
    }
}
