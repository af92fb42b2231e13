//! Opening the object store named by `--object-store`.
//!
//! [`open`] turns a URL into an [`ObjectStoreHandle`]: the store, always
//! wrapped in [`Resilient`] (timeouts, retries and metrics: see
//! [`crate::resilient`]), and the key prefix taken from the URL.
//!
//! | URL                      | store                                               |
//! |--------------------------|-----------------------------------------------------|
//! | `file:///absolute/path`  | a local directory, created if missing               |
//! | `s3://bucket[/prefix]`   | S3 or an S3-compatible server, from `AWS_*` vars    |
//! | `memory://[prefix]`      | in memory (tests)                                   |
//!
//! For S3 the `AWS_*` variables are read as object_store's
//! `AmazonS3Builder::from_env` reads them (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
//! `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL` or `AWS_ENDPOINT`,
//! `AWS_ALLOW_HTTP`, ...), from the process environment ([`open`]) or a given
//! map ([`open_with_env`]). With an endpoint set, requests are path-style
//! (`endpoint/bucket/key`, what S3-compatible servers expect) unless
//! `AWS_VIRTUAL_HOSTED_STYLE_REQUEST` says otherwise. The S3 client's own
//! retries are off and its request timeout disabled (its 5 s connect timeout
//! stays): [`Resilient`] alone times and retries calls.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, RetryConfig};

pub use crate::resilient::{ResilienceConfig, Resilient, is_transient};

/// The `store` named in errors the resilience layer makes.
pub(crate) const STORE: &str = "strata-tier";

/// Errors of opening a store, and the errors the resilience layer adds
/// (carried as the source of an `object_store::Error::Generic`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "object store `{url}` is not a URL: use file:///absolute/path, s3://bucket[/prefix] or memory://"
    )]
    NotAUrl { url: String },
    #[error("object store `{url}`: unsupported scheme `{scheme}` (supported: file, s3, memory)")]
    UnsupportedScheme { url: String, scheme: String },
    #[error("object store `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot create the object directory {}: {source}", path.display())]
    CreateDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot set up the object store `{url}`: {source}")]
    Build {
        url: String,
        source: object_store::Error,
    },
    #[error("{op} {location}timed out after {timeout:?}")]
    Timeout {
        op: &'static str,
        location: String,
        timeout: Duration,
    },
    #[error("{op} {location}aborted: the object store is shutting down")]
    Aborted { op: &'static str, location: String },
    #[error("{op} {location}failed after {attempts} attempt(s) in {elapsed:?}; last error: {last}")]
    Exhausted {
        op: &'static str,
        location: String,
        attempts: u32,
        elapsed: Duration,
        last: Box<object_store::Error>,
    },
}

impl StoreError {
    pub(crate) fn into_object_store(self) -> object_store::Error {
        object_store::Error::Generic {
            store: STORE,
            source: Box::new(self),
        }
    }
}

/// A store opened from a URL: the resilient store and the key prefix.
#[derive(Clone, Debug)]
pub struct ObjectStoreHandle {
    resilient: Arc<Resilient>,
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
}

impl ObjectStoreHandle {
    /// The store; every call goes through [`Resilient`].
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The resilience layer itself (its configuration, [`Resilient::abort_all`]).
    pub fn resilient(&self) -> &Arc<Resilient> {
        &self.resilient
    }

    /// The key prefix from the URL (`s3://bucket/a/b` → `a/b`; empty for none).
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// The URL the store was opened from.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `key` (`/`-separated) under the prefix.
    pub fn path(&self, key: &str) -> Path {
        self.prefix.parts().chain(Path::from(key).parts()).collect()
    }

    /// Fails every in-flight and later call with [`StoreError::Aborted`].
    pub fn abort_all(&self) {
        self.resilient.abort_all();
    }
}

/// The URL used when none is given: `file://<data_dir, absolute>/objects`.
pub fn default_url(data_dir: &std::path::Path) -> String {
    let dir = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    format!("file://{}", dir.join("objects").display())
}

/// Opens `url` with the process environment and the default [`ResilienceConfig`].
/// An empty `url` means [`default_url`]`(data_dir)`.
pub fn open(url: &str, data_dir: &std::path::Path) -> Result<ObjectStoreHandle, StoreError> {
    let env: HashMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    open_with_env(url, data_dir, &env)
}

/// Like [`open`], reading the `AWS_*` variables from `env` instead of the process.
pub fn open_with_env(
    url: &str,
    data_dir: &std::path::Path,
    env: &HashMap<String, String>,
) -> Result<ObjectStoreHandle, StoreError> {
    open_with(url, data_dir, env, ResilienceConfig::default())
}

/// Like [`open_with_env`], with an explicit [`ResilienceConfig`].
pub fn open_with(
    url: &str,
    data_dir: &std::path::Path,
    env: &HashMap<String, String>,
    config: ResilienceConfig,
) -> Result<ObjectStoreHandle, StoreError> {
    let url = if url.is_empty() {
        default_url(data_dir)
    } else {
        url.to_string()
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(StoreError::NotAUrl { url });
    };
    let invalid = |reason: &str| StoreError::InvalidUrl {
        url: url.clone(),
        reason: reason.to_string(),
    };
    let parse_prefix = |p: &str| {
        Path::parse(p.trim_matches('/'))
            .map_err(|e| invalid(&format!("invalid key prefix `{p}`: {e}")))
    };
    let (resilient, prefix) =
        match scheme {
            "file" => {
                if !rest.starts_with('/') {
                    return Err(invalid(
                        "a file URL needs an absolute path and no host: file:///absolute/path",
                    ));
                }
                let dir = std::path::PathBuf::from(rest);
                std::fs::create_dir_all(&dir).map_err(|source| StoreError::CreateDir {
                    path: dir.clone(),
                    source,
                })?;
                let local =
                    LocalFileSystem::new_with_prefix(&dir).map_err(|source| StoreError::Build {
                        url: url.clone(),
                        source,
                    })?;
                (Resilient::new(Arc::new(local), config), Path::default())
            }
            "memory" => {
                let mem = Arc::new(InMemory::new());
                let r = Resilient::new(mem.clone(), config).with_multipart(mem);
                (r, parse_prefix(rest)?)
            }
            "s3" => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(invalid("no bucket name: use s3://bucket[/prefix]"));
                }
                let prefix = parse_prefix(prefix)?;
                let s3 = Arc::new(s3_builder(bucket, env).build().map_err(|source| {
                    StoreError::Build {
                        url: url.clone(),
                        source,
                    }
                })?);
                (
                    Resilient::new(s3.clone(), config).with_multipart(s3),
                    prefix,
                )
            }
            _ => {
                return Err(StoreError::UnsupportedScheme {
                    scheme: scheme.to_string(),
                    url,
                });
            }
        };
    let resilient = Arc::new(resilient);
    Ok(ObjectStoreHandle {
        store: resilient.clone(),
        resilient,
        prefix,
        url,
    })
}

/// The S3 client: `AWS_*` variables of `env` (as object_store's `from_env`
/// reads them, `AWS_ENDPOINT_URL` winning over `AWS_ENDPOINT`), path-style
/// requests when an endpoint is set (unless `AWS_VIRTUAL_HOSTED_STYLE_REQUEST`
/// says otherwise), no client retries and no client request timeout.
fn s3_builder(bucket: &str, env: &HashMap<String, String>) -> AmazonS3Builder {
    let mut builder =
        AmazonS3Builder::new().with_client_options(ClientOptions::new().with_timeout_disabled());
    let mut keys: Vec<&String> = env.keys().filter(|k| k.starts_with("AWS_")).collect();
    // Sorted, so `AWS_ENDPOINT_URL` comes after `AWS_ENDPOINT` and wins.
    keys.sort();
    for key in keys {
        if let Ok(config_key) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
            builder = builder.with_config(config_key, env[key].as_str());
        }
    }
    let endpoint_set = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT", "AWS_ENDPOINT_URL_S3"]
        .iter()
        .any(|k| env.contains_key(*k));
    if endpoint_set && !env.contains_key("AWS_VIRTUAL_HOSTED_STYLE_REQUEST") {
        builder = builder.with_virtual_hosted_style_request(false);
    }
    builder.with_bucket_name(bucket).with_retry(RetryConfig {
        max_retries: 0,
        ..RetryConfig::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let dir = std::env::temp_dir().join(format!("strata-store-urls-{}", std::process::id()));
        let env = HashMap::new();
        let err = |url: &str| open_with_env(url, &dir, &env).unwrap_err().to_string();
        assert!(
            err("./objects").contains("is not a URL"),
            "{}",
            err("./objects")
        );
        assert!(err("/abs/objects").contains("file:///absolute/path"));
        assert!(err("gs://b").contains("unsupported scheme `gs`"));
        assert!(err("file://relative/dir").contains("absolute path and no host"));
        assert!(err("s3://").contains("no bucket name"));
        assert!(err("s3:///prefix").contains("no bucket name"));

        let h = open_with_env("memory://a/b/", &dir, &env).unwrap();
        assert_eq!(h.prefix().as_ref(), "a/b");
        assert_eq!(h.path("c/d").as_ref(), "a/b/c/d");

        let s3 = open_with_env("s3://bucket/x/y", &dir, &env).unwrap();
        assert_eq!(s3.prefix().as_ref(), "x/y");
        assert!(s3.store().to_string().contains("bucket"), "{}", s3.store());

        let default = default_url(&dir);
        assert_eq!(default, format!("file://{}/objects", dir.display()));
        let local = open_with_env("", &dir, &env).unwrap();
        assert_eq!(local.url(), default);
        assert!(dir.join("objects").is_dir());
        assert_eq!(local.prefix().as_ref(), "");
        let _ = std::fs::remove_dir_all(&dir);

        assert!(default_url(std::path::Path::new("rel")).starts_with("file:///"));
    }

    #[test]
    fn s3_settings_come_from_the_given_env() {
        let env: HashMap<String, String> = [
            ("AWS_ENDPOINT", "http://wrong:1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
            ("AWS_REGION", "eu-west-3"),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_PROFILE", "ignored"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let b = s3_builder("bkt", &env);
        assert_eq!(
            b.get_config_value(&AmazonS3ConfigKey::Endpoint).as_deref(),
            Some("http://127.0.0.1:9")
        );
        assert_eq!(
            b.get_config_value(&AmazonS3ConfigKey::Region).as_deref(),
            Some("eu-west-3")
        );
        assert_eq!(
            b.get_config_value(&AmazonS3ConfigKey::VirtualHostedStyleRequest)
                .as_deref(),
            Some("false")
        );
        assert_eq!(
            b.get_config_value(&AmazonS3ConfigKey::Bucket).as_deref(),
            Some("bkt")
        );
    }
}
