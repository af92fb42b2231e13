//! Any bytes as a Kafka request frame: decoding must return a request or an
//! error, never panic, abort or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = strata_kafka::codec::decode_request(bytes::Bytes::copy_from_slice(data));
});
