//! Printing results: human-readable text or JSON, one object per line.

use std::io::{self, BufWriter, Stdout, Write};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};
use strata_api::proto;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Output {
    #[default]
    Human,
    Json,
}

/// Buffered stdout. A closed pipe (`strata consume ... | head`) is the
/// reader saying it has enough, so [`Out::finish`] treats it as success.
pub struct Out {
    w: BufWriter<Stdout>,
}

impl Default for Out {
    fn default() -> Self {
        Out {
            w: BufWriter::new(io::stdout()),
        }
    }
}

impl Out {
    pub fn line(&mut self, text: impl std::fmt::Display) -> io::Result<()> {
        writeln!(self.w, "{text}")
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    pub fn finish(result: io::Result<()>) -> anyhow::Result<()> {
        match result {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            other => Ok(other?),
        }
    }
}

/// Bytes as a JSON string when they are UTF-8, else as base64; the second
/// value says which, so JSON consumers can decode binary keys and values.
pub fn bytes_json(b: &[u8]) -> (Value, bool) {
    match std::str::from_utf8(b) {
        Ok(s) => (Value::String(s.to_string()), false),
        Err(_) => (Value::String(BASE64.encode(b)), true),
    }
}

/// Puts `name` (and `name_encoding: "base64"` for binary bytes) into `obj`.
fn put_bytes(obj: &mut Map<String, Value>, name: &str, b: Option<&[u8]>) {
    match b {
        None => {
            obj.insert(name.to_string(), Value::Null);
        }
        Some(b) => {
            let (v, base64) = bytes_json(b);
            obj.insert(name.to_string(), v);
            if base64 {
                obj.insert(format!("{name}_encoding"), json!("base64"));
            }
        }
    }
}

pub fn record_json(partition: u32, r: &proto::ConsumedRecord) -> Value {
    let mut obj = Map::new();
    obj.insert("partition".into(), json!(partition));
    obj.insert("offset".into(), json!(r.offset));
    obj.insert("timestamp_ms".into(), json!(r.timestamp_ms));
    put_bytes(&mut obj, "key", r.key.as_deref());
    put_bytes(&mut obj, "value", r.value.as_deref());
    let headers: Vec<Value> = r
        .headers
        .iter()
        .map(|h| {
            let mut o = Map::new();
            o.insert("key".into(), json!(h.key));
            put_bytes(&mut o, "value", Some(&h.value));
            Value::Object(o)
        })
        .collect();
    obj.insert("headers".into(), Value::Array(headers));
    Value::Object(obj)
}

/// The value as text; records without a value print as an empty line.
pub fn record_human(r: &proto::ConsumedRecord) -> String {
    r.value
        .as_deref()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

pub fn topic_config_json(c: &proto::TopicConfig) -> Value {
    json!({
        "retention_ms": c.retention_ms,
        "retention_bytes": c.retention_bytes,
        "segment_bytes": c.segment_bytes,
        "segment_ms": c.segment_ms,
        "max_message_bytes": c.max_message_bytes,
        "local_retention_ms": c.local_retention_ms,
        "local_retention_bytes": c.local_retention_bytes,
        "min_insync_replicas": c.min_insync_replicas,
    })
}

/// A partition as `strata topic describe --output json` prints it: the
/// names and units of the HTTP API's `partition_info`.
pub fn partition_json(p: &proto::PartitionInfo) -> Value {
    json!({
        "partition": p.partition,
        "start_offset": p.start_offset,
        "end_offset": p.end_offset,
        "local_start_offset": p.local_start_offset,
        "local_bytes": p.local_bytes,
        "remote_start_offset": p.remote_start_offset,
        "remote_end_offset": p.remote_end_offset,
        "remote_bytes": p.remote_bytes,
        "remote_segments": p.remote_segments,
        "offload_lag_bytes": p.offload_lag_bytes,
        "offload_lag_ms": p.offload_lag_ms,
    })
}

pub fn topic_json(t: &proto::Topic) -> Value {
    let mut obj = json!({
        "tenant": t.tenant,
        "name": t.name,
        "partitions": t.partitions,
        "replication_factor": t.replication_factor,
        "config": topic_config_json(&t.config.unwrap_or_default()),
    });
    if !t.partition_info.is_empty()
        && let Some(o) = obj.as_object_mut()
    {
        let info: Vec<Value> = t.partition_info.iter().map(partition_json).collect();
        o.insert("partition_info".into(), Value::Array(info));
    }
    obj
}

/// `key=value` pairs of the config fields that are set, in a fixed order.
pub fn topic_config_human(c: &proto::TopicConfig) -> String {
    let fields = [
        ("retention_ms", c.retention_ms),
        ("retention_bytes", c.retention_bytes),
        ("segment_bytes", c.segment_bytes),
        ("segment_ms", c.segment_ms),
        ("max_message_bytes", c.max_message_bytes),
        ("local_retention_ms", c.local_retention_ms),
        ("local_retention_bytes", c.local_retention_bytes),
        ("min_insync_replicas", c.min_insync_replicas),
    ];
    fields
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
pub fn table(rows: &[Vec<String>]) -> Vec<String> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            let mut line = String::new();
            for (i, cell) in r.iter().enumerate() {
                if i + 1 == r.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
                }
            }
            line
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn record_json_keeps_text_and_encodes_binary() {
        let r = proto::ConsumedRecord {
            offset: 7,
            timestamp_ms: 1000,
            key: None,
            value: Some(Bytes::from_static(&[0xff, 0x00])),
            headers: vec![proto::Header {
                key: "h".into(),
                value: Bytes::from_static(b"v"),
            }],
        };
        let v = record_json(2, &r);
        assert_eq!(
            v,
            json!({
                "partition": 2, "offset": 7, "timestamp_ms": 1000, "key": null,
                "value": "/wA=", "value_encoding": "base64",
                "headers": [{"key": "h", "value": "v"}],
            })
        );
        assert_eq!(record_human(&r), "\u{fffd}\u{0}");
    }

    #[test]
    fn topic_json_includes_partitions_only_when_described() {
        let mut t = proto::Topic {
            tenant: "default".into(),
            name: "orders".into(),
            partitions: 1,
            config: Some(proto::TopicConfig {
                retention_ms: Some(5),
                ..Default::default()
            }),
            partition_info: vec![],
            replication_factor: 1,
        };
        assert!(topic_json(&t).get("partition_info").is_none());
        assert_eq!(topic_json(&t)["config"]["retention_ms"], json!(5));
        t.partition_info.push(proto::PartitionInfo {
            partition: 0,
            start_offset: 1,
            end_offset: 4,
            local_start_offset: 3,
            local_bytes: 70,
            remote_start_offset: 1,
            remote_end_offset: 3,
            remote_bytes: 200,
            remote_segments: 1,
            offload_lag_bytes: 70,
            offload_lag_ms: 2500,
        });
        assert_eq!(
            topic_json(&t)["partition_info"][0],
            json!({
                "partition": 0, "start_offset": 1, "end_offset": 4,
                "local_start_offset": 3, "local_bytes": 70,
                "remote_start_offset": 1, "remote_end_offset": 3,
                "remote_bytes": 200, "remote_segments": 1,
                "offload_lag_bytes": 70, "offload_lag_ms": 2500,
            })
        );
        assert_eq!(
            topic_config_human(t.config.as_ref().unwrap_or(&Default::default())),
            "retention_ms=5"
        );
        t.config = Some(proto::TopicConfig {
            retention_ms: Some(5),
            local_retention_ms: Some(-2),
            local_retention_bytes: Some(-1),
            ..Default::default()
        });
        assert_eq!(
            topic_config_human(t.config.as_ref().unwrap_or(&Default::default())),
            "retention_ms=5 local_retention_ms=-2 local_retention_bytes=-1"
        );
        let config = &topic_json(&t)["config"];
        assert_eq!(config["local_retention_ms"], json!(-2));
        assert_eq!(config["local_retention_bytes"], json!(-1));
    }

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["NAME".to_string(), "PARTITIONS".to_string()],
            vec!["orders-long".to_string(), "3".to_string()],
        ];
        assert_eq!(table(&rows), ["NAME         PARTITIONS", "orders-long  3"]);
    }
}
