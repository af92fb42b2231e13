//! Tailing a partition as Server-Sent Events.
//!
//! Events: `heartbeat` (`{"next_offset","high_watermark"}`) right after
//! connecting and every [`HEARTBEAT`] while idle; `records` (a JSON
//! `ReadResponse`, id = its `next_offset`) whenever records are there; and
//! `error` (the error body) just before the stream ends on a failure. The
//! stream also ends when the server shuts down or the client goes away.
//! Readers wake on the broker's end-offset watch.

use std::convert::Infallible;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use strata_api::ApiError;
use strata_broker::{ReadResult, ReadStart};

use super::codec::Encoding;
use super::error::{HttpError, HttpResult};
use super::records::{PartitionPath, ReadQuery, ReadResponse};
use crate::state::AppState;

/// How often an idle stream sends a heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(5);

fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, HttpError> {
    match headers.get("last-event-id") {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| {
                HttpError::bad_request("Last-Event-ID must be an offset (a non-negative integer)")
            }),
    }
}

fn json_event(name: &str, value: &impl serde::Serialize) -> Event {
    let data = serde_json::to_string(value).unwrap_or_else(|_| "{}".into());
    Event::default().event(name).data(data)
}

fn heartbeat(next_offset: u64, high_watermark: u64) -> Event {
    json_event(
        "heartbeat",
        &serde_json::json!({ "next_offset": next_offset, "high_watermark": high_watermark }),
    )
}

fn error_event(e: &ApiError) -> Event {
    json_event("error", &e.to_json_body())
}

/// A `records` event, or the error that stops the stream.
fn records_event(r: ReadResult, encoding: Encoding) -> Result<Event, ApiError> {
    let body = ReadResponse::new(r, encoding)?;
    Ok(json_event("records", &body).id(body.next_offset.to_string()))
}

/// Tails a partition: checks everything up front so that a bad request gets
/// its HTTP status, then streams.
pub async fn tail(
    state: AppState,
    p: PartitionPath,
    q: ReadQuery,
    headers: &HeaderMap,
) -> HttpResult<Response> {
    let broker = state.broker.clone();
    let (tenant, topic, partition) = (p.tenant, p.topic, p.partition);
    let encoding = q.encoding.unwrap_or_default();
    let start = match q.start()? {
        Some(s) => s,
        None => match last_event_id(headers)? {
            Some(o) => ReadStart::Offset(o),
            None => ReadStart::Offset(broker.check_tail(&tenant, &topic, partition).await?.1),
        },
    };
    let mut end = broker.watch_end(&tenant, &topic, partition).await?;
    end.mark_unchanged();
    let first = broker
        .read(&tenant, &topic, partition, q.request(start))
        .await?;
    let (first_next, first_high) = (first.next_offset, first.high_watermark);
    let hello = heartbeat(first_next, first_high);
    let first_event = if first.records.is_empty() {
        None
    } else {
        Some(records_event(first, encoding)?)
    };
    tracing::debug!(next_offset = first_next, "sse tail started");

    let shutdown = state.shutdown.clone();
    let stream = async_stream::stream! {
        yield hello;
        let mut next = first_next;
        let mut high_watermark = first_high;
        let mut caught_up = first_event.is_none();
        if let Some(ev) = first_event {
            yield ev;
        }
        loop {
            if caught_up {
                enum Wake { Shutdown, Changed(bool), Idle }
                let wake = tokio::select! {
                    _ = shutdown.cancelled() => Wake::Shutdown,
                    r = end.changed() => Wake::Changed(r.is_ok()),
                    _ = tokio::time::sleep(HEARTBEAT) => Wake::Idle,
                };
                match wake {
                    Wake::Shutdown => break,
                    Wake::Idle => {
                        yield heartbeat(next, high_watermark);
                        continue;
                    }
                    Wake::Changed(true) => {}
                    Wake::Changed(false) => {
                        // The watch ended (topic deleted, broker closing): follow a new
                        // one, or report why not.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        match broker.watch_end(&tenant, &topic, partition).await {
                            Ok(rx) => end = rx,
                            Err(e) => {
                                yield error_event(&e);
                                break;
                            }
                        }
                    }
                }
            }
            end.mark_unchanged();
            let request = q.request(ReadStart::Offset(next));
            let result = tokio::select! {
                _ = shutdown.cancelled() => None,
                r = broker.read(&tenant, &topic, partition, request) => Some(r),
            };
            match result {
                None => break,
                Some(Err(e)) => {
                    yield error_event(&e);
                    break;
                }
                Some(Ok(r)) => {
                    next = r.next_offset;
                    high_watermark = r.high_watermark;
                    caught_up = r.records.is_empty();
                    if caught_up {
                        continue;
                    }
                    match records_event(r, encoding) {
                        Ok(ev) => yield ev,
                        Err(e) => {
                            yield error_event(&e);
                            break;
                        }
                    }
                }
            }
        }
    };
    let mut response = Sse::new(infallible(stream)).into_response();
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

fn infallible(s: impl Stream<Item = Event>) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::StreamExt::map(s, Ok)
}
