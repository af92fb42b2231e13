//! The object store opened by URL, against a real S3-compatible server (moto)
//! and a local directory: a round trip of every call Strata makes, a
//! multipart upload, and the server going away and coming back.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use strata_test_support::MotoServer;
use strata_tier::store::{self, ObjectStoreHandle, ResilienceConfig, StoreError, is_transient};

fn moto_or_skip(test: &str) -> Option<MotoServer> {
    if MotoServer::available() {
        Some(MotoServer::start())
    } else {
        eprintln!("SKIPPED {test}: moto is not installed (scripts/test.sh installs it)");
        None
    }
}

/// Few, fast attempts, so that an outage fails within seconds.
fn quick() -> ResilienceConfig {
    ResilienceConfig {
        timeout: Duration::from_secs(2),
        max_attempts: 3,
        backoff_base: Duration::from_millis(20),
        backoff_cap: Duration::from_millis(100),
        ..ResilienceConfig::default()
    }
}

/// Pseudo-random bytes, so a misplaced part shows.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn round_trip(handle: &ObjectStoreHandle) {
    let store = handle.store();
    let key = handle.path("tenants/t/topics/a-1/0/seg-1.seg");
    let body = data(100_000, 1);

    store.put(&key, body.clone().into()).await.unwrap();
    let got = store.get(&key).await.unwrap();
    assert_eq!(got.meta.size, body.len() as u64);
    assert_eq!(got.bytes().await.unwrap(), body);
    assert_eq!(
        store.get_range(&key, 99_968..100_000).await.unwrap(),
        body[99_968..]
    );
    let ranges = store
        .get_ranges(&key, &[0..10, 50_000..50_100])
        .await
        .unwrap();
    assert_eq!(ranges[0], body[..10]);
    assert_eq!(ranges[1], body[50_000..50_100]);
    assert_eq!(store.head(&key).await.unwrap().size, 100_000);

    let other = handle.path("tenants/t/topics/a-1/1/seg-2.seg");
    store.put(&other, "small".into()).await.unwrap();
    let mut listed: Vec<_> = store
        .list(Some(&handle.path("tenants/t")))
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .unwrap();
    listed.sort();
    assert_eq!(listed, vec![key.clone(), other.clone()]);
    let dirs = store
        .list_with_delimiter(Some(&handle.path("tenants/t/topics/a-1")))
        .await
        .unwrap();
    assert_eq!(dirs.common_prefixes.len(), 2);

    // About 12 MiB in three parts (S3 wants parts of 5 MiB but the last).
    let big_key = handle.path("tenants/t/topics/a-1/0/big.seg");
    let big = data(12 << 20, 7);
    let mut upload = store.put_multipart(&big_key).await.unwrap();
    let parts: Vec<_> = big
        .chunks(5 << 20)
        .map(|c| upload.put_part(PutPayload::from(c.to_vec())))
        .collect();
    futures::future::try_join_all(parts).await.unwrap();
    upload.complete().await.unwrap();
    let got = store.get(&big_key).await.unwrap().bytes().await.unwrap();
    assert_eq!(got.len(), big.len());
    assert!(got == big, "the multipart object reads back as written");

    for k in [&key, &other, &big_key] {
        store.delete(k).await.unwrap();
    }
    let started = Instant::now();
    let err = store.get(&key).await.unwrap_err();
    assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
    assert!(!is_transient(&err));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "not found is not retried"
    );
    let left: Vec<_> = store
        .list(Some(&handle.path("tenants")))
        .try_collect()
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn local_directory_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let objects = dir.path().join("nested/objects");
    let url = format!("file://{}", objects.display());
    let handle = store::open_with_env(&url, dir.path(), &HashMap::new()).unwrap();
    round_trip(&handle).await;
    assert!(objects.is_dir());

    let default = store::open_with_env("", dir.path(), &HashMap::new()).unwrap();
    default
        .store()
        .put(&default.path("x"), "y".into())
        .await
        .unwrap();
    assert!(dir.path().join("objects/x").is_file());
}

#[tokio::test]
async fn s3_round_trip() {
    let Some(mut moto) = moto_or_skip("s3_round_trip") else {
        return;
    };
    moto.create_bucket("strata-round-trip");
    let dir = tempfile::tempdir().unwrap();
    let handle = store::open_with(
        "s3://strata-round-trip/cluster-a",
        dir.path(),
        &moto.env(),
        quick(),
    )
    .unwrap();
    assert_eq!(handle.prefix().as_ref(), "cluster-a");
    round_trip(&handle).await;
}

#[tokio::test]
async fn s3_outage_fails_after_bounded_retries_then_recovers() {
    let Some(mut moto) = moto_or_skip("s3_outage_fails_after_bounded_retries_then_recovers") else {
        return;
    };
    moto.create_bucket("strata-outage");
    let dir = tempfile::tempdir().unwrap();
    let handle = store::open_with("s3://strata-outage", dir.path(), &moto.env(), quick()).unwrap();
    let store = handle.store();
    let key = Path::from("k");
    store.put(&key, "before".into()).await.unwrap();

    moto.stop();
    let started = Instant::now();
    let err = store.put(&key, "during".into()).await.unwrap_err();
    eprintln!("during the outage: {err}");
    assert!(is_transient(&err), "{err}");
    let object_store::Error::Generic { source, .. } = &err else {
        panic!("{err:?}");
    };
    match source.downcast_ref::<StoreError>() {
        Some(StoreError::Exhausted { attempts, .. }) => assert_eq!(*attempts, 3),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10), "bounded");
    assert!(store.get(&key).await.is_err());

    // Moto keeps objects in memory: the bucket comes back, empty.
    moto.restart();
    store.put(&key, "after".into()).await.unwrap();
    let got = store.get(&key).await.unwrap().bytes().await.unwrap();
    assert_eq!(got.as_ref(), b"after");
}

#[tokio::test]
async fn s3_unresponsive_server_times_out_then_recovers() {
    let Some(mut moto) = moto_or_skip("s3_unresponsive_server_times_out_then_recovers") else {
        return;
    };
    moto.create_bucket("strata-frozen");
    let dir = tempfile::tempdir().unwrap();
    let config = ResilienceConfig {
        timeout: Duration::from_millis(300),
        max_attempts: 2,
        ..quick()
    };
    let handle = store::open_with("s3://strata-frozen", dir.path(), &moto.env(), config).unwrap();
    let store = handle.store();
    let key = Path::from("k");
    store.put(&key, "kept".into()).await.unwrap();

    moto.pause();
    let err = store.head(&key).await.unwrap_err();
    moto.resume();
    eprintln!("while frozen: {err}");
    assert!(is_transient(&err), "{err}");
    assert!(err.to_string().contains("timed out"), "{err}");

    let got = store.get(&key).await.unwrap().bytes().await.unwrap();
    assert_eq!(got.as_ref(), b"kept", "paused, not restarted: state kept");
}
