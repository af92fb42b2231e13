//! Strata over its HTTP API: JSON bodies with base64 values (the due time at
//! the front of each value is binary), a pool of keep-alive connections for
//! the requests in flight, one long-polling reader per partition.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::grpc::ChannelConsumer;
use super::{Consumer, Driver, DriverError, Durability, Producer, SendFuture, System, Target};

const SYSTEM: &str = "strata-http";
/// How long one read waits for new records before asking again.
const LONG_POLL_MS: u64 = 1000;
const MAX_RECORDS_PER_READ: u32 = 5000;

pub struct HttpDriver {
    base: String,
    durability: Durability,
    client: reqwest::Client,
}

impl HttpDriver {
    pub fn open(target: &Target) -> Result<HttpDriver, DriverError> {
        let address = target.address.trim_end_matches('/');
        let root = if address.contains("://") {
            address.to_string()
        } else {
            format!("http://{address}")
        };
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(1024)
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| DriverError::Connect {
                system: SYSTEM,
                address: root.clone(),
                message: e.to_string(),
            })?;
        Ok(HttpDriver {
            base: format!("{root}/v1/tenants/default/topics"),
            durability: target.durability,
            client,
        })
    }
}

/// The response's error body, when the status says it failed.
async fn check(response: reqwest::Response) -> Result<reqwest::Response, DriverError> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    Err(DriverError::request(SYSTEM, format!("{status}: {body}")))
}

fn transport(e: reqwest::Error) -> DriverError {
    DriverError::request(SYSTEM, e)
}

#[async_trait]
impl Driver for HttpDriver {
    fn system(&self) -> System {
        System::StrataHttp
    }

    async fn prepare(&self, topic: &str, partitions: u32) -> Result<(), DriverError> {
        let delete = self
            .client
            .delete(format!("{}/{topic}", self.base))
            .send()
            .await
            .map_err(|e| DriverError::Connect {
                system: SYSTEM,
                address: self.base.clone(),
                message: e.to_string(),
            })?;
        if delete.status() != reqwest::StatusCode::NOT_FOUND {
            check(delete).await?;
        }
        let create = self
            .client
            .post(&self.base)
            .json(&json!({"name": topic, "partitions": partitions}))
            .send()
            .await
            .map_err(transport)?;
        check(create).await?;
        Ok(())
    }

    async fn producer(&self, topic: &str) -> Result<Box<dyn Producer>, DriverError> {
        Ok(Box::new(HttpProducer {
            url: format!("{}/{topic}/partitions", self.base),
            acks: match self.durability {
                Durability::Fsync => "fsync",
                Durability::Memory => "write",
            },
            client: self.client.clone(),
        }))
    }

    async fn consumer(
        &self,
        topic: &str,
        partitions: &[u32],
    ) -> Result<Box<dyn Consumer>, DriverError> {
        let (tx, rx) = mpsc::channel(64);
        for &partition in partitions {
            let url = format!("{}/{topic}/partitions/{partition}/records", self.base);
            let client = self.client.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut offset = 0u64;
                loop {
                    match read(&client, &url, offset).await {
                        Ok((values, next)) => {
                            offset = next;
                            if values.is_empty() {
                                // A long poll that timed out: ask again unless nobody listens.
                                if tx.is_closed() {
                                    return;
                                }
                                continue;
                            }
                            if tx.send(Ok(values)).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    }
                }
            });
        }
        Ok(Box::new(ChannelConsumer { rx }))
    }
}

#[derive(Deserialize)]
struct ReadBody {
    records: Vec<ReadRecord>,
    next_offset: u64,
}

#[derive(Deserialize)]
struct ReadRecord {
    value: Option<String>,
}

async fn read(
    client: &reqwest::Client,
    url: &str,
    offset: u64,
) -> Result<(Vec<Bytes>, u64), DriverError> {
    let response = client
        .get(url)
        .query(&[
            ("offset", offset.to_string()),
            ("encoding", "base64".into()),
            ("wait_ms", LONG_POLL_MS.to_string()),
            ("max_records", MAX_RECORDS_PER_READ.to_string()),
        ])
        .send()
        .await
        .map_err(transport)?;
    let body: ReadBody = check(response).await?.json().await.map_err(transport)?;
    let mut values = Vec::with_capacity(body.records.len());
    for r in body.records {
        if let Some(v) = r.value {
            values.push(Bytes::from(B64.decode(v).map_err(|e| {
                DriverError::request(SYSTEM, format!("a value is not base64: {e}"))
            })?));
        }
    }
    Ok((values, body.next_offset))
}

struct HttpProducer {
    url: String,
    acks: &'static str,
    client: reqwest::Client,
}

impl Producer for HttpProducer {
    fn send(&self, partition: u32, values: Vec<Bytes>) -> SendFuture {
        let records: Vec<_> = values
            .iter()
            .map(|v| json!({"value": B64.encode(v)}))
            .collect();
        let body = json!({"records": records, "encoding": "base64", "acks": self.acks});
        let request = self
            .client
            .post(format!("{}/{partition}/records", self.url))
            .json(&body);
        Box::pin(async move {
            check(request.send().await.map_err(transport)?).await?;
            Ok(())
        })
    }
}
