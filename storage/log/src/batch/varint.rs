//! Kafka's zig-zag variable-length integers (protobuf-style), used for every
//! length and delta inside a v2 record.
//!
//! Zig-zag maps small negative numbers to small unsigned ones (`-1` → `1`),
//! which matters because Kafka writes "null" as length `-1`: it costs one byte.
//! Decoding follows Kafka's `ByteUtils.readVarint`/`readVarlong`: at most 5
//! (resp. 10) bytes, a continuation bit on the last allowed byte is an error,
//! and bits beyond the 32nd (64th) in the last byte are ignored, as in Java.

use super::BatchError;

/// Longest encoding of an i32 varint.
pub const MAX_VARINT_LEN: usize = 5;
/// Longest encoding of an i64 varlong.
pub const MAX_VARLONG_LEN: usize = 10;

fn zigzag32(value: i32) -> u32 {
    ((value << 1) ^ (value >> 31)) as u32
}

fn zigzag64(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// Appends the zig-zag varint encoding of `value` to `out`.
pub fn encode_varint(value: i32, out: &mut Vec<u8>) {
    encode_unsigned(u64::from(zigzag32(value)), out);
}

/// Appends the zig-zag varlong encoding of `value` to `out`.
pub fn encode_varlong(value: i64, out: &mut Vec<u8>) {
    encode_unsigned(zigzag64(value), out);
}

fn encode_unsigned(mut raw: u64, out: &mut Vec<u8>) {
    while raw >= 0x80 {
        // Truncation to the low 7 bits is the point of this cast.
        out.push((raw as u8 & 0x7f) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

fn unsigned_len(raw: u64) -> usize {
    // Each byte carries 7 bits; zero still takes one byte.
    let bits = 64 - raw.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// Bytes [`encode_varint`] writes for `value`.
pub fn varint_len(value: i32) -> usize {
    unsigned_len(u64::from(zigzag32(value)))
}

/// Bytes [`encode_varlong`] writes for `value`.
pub fn varlong_len(value: i64) -> usize {
    unsigned_len(zigzag64(value))
}

/// Decodes a varint at the start of `buf`, returning it and its length in bytes.
pub fn decode_varint(buf: &[u8]) -> Result<(i32, usize), BatchError> {
    let (raw, len) = decode_unsigned(buf, MAX_VARINT_LEN)?;
    // Java keeps only the low 32 bits of the 5th byte's contribution.
    let raw = raw as u32;
    Ok((((raw >> 1) as i32) ^ -((raw & 1) as i32), len))
}

/// Decodes a varlong at the start of `buf`, returning it and its length in bytes.
pub fn decode_varlong(buf: &[u8]) -> Result<(i64, usize), BatchError> {
    let (raw, len) = decode_unsigned(buf, MAX_VARLONG_LEN)?;
    Ok((((raw >> 1) as i64) ^ -((raw & 1) as i64), len))
}

fn decode_unsigned(buf: &[u8], max_len: usize) -> Result<(u64, usize), BatchError> {
    let mut raw: u64 = 0;
    for (i, &byte) in buf.iter().take(max_len).enumerate() {
        // i < 10, so the shift is at most 63: excess high bits fall off, as in Java.
        raw |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((raw, i + 1));
        }
    }
    if buf.len() < max_len {
        Err(BatchError::MalformedRecord("truncated varint"))
    } else {
        Err(BatchError::MalformedRecord("varint too long"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        // Values from Kafka's ByteUtilsTest.
        let cases: &[(i32, &[u8])] = &[
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (63, &[0x7e]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (-65, &[0x81, 0x01]),
            (8191, &[0xfe, 0x7f]),
            (-8192, &[0xff, 0x7f]),
            (8192, &[0x80, 0x80, 0x01]),
            (i32::MAX, &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
            (i32::MIN, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ];
        for &(value, bytes) in cases {
            let mut out = Vec::new();
            encode_varint(value, &mut out);
            assert_eq!(out, bytes, "encoding {value}");
            assert_eq!(varint_len(value), bytes.len());
            assert_eq!(decode_varint(bytes), Ok((value, bytes.len())));
        }
        let mut out = Vec::new();
        encode_varlong(i64::MIN, &mut out);
        assert_eq!(
            out,
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
        assert_eq!(decode_varlong(&out), Ok((i64::MIN, 10)));
    }

    #[test]
    fn rejects_overlong_and_truncated() {
        assert_eq!(
            decode_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]),
            Err(BatchError::MalformedRecord("varint too long"))
        );
        assert_eq!(
            decode_varint(&[0x80, 0x80]),
            Err(BatchError::MalformedRecord("truncated varint"))
        );
        assert_eq!(
            decode_varint(&[]),
            Err(BatchError::MalformedRecord("truncated varint"))
        );
        assert!(decode_varlong(&[0xff; 10]).is_err());
        assert!(decode_varlong(&[0xff; 11]).is_err());
    }

    proptest! {
        #[test]
        fn varint_round_trip(v: i32) {
            let mut out = Vec::new();
            encode_varint(v, &mut out);
            prop_assert_eq!(out.len(), varint_len(v));
            out.push(0xaa); // trailing bytes are not consumed
            prop_assert_eq!(decode_varint(&out), Ok((v, varint_len(v))));
        }

        #[test]
        fn varlong_round_trip(v: i64) {
            let mut out = Vec::new();
            encode_varlong(v, &mut out);
            prop_assert_eq!(out.len(), varlong_len(v));
            prop_assert_eq!(decode_varlong(&out), Ok((v, out.len())));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = decode_varint(&bytes);
            let _ = decode_varlong(&bytes);
        }
    }
}
