//! Kafka's default partitioner, so a keyed record lands on the same
//! partition whether a Kafka client or the HTTP/gRPC API produced it.

/// Kafka's `Utils.murmur2`: MurmurHash2, 32-bit, seed `0x9747b28c`, reading
/// 4-byte little-endian chunks, with Java's wrapping `int` arithmetic.
pub fn kafka_murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    // Java: `int h = seed ^ length` (the length as a 32-bit int).
    let mut h: u32 = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in chunks.by_ref() {
        let mut k = u32::from_le_bytes(<[u8; 4]>::try_from(chunk).unwrap_or_default());
        k = k.wrapping_mul(M);
        k ^= k >> R; // Java's `>>>`: logical shift, hence u32.
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    // Java's tail `switch` falls through from case 3 to case 1; `& 0xff` on
    // a signed byte is the unsigned byte value.
    let (b0, b1, b2) = match *chunks.remainder() {
        [a, b, c] => (Some(a), b, c),
        [a, b] => (Some(a), b, 0),
        [a] => (Some(a), 0, 0),
        _ => (None, 0, 0),
    };
    h ^= u32::from(b2) << 16;
    h ^= u32::from(b1) << 8;
    if let Some(b0) = b0 {
        h ^= u32::from(b0);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `BuiltInPartitioner.partitionForKey`: `toPositive(murmur2(key)) % partitions`.
/// `partitions` of 0 yields 0 (there is no valid answer; callers check counts first).
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    if partitions == 0 {
        return 0;
    }
    ((kafka_murmur2(key) & 0x7fff_ffff) as u32) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's `UtilsTest.testMurmur2`.
    #[test]
    fn kafka_known_answers() {
        let cases: [(&str, i32); 6] = [
            ("21", -973932308),
            ("foobar", -790332482),
            ("a-little-bit-long-string", -985981536),
            ("a-little-bit-longer-string", -1486304829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            ("abc", 479470107),
        ];
        for (input, expected) in cases {
            assert_eq!(kafka_murmur2(input.as_bytes()), expected, "{input}");
        }
    }

    #[test]
    fn empty_and_high_bytes_do_not_panic() {
        let _ = kafka_murmur2(&[]);
        let _ = kafka_murmur2(&[0xff, 0x80, 0x7f]);
    }

    #[test]
    fn partition_is_in_range_and_stable() {
        for n in [1u32, 2, 3, 7, 100] {
            for key in ["a", "b", "order-17", ""] {
                let p = partition_for_key(key.as_bytes(), n);
                assert!(p < n);
                assert_eq!(p, partition_for_key(key.as_bytes(), n));
            }
        }
        assert_eq!(partition_for_key(b"x", 0), 0);
    }
}
