//! `strata topic`.

use anyhow::{Context as _, bail};
use clap::Subcommand;
use strata_api::proto;

use super::output::{Out, Output, table, topic_config_human, topic_json};
use super::{ClientOpts, status_error};

#[derive(clap::Args)]
pub struct TopicArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    #[command(subcommand)]
    pub command: TopicCommand,
}

#[derive(Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, short = 'p', default_value_t = 1)]
        partitions: u32,
        /// Copies of each partition, each on its own broker (default: 3, or the number of
        /// live brokers if fewer).
        #[arg(long, short = 'r')]
        replication_factor: Option<u32>,
        /// A config setting, `key=value` (repeatable or comma-separated): retention_ms,
        /// retention_bytes, segment_bytes, segment_ms, max_message_bytes, local_retention_ms,
        /// local_retention_bytes (how long and how much of what is already in the bucket stays
        /// on local disk; -2: as retention_*), min_insync_replicas. Kafka's dotted names work
        /// too (`local.retention.ms`); `_ms` values take durations (`7d`), `_bytes` values
        /// sizes (`64MiB`).
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
        config: Vec<String>,
    },
    /// List the tenant's topics.
    List,
    /// Show a topic's config and, per partition, its offsets, what is on local
    /// disk and in the bucket, and the offload lag.
    Describe { name: String },
    /// Change a topic's config (the same `--config` keys as `create`).
    Alter {
        name: String,
        #[arg(
            long = "config",
            short = 'c',
            value_name = "KEY=VALUE",
            required = true
        )]
        config: Vec<String>,
    },
    /// Delete a topic and its records.
    Delete { name: String },
}

pub async fn run(args: TopicArgs) -> anyhow::Result<()> {
    let opts = args.client;
    let mut client = opts.connect().await?;
    let tenant = opts.tenant.clone();
    let mut out = Out::default();
    let result = match args.command {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            config,
        } => {
            let config = Some(parse_config(&config)?);
            let req = proto::CreateTopicRequest {
                tenant,
                name,
                partitions,
                config,
                replication_factor,
            };
            let topic = client
                .create_topic(req)
                .await
                .map_err(status_error)?
                .into_inner();
            print_topic(&mut out, opts.output, &topic)
        }
        TopicCommand::List => {
            let req = proto::ListTopicsRequest { tenant };
            let topics = client
                .list_topics(req)
                .await
                .map_err(status_error)?
                .into_inner()
                .topics;
            print_list(&mut out, opts.output, &topics)
        }
        TopicCommand::Describe { name } => {
            let req = proto::DescribeTopicRequest {
                tenant,
                topic: name,
            };
            let topic = client
                .describe_topic(req)
                .await
                .map_err(status_error)?
                .into_inner();
            print_topic(&mut out, opts.output, &topic)
        }
        TopicCommand::Alter { name, config } => {
            let config = Some(parse_config(&config)?);
            let req = proto::AlterTopicRequest {
                tenant,
                topic: name,
                config,
            };
            let topic = client
                .alter_topic(req)
                .await
                .map_err(status_error)?
                .into_inner();
            print_topic(&mut out, opts.output, &topic)
        }
        TopicCommand::Delete { name } => {
            let req = proto::DeleteTopicRequest {
                tenant: tenant.clone(),
                topic: name.clone(),
            };
            client.delete_topic(req).await.map_err(status_error)?;
            match opts.output {
                Output::Human => out.line(format_args!("deleted topic {name}")),
                Output::Json => {
                    out.line(serde_json::json!({"tenant": tenant, "name": name, "deleted": true}))
                }
            }
        }
    };
    Out::finish(result.and_then(|()| out.flush()))
}

fn print_topic(out: &mut Out, output: Output, t: &proto::Topic) -> std::io::Result<()> {
    match output {
        Output::Json => out.line(topic_json(t)),
        Output::Human => {
            out.line(format_args!("topic:      {}", t.name))?;
            out.line(format_args!("tenant:     {}", t.tenant))?;
            out.line(format_args!(
                "partitions: {} (replication factor {})",
                t.partitions, t.replication_factor
            ))?;
            out.line(format_args!(
                "config:     {}",
                topic_config_human(&t.config.unwrap_or_default())
            ))?;
            if !t.partition_info.is_empty() {
                for line in table(&partition_rows(&t.partition_info)) {
                    out.line(line)?;
                }
            }
            Ok(())
        }
    }
}

/// The partition table of `strata topic describe`: offsets, the local and
/// remote (bucket) ranges with their sizes, and the offload lag.
fn partition_rows(partitions: &[proto::PartitionInfo]) -> Vec<Vec<String>> {
    let header = [
        "PARTITION",
        "START_OFFSET",
        "END_OFFSET",
        "LOCAL_OFFSETS",
        "LOCAL_BYTES",
        "REMOTE_OFFSETS",
        "REMOTE_BYTES",
        "REMOTE_SEGMENTS",
        "OFFLOAD_LAG_BYTES",
        "OFFLOAD_LAG_SECS",
    ];
    let mut rows = vec![header.map(String::from).to_vec()];
    for p in partitions {
        rows.push(vec![
            p.partition.to_string(),
            p.start_offset.to_string(),
            p.end_offset.to_string(),
            format!("{}..{}", p.local_start_offset, p.end_offset),
            p.local_bytes.to_string(),
            format!("{}..{}", p.remote_start_offset, p.remote_end_offset),
            p.remote_bytes.to_string(),
            p.remote_segments.to_string(),
            p.offload_lag_bytes.to_string(),
            format!("{:.1}", p.offload_lag_ms as f64 / 1000.0),
        ]);
    }
    rows
}

fn print_list(out: &mut Out, output: Output, topics: &[proto::Topic]) -> std::io::Result<()> {
    match output {
        Output::Json => {
            let list: Vec<_> = topics.iter().map(topic_json).collect();
            out.line(serde_json::Value::Array(list))
        }
        Output::Human => {
            let mut rows = vec![vec![
                "NAME".to_string(),
                "PARTITIONS".to_string(),
                "CONFIG".to_string(),
            ]];
            for t in topics {
                rows.push(vec![
                    t.name.clone(),
                    t.partitions.to_string(),
                    topic_config_human(&t.config.unwrap_or_default()),
                ]);
            }
            for line in table(&rows) {
                out.line(line)?;
            }
            Ok(())
        }
    }
}

/// `key=value` settings (each argument may hold several, comma-separated)
/// into the config patch the server applies.
pub fn parse_config(settings: &[String]) -> anyhow::Result<proto::TopicConfig> {
    let mut config = proto::TopicConfig::default();
    for setting in settings
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let Some((key, value)) = setting.split_once('=') else {
            bail!("invalid_config: {setting:?} is not key=value");
        };
        let key = key.trim().replace(['.', '-'], "_");
        let value = value.trim();
        let field = match key.as_str() {
            "retention_ms" => &mut config.retention_ms,
            "retention_bytes" => &mut config.retention_bytes,
            "segment_bytes" => &mut config.segment_bytes,
            "segment_ms" => &mut config.segment_ms,
            "max_message_bytes" => &mut config.max_message_bytes,
            "local_retention_ms" => &mut config.local_retention_ms,
            "local_retention_bytes" => &mut config.local_retention_bytes,
            "min_insync_replicas" => &mut config.min_insync_replicas,
            _ => bail!(
                "invalid_config: unknown config {key:?} (known: retention_ms, retention_bytes, \
                 segment_bytes, segment_ms, max_message_bytes, local_retention_ms, \
                 local_retention_bytes, min_insync_replicas)"
            ),
        };
        let parsed = if key.ends_with("_ms") {
            parse_millis(value)
        } else if key.ends_with("_bytes") {
            parse_bytes(value)
        } else {
            value
                .parse::<i64>()
                .with_context(|| format!("{value:?} is not a number"))
        };
        *field = Some(parsed.with_context(|| format!("invalid_config: bad value for {key}"))?);
    }
    Ok(config)
}

/// Milliseconds: a number (`-1` for "forever", `-2` for "as retention_ms")
/// or a duration such as `7d`.
fn parse_millis(value: &str) -> anyhow::Result<i64> {
    if let Ok(n) = value.parse::<i64>() {
        return Ok(n);
    }
    let d = humantime::parse_duration(value)
        .with_context(|| format!("{value:?} is not a number or a duration"))?;
    Ok(i64::try_from(d.as_millis())?)
}

/// Bytes: a number (`-1` for "no limit", `-2` for "as retention_bytes") or a
/// size such as `64MiB` or `1GB`.
fn parse_bytes(value: &str) -> anyhow::Result<i64> {
    if let Ok(n) = value.parse::<i64>() {
        return Ok(n);
    }
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: i64 = number
        .parse()
        .with_context(|| format!("{value:?} is not a number or a size"))?;
    let multiplier: i64 = match unit.trim().to_ascii_lowercase().as_str() {
        "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        _ => bail!("unknown size unit in {value:?}"),
    };
    number
        .checked_mul(multiplier)
        .with_context(|| format!("{value:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(items: &[&str]) -> anyhow::Result<proto::TopicConfig> {
        parse_config(&items.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn config_pairs_become_a_patch() -> anyhow::Result<()> {
        let c = cfg(&[
            "retention_ms=1000",
            "segment.bytes=64MiB,max-message-bytes=2048",
        ])?;
        assert_eq!(c.retention_ms, Some(1000));
        assert_eq!(c.segment_bytes, Some(64 << 20));
        assert_eq!(c.max_message_bytes, Some(2048));
        assert_eq!(c.retention_bytes, None);
        assert_eq!(c.segment_ms, None);
        assert_eq!(c.local_retention_ms, None);
        assert_eq!(c.local_retention_bytes, None);
        Ok(())
    }

    #[test]
    fn local_retention_in_every_spelling() -> anyhow::Result<()> {
        let c = cfg(&["local_retention_ms=30m", "local.retention.bytes=10GiB"])?;
        assert_eq!(c.local_retention_ms, Some(30 * 60 * 1000));
        assert_eq!(c.local_retention_bytes, Some(10 << 30));
        let c = cfg(&["local.retention.ms=-2,local-retention-bytes=-2"])?;
        assert_eq!(c.local_retention_ms, Some(-2));
        assert_eq!(c.local_retention_bytes, Some(-2));
        let c = cfg(&["local.retention.ms=-1", "local_retention_bytes=1000"])?;
        assert_eq!(c.local_retention_ms, Some(-1));
        assert_eq!(c.local_retention_bytes, Some(1000));
        assert_eq!(
            c,
            proto::TopicConfig {
                local_retention_ms: Some(-1),
                local_retention_bytes: Some(1000),
                ..Default::default()
            }
        );
        Ok(())
    }

    #[test]
    fn partition_table_shows_both_tiers_and_the_lag() {
        let rows = partition_rows(&[proto::PartitionInfo {
            partition: 1,
            start_offset: 2,
            end_offset: 30,
            local_start_offset: 20,
            local_bytes: 900,
            remote_start_offset: 2,
            remote_end_offset: 25,
            remote_bytes: 4096,
            remote_segments: 3,
            offload_lag_bytes: 512,
            offload_lag_ms: 1500,
        }]);
        assert_eq!(
            rows,
            [
                vec![
                    "PARTITION",
                    "START_OFFSET",
                    "END_OFFSET",
                    "LOCAL_OFFSETS",
                    "LOCAL_BYTES",
                    "REMOTE_OFFSETS",
                    "REMOTE_BYTES",
                    "REMOTE_SEGMENTS",
                    "OFFLOAD_LAG_BYTES",
                    "OFFLOAD_LAG_SECS",
                ],
                vec![
                    "1", "2", "30", "20..30", "900", "2..25", "4096", "3", "512", "1.5"
                ],
            ]
        );
    }

    #[test]
    fn durations_sizes_and_minus_one() -> anyhow::Result<()> {
        let c = cfg(&["retention.ms=7d", "segment_ms=-1", "retention_bytes=1GB"])?;
        assert_eq!(c.retention_ms, Some(7 * 24 * 3600 * 1000));
        assert_eq!(c.segment_ms, Some(-1));
        assert_eq!(c.retention_bytes, Some(1_000_000_000));
        assert_eq!(cfg(&[])?, proto::TopicConfig::default());
        Ok(())
    }

    #[test]
    fn bad_settings_are_invalid_config() {
        for bad in [
            "retention_ms",
            "colour=blue",
            "local_retention=5",
            "local_retention_ms=soon",
            "local.retention.bytes=5XB",
            "retention_ms=soon",
            "segment_bytes=5XB",
        ] {
            let e = cfg(&[bad])
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default();
            assert!(e.starts_with("invalid_config:"), "{bad}: {e}");
        }
    }
}
