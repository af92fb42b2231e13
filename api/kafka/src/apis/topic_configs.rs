//! Kafka's topic config names over Strata's [`TopicConfig`]: parsing the
//! values clients send, turning a change into the [`TopicConfigPatch`] the
//! broker applies, and listing a topic's configs as DescribeConfigs and
//! CreateTopics report them. Also [`Failure`], the error of the admin APIs.

use kafka_protocol::protocol::StrBytes;
use strata_api::{ApiError, ErrorCode};
use strata_broker::{TopicConfig, TopicConfigPatch};

use crate::errors;

/// Kafka's config types (DescribeConfigs v3+).
pub(crate) const TYPE_BOOLEAN: i8 = 1;
pub(crate) const TYPE_STRING: i8 = 2;
pub(crate) const TYPE_INT: i8 = 3;
pub(crate) const TYPE_LONG: i8 = 5;
pub(crate) const TYPE_LIST: i8 = 7;

/// Kafka's config sources.
pub(crate) const SOURCE_DYNAMIC_TOPIC: i8 = 1;
pub(crate) const SOURCE_STATIC_BROKER: i8 = 4;
pub(crate) const SOURCE_DEFAULT: i8 = 5;

/// Resource types of the config APIs.
pub(crate) const RESOURCE_TOPIC: i8 = 2;
pub(crate) const RESOURCE_BROKER: i8 = 4;

/// An admin operation that failed, as Kafka reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub code: i16,
    pub message: String,
}

impl Failure {
    pub fn new(code: i16, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    pub fn invalid_config(message: impl Into<String>) -> Failure {
        Failure::new(errors::INVALID_CONFIG, message)
    }

    pub fn invalid_request(message: impl Into<String>) -> Failure {
        Failure::new(errors::INVALID_REQUEST, message)
    }

    /// The message for a response's error-message field.
    pub fn message(&self) -> Option<StrBytes> {
        Some(StrBytes::from_string(self.message.clone()))
    }
}

impl From<ApiError> for Failure {
    /// The broker's error, with config fields under their Kafka names.
    fn from(e: ApiError) -> Failure {
        let message = if e.code == ErrorCode::InvalidConfig {
            kafka_names(&e.message)
        } else {
            e.message.clone()
        };
        Failure::new(errors::code(&e), message)
    }
}

/// `message` with every field's Strata name (a whole word: `retention_ms`,
/// not the tail of `local_retention_ms`) replaced by its Kafka name.
fn kafka_names(message: &str) -> String {
    fn flush(word: &mut String, out: &mut String) {
        match Field::ALL.iter().find(|f| f.strata_name() == word.as_str()) {
            Some(f) => out.push_str(f.kafka_name()),
            None => out.push_str(word),
        }
        word.clear();
    }
    let mut out = String::with_capacity(message.len());
    let mut word = String::new();
    for c in message.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// The code and message of a result: `(0, None)` for success.
pub(crate) fn outcome<T>(result: &Result<T, Failure>) -> (i16, Option<StrBytes>) {
    match result {
        Ok(_) => (errors::NONE, None),
        Err(f) => (f.code, f.message()),
    }
}

/// A topic config Strata keeps per topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    RetentionMs,
    RetentionBytes,
    SegmentBytes,
    SegmentMs,
    MaxMessageBytes,
    LocalRetentionMs,
    LocalRetentionBytes,
    MinInsyncReplicas,
}

impl Field {
    pub const ALL: [Field; 8] = [
        Field::RetentionMs,
        Field::RetentionBytes,
        Field::SegmentBytes,
        Field::SegmentMs,
        Field::MaxMessageBytes,
        Field::LocalRetentionMs,
        Field::LocalRetentionBytes,
        Field::MinInsyncReplicas,
    ];

    pub fn get(self, c: &TopicConfig) -> i64 {
        match self {
            Field::RetentionMs => c.retention_ms,
            Field::RetentionBytes => c.retention_bytes,
            Field::SegmentBytes => c.segment_bytes,
            Field::SegmentMs => c.segment_ms,
            Field::MaxMessageBytes => c.max_message_bytes,
            Field::LocalRetentionMs => c.local_retention_ms,
            Field::LocalRetentionBytes => c.local_retention_bytes,
            Field::MinInsyncReplicas => c.min_insync_replicas,
        }
    }

    fn slot(self, p: &mut TopicConfigPatch) -> &mut Option<i64> {
        match self {
            Field::RetentionMs => &mut p.retention_ms,
            Field::RetentionBytes => &mut p.retention_bytes,
            Field::SegmentBytes => &mut p.segment_bytes,
            Field::SegmentMs => &mut p.segment_ms,
            Field::MaxMessageBytes => &mut p.max_message_bytes,
            Field::LocalRetentionMs => &mut p.local_retention_ms,
            Field::LocalRetentionBytes => &mut p.local_retention_bytes,
            Field::MinInsyncReplicas => &mut p.min_insync_replicas,
        }
    }

    /// The name in the broker's messages.
    fn strata_name(self) -> &'static str {
        match self {
            Field::RetentionMs => "retention_ms",
            Field::RetentionBytes => "retention_bytes",
            Field::SegmentBytes => "segment_bytes",
            Field::SegmentMs => "segment_ms",
            Field::MaxMessageBytes => "max_message_bytes",
            Field::LocalRetentionMs => "local_retention_ms",
            Field::LocalRetentionBytes => "local_retention_bytes",
            Field::MinInsyncReplicas => "min_insync_replicas",
        }
    }

    fn kafka_name(self) -> &'static str {
        DEFS.iter()
            .find(|d| d.value == Value::Field(self))
            .map_or("", |d| d.name)
    }
}

/// Where a config's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Value {
    /// Kept per topic.
    Field(Field),
    /// The only value Strata has; setting it to that value is accepted.
    Fixed {
        value: &'static str,
        reason: &'static str,
    },
}

/// A topic config under its Kafka name.
#[derive(Debug)]
pub(crate) struct Def {
    pub name: &'static str,
    pub value: Value,
    pub config_type: i8,
    /// The broker setting the default comes from (Kafka's synonym).
    pub broker_name: &'static str,
    pub doc: &'static str,
}

/// Every topic config Strata knows, in the order they are described.
pub(crate) const DEFS: [Def; 10] = [
    Def {
        name: "cleanup.policy",
        value: Value::Fixed {
            value: "delete",
            reason: "compaction is not supported",
        },
        config_type: TYPE_LIST,
        broker_name: "log.cleanup.policy",
        doc: "Old data is deleted by retention.ms and retention.bytes; topics are never compacted.",
    },
    Def {
        name: "compression.type",
        value: Value::Fixed {
            value: "producer",
            reason: "batches are stored as the producer compressed them",
        },
        config_type: TYPE_STRING,
        broker_name: "compression.type",
        doc: "Batches are stored as the producer compressed them.",
    },
    Def {
        name: "local.retention.bytes",
        value: Value::Field(Field::LocalRetentionBytes),
        config_type: TYPE_LONG,
        broker_name: "log.local.retention.bytes",
        doc: "Per partition: segments already in remote storage are deleted from local disk while the local copy is larger; -1: no limit; -2: the value of retention.bytes.",
    },
    Def {
        name: "local.retention.ms",
        value: Value::Field(Field::LocalRetentionMs),
        config_type: TYPE_LONG,
        broker_name: "log.local.retention.ms",
        doc: "Segments already in remote storage are deleted from local disk once older than this; -1: never by age; -2: the value of retention.ms.",
    },
    Def {
        name: "max.message.bytes",
        value: Value::Field(Field::MaxMessageBytes),
        config_type: TYPE_INT,
        broker_name: "message.max.bytes",
        doc: "Largest record the topic accepts.",
    },
    Def {
        name: "min.insync.replicas",
        value: Value::Field(Field::MinInsyncReplicas),
        config_type: TYPE_INT,
        broker_name: "min.insync.replicas",
        doc: "An acks=all write needs this many replicas in sync, and is acknowledged once this many (and a majority of the replicas) hold it.",
    },
    Def {
        name: "retention.bytes",
        value: Value::Field(Field::RetentionBytes),
        config_type: TYPE_LONG,
        broker_name: "log.retention.bytes",
        doc: "Per partition: the oldest segments are deleted while the partition is larger; -1: no limit.",
    },
    Def {
        name: "retention.ms",
        value: Value::Field(Field::RetentionMs),
        config_type: TYPE_LONG,
        broker_name: "log.retention.ms",
        doc: "Segments whose records are all older than this are deleted; -1: kept forever.",
    },
    Def {
        name: "segment.bytes",
        value: Value::Field(Field::SegmentBytes),
        config_type: TYPE_INT,
        broker_name: "log.segment.bytes",
        doc: "Size at which a partition's active segment is sealed.",
    },
    Def {
        name: "segment.ms",
        value: Value::Field(Field::SegmentMs),
        config_type: TYPE_LONG,
        broker_name: "log.roll.ms",
        doc: "Age at which a partition's active segment is sealed, even if not full.",
    },
];

pub(crate) fn find(name: &str) -> Option<&'static Def> {
    DEFS.iter().find(|d| d.name == name)
}

fn find_or_fail(name: &str) -> Result<&'static Def, Failure> {
    find(name).ok_or_else(|| Failure::invalid_config(format!("Unknown topic config name: {name}")))
}

/// A change to one config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op<'a> {
    Set(&'a str),
    /// Back to the default.
    Delete,
    /// List configs only: add these items.
    Append(&'a str),
    /// List configs only: remove these items.
    Subtract(&'a str),
}

impl<'a> Op<'a> {
    /// IncrementalAlterConfigs' operation `code` on config `name`.
    pub fn incremental(name: &str, code: i8, value: Option<&'a str>) -> Result<Op<'a>, Failure> {
        let value = || {
            value.ok_or_else(|| {
                Failure::invalid_request(format!("Null value not supported for : {name}"))
            })
        };
        match code {
            0 => Ok(Op::Set(value()?)),
            1 => Ok(Op::Delete),
            2 => Ok(Op::Append(value()?)),
            3 => Ok(Op::Subtract(value()?)),
            other => Err(Failure::invalid_request(format!(
                "unknown config operation {other} for {name}: 0 sets, 1 deletes, 2 appends, 3 subtracts"
            ))),
        }
    }
}

/// The items of a list config's value.
fn items(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn parse_number(def: &Def, value: &str) -> Result<i64, Failure> {
    let trimmed = value.trim();
    let (parsed, type_name) = if def.config_type == TYPE_INT {
        (trimmed.parse::<i32>().map(i64::from).ok(), "INT")
    } else {
        (trimmed.parse::<i64>().ok(), "LONG")
    };
    parsed.ok_or_else(|| {
        Failure::invalid_config(format!(
            "Invalid value {value} for configuration {}: Not a number of type {type_name}",
            def.name
        ))
    })
}

fn not_supported(def: &Def, given: &str, fixed: &str, reason: &str) -> Failure {
    Failure::invalid_config(format!(
        "invalid value {given:?} for {}: {reason}; the only value supported is {fixed:?}",
        def.name
    ))
}

/// Applies `op` on config `name` to `patch`; a deleted config goes back to
/// its value in `defaults`.
pub(crate) fn apply(
    patch: &mut TopicConfigPatch,
    defaults: &TopicConfig,
    name: &str,
    op: Op<'_>,
) -> Result<(), Failure> {
    let def = find_or_fail(name)?;
    if def.config_type != TYPE_LIST {
        let verb = match op {
            Op::Append(_) => Some("append"),
            Op::Subtract(_) => Some("subtract"),
            _ => None,
        };
        if let Some(verb) = verb {
            return Err(Failure::invalid_config(format!(
                "Config value {verb} is not allowed for config key: {name}"
            )));
        }
    }
    match (def.value, op) {
        (Value::Field(f), Op::Set(v)) => *f.slot(patch) = Some(parse_number(def, v)?),
        (Value::Field(f), Op::Delete) => *f.slot(patch) = Some(f.get(defaults)),
        // Only list configs get here, and none is a field.
        (Value::Field(_), Op::Append(_) | Op::Subtract(_)) | (Value::Fixed { .. }, Op::Delete) => {}
        (Value::Fixed { value, reason }, Op::Set(v)) => {
            let ok = if def.config_type == TYPE_LIST {
                items(v).next().is_some() && items(v).all(|i| i == value)
            } else {
                v.trim() == value
            };
            if !ok {
                return Err(not_supported(def, v, value, reason));
            }
        }
        (Value::Fixed { value, reason }, Op::Append(v)) => {
            if let Some(other) = items(v).find(|&i| i != value) {
                return Err(not_supported(def, other, value, reason));
            }
        }
        (Value::Fixed { value, .. }, Op::Subtract(v)) => {
            if items(v).any(|i| i == value) {
                return Err(Failure::invalid_config(format!(
                    "{name} cannot lose {value:?}: it is the only value supported"
                )));
            }
        }
    }
    Ok(())
}

/// CreateTopics: the configs given are set; the rest keep the broker's defaults.
pub(crate) fn create_patch<'a>(
    defaults: &TopicConfig,
    configs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> Result<TopicConfigPatch, Failure> {
    let mut patch = TopicConfigPatch::default();
    for (name, value) in configs {
        let value = value.ok_or_else(|| {
            Failure::invalid_config(format!(
                "Null value not supported for topic configs: {name}"
            ))
        })?;
        apply(&mut patch, defaults, name, Op::Set(value))?;
    }
    Ok(patch)
}

/// AlterConfigs: the configs given replace the topic's; every other goes
/// back to its default (so does one given without a value).
pub(crate) fn replace_patch<'a>(
    defaults: &TopicConfig,
    configs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> Result<TopicConfigPatch, Failure> {
    let mut patch = TopicConfigPatch::default();
    for f in Field::ALL {
        *f.slot(&mut patch) = Some(f.get(defaults));
    }
    for (name, value) in configs {
        let op = value.map_or(Op::Delete, Op::Set);
        apply(&mut patch, defaults, name, op)?;
    }
    Ok(patch)
}

/// IncrementalAlterConfigs: `(name, operation, value)` in order; configs not
/// named keep their values. A config named twice is a bad request (as Kafka).
pub(crate) fn incremental_patch<'a>(
    defaults: &TopicConfig,
    ops: impl IntoIterator<Item = (&'a str, i8, Option<&'a str>)>,
) -> Result<TopicConfigPatch, Failure> {
    let mut patch = TopicConfigPatch::default();
    let mut seen = std::collections::HashSet::new();
    for (name, code, value) in ops {
        if !seen.insert(name) {
            return Err(Failure::invalid_request(format!(
                "Error due to duplicate config keys: {name}"
            )));
        }
        apply(
            &mut patch,
            defaults,
            name,
            Op::incremental(name, code, value)?,
        )?;
    }
    Ok(patch)
}

/// `config` with every field `patch` sets.
pub(crate) fn patched(mut config: TopicConfig, patch: &TopicConfigPatch) -> TopicConfig {
    let mut patch = *patch;
    for f in Field::ALL {
        if let Some(v) = *f.slot(&mut patch) {
            match f {
                Field::RetentionMs => config.retention_ms = v,
                Field::RetentionBytes => config.retention_bytes = v,
                Field::SegmentBytes => config.segment_bytes = v,
                Field::SegmentMs => config.segment_ms = v,
                Field::MaxMessageBytes => config.max_message_bytes = v,
                Field::LocalRetentionMs => config.local_retention_ms = v,
                Field::LocalRetentionBytes => config.local_retention_bytes = v,
                Field::MinInsyncReplicas => config.min_insync_replicas = v,
            }
        }
    }
    config
}

/// One config of a topic as described.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub def: &'static Def,
    pub value: String,
    /// [`SOURCE_DYNAMIC_TOPIC`] when the topic's value is not the default.
    pub source: i8,
    /// The broker's default.
    pub default: String,
}

/// Every config of a topic with `config`, given the broker's `defaults`.
pub(crate) fn describe(config: &TopicConfig, defaults: &TopicConfig) -> Vec<Entry> {
    DEFS.iter()
        .map(|def| {
            let (value, default) = match def.value {
                Value::Field(f) => (f.get(config), f.get(defaults)),
                Value::Fixed { value, .. } => {
                    let v = value.to_string();
                    return Entry {
                        def,
                        value: v.clone(),
                        source: SOURCE_DEFAULT,
                        default: v,
                    };
                }
            };
            Entry {
                def,
                value: value.to_string(),
                source: if value == default {
                    SOURCE_DEFAULT
                } else {
                    SOURCE_DYNAMIC_TOPIC
                },
                default: default.to_string(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> TopicConfig {
        TopicConfig::default()
    }

    fn create(configs: &[(&str, Option<&str>)]) -> Result<TopicConfigPatch, Failure> {
        create_patch(&d(), configs.iter().copied())
    }

    fn fails(r: Result<TopicConfigPatch, Failure>, code: i16, needle: &str) {
        let f = r.unwrap_err();
        assert_eq!(f.code, code, "{f:?}");
        assert!(
            f.message.contains(needle),
            "{:?} lacks {needle:?}",
            f.message
        );
    }

    #[test]
    fn every_field_has_one_kafka_name() {
        for f in Field::ALL {
            let defs: Vec<&Def> = DEFS.iter().filter(|d| d.value == Value::Field(f)).collect();
            assert_eq!(defs.len(), 1, "{f:?}");
            assert_eq!(f.kafka_name(), defs[0].name);
        }
        for (i, def) in DEFS.iter().enumerate() {
            assert!(
                DEFS[i + 1..].iter().all(|o| o.name != def.name),
                "{}",
                def.name
            );
            assert!(find(def.name).is_some());
        }
    }

    #[test]
    fn kafka_names_map_to_the_patch() {
        let patch = create(&[
            ("retention.ms", Some("60000")),
            ("retention.bytes", Some("-1")),
            ("segment.bytes", Some(" 1048576 ")),
            ("segment.ms", Some("3600000")),
            ("max.message.bytes", Some("2048")),
            ("local.retention.ms", Some("-2")),
            ("local.retention.bytes", Some("10737418240")),
            ("cleanup.policy", Some("delete")),
            ("compression.type", Some("producer")),
            ("min.insync.replicas", Some("1")),
        ])
        .unwrap();
        assert_eq!(
            patch,
            TopicConfigPatch {
                retention_ms: Some(60_000),
                retention_bytes: Some(-1),
                segment_bytes: Some(1_048_576),
                segment_ms: Some(3_600_000),
                max_message_bytes: Some(2048),
                local_retention_ms: Some(-2),
                local_retention_bytes: Some(10 << 30),
                min_insync_replicas: Some(1),
            }
        );
        assert_eq!(create(&[]).unwrap(), TopicConfigPatch::default());
    }

    #[test]
    fn bad_names_and_values_are_invalid_config() {
        let invalid = errors::INVALID_CONFIG;
        fails(
            create(&[("retention.hours", Some("1"))]),
            invalid,
            "Unknown topic config name: retention.hours",
        );
        fails(
            create(&[("retention.ms", Some("soon"))]),
            invalid,
            "Invalid value soon for configuration retention.ms: Not a number of type LONG",
        );
        fails(
            create(&[("segment.bytes", Some("4294967296"))]),
            invalid,
            "type INT",
        );
        fails(
            create(&[("local.retention.ms", Some("10m"))]),
            invalid,
            "Invalid value 10m for configuration local.retention.ms: Not a number of type LONG",
        );
        fails(
            create(&[("local.retention.bytes", Some(""))]),
            invalid,
            "local.retention.bytes",
        );
        fails(create(&[("retention.ms", None)]), invalid, "Null value");
        fails(
            create(&[("cleanup.policy", Some("compact"))]),
            invalid,
            "compaction is not supported",
        );
        fails(
            create(&[("cleanup.policy", Some("compact,delete"))]),
            invalid,
            "compaction is not supported",
        );
        fails(
            create(&[("cleanup.policy", Some(""))]),
            invalid,
            "cleanup.policy",
        );
        fails(
            create(&[("compression.type", Some("zstd"))]),
            invalid,
            "as the producer compressed them",
        );
        assert!(create(&[("cleanup.policy", Some(" delete , delete"))]).is_ok());
    }

    #[test]
    fn replace_resets_what_is_not_given() {
        let mut defaults = d();
        defaults.retention_ms = 1000;
        let patch = replace_patch(
            &defaults,
            [("segment.ms", Some("5000")), ("retention.bytes", None)],
        )
        .unwrap();
        let topic = TopicConfig {
            retention_ms: 7,
            retention_bytes: 8,
            local_retention_ms: -2,
            local_retention_bytes: 9,
            ..d()
        };
        let after = patched(topic, &patch);
        assert_eq!(
            after,
            TopicConfig {
                segment_ms: 5000,
                ..defaults
            }
        );
        let patch = replace_patch(&defaults, [("local.retention.ms", Some("-2"))]).unwrap();
        assert_eq!(
            patched(topic, &patch),
            TopicConfig {
                local_retention_ms: -2,
                ..defaults
            }
        );
    }

    #[test]
    fn incremental_operations() {
        let mut defaults = d();
        defaults.retention_ms = 1000;
        let topic = TopicConfig {
            retention_ms: 7,
            segment_ms: 9,
            local_retention_ms: 5000,
            ..d()
        };
        let inc = |ops: &[(&'static str, i8, Option<&'static str>)]| {
            incremental_patch(&defaults, ops.iter().copied())
        };
        let patch = inc(&[
            ("retention.ms", 1, None),
            ("max.message.bytes", 0, Some("4096")),
            ("cleanup.policy", 2, Some("delete")),
            ("compression.type", 1, None),
            ("local.retention.ms", 1, None),
            ("local.retention.bytes", 0, Some("-2")),
        ])
        .unwrap();
        assert_eq!(
            patched(topic, &patch),
            TopicConfig {
                retention_ms: 1000,
                max_message_bytes: 4096,
                local_retention_ms: d().local_retention_ms,
                local_retention_bytes: -2,
                ..topic
            }
        );
        fails(
            inc(&[("local.retention.bytes", 2, Some("1"))]),
            errors::INVALID_CONFIG,
            "Config value append is not allowed for config key: local.retention.bytes",
        );
        assert!(inc(&[("cleanup.policy", 3, Some("compact"))]).is_ok());
        let invalid = errors::INVALID_CONFIG;
        let request = errors::INVALID_REQUEST;
        fails(
            inc(&[("retention.ms", 2, Some("1"))]),
            invalid,
            "Config value append is not allowed for config key: retention.ms",
        );
        fails(inc(&[("retention.ms", 3, Some("1"))]), invalid, "subtract");
        fails(
            inc(&[("cleanup.policy", 2, Some("compact"))]),
            invalid,
            "compaction is not supported",
        );
        fails(
            inc(&[("cleanup.policy", 3, Some("delete"))]),
            invalid,
            "only value",
        );
        fails(inc(&[("retention.ms", 0, None)]), request, "Null value");
        fails(
            inc(&[("retention.ms", 4, Some("1"))]),
            request,
            "unknown config operation 4",
        );
        fails(
            inc(&[("retention.ms", -1, Some("1"))]),
            request,
            "operation -1",
        );
        fails(
            inc(&[("nope", 1, None)]),
            invalid,
            "Unknown topic config name: nope",
        );
        fails(
            inc(&[("segment.ms", 0, Some("1")), ("segment.ms", 1, None)]),
            request,
            "duplicate config keys",
        );
    }

    #[test]
    fn describe_tells_defaults_from_topic_values() {
        let topic = TopicConfig {
            retention_ms: -1,
            local_retention_bytes: -2,
            ..d()
        };
        let entries = describe(&topic, &d());
        assert_eq!(entries.len(), DEFS.len());
        let get = |name: &str| entries.iter().find(|e| e.def.name == name).unwrap();
        let r = get("retention.ms");
        assert_eq!((r.value.as_str(), r.source), ("-1", SOURCE_DYNAMIC_TOPIC));
        assert_eq!(r.default, d().retention_ms.to_string());
        let s = get("segment.bytes");
        assert_eq!(s.value, d().segment_bytes.to_string());
        assert_eq!(s.source, SOURCE_DEFAULT);
        let c = get("cleanup.policy");
        assert_eq!((c.value.as_str(), c.source), ("delete", SOURCE_DEFAULT));
        assert_eq!(c.def.config_type, TYPE_LIST);
        let l = get("local.retention.bytes");
        assert_eq!((l.value.as_str(), l.source), ("-2", SOURCE_DYNAMIC_TOPIC));
        assert_eq!(l.default, "-1");
        assert_eq!(
            (l.def.config_type, l.def.broker_name),
            (TYPE_LONG, "log.local.retention.bytes")
        );
        let l = get("local.retention.ms");
        assert_eq!((l.value.as_str(), l.source), ("600000", SOURCE_DEFAULT));
        assert_eq!(l.def.broker_name, "log.local.retention.ms");
        let names: Vec<&str> = entries.iter().map(|e| e.def.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted, "described in name order");
    }

    #[test]
    fn broker_errors_use_kafka_names() {
        let e = ApiError::new(
            ErrorCode::InvalidConfig,
            "invalid topic config: max_message_bytes is 0, it must be between 1 and 8",
        );
        let f = Failure::from(e);
        assert_eq!(f.code, errors::INVALID_CONFIG);
        assert_eq!(
            f.message,
            "invalid topic config: max.message.bytes is 0, it must be between 1 and 8"
        );
        let f = Failure::from(ApiError::new(
            ErrorCode::InvalidConfig,
            "invalid topic config: local_retention_ms is -3, it must be at least -2",
        ));
        assert_eq!(
            f.message,
            "invalid topic config: local.retention.ms is -3, it must be at least -2"
        );
        let f = Failure::from(ApiError::new(
            ErrorCode::InvalidConfig,
            "invalid topic config: local_retention_bytes is -3; retention_bytes is -1",
        ));
        assert_eq!(
            f.message,
            "invalid topic config: local.retention.bytes is -3; retention.bytes is -1"
        );
        let f = Failure::from(ApiError::new(ErrorCode::TopicNotFound, "segment_ms"));
        assert_eq!(
            (f.code, f.message.as_str()),
            (errors::UNKNOWN_TOPIC_OR_PARTITION, "segment_ms")
        );
    }
}

/// What the admin APIs' tests share: a broker in a temporary directory
/// behind the listener's shared state.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;

    use kafka_protocol::messages::{ApiKey, ResponseKind};

    use crate::config::KafkaConfig;
    use crate::context::{Session, Shared};

    pub(crate) struct Fixture {
        pub shared: Shared,
        pub session: Session,
        _dir: tempfile::TempDir,
    }

    pub(crate) async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let broker = strata_broker::Broker::open(strata_broker::BrokerConfig::new(dir.path()))
            .await
            .unwrap();
        let config = KafkaConfig {
            default_partitions: 2,
            ..KafkaConfig::default()
        };
        let session = Session::new(&config);
        let shared = Shared {
            broker: Arc::clone(&broker),
            groups: crate::group::Coordinator::new(&config),
            producers: crate::producers::Producers::new(),
            config,
        };
        Fixture {
            shared,
            session,
            _dir: dir,
        }
    }

    /// Fails the test unless `response` encodes as an `api` response at `version`.
    pub(crate) fn encodes(api: ApiKey, version: i16, response: ResponseKind) {
        if let Err(e) = crate::codec::encode_response(1, api, version, &response) {
            panic!("{api:?} v{version}: {e}");
        }
    }
}
