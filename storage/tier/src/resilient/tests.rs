//! Tests of `resilient.rs`.

use super::*;
use object_store::MultipartId;
use object_store::client::{HttpError, HttpErrorKind};
use object_store::memory::InMemory;
use object_store::multipart::PartId;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::error::Error as StdError;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// What the fake store does on a call.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// A connection error, as the S3 client reports it.
    Transient,
    /// A 503 SlowDown, as the S3 client's text shows it.
    Throttled,
    /// Never answers.
    Hang,
    PermissionDenied,
}

/// `InMemory`, with the next calls failing as planned (then behaving).
#[derive(Debug, Default)]
struct Faulty {
    inner: InMemory,
    plan: Mutex<VecDeque<Fault>>,
    calls: AtomicUsize,
    /// Set when a hanging call's future is dropped.
    hang_dropped: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("Server returned non-2xx status code: 503 Service Unavailable: <Code>SlowDown</Code>")]
struct SlowDown;

struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Faulty {
    fn with(plan: &[Fault]) -> Arc<Faulty> {
        let f = Faulty::default();
        f.plan.lock().extend(plan.iter().copied());
        Arc::new(f)
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    async fn fault(&self) -> object_store::Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let next = self.plan.lock().pop_front();
        match next {
            None => Ok(()),
            Some(Fault::Transient) => Err(object_store::Error::Generic {
                store: "S3",
                source: Box::new(HttpError::new(
                    HttpErrorKind::Connect,
                    std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
                )),
            }),
            Some(Fault::Throttled) => Err(object_store::Error::Generic {
                store: "S3",
                source: Box::new(SlowDown),
            }),
            Some(Fault::Hang) => {
                let _flag = DropFlag(self.hang_dropped.clone());
                std::future::pending().await
            }
            Some(Fault::PermissionDenied) => Err(object_store::Error::PermissionDenied {
                path: "x".into(),
                source: "denied".into(),
            }),
        }
    }
}

impl fmt::Display for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty")
    }
}

#[async_trait]
impl ObjectStore for Faulty {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.fault().await?;
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.fault().await?;
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.fault().await?;
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match self.plan.lock().pop_front() {
            Some(Fault::Hang) => futures::stream::pending().boxed(),
            Some(_) => futures::stream::once(async {
                Err(object_store::Error::Generic {
                    store: "S3",
                    source: Box::new(SlowDown),
                })
            })
            .boxed(),
            None => self.inner.list(prefix),
        }
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.fault().await?;
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.fault().await?;
        self.inner.copy_opts(from, to, options).await
    }
}

#[async_trait]
impl MultipartStore for Faulty {
    async fn create_multipart(&self, path: &Path) -> object_store::Result<MultipartId> {
        self.fault().await?;
        self.inner.create_multipart(path).await
    }
    async fn put_part(
        &self,
        path: &Path,
        id: &MultipartId,
        part_idx: usize,
        data: PutPayload,
    ) -> object_store::Result<PartId> {
        self.fault().await?;
        self.inner.put_part(path, id, part_idx, data).await
    }
    async fn complete_multipart(
        &self,
        path: &Path,
        id: &MultipartId,
        parts: Vec<PartId>,
    ) -> object_store::Result<PutResult> {
        self.fault().await?;
        self.inner.complete_multipart(path, id, parts).await
    }
    async fn abort_multipart(&self, path: &Path, id: &MultipartId) -> object_store::Result<()> {
        self.fault().await?;
        self.inner.abort_multipart(path, id).await
    }
}

/// Fast settings: 200 ms timeouts, 1–8 ms backoff.
fn config(max_attempts: u32) -> ResilienceConfig {
    ResilienceConfig {
        timeout: Duration::from_millis(200),
        min_throughput: 1 << 30,
        max_attempts,
        backoff_base: Duration::from_millis(1),
        backoff_cap: Duration::from_millis(8),
    }
}

fn wrap(fake: &Arc<Faulty>, max_attempts: u32) -> Resilient {
    Resilient::new(fake.clone(), config(max_attempts)).with_multipart(fake.clone())
}

fn exhausted_attempts(err: &object_store::Error) -> Option<u32> {
    match err {
        object_store::Error::Generic { source, .. } => match source.downcast_ref() {
            Some(StoreError::Exhausted { attempts, .. }) => Some(*attempts),
            _ => None,
        },
        _ => None,
    }
}

#[tokio::test]
async fn transient_failures_are_retried_until_success() {
    let fake = Faulty::with(&[Fault::Transient, Fault::Throttled, Fault::Transient]);
    let store = wrap(&fake, 6);
    let before = RETRIES.with_label_values(&["put"]).get();
    store.put(&Path::from("a"), "x".into()).await.unwrap();
    assert_eq!(fake.calls(), 4);
    assert!(RETRIES.with_label_values(&["put"]).get() >= before + 3);
    let got = store
        .get(&Path::from("a"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), b"x");
}

#[tokio::test]
async fn the_attempt_bound_holds() {
    let fake = Faulty::with(&[Fault::Transient; 10]);
    let store = wrap(&fake, 4);
    let err = store.head(&Path::from("a")).await.unwrap_err();
    assert_eq!(fake.calls(), 4);
    assert_eq!(exhausted_attempts(&err), Some(4));
    assert!(is_transient(&err), "{err}");
    assert!(err.to_string().contains("after 4 attempt(s)"), "{err}");
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    let fake = Faulty::with(&[Fault::PermissionDenied]);
    let store = wrap(&fake, 6);
    let err = store.put(&Path::from("a"), "x".into()).await.unwrap_err();
    assert!(
        matches!(err, object_store::Error::PermissionDenied { .. }),
        "{err}"
    );
    assert_eq!(fake.calls(), 1);

    let err = store.get(&Path::from("missing")).await.unwrap_err();
    assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
    assert_eq!(fake.calls(), 2);
}

#[tokio::test]
async fn a_hanging_call_times_out_and_is_retried() {
    let fake = Faulty::with(&[Fault::Hang]);
    let store = wrap(&fake, 3);
    store.put(&Path::from("a"), "x".into()).await.unwrap();
    assert_eq!(fake.calls(), 2);
    assert!(
        fake.hang_dropped.load(Ordering::SeqCst),
        "the timed-out attempt was dropped"
    );

    let fake = Faulty::with(&[Fault::Hang; 3]);
    let store = wrap(&fake, 2);
    let started = std::time::Instant::now();
    let err = store.head(&Path::from("a")).await.unwrap_err();
    assert_eq!(fake.calls(), 2);
    assert_eq!(exhausted_attempts(&err), Some(2));
    assert!(err.to_string().contains("timed out after 200ms"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn dropping_a_call_cancels_it() {
    let fake = Faulty::with(&[Fault::Hang]);
    let store = wrap(&fake, 3);
    let location = Path::from("a");
    let call = store.put(&location, "x".into());
    let raced = tokio::time::timeout(Duration::from_millis(20), call).await;
    assert!(raced.is_err());
    assert!(fake.hang_dropped.load(Ordering::SeqCst));
    assert_eq!(fake.calls(), 1, "nothing goes on in the background");
}

#[tokio::test]
async fn abort_all_ends_in_flight_and_later_calls() {
    let fake = Faulty::with(&[Fault::Hang]);
    let store = Arc::new(
        Resilient::new(
            fake.clone(),
            ResilienceConfig {
                timeout: Duration::from_secs(600),
                ..config(6)
            },
        )
        .with_multipart(fake.clone()),
    );
    let s = store.clone();
    let call = tokio::spawn(async move { s.put(&Path::from("a"), "x".into()).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    store.abort_all();
    let err = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("aborted promptly")
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("shutting down"), "{err}");
    assert!(!is_transient(&err));
    assert!(store.head(&Path::from("a")).await.is_err());
    assert_eq!(fake.calls(), 1);
}

#[tokio::test]
async fn multipart_parts_are_retried_individually() {
    let fake = Faulty::with(&[Fault::Transient]); // create_multipart
    let store = wrap(&fake, 4);
    let mut upload = store.put_multipart(&Path::from("big")).await.unwrap();
    fake.plan.lock().extend([Fault::Transient, Fault::Hang]); // part 0 twice
    upload.put_part(vec![1u8; 10].into()).await.unwrap();
    fake.plan.lock().extend([Fault::Throttled]);
    upload.put_part(vec![2u8; 5].into()).await.unwrap();
    fake.plan.lock().extend([Fault::Transient]);
    upload.complete().await.unwrap();
    // create 2, part 0 3, part 1 2, complete 2
    assert_eq!(fake.calls(), 9);
    let got = store
        .get(&Path::from("big"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), [&[1u8; 10][..], &[2u8; 5][..]].concat());
}

#[tokio::test]
async fn complete_before_every_part_is_uploaded_fails() {
    let fake = Faulty::with(&[]);
    let store = wrap(&fake, 2);
    let mut upload = store.put_multipart(&Path::from("big")).await.unwrap();
    let _unawaited = upload.put_part(vec![1u8; 10].into());
    let err = upload.complete().await.unwrap_err();
    assert!(err.to_string().contains("before all its 1 parts"), "{err}");
}

#[tokio::test]
async fn a_list_is_restarted_before_its_first_item() {
    let fake = Faulty::with(&[]);
    let store = wrap(&fake, 4);
    for k in ["p/1", "p/2", "p/3"] {
        store.put(&Path::from(k), "x".into()).await.unwrap();
    }
    fake.plan.lock().extend([Fault::Throttled, Fault::Hang]);
    let listed: Vec<_> = store.list(Some(&Path::from("p"))).collect().await;
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|m| m.is_ok()));

    fake.plan.lock().extend([Fault::Throttled; 4]);
    let listed: Vec<_> = store.list(Some(&Path::from("p"))).collect().await;
    assert_eq!(listed.len(), 1, "one error ends the stream");
    let err = listed.into_iter().next().unwrap().unwrap_err();
    assert_eq!(exhausted_attempts(&err), Some(4));
}

#[tokio::test]
async fn ranges_are_read_whole_inside_the_attempt() {
    let fake = Faulty::with(&[]);
    let store = wrap(&fake, 3);
    store
        .put(&Path::from("r"), "0123456789".into())
        .await
        .unwrap();
    fake.plan.lock().extend([Fault::Transient]);
    let got = store.get_range(&Path::from("r"), 2..5).await.unwrap();
    assert_eq!(got.as_ref(), b"234");
    fake.plan.lock().extend([Fault::Hang]);
    let got = store
        .get_ranges(&Path::from("r"), &[0..1, 8..10])
        .await
        .unwrap();
    assert_eq!(got, vec![Bytes::from("0"), Bytes::from("89")]);
}

#[test]
fn classification() {
    let generic = |source: Box<dyn StdError + Send + Sync>| object_store::Error::Generic {
        store: "S3",
        source,
    };
    #[derive(Debug, thiserror::Error)]
    #[error("Server returned non-2xx status code: {0}: body")]
    struct Status(&'static str);
    for (status, transient) in [
        ("500 Internal Server Error", true),
        ("503 Service Unavailable", true),
        ("429 Too Many Requests", true),
        ("408 Request Timeout", true),
        ("400 Bad Request", false),
        ("403 Forbidden", false),
    ] {
        assert_eq!(
            is_transient(&generic(Box::new(Status(status)))),
            transient,
            "{status}"
        );
    }
    for (kind, transient) in [
        (HttpErrorKind::Connect, true),
        (HttpErrorKind::Request, true),
        (HttpErrorKind::Timeout, true),
        (HttpErrorKind::Interrupted, true),
        (HttpErrorKind::Decode, false),
    ] {
        let e = HttpError::new(kind, std::io::Error::other("x"));
        assert_eq!(is_transient(&generic(Box::new(e))), transient, "{kind:?}");
    }
    let io = |k| generic(Box::new(std::io::Error::from(k)));
    assert!(is_transient(&io(std::io::ErrorKind::ConnectionReset)));
    assert!(!is_transient(&io(std::io::ErrorKind::PermissionDenied)));
    assert!(!is_transient(&generic("something else".into())));
    let not_found = object_store::Error::NotFound {
        path: "x".into(),
        source: Box::new(HttpError::new(
            HttpErrorKind::Connect,
            std::io::Error::other("x"),
        )),
    };
    assert!(!is_transient(&not_found), "the variant decides first");
}

#[test]
fn backoff_is_exponential_capped_and_jittered() {
    let c = ResilienceConfig::default();
    for (retry, full_ms) in [
        (1, 100),
        (2, 200),
        (3, 400),
        (6, 3200),
        (7, 5000),
        (40, 5000),
    ] {
        let full = Duration::from_millis(full_ms);
        for _ in 0..50 {
            let wait = c.backoff(retry);
            assert!(wait >= full / 2 && wait <= full, "retry {retry}: {wait:?}");
        }
    }
    let waits: std::collections::HashSet<_> = (0..20).map(|_| c.backoff(3)).collect();
    assert!(waits.len() > 1, "jittered");
    assert_eq!(c.timeout_for(0), Duration::from_secs(30));
    assert_eq!(c.timeout_for(64 << 20), Duration::from_secs(94));
}
