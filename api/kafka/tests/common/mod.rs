//! A real broker with the Kafka front end on a loopback port, and a minimal
//! client: frames encoded and decoded with the protocol crate.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use strata_broker::{Broker, BrokerConfig};
use strata_kafka::{KafkaConfig, KafkaServer};
use strata_log::batch::{BatchBuilder, Compression};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct Running {
    pub addr: std::net::SocketAddr,
    pub broker: Arc<Broker>,
    _dir: tempfile::TempDir,
}

pub async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(BrokerConfig::new(dir.path())).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = KafkaConfig {
        advertised_port: addr.port(),
        group_initial_rebalance_delay: Duration::ZERO,
        ..KafkaConfig::default()
    };
    let server = KafkaServer::new(broker.clone(), config);
    tokio::spawn(server.serve(listener, std::future::pending()));
    Running {
        addr,
        broker,
        _dir: dir,
    }
}

pub fn frame(api: ApiKey, version: i16, correlation_id: i32, body: &RequestKind) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("conformance")))
        .encode(&mut buf, api.request_header_version(version))
        .unwrap();
    body.encode(&mut buf, version)
        .unwrap_or_else(|e| panic!("encode {api:?} v{version}: {e}"));
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf.freeze()
}

pub async fn read_frame(stream: &mut TcpStream) -> Option<Bytes> {
    let len = tokio::time::timeout(Duration::from_secs(10), stream.read_i32())
        .await
        .expect("answer within 10 s")
        .ok()?;
    let mut buf = vec![0; len as usize];
    stream.read_exact(&mut buf).await.ok()?;
    Some(Bytes::from(buf))
}

pub async fn call(
    stream: &mut TcpStream,
    api: ApiKey,
    version: i16,
    body: RequestKind,
) -> ResponseKind {
    stream
        .write_all(&frame(api, version, 7, &body))
        .await
        .unwrap();
    let mut answer = read_frame(stream)
        .await
        .unwrap_or_else(|| panic!("{api:?} v{version}: connection closed"));
    let header = ResponseHeader::decode(&mut answer, api.response_header_version(version)).unwrap();
    assert_eq!(header.correlation_id, 7, "{api:?} v{version}");
    ResponseKind::decode(api, &mut answer, version)
        .unwrap_or_else(|e| panic!("decode {api:?} v{version} response: {e}"))
}

pub fn batch(value: &str) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    b.push(
        Some(Bytes::from_static(b"k")),
        Some(Bytes::from(value.to_owned())),
        vec![],
        1_700_000_000_000,
    );
    b.build().unwrap()
}
