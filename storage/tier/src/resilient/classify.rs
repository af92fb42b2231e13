//! Which object store errors are transient, so worth retrying.

use std::error::Error as StdError;

use object_store::client::{HttpError, HttpErrorKind};

use crate::store::StoreError;

/// Whether `err` is worth retrying: see the module documentation.
pub fn is_transient(err: &object_store::Error) -> bool {
    use object_store::Error as E;
    match err {
        E::Generic { source, .. } => {
            let mut current: Option<&(dyn StdError + 'static)> = Some(source.as_ref());
            while let Some(e) = current {
                if let Some(verdict) = classify_one(e) {
                    return verdict;
                }
                current = e.source();
            }
            false
        }
        _ => false,
    }
}

/// The verdict of one error of a source chain, if it decides.
fn classify_one(e: &(dyn StdError + 'static)) -> Option<bool> {
    if let Some(e) = e.downcast_ref::<StoreError>() {
        return Some(matches!(
            e,
            StoreError::Timeout { .. } | StoreError::Exhausted { .. }
        ));
    }
    if let Some(e) = e.downcast_ref::<object_store::Error>() {
        return Some(is_transient(e));
    }
    if let Some(e) = e.downcast_ref::<HttpError>() {
        return Some(matches!(
            e.kind(),
            HttpErrorKind::Connect
                | HttpErrorKind::Request
                | HttpErrorKind::Timeout
                | HttpErrorKind::Interrupted
        ));
    }
    if let Some(e) = e.downcast_ref::<std::io::Error>() {
        use std::io::ErrorKind as K;
        return Some(matches!(
            e.kind(),
            K::TimedOut
                | K::ConnectionRefused
                | K::ConnectionReset
                | K::ConnectionAborted
                | K::NotConnected
                | K::BrokenPipe
                | K::UnexpectedEof
                | K::Interrupted
        ));
    }
    // object_store's request error (not a public type) shows the status in its text.
    let text = e.to_string();
    if let Some(rest) = text.strip_prefix("Server returned non-2xx status code: ") {
        let status: u16 = rest.get(..3)?.parse().ok()?;
        return Some(status >= 500 || status == 429 || status == 408);
    }
    if text.starts_with("Server returned error response: ") {
        return Some(true); // a 200 whose body is InternalError or SlowDown
    }
    None
}
