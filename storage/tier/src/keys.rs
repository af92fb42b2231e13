//! Object keys (see `docs/tiered-storage.md`, "Key layout"):
//!
//! ```text
//! <prefix>/tenants/<tenant>/topics/<topic>-<topic id>/<partition>/<base offset, 20 digits>-<end offset, 20 digits>-<epoch>-<upload id>.seg
//! ```
//!
//! Offsets are zero-padded so that keys sort in offset order. Names are
//! validated before they get here (tenants `[a-z0-9-]`, topics
//! `[a-zA-Z0-9._-]`), but are encoded anyway so that no name can produce a
//! key of another shape: every byte outside `[A-Za-z0-9._-]` is written as
//! `+` and two upper-case hex digits, and a name that is empty, `.` or `..`
//! is escaped whole (`+`, `+2E`, `+2E+2E`). The encoding never changes a
//! valid name, and [`parse_segment_key`] accepts only canonical encodings,
//! so a key and its fields correspond one to one.

use object_store::path::{Path, PathPart};

/// Suffix of every segment object key.
pub const SEGMENT_SUFFIX: &str = ".seg";
const OFFSET_DIGITS: usize = 20;

/// The fields of a segment object key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedKey {
    /// Everything before `tenants/`.
    pub prefix: Path,
    pub tenant: String,
    pub topic: String,
    pub topic_id: u64,
    pub partition: u32,
    pub base_offset: u64,
    pub end_offset: u64,
    pub epoch: i32,
    pub upload_id: String,
}

fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// Encodes a name as one key segment; see the module docs.
fn encode(name: &str) -> String {
    match name {
        "" => "+".into(),
        "." => "+2E".into(),
        ".." => "+2E+2E".into(),
        _ => {
            let mut out = String::with_capacity(name.len());
            for &b in name.as_bytes() {
                if plain(b) {
                    out.push(char::from(b));
                } else {
                    out.push_str(&format!("+{b:02X}"));
                }
            }
            out
        }
    }
}

/// Decodes a canonical encoding made by [`encode`]; `None` otherwise.
fn decode(text: &str) -> Option<String> {
    if text == "+" {
        return Some(String::new());
    }
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'+' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = tail.get(2..)?;
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    let name = String::from_utf8(bytes).ok()?;
    (encode(&name) == text).then_some(name)
}

fn part(text: &str) -> PathPart<'static> {
    // Encoded segments hold only [A-Za-z0-9._+-] and are never `.` or `..`,
    // which `PathPart` keeps as they are.
    PathPart::from(text.to_owned())
}

fn child(path: Path, text: &str) -> Path {
    path.join(part(text))
}

/// `<prefix>/tenants/<tenant>`.
pub fn tenant_prefix(prefix: &Path, tenant: &str) -> Path {
    child(child(prefix.clone(), "tenants"), &encode(tenant))
}

/// `<prefix>/tenants/<tenant>/topics/<topic>-<topic id>`.
pub fn topic_prefix(prefix: &Path, tenant: &str, topic: &str, topic_id: u64) -> Path {
    let topic = format!("{}-{topic_id}", encode(topic));
    child(child(tenant_prefix(prefix, tenant), "topics"), &topic)
}

/// `<prefix>/tenants/<tenant>/topics/<topic>-<topic id>/<partition>`: where
/// a partition's segment objects live.
pub fn partition_prefix(
    prefix: &Path,
    tenant: &str,
    topic: &str,
    topic_id: u64,
    partition: u32,
) -> Path {
    child(
        topic_prefix(prefix, tenant, topic, topic_id),
        &partition.to_string(),
    )
}

/// The key of one upload of a segment; `upload_id` should be fresh for
/// every attempt (a random UUID), so that no upload overwrites another.
#[allow(clippy::too_many_arguments)]
pub fn segment_key(
    prefix: &Path,
    tenant: &str,
    topic: &str,
    topic_id: u64,
    partition: u32,
    base_offset: u64,
    end_offset: u64,
    epoch: i32,
    upload_id: &str,
) -> Path {
    let file = format!(
        "{base_offset:0OFFSET_DIGITS$}-{end_offset:0OFFSET_DIGITS$}-{epoch}-{}{SEGMENT_SUFFIX}",
        encode(upload_id)
    );
    child(
        partition_prefix(prefix, tenant, topic, topic_id, partition),
        &file,
    )
}

/// A fresh upload id: a random UUID (v4), hyphenated.
pub fn new_upload_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Parses a decimal written exactly as `to_string` writes it (no sign, no
/// leading zeros).
fn canonical<T: std::str::FromStr + ToString>(text: &str) -> Option<T> {
    let value: T = text.parse().ok()?;
    (value.to_string() == text).then_some(value)
}

fn offset(text: &str) -> Option<u64> {
    if text.len() != OFFSET_DIGITS || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The fields of a key [`segment_key`] made, or `None` for any other key
/// (the garbage collector's test of "one of ours").
pub fn parse_segment_key(key: &Path) -> Option<ParsedKey> {
    let parts: Vec<PathPart<'_>> = key.parts().collect();
    let [head @ .., tenants, tenant, topics, topic, partition, file] = parts.as_slice() else {
        return None;
    };
    if tenants.as_ref() != "tenants" || topics.as_ref() != "topics" {
        return None;
    }
    let (topic, topic_id) = topic.as_ref().rsplit_once('-')?;
    let file = file.as_ref().strip_suffix(SEGMENT_SUFFIX)?;
    let base = offset(file.get(..OFFSET_DIGITS)?)?;
    let file = file.get(OFFSET_DIGITS..)?.strip_prefix('-')?;
    let end = offset(file.get(..OFFSET_DIGITS)?)?;
    let file = file.get(OFFSET_DIGITS..)?.strip_prefix('-')?;
    // The epoch may be negative: an optional '-', digits, then '-'.
    let sign = usize::from(file.starts_with('-'));
    let digits = file.get(sign..)?.find(|c: char| !c.is_ascii_digit())? + sign;
    let epoch = canonical(file.get(..digits)?)?;
    let upload_id = decode(file.get(digits..)?.strip_prefix('-')?)?;
    if base > end {
        return None;
    }
    Some(ParsedKey {
        prefix: head.iter().cloned().collect(),
        tenant: decode(tenant.as_ref())?,
        topic: decode(topic)?,
        topic_id: canonical(topic_id)?,
        partition: canonical(partition.as_ref())?,
        base_offset: base,
        end_offset: end,
        epoch,
        upload_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
    use proptest::prelude::*;
    use std::sync::Arc;

    fn key(prefix: &str, upload: &str) -> Path {
        segment_key(
            &Path::from(prefix),
            "acme",
            "orders.v2-eu",
            42,
            3,
            100,
            250,
            7,
            upload,
        )
    }

    #[test]
    fn keys_follow_the_documented_layout() {
        let k = key("strata/prod", "0b6f-11");
        assert_eq!(
            k.as_ref(),
            "strata/prod/tenants/acme/topics/orders.v2-eu-42/3/\
             00000000000000000100-00000000000000000250-7-0b6f-11.seg"
        );
        let root = segment_key(&Path::default(), "a", "t", 1, 0, 0, 0, -1, "u");
        assert_eq!(
            root.as_ref(),
            "tenants/a/topics/t-1/0/00000000000000000000-00000000000000000000--1-u.seg"
        );
        assert_eq!(
            partition_prefix(&Path::from("p"), "acme", "orders.v2-eu", 42, 3).as_ref(),
            "p/tenants/acme/topics/orders.v2-eu-42/3"
        );
        assert!(k.prefix_matches(&partition_prefix(
            &Path::from("strata/prod"),
            "acme",
            "orders.v2-eu",
            42,
            3
        )));
        assert!(k.prefix_matches(&topic_prefix(
            &Path::from("strata/prod"),
            "acme",
            "orders.v2-eu",
            42
        )));
        assert!(!k.prefix_matches(&topic_prefix(
            &Path::from("strata/prod"),
            "acme",
            "orders.v2-eu",
            4
        )));
    }

    #[test]
    fn parse_inverts_segment_key() {
        let id = new_upload_id();
        let parsed = parse_segment_key(&key("strata/prod", &id)).expect("ours");
        assert_eq!(
            parsed,
            ParsedKey {
                prefix: Path::from("strata/prod"),
                tenant: "acme".into(),
                topic: "orders.v2-eu".into(),
                topic_id: 42,
                partition: 3,
                base_offset: 100,
                end_offset: 250,
                epoch: 7,
                upload_id: id,
            }
        );
        let negative = segment_key(&Path::default(), "a", "t", 1, 0, 5, 9, -1, "x-y");
        let parsed = parse_segment_key(&negative).expect("ours");
        assert_eq!((parsed.epoch, parsed.upload_id.as_str()), (-1, "x-y"));
        assert_eq!(parsed.prefix, Path::default());
    }

    #[test]
    fn foreign_keys_are_not_recognised() {
        let good = "p/tenants/a/topics/t-1/0/00000000000000000001-00000000000000000002-3-u.seg";
        assert!(parse_segment_key(&Path::from(good)).is_some());
        for bad in [
            "p/tenants/a/topics/t-1/0/00000000000000000001-00000000000000000002-3-u.tmp",
            "p/tenants/a/topics/t-1/0/1-2-3-u.seg",
            "p/tenants/a/topics/t-1/0/00000000000000000003-00000000000000000002-3-u.seg",
            "p/tenants/a/topics/t-1/0/00000000000000000001-00000000000000000002-03-u.seg",
            "p/tenants/a/topics/t-1/0/00000000000000000001-00000000000000000002-3-.seg",
            "p/tenants/a/topics/t-1/0/00000000000000000001-00000000000000000002-3.seg",
            "p/tenants/a/topics/t-1/00/00000000000000000001-00000000000000000002-3-u.seg",
            "p/tenants/a/topics/t-x/0/00000000000000000001-00000000000000000002-3-u.seg",
            "p/tenants/a/topics/t/0/00000000000000000001-00000000000000000002-3-u.seg",
            "p/tenant/a/topics/t-1/0/00000000000000000001-00000000000000000002-3-u.seg",
            "p/tenants/a/topic/t-1/0/00000000000000000001-00000000000000000002-3-u.seg",
            "p/tenants/+41/topics/t-1/0/00000000000000000001-00000000000000000002-3-u.seg",
            "tenants/a/topics/t-1/00000000000000000001-00000000000000000002-3-u.seg",
            "p/manifests/a/t-1/0/manifest.json",
        ] {
            assert_eq!(parse_segment_key(&Path::from(bad)), None, "{bad}");
        }
    }

    #[test]
    fn odd_names_are_escaped() {
        let k = segment_key(&Path::from("p"), "..", "a/b c", 1, 0, 0, 1, 0, "");
        assert_eq!(
            k.as_ref(),
            "p/tenants/+2E+2E/topics/a+2Fb+20c-1/0/00000000000000000000-00000000000000000001-0-+.seg"
        );
        let p = parse_segment_key(&k).expect("ours");
        assert_eq!((p.tenant.as_str(), p.topic.as_str()), ("..", "a/b c"));
        assert_eq!(p.upload_id, "");
    }

    #[tokio::test]
    async fn keys_survive_a_local_store_listing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn ObjectStore> = Arc::new(
            object_store::local::LocalFileSystem::new_with_prefix(dir.path()).expect("store"),
        );
        let keys = [
            key("strata", &new_upload_id()),
            segment_key(&Path::from("strata"), "t-1", "é %#", 9, 1, 0, 1, -3, "a#1"),
        ];
        for k in &keys {
            store
                .put(k, PutPayload::from_static(b"x"))
                .await
                .expect("put");
        }
        let mut listed: Vec<Path> =
            futures::TryStreamExt::try_collect::<Vec<_>>(store.list(Some(&Path::from("strata"))))
                .await
                .expect("list")
                .into_iter()
                .map(|m| m.location)
                .collect();
        listed.sort();
        let mut want = keys.to_vec();
        want.sort();
        assert_eq!(listed, want);
        for k in &listed {
            assert!(parse_segment_key(k).is_some(), "{k}");
        }
    }

    proptest! {
        #[test]
        fn any_fields_round_trip(
            prefix in "[a-z]{0,5}(/[a-z]{1,5}){0,2}",
            tenant in any::<String>(),
            topic in any::<String>(),
            topic_id in any::<u64>(),
            partition in any::<u32>(),
            (base, end) in (any::<u64>(), any::<u64>()).prop_map(|(a, b)| (a.min(b), a.max(b))),
            epoch in any::<i32>(),
            upload in any::<String>(),
        ) {
            let prefix = Path::from(prefix);
            let k = segment_key(&prefix, &tenant, &topic, topic_id, partition, base, end, epoch, &upload);
            // The key survives a round trip through its text, as a listing returns it.
            let reparsed = Path::parse(k.as_ref()).expect("valid path");
            prop_assert_eq!(&reparsed, &k);
            let p = parse_segment_key(&reparsed).expect("ours");
            prop_assert_eq!(p, ParsedKey {
                prefix, tenant, topic, topic_id, partition,
                base_offset: base, end_offset: end, epoch, upload_id: upload,
            });
        }

        #[test]
        fn parsing_never_panics(text in any::<String>()) {
            if let Some(p) = parse_segment_key(&Path::from(text.as_str())) {
                let again = segment_key(
                    &p.prefix, &p.tenant, &p.topic, p.topic_id, p.partition,
                    p.base_offset, p.end_offset, p.epoch, &p.upload_id,
                );
                prop_assert_eq!(again, Path::from(text.as_str()));
            }
        }
    }
}
