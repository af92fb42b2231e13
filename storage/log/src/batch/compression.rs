//! The compression codecs Kafka defines for a batch's records section.
//!
//! In a v2 batch only the records section (bytes 61..) is compressed, as one
//! stream, and the codec is named by attribute bits 0-2. Each codec must be
//! exactly what Kafka's Java client writes and reads, because Strata stores
//! producers' batches untouched and hands them to arbitrary consumers:
//!
//! * gzip: a gzip stream; decoded as multi-member, as `GZIPInputStream` does.
//! * snappy: the *xerial* framing of snappy-java's `SnappyOutputStream`
//!   (16-byte header, then `[u32 BE length][raw snappy block]`, blocks of at
//!   most 32 KiB uncompressed). Decoding also accepts a plain raw snappy
//!   block, which snappy-java falls back to and librdkafka may send.
//! * lz4: the standard LZ4 frame format with independent 64 KiB blocks, which
//!   is what Kafka's `Lz4BlockOutputStream` writes. Its reader is stricter
//!   than the LZ4 spec (one frame, independent blocks, an end mark), and so is
//!   [`Compression::decompress`]: a frame Java consumers would choke on must
//!   not get into the log.
//! * zstd: a standard zstd frame.
//!
//! Decompression never trusts sizes declared in the input: output is read
//! through a `take(max + 1)` limit and anything longer is [`BatchError::TooLarge`],
//! so a tiny batch cannot expand into an unbounded allocation.

use std::io::{Read, Write};

use super::BatchError;
use super::header::COMPRESSION_MASK;

/// Compression codec of a batch's records section (attribute bits 0-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum Compression {
    /// Uncompressed (codec 0).
    #[default]
    None,
    /// gzip (codec 1).
    Gzip,
    /// snappy, xerial-framed (codec 2).
    Snappy,
    /// LZ4 frame format (codec 3).
    Lz4,
    /// zstd (codec 4).
    Zstd,
}

/// Header snappy-java writes before the first block: magic, version 1,
/// minimum compatible version 1.
const XERIAL_HEADER: [u8; 16] = [
    0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0x00, 0, 0, 0, 1, 0, 0, 0, 1,
];
/// Only the 8-byte magic identifies xerial framing; the versions may differ.
const XERIAL_MAGIC_LEN: usize = 8;
/// snappy-java's default block size: each block holds at most this much input.
const XERIAL_BLOCK_SIZE: usize = 32 * 1024;
/// A raw snappy block cannot expand by more than ~22x (a 3-byte copy yields
/// at most 64 bytes), so a declared length beyond this factor is a lie and is
/// refused before anything is allocated for it.
const SNAPPY_MAX_EXPANSION: usize = 32;
/// zstd level Kafka uses by default.
const ZSTD_LEVEL: i32 = 3;

impl Compression {
    /// The codec named by attribute bits 0-2; codecs 5-7 are undefined.
    pub fn from_attributes(attributes: i16) -> Result<Compression, BatchError> {
        match attributes & COMPRESSION_MASK {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            // Masked to 3 bits, so the value fits in a u8.
            other => Err(BatchError::UnsupportedCompression(other as u8)),
        }
    }

    /// The attribute bits (0-2) that name this codec.
    pub fn attribute_bits(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// Kafka's name for the codec (`compression.type`).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// Compresses `input` as one stream, the way Kafka's Java client does.
    pub fn compress(self, input: &[u8]) -> Result<Vec<u8>, BatchError> {
        match self {
            Compression::None => Ok(input.to_vec()),
            Compression::Gzip => {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                enc.write_all(input).map_err(compress_err)?;
                enc.finish().map_err(compress_err)
            }
            Compression::Snappy => snappy_xerial_compress(input),
            Compression::Lz4 => {
                let info = lz4_flex::frame::FrameInfo::new()
                    .block_size(lz4_flex::frame::BlockSize::Max64KB)
                    .block_mode(lz4_flex::frame::BlockMode::Independent);
                let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
                enc.write_all(input).map_err(compress_err)?;
                enc.finish().map_err(compress_err)
            }
            Compression::Zstd => zstd::bulk::compress(input, ZSTD_LEVEL).map_err(compress_err),
        }
    }

    /// Decompresses a whole records section, refusing to produce more than
    /// `max` bytes ([`BatchError::TooLarge`]).
    pub fn decompress(self, input: &[u8], max: usize) -> Result<Vec<u8>, BatchError> {
        match self {
            Compression::None => {
                if input.len() > max {
                    return Err(BatchError::TooLarge { limit: max });
                }
                Ok(input.to_vec())
            }
            Compression::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(input), max),
            Compression::Snappy => snappy_decompress(input, max),
            Compression::Lz4 => {
                check_lz4_frame(input)?;
                read_bounded(lz4_flex::frame::FrameDecoder::new(input), max)
            }
            Compression::Zstd => {
                let dec =
                    zstd::stream::read::Decoder::with_buffer(input).map_err(decompress_err)?;
                read_bounded(dec, max)
            }
        }
    }
}

fn compress_err(e: impl std::fmt::Display) -> BatchError {
    BatchError::Compress(e.to_string())
}

fn decompress_err(e: impl std::fmt::Display) -> BatchError {
    BatchError::Decompress(e.to_string())
}

/// Reads `reader` to the end, but never more than `max + 1` bytes: the extra
/// byte tells "exactly max" apart from "more than max".
fn read_bounded(reader: impl Read, max: usize) -> Result<Vec<u8>, BatchError> {
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let mut out = Vec::new();
    reader
        .take(limit)
        .read_to_end(&mut out)
        .map_err(decompress_err)?;
    if out.len() > max {
        return Err(BatchError::TooLarge { limit: max });
    }
    Ok(out)
}

fn snappy_xerial_compress(input: &[u8]) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::with_capacity(
        XERIAL_HEADER
            .len()
            .saturating_add(snap::raw::max_compress_len(input.len())),
    );
    out.extend_from_slice(&XERIAL_HEADER);
    let mut encoder = snap::raw::Encoder::new();
    for chunk in input.chunks(XERIAL_BLOCK_SIZE) {
        let block = encoder.compress_vec(chunk).map_err(compress_err)?;
        // A block of at most 32 KiB compresses to far less than 4 GiB.
        let len = u32::try_from(block.len()).map_err(compress_err)?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&block);
    }
    Ok(out)
}

const LZ4_MAGIC: [u8; 4] = 0x184D_2204u32.to_le_bytes();
/// FLG: version (bits 7-6) must be 01.
const LZ4_FLG_VERSION_MASK: u8 = 0xc0;
const LZ4_FLG_VERSION_1: u8 = 0x40;
/// FLG bit 5: blocks are independent; Kafka refuses linked blocks.
const LZ4_FLG_INDEPENDENT: u8 = 0x20;
const LZ4_FLG_BLOCK_CHECKSUM: u8 = 0x10;
const LZ4_FLG_CONTENT_SIZE: u8 = 0x08;
const LZ4_FLG_CONTENT_CHECKSUM: u8 = 0x04;
/// FLG bits 1-0: reserved for Kafka (bit 0 is a dictionary id in the spec,
/// which Kafka does not support).
const LZ4_FLG_RESERVED: u8 = 0x03;
/// BD bits 7 and 3-0 are reserved.
const LZ4_BD_RESERVED: u8 = 0x8f;
/// Block size flag in a block header: the block is stored uncompressed.
const LZ4_UNCOMPRESSED_BIT: u32 = 0x8000_0000;

/// Checks that `input` is exactly one LZ4 frame that Kafka's
/// `Lz4BlockInputStream` accepts: version 1, independent blocks, no reserved
/// bits, a 64 KiB-4 MiB block size, blocks within it, and an end mark. Only
/// the framing is walked here; `lz4_flex` checks the header checksum and
/// decodes. This matters because `lz4_flex` treats a missing end mark as the
/// end of the frame, where Java fails with "Stream ended prematurely".
fn check_lz4_frame(input: &[u8]) -> Result<(), BatchError> {
    let bad = |what: &str| decompress_err(format!("invalid LZ4 frame: {what}"));
    let (magic, rest) = input
        .split_first_chunk::<4>()
        .ok_or_else(|| bad("truncated magic"))?;
    if *magic != LZ4_MAGIC {
        return Err(bad("bad magic"));
    }
    let (&[flg, bd], rest) = rest
        .split_first_chunk::<2>()
        .ok_or_else(|| bad("truncated descriptor"))?;
    if flg & LZ4_FLG_VERSION_MASK != LZ4_FLG_VERSION_1 {
        return Err(bad("unsupported version"));
    }
    if flg & LZ4_FLG_RESERVED != 0 || bd & LZ4_BD_RESERVED != 0 {
        return Err(bad("reserved bits set"));
    }
    if flg & LZ4_FLG_INDEPENDENT == 0 {
        return Err(bad("dependent blocks are not supported by Kafka"));
    }
    let max_block: usize = match (bd >> 4) & 0x07 {
        4 => 64 << 10,
        5 => 256 << 10,
        6 => 1 << 20,
        7 => 4 << 20,
        _ => return Err(bad("unsupported block size")),
    };
    // Optional content size, then the header checksum byte.
    let skip = if flg & LZ4_FLG_CONTENT_SIZE != 0 {
        9
    } else {
        1
    };
    let mut rest = rest
        .get(skip..)
        .ok_or_else(|| bad("truncated descriptor"))?;
    let block_checksum = if flg & LZ4_FLG_BLOCK_CHECKSUM != 0 {
        4
    } else {
        0
    };
    loop {
        let (word, after) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| bad("stream ended before the end mark"))?;
        let size = u32::from_le_bytes(*word) & !LZ4_UNCOMPRESSED_BIT;
        if size == 0 {
            let trailer = if flg & LZ4_FLG_CONTENT_CHECKSUM != 0 {
                4
            } else {
                0
            };
            return if after.len() == trailer {
                Ok(())
            } else if after.len() < trailer {
                Err(bad("truncated content checksum"))
            } else {
                Err(bad("trailing bytes after the frame"))
            };
        }
        let size = usize::try_from(size).map_err(|_| bad("block too large"))?;
        if size > max_block {
            return Err(bad("block larger than the declared maximum"));
        }
        rest = after
            .get(size.saturating_add(block_checksum)..)
            .ok_or_else(|| bad("truncated block"))?;
    }
}

/// Decodes xerial-framed snappy, or a single raw snappy block when the xerial
/// magic is absent (snappy-java's own fallback).
fn snappy_decompress(input: &[u8], max: usize) -> Result<Vec<u8>, BatchError> {
    let framed = input.len() >= XERIAL_HEADER.len()
        && input.get(..XERIAL_MAGIC_LEN) == XERIAL_HEADER.get(..XERIAL_MAGIC_LEN);
    let mut out = Vec::new();
    if !framed {
        snappy_raw_block(input, max, &mut out)?;
        return Ok(out);
    }
    let mut rest = input.get(XERIAL_HEADER.len()..).unwrap_or_default();
    while !rest.is_empty() {
        let (len_bytes, after) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| decompress_err("truncated xerial snappy block length"))?;
        let len = usize::try_from(u32::from_be_bytes(*len_bytes))
            .map_err(|_| decompress_err("xerial snappy block length overflows"))?;
        if len > after.len() {
            return Err(decompress_err(format!(
                "xerial snappy block of {len} bytes but only {} remain",
                after.len()
            )));
        }
        let (block, tail) = after.split_at(len);
        snappy_raw_block(block, max, &mut out)?;
        rest = tail;
    }
    Ok(out)
}

/// Appends one decoded raw snappy block to `out`, keeping `out` within `max`.
fn snappy_raw_block(block: &[u8], max: usize, out: &mut Vec<u8>) -> Result<(), BatchError> {
    let declared = snap::raw::decompress_len(block).map_err(decompress_err)?;
    if declared > max.saturating_sub(out.len()) {
        return Err(BatchError::TooLarge { limit: max });
    }
    if declared > block.len().saturating_mul(SNAPPY_MAX_EXPANSION) {
        return Err(decompress_err(format!(
            "snappy block of {} bytes claims {declared} uncompressed bytes",
            block.len()
        )));
    }
    let start = out.len();
    out.resize(start.saturating_add(declared), 0);
    let dst = out.get_mut(start..).unwrap_or_default();
    let written = snap::raw::Decoder::new()
        .decompress(block, dst)
        .map_err(decompress_err)?;
    out.truncate(start.saturating_add(written));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ (i / 7) as u8).collect()
    }

    #[test]
    fn round_trip_every_codec() {
        for c in ALL {
            for len in [0, 1, 100, XERIAL_BLOCK_SIZE, XERIAL_BLOCK_SIZE + 1, 200_000] {
                let data = sample(len);
                let packed = c.compress(&data).unwrap();
                assert_eq!(c.decompress(&packed, len).unwrap(), data, "{c:?} {len}");
                assert_eq!(Compression::from_attributes(c.attribute_bits()), Ok(c));
            }
        }
    }

    #[test]
    fn bound_is_exact() {
        let data = sample(10_000);
        for c in ALL {
            let packed = c.compress(&data).unwrap();
            assert!(c.decompress(&packed, 10_000).is_ok());
            assert_eq!(
                c.decompress(&packed, 9_999),
                Err(BatchError::TooLarge { limit: 9_999 }),
                "{c:?}"
            );
        }
    }

    #[test]
    fn bombs_are_stopped_at_the_bound() {
        let zeros = vec![0u8; 8 << 20];
        for c in ALL {
            let packed = c.compress(&zeros).unwrap();
            assert_eq!(
                c.decompress(&packed, 1 << 20),
                Err(BatchError::TooLarge { limit: 1 << 20 }),
                "{c:?}"
            );
        }
    }

    #[test]
    fn snappy_is_xerial_framed_in_32k_blocks() {
        let data = sample(XERIAL_BLOCK_SIZE * 2 + 5);
        let packed = Compression::Snappy.compress(&data).unwrap();
        assert_eq!(&packed[..16], &XERIAL_HEADER);
        let mut rest = &packed[16..];
        let mut blocks = 0;
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            let block = &rest[4..4 + len];
            assert!(snap::raw::decompress_len(block).unwrap() <= XERIAL_BLOCK_SIZE);
            rest = &rest[4 + len..];
            blocks += 1;
        }
        assert_eq!(blocks, 3);
    }

    #[test]
    fn snappy_decodes_raw_blocks() {
        let data = sample(5000);
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(Compression::Snappy.decompress(&raw, 5000).unwrap(), data);
        // A raw block that lies about its length is refused before allocation.
        let liar = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        assert!(Compression::Snappy.decompress(&liar, usize::MAX).is_err());
        assert_eq!(
            Compression::Snappy.decompress(&liar, 1000),
            Err(BatchError::TooLarge { limit: 1000 })
        );
    }

    #[test]
    fn gzip_multi_member() {
        let mut packed = Compression::Gzip.compress(b"hello ").unwrap();
        packed.extend(Compression::Gzip.compress(b"world").unwrap());
        assert_eq!(
            Compression::Gzip.decompress(&packed, 100).unwrap(),
            b"hello world"
        );
    }

    #[test]
    fn lz4_frame_header_is_standard() {
        let packed = Compression::Lz4.compress(b"abc").unwrap();
        // LZ4 frame magic, then FLG: version 01, block independence set.
        assert_eq!(&packed[..4], &[0x04, 0x22, 0x4d, 0x18]);
        assert_eq!(packed[4] & 0xe0, 0x60);
        // BD: 64 KiB max block size.
        assert_eq!(packed[5], 0x40);
    }

    #[test]
    fn lz4_frames_kafka_would_reject_are_refused() {
        let data = sample(200_000);
        let packed = Compression::Lz4.compress(&data).unwrap();
        // Every strict prefix lacks the end mark (lz4_flex alone accepts
        // several of them), and trailing bytes are refused too.
        for cut in 0..packed.len() {
            assert!(
                Compression::Lz4
                    .decompress(&packed[..cut], 1 << 20)
                    .is_err()
            );
        }
        let mut long = packed.clone();
        long.push(0);
        assert!(Compression::Lz4.decompress(&long, 1 << 20).is_err());
        // Linked blocks.
        let linked = {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_mode(lz4_flex::frame::BlockMode::Linked)
                .block_size(lz4_flex::frame::BlockSize::Max64KB);
            let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
            enc.write_all(&data).unwrap();
            enc.finish().unwrap()
        };
        assert!(Compression::Lz4.decompress(&linked, 1 << 20).is_err());
        // Checksums and a declared content size are fine.
        let checked = {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max256KB)
                .block_checksums(true)
                .content_checksum(true)
                .content_size(Some(data.len() as u64));
            let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
            enc.write_all(&data).unwrap();
            enc.finish().unwrap()
        };
        assert_eq!(
            Compression::Lz4.decompress(&checked, 1 << 20).unwrap(),
            data
        );
    }

    #[test]
    fn unknown_codecs() {
        for bits in 5..8 {
            assert_eq!(
                Compression::from_attributes(bits | 0x18),
                Err(BatchError::UnsupportedCompression(bits as u8))
            );
        }
    }

    proptest! {
        #[test]
        fn decompress_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            for c in ALL {
                let _ = c.decompress(&bytes, 1 << 16);
            }
            // Also behind a valid xerial header.
            let mut framed = XERIAL_HEADER.to_vec();
            framed.extend_from_slice(&bytes);
            let _ = Compression::Snappy.decompress(&framed, 1 << 16);
        }

        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
            for c in ALL {
                let packed = c.compress(&data).unwrap();
                prop_assert_eq!(&c.decompress(&packed, data.len()).unwrap(), &data);
            }
        }
    }
}
