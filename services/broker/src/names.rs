//! Name rules for tenants, topics and consumer groups.
//!
//! Names end up in partition keys, metric labels, URLs and Kafka requests, so
//! each rule is strict and every rejection says which rule was broken.

use strata_api::{ApiError, ErrorCode};

/// Longest tenant name: a DNS label, so tenants can become host names later.
const MAX_TENANT_LEN: usize = 63;
/// Kafka's limit (`Topic.MAX_NAME_LENGTH`).
const MAX_TOPIC_LEN: usize = 249;
/// Kafka's group ids are unbounded strings; 255 keeps them storable and printable.
const MAX_GROUP_LEN: usize = 255;

fn invalid(kind: &str, name: &str, rule: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidName,
        format!("invalid {kind} name {name:?}: {rule}"),
    )
    .with_details(serde_json::json!({ "kind": kind, "name": name }))
}

/// Tenants: `[a-z0-9][a-z0-9-]{0,62}`.
pub fn validate_tenant(name: &str) -> Result<(), ApiError> {
    const RULE: &str = "a tenant name is 1 to 63 characters of lowercase letters, digits and '-', \
                        starting with a letter or digit";
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let rest_ok = bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !first_ok || !rest_ok || name.len() > MAX_TENANT_LEN {
        return Err(invalid("tenant", name, RULE));
    }
    Ok(())
}

/// Topics, as Kafka: 1 to 249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > MAX_TOPIC_LEN {
        return Err(invalid(
            "topic",
            name,
            "a topic name is 1 to 249 characters long",
        ));
    }
    if name == "." || name == ".." {
        return Err(invalid(
            "topic",
            name,
            "a topic name cannot be \".\" or \"..\"",
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(invalid(
            "topic",
            name,
            "a topic name may only contain ASCII letters, digits, '.', '_' and '-'",
        ));
    }
    Ok(())
}

/// Groups: 1 to 255 characters, no control characters, no `/` (groups appear in URL paths).
pub fn validate_group(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.chars().count() > MAX_GROUP_LEN {
        return Err(invalid(
            "group",
            name,
            "a group name is 1 to 255 characters long",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(
            "group",
            name,
            "a group name cannot contain control characters",
        ));
    }
    if name.contains('/') {
        return Err(invalid("group", name, "a group name cannot contain '/'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_invalid(r: Result<(), ApiError>) -> bool {
        matches!(r, Err(e) if e.code == ErrorCode::InvalidName)
    }

    #[test]
    fn tenant_names() {
        for ok in ["default", "a", "0", "acme-prod", "a1-b2", &"a".repeat(63)] {
            assert!(validate_tenant(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "Acme", "a_b", "a.b", "a b", "é", &"a".repeat(64)] {
            assert!(is_invalid(validate_tenant(bad)), "{bad}");
        }
    }

    #[test]
    fn topic_names() {
        for ok in ["orders", "a", "A.b_c-9", "...", &"x".repeat(249)] {
            assert!(validate_topic(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "ü", "a:b", &"x".repeat(250)] {
            assert!(is_invalid(validate_topic(bad)), "{bad}");
        }
    }

    #[test]
    fn group_names() {
        for ok in ["g", "my group", "ü-ñ", "a.b:c", &"g".repeat(255)] {
            assert!(validate_group(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/b", "a\nb", "a\u{0}", &"g".repeat(256)] {
            assert!(is_invalid(validate_group(bad)), "{bad}");
        }
    }

    #[test]
    fn message_names_the_rule() {
        let e = validate_topic("a b").unwrap_err();
        assert!(e.message.contains("ASCII letters"), "{}", e.message);
    }
}
