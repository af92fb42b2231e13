//! Redis Streams: one stream key per partition (`<topic>:<partition>`, the
//! value in field `v`), one pipeline of `XADD`s per batch on a multiplexed
//! connection, `XREAD BLOCK` over a consumer's partitions.
//!
//! Durability is the server's configuration, not the client's: with
//! `appendonly yes` and `appendfsync always` Redis fsyncs the AOF before it
//! replies (the fsync class); otherwise a reply means the write is in memory
//! (the memory class). `open` reads the configuration and refuses a class the
//! server does not provide, so a run cannot be labelled with the wrong one.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadReply;
use redis::{AsyncConnectionConfig, Client, Value};

use super::{Consumer, Driver, DriverError, Durability, Producer, SendFuture, System, Target};

const SYSTEM: &str = "redis";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one command or pipeline may take. The client's default (500 ms)
/// is shorter than a pipeline of fsynced appends can take under load.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Entries per stream one `XREAD` returns at most.
const READ_COUNT: u32 = 2000;
/// Keys per `SCAN` step of `prepare`.
const SCAN_COUNT: u32 = 1000;

pub struct RedisDriver {
    address: String,
    client: Client,
    /// For `prepare`; producers and consumers open connections of their own.
    admin: MultiplexedConnection,
}

impl RedisDriver {
    pub async fn open(target: &Target) -> Result<RedisDriver, DriverError> {
        let address = target.address.clone();
        let url = if address.contains("://") {
            address.clone()
        } else {
            format!("redis://{address}/")
        };
        let client = Client::open(url.as_str()).map_err(|e| DriverError::Connect {
            system: SYSTEM,
            address: address.clone(),
            message: e.to_string(),
        })?;
        let mut admin = connect(&client, &address, Some(REQUEST_TIMEOUT)).await?;
        let appendonly = config_get(&mut admin, "appendonly").await?;
        let appendfsync = config_get(&mut admin, "appendfsync").await?;
        check_durability(target.durability, &appendonly, &appendfsync)?;
        Ok(RedisDriver {
            address,
            client,
            admin,
        })
    }
}

async fn connect(
    client: &Client,
    address: &str,
    response_timeout: Option<Duration>,
) -> Result<MultiplexedConnection, DriverError> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(response_timeout);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| DriverError::Connect {
            system: SYSTEM,
            address: address.to_string(),
            message: e.to_string(),
        })
}

async fn config_get(conn: &mut MultiplexedConnection, name: &str) -> Result<String, DriverError> {
    let cannot = |why: String| DriverError::Unsupported {
        system: SYSTEM,
        message: format!("cannot tell how the server persists writes: CONFIG GET {name}: {why}"),
    };
    // A map in RESP3, name/value pairs in RESP2: both parse as a map.
    let reply: HashMap<String, String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query_async(conn)
        .await
        .map_err(|e| cannot(e.to_string()))?;
    reply
        .get(name)
        .cloned()
        .ok_or_else(|| cannot("no such setting".into()))
}

fn check_durability(
    durability: Durability,
    appendonly: &str,
    appendfsync: &str,
) -> Result<(), DriverError> {
    let aof = appendonly.eq_ignore_ascii_case("yes");
    let fsync_always = aof && appendfsync.eq_ignore_ascii_case("always");
    let server = format!("the server runs with appendonly {appendonly}, appendfsync {appendfsync}");
    let refuse = |needs: &str| {
        Err(DriverError::Unsupported {
            system: SYSTEM,
            message: format!("{server}; {needs}"),
        })
    };
    match durability {
        Durability::Fsync if !fsync_always => refuse(
            "the fsync class needs appendonly yes and appendfsync always \
             (Redis then fsyncs the AOF before it replies)",
        ),
        Durability::Memory if fsync_always => refuse(
            "the memory class needs replies before the fsync: appendonly no, \
             or appendfsync everysec or no",
        ),
        _ => Ok(()),
    }
}

fn key(topic: &str, partition: u32) -> String {
    format!("{topic}:{partition}")
}

/// A `SCAN MATCH` pattern for `<topic>:*` with the topic taken literally.
fn scan_pattern(topic: &str) -> String {
    let mut pattern = String::with_capacity(topic.len() + 2);
    for c in topic.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push_str(":*");
    pattern
}

/// Whether `key` is a partition of the topic whose keys start with `prefix`
/// (`<topic>:`): `<topic>:*` also matches keys of a topic named
/// `<topic>:<something>`, which are not this topic's to delete.
fn is_partition_key(key: &[u8], prefix: &[u8]) -> bool {
    key.strip_prefix(prefix)
        .is_some_and(|rest| !rest.is_empty() && rest.iter().all(u8::is_ascii_digit))
}

fn request(e: impl std::fmt::Display) -> DriverError {
    DriverError::request(SYSTEM, e)
}

#[async_trait]
impl Driver for RedisDriver {
    fn system(&self) -> System {
        System::Redis
    }

    /// Deletes the topic's streams; `XADD` creates them again, and `XREAD`
    /// waits on keys that do not exist yet, so there is nothing to create.
    async fn prepare(&self, topic: &str, _partitions: u32) -> Result<(), DriverError> {
        let mut conn = self.admin.clone();
        let pattern = scan_pattern(topic);
        let prefix = format!("{topic}:");
        // SCAN rather than KEYS: KEYS blocks the server for the whole keyspace.
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut conn)
                .await
                .map_err(|e| request(format!("SCAN {pattern}: {e}")))?;
            let mine: Vec<Vec<u8>> = keys
                .into_iter()
                .filter(|k| is_partition_key(k, prefix.as_bytes()))
                .collect();
            if !mine.is_empty() {
                // DEL, not UNLINK: the memory is freed before the run starts,
                // not by a background thread during it.
                redis::cmd("DEL")
                    .arg(&mine)
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| request(format!("DEL {topic}:*: {e}")))?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    async fn producer(&self, topic: &str) -> Result<Box<dyn Producer>, DriverError> {
        Ok(Box::new(RedisProducer {
            topic: topic.to_string(),
            conn: connect(&self.client, &self.address, Some(REQUEST_TIMEOUT)).await?,
        }))
    }

    async fn consumer(
        &self,
        topic: &str,
        partitions: &[u32],
    ) -> Result<Box<dyn Consumer>, DriverError> {
        // A connection of its own: a blocked XREAD holds up every command
        // behind it on the connection. No response timeout there, since a
        // read blocks for as long as `poll` waits; `poll` bounds it instead.
        let conn = connect(&self.client, &self.address, None).await?;
        Ok(Box::new(RedisConsumer {
            conn,
            keys: partitions.iter().map(|&p| key(topic, p)).collect(),
            last: vec!["0".to_string(); partitions.len()],
            held: None,
        }))
    }
}

struct RedisProducer {
    topic: String,
    conn: MultiplexedConnection,
}

impl Producer for RedisProducer {
    fn send(&self, partition: u32, values: Vec<Bytes>) -> SendFuture {
        let key = key(&self.topic, partition);
        let mut pipe = redis::pipe();
        for value in &values {
            pipe.cmd("XADD")
                .arg(&key)
                .arg("*")
                .arg("v")
                .arg(value.as_ref());
        }
        // Clones share the one connection; each call's pipeline is queued on
        // it, so many are in flight at once.
        let mut conn = self.conn.clone();
        Box::pin(async move {
            if values.is_empty() {
                return Ok(());
            }
            // The reply holds the new ids; an error from any XADD fails it.
            pipe.query_async::<()>(&mut conn)
                .await
                .map_err(|e| request(format!("XADD {key}: {e}")))
        })
    }
}

struct RedisConsumer {
    conn: MultiplexedConnection,
    keys: Vec<String>,
    /// The id of the last entry read per key, where the next read starts.
    last: Vec<String>,
    held: Option<DriverError>,
}

#[async_trait]
impl Consumer for RedisConsumer {
    async fn poll(&mut self, wait: Duration) -> Result<Vec<Bytes>, DriverError> {
        if let Some(e) = self.held.take() {
            return Err(e);
        }
        if self.keys.is_empty() {
            tokio::time::sleep(wait).await;
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT").arg(READ_COUNT);
        // BLOCK 0 would wait forever: under a millisecond, do not block.
        let block = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        if block > 0 {
            cmd.arg("BLOCK").arg(block);
        }
        cmd.arg("STREAMS").arg(&self.keys).arg(&self.last);
        let reply: Option<StreamReadReply> = tokio::time::timeout(
            wait.saturating_add(REQUEST_TIMEOUT),
            cmd.query_async(&mut self.conn),
        )
        .await
        .map_err(|_| {
            request(format!(
                "no XREAD reply {REQUEST_TIMEOUT:?} after its block ended"
            ))
        })?
        .map_err(|e| request(format!("XREAD: {e}")))?;
        let mut out = Vec::new();
        let mut malformed = None;
        for stream in reply.map(|r| r.keys).unwrap_or_default() {
            let Some(index) = self.keys.iter().position(|k| *k == stream.key) else {
                return Err(request(format!(
                    "XREAD returned key {} not asked for",
                    stream.key
                )));
            };
            for mut entry in stream.ids {
                match entry.map.remove("v") {
                    Some(Value::BulkString(v)) => out.push(Bytes::from(v)),
                    _ => {
                        malformed =
                            Some(format!("{} entry {} has no field v", stream.key, entry.id))
                    }
                }
                self.last[index] = entry.id;
            }
        }
        // Skipped, as the ids moved past them; reported once the entries
        // read with them are handed back.
        match malformed {
            Some(message) if out.is_empty() => Err(request(message)),
            Some(message) => {
                self.held = Some(request(message));
                Ok(out)
            }
            None => Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert_eq!(scan_pattern("bench-t"), "bench-t:*");
        assert_eq!(scan_pattern("a*b[1]"), "a\\*b\\[1\\]:*");
        assert!(is_partition_key(b"t:0", b"t:"));
        assert!(is_partition_key(b"t:17", b"t:"));
        assert!(!is_partition_key(b"t:", b"t:"));
        assert!(!is_partition_key(b"t:x:0", b"t:"));
        assert!(!is_partition_key(b"u:0", b"t:"));
    }

    #[test]
    fn durability() {
        assert!(check_durability(Durability::Fsync, "yes", "always").is_ok());
        assert!(check_durability(Durability::Fsync, "yes", "everysec").is_err());
        assert!(check_durability(Durability::Fsync, "no", "always").is_err());
        assert!(check_durability(Durability::Memory, "no", "always").is_ok());
        assert!(check_durability(Durability::Memory, "yes", "everysec").is_ok());
        assert!(check_durability(Durability::Memory, "yes", "always").is_err());
    }
}
