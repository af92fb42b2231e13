//! Building a batch the way the broker does for every produce request that
//! arrives as records (HTTP, gRPC): 16 records of 1 KiB, uncompressed, with
//! one small header each (`strata bench` stamps its send time in one).

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use strata_log::batch::{BatchBuilder, Compression, RecordHeader};

const RECORD_BYTES: usize = 1024;
const RECORDS_PER_BATCH: usize = 16;

fn build_batch(c: &mut Criterion) {
    let value = Bytes::from(vec![b'x'; RECORD_BYTES]);
    let header = RecordHeader {
        key: Bytes::from_static(b"strata-sent-us"),
        value: Some(Bytes::from_static(b"1700000000000000")),
    };
    let mut group = c.benchmark_group("build_batch_16x1KiB");
    group.throughput(Throughput::Bytes((RECORDS_PER_BATCH * RECORD_BYTES) as u64));
    group.bench_function("uncompressed", |b| {
        b.iter(|| {
            let mut builder = BatchBuilder::new(Compression::None);
            for i in 0..RECORDS_PER_BATCH {
                builder.push(
                    None,
                    Some(value.clone()),
                    vec![header.clone()],
                    1_700_000_000_000 + i as i64,
                );
            }
            builder.build().expect("batch builds")
        });
    });
    group.finish();
}

criterion_group!(benches, build_batch);
criterion_main!(benches);
