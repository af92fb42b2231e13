//! Strata over gRPC: one append session per producer (responses come back in
//! request order, so acknowledgements are matched by position), one read
//! session per partition for consumers.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Mutex;
use strata_api::proto::read_request::Start;
use strata_api::proto::read_session_response::Event;
use strata_api::proto::{self, strata_client::StrataClient};
use strata_api::{ApiError, ErrorCode};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::{Channel, Endpoint};

use super::{Consumer, Driver, DriverError, Durability, Producer, SendFuture, System, Target};

const SYSTEM: &str = "strata-grpc";
/// Large reads in one message, as the CLI allows.
const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;
/// The tenant every benchmark topic lives in.
const TENANT: &str = "default";

type Client = StrataClient<Channel>;

pub struct GrpcDriver {
    address: String,
    durability: Durability,
    /// For topic administration; producers and consumers open their own connections.
    admin: Client,
}

impl GrpcDriver {
    pub async fn open(target: &Target) -> Result<GrpcDriver, DriverError> {
        let admin = connect(&target.address).await?;
        Ok(GrpcDriver {
            address: target.address.clone(),
            durability: target.durability,
            admin,
        })
    }
}

fn url(address: &str) -> String {
    if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    }
}

async fn connect(address: &str) -> Result<Client, DriverError> {
    let err = |message: String| DriverError::Connect {
        system: SYSTEM,
        address: address.to_string(),
        message,
    };
    let channel = Endpoint::from_shared(url(address))
        .map_err(|e| err(e.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| err(format!("{e:?}")))?;
    Ok(StrataClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES))
}

fn status(e: tonic::Status) -> DriverError {
    DriverError::request(SYSTEM, ApiError::from_status(&e))
}

#[async_trait]
impl Driver for GrpcDriver {
    fn system(&self) -> System {
        System::StrataGrpc
    }

    async fn prepare(&self, topic: &str, partitions: u32) -> Result<(), DriverError> {
        self.prepare_configured(topic, partitions, &BTreeMap::new())
            .await
    }

    async fn prepare_configured(
        &self,
        topic: &str,
        partitions: u32,
        config: &BTreeMap<String, i64>,
    ) -> Result<(), DriverError> {
        let config = topic_config(config)?;
        let mut admin = self.admin.clone();
        let delete = proto::DeleteTopicRequest {
            tenant: TENANT.into(),
            topic: topic.into(),
        };
        match admin.delete_topic(delete).await {
            Ok(_) => {}
            Err(s) if ApiError::from_status(&s).code == ErrorCode::TopicNotFound => {}
            Err(s) => return Err(status(s)),
        }
        let create = proto::CreateTopicRequest {
            tenant: TENANT.into(),
            name: topic.into(),
            partitions,
            config,
            replication_factor: None,
        };
        admin.create_topic(create).await.map_err(status)?;
        Ok(())
    }

    async fn producer(&self, topic: &str) -> Result<Box<dyn Producer>, DriverError> {
        let mut client = connect(&self.address).await?;
        let (requests, rx) = mpsc::unbounded_channel();
        let mut responses = client
            .append_session(UnboundedReceiverStream::new(rx))
            .await
            .map_err(status)?
            .into_inner();
        let waiting: Arc<Mutex<Waiting>> = Arc::default();
        let acks = waiting.clone();
        tokio::spawn(async move {
            loop {
                let outcome = match responses.message().await {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => Err("the server ended the append session".to_string()),
                    Err(s) => Err(ApiError::from_status(&s).to_string()),
                };
                let mut w = acks.lock().unwrap_or_else(|p| p.into_inner());
                match outcome {
                    Ok(()) => {
                        if let Some(tx) = w.queue.pop_front() {
                            let _ = tx.send(Ok(()));
                        }
                    }
                    Err(e) => {
                        // A session fails as a whole: every request still waiting fails with it.
                        for tx in w.queue.drain(..) {
                            let _ = tx.send(Err(e.clone()));
                        }
                        w.broken = Some(e);
                        return;
                    }
                }
            }
        });
        Ok(Box::new(GrpcProducer {
            topic: topic.into(),
            acks: match self.durability {
                Durability::Fsync => proto::Acks::Fsync,
                Durability::Memory => proto::Acks::Write,
            },
            requests,
            waiting,
        }))
    }

    async fn consumer(
        &self,
        topic: &str,
        partitions: &[u32],
    ) -> Result<Box<dyn Consumer>, DriverError> {
        let client = connect(&self.address).await?;
        let (tx, rx) = mpsc::channel(64);
        for &partition in partitions {
            let mut client = client.clone();
            let request = proto::ReadRequest {
                tenant: TENANT.into(),
                topic: topic.into(),
                partition,
                start: Some(Start::Offset(0)),
                ..Default::default()
            };
            let mut stream = client
                .read_session(request)
                .await
                .map_err(status)?
                .into_inner();
            let tx = tx.clone();
            tokio::spawn(async move {
                loop {
                    let item = match stream.message().await {
                        Ok(Some(m)) => match m.event {
                            Some(Event::Batch(b)) => {
                                Ok(b.records.into_iter().filter_map(|r| r.value).collect())
                            }
                            _ => continue,
                        },
                        Ok(None) => Err(DriverError::request(SYSTEM, "read session ended")),
                        Err(s) => Err(status(s)),
                    };
                    let last = item.is_err();
                    if tx.send(item).await.is_err() || last {
                        return;
                    }
                }
            });
        }
        Ok(Box::new(ChannelConsumer { rx }))
    }
}

/// Strata's topic settings by name.
fn topic_config(config: &BTreeMap<String, i64>) -> Result<Option<proto::TopicConfig>, DriverError> {
    if config.is_empty() {
        return Ok(None);
    }
    let mut c = proto::TopicConfig::default();
    for (key, &value) in config {
        let slot = match key.as_str() {
            "retention_ms" => &mut c.retention_ms,
            "retention_bytes" => &mut c.retention_bytes,
            "segment_bytes" => &mut c.segment_bytes,
            "segment_ms" => &mut c.segment_ms,
            "max_message_bytes" => &mut c.max_message_bytes,
            "local_retention_ms" => &mut c.local_retention_ms,
            "local_retention_bytes" => &mut c.local_retention_bytes,
            _ => {
                return Err(DriverError::Unsupported {
                    system: SYSTEM,
                    message: format!("no topic setting {key}"),
                });
            }
        };
        *slot = Some(value);
    }
    Ok(Some(c))
}

#[derive(Default)]
struct Waiting {
    queue: VecDeque<oneshot::Sender<Result<(), String>>>,
    broken: Option<String>,
}

struct GrpcProducer {
    topic: String,
    acks: proto::Acks,
    requests: mpsc::UnboundedSender<proto::AppendRequest>,
    waiting: Arc<Mutex<Waiting>>,
}

impl Producer for GrpcProducer {
    fn send(&self, partition: u32, values: Vec<Bytes>) -> SendFuture {
        let request = proto::AppendRequest {
            tenant: TENANT.into(),
            topic: self.topic.clone(),
            records: values
                .into_iter()
                .map(|v| proto::Record {
                    value: Some(v),
                    ..Default::default()
                })
                .collect(),
            partition: Some(partition),
            expected_offset: None,
            acks: self.acks as i32,
        };
        let (tx, rx) = oneshot::channel();
        {
            // Queue position and send order must agree: both under the lock.
            let mut w = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(e) = &w.broken {
                let e = DriverError::request(SYSTEM, e);
                return Box::pin(async move { Err(e) });
            }
            w.queue.push_back(tx);
            if self.requests.send(request).is_err() {
                w.queue.pop_back();
                return Box::pin(async { Err(DriverError::request(SYSTEM, "session closed")) });
            }
        }
        Box::pin(async move {
            match rx.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(DriverError::request(SYSTEM, e)),
                Err(_) => Err(DriverError::request(SYSTEM, "session closed")),
            }
        })
    }
}

/// Values from per-partition reader tasks, merged.
pub struct ChannelConsumer {
    pub rx: mpsc::Receiver<Result<Vec<Bytes>, DriverError>>,
}

#[async_trait]
impl Consumer for ChannelConsumer {
    async fn poll(&mut self, wait: Duration) -> Result<Vec<Bytes>, DriverError> {
        let mut out = match tokio::time::timeout(wait, self.rx.recv()).await {
            Err(_) => return Ok(Vec::new()),
            Ok(None) => return Err(DriverError::request(SYSTEM, "all read sessions ended")),
            Ok(Some(batch)) => batch?,
        };
        // Take whatever else is ready without waiting again.
        while out.len() < 10_000 {
            match self.rx.try_recv() {
                Ok(batch) => out.extend(batch?),
                Err(_) => break,
            }
        }
        Ok(out)
    }
}
