//! KPL aggregation: many user records in one Kinesis record, in the format the Kinesis Producer
//! Library writes and every KCL consumer understands:
//!
//! ```text
//! 0xF3 0x89 0x9A 0xC2 | protobuf AggregatedRecord | MD5(protobuf), 16 bytes
//! ```
//!
//! [`Aggregator`] appends records incrementally (protobuf fields may come in any order, so the
//! partition-key table is written first and each record is appended as it arrives) and always
//! knows the exact size, so a Kinesis record never exceeds [`MAX_KINESIS_RECORD_BYTES`].

use md5::{Digest, Md5};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use prost::Message;

/// KPL magic prefix.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const DIGEST_LEN: usize = 16;

/// Kinesis: a record's data blob plus partition key may not exceed 1 MiB
/// (<https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecords.html>).
pub const MAX_KINESIS_RECORD_BYTES: usize = 1024 * 1024;
/// Kinesis: a partition key is 1 to 256 Unicode characters.
pub const MAX_PARTITION_KEY_BYTES: usize = 256;

#[derive(Clone, PartialEq, Message)]
pub struct AggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    pub partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    pub records: Vec<Record>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Record {
    /// `required` in the KPL's proto2 schema: always encoded, even when 0.
    #[prost(uint64, required, tag = "1")]
    pub partition_key_index: u64,
    #[prost(uint64, optional, tag = "2")]
    pub explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "vec", required, tag = "3")]
    pub data: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KplError {
    #[error("aggregated record checksum mismatch (MD5 over {len} bytes)")]
    Checksum { len: usize },
    #[error("aggregated record is not valid protobuf: {0}")]
    Decode(String),
}

/// Builds one aggregated Kinesis record.
pub struct Aggregator {
    buf: Vec<u8>,
    count: usize,
    limit: usize,
}

impl Aggregator {
    /// `limit` is the largest data blob to produce (at most [`MAX_KINESIS_RECORD_BYTES`] minus
    /// the partition key).
    pub fn new(partition_key: &str, limit: usize) -> Self {
        let mut buf = Vec::with_capacity(limit.min(256 * 1024));
        buf.extend_from_slice(&MAGIC);
        encode_key(1, WireType::LengthDelimited, &mut buf);
        encode_varint(partition_key.len() as u64, &mut buf);
        buf.extend_from_slice(partition_key.as_bytes());
        Aggregator {
            buf,
            count: 0,
            limit: limit.min(MAX_KINESIS_RECORD_BYTES),
        }
    }

    fn entry_len(data_len: usize) -> usize {
        // Record { 1: 0 (2 bytes), 3: data }
        let inner = 2 + 1 + encoded_len_varint(data_len as u64) + data_len;
        1 + encoded_len_varint(inner as u64) + inner
    }

    /// Size of the finished blob if `data_len` more bytes were added.
    pub fn size_with(&self, data_len: usize) -> usize {
        self.buf.len() + Self::entry_len(data_len) + DIGEST_LEN
    }

    /// Append `data` if it fits; `false` means finish this aggregate and start another.
    pub fn try_push(&mut self, data: &[u8]) -> bool {
        if self.size_with(data.len()) > self.limit {
            return false;
        }
        let inner = 2 + 1 + encoded_len_varint(data.len() as u64) + data.len();
        encode_key(3, WireType::LengthDelimited, &mut self.buf);
        encode_varint(inner as u64, &mut self.buf);
        encode_key(1, WireType::Varint, &mut self.buf);
        encode_varint(0, &mut self.buf);
        encode_key(3, WireType::LengthDelimited, &mut self.buf);
        encode_varint(data.len() as u64, &mut self.buf);
        self.buf.extend_from_slice(data);
        self.count += 1;
        true
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of the finished blob.
    pub fn size(&self) -> usize {
        self.buf.len() + DIGEST_LEN
    }

    pub fn finish(mut self) -> Vec<u8> {
        let digest = Md5::digest(&self.buf[MAGIC.len()..]);
        self.buf.extend_from_slice(&digest);
        self.buf
    }
}

/// The user records inside a Kinesis record. A blob without the KPL magic is one record
/// (what a non-aggregating producer would have sent).
pub fn deaggregate(blob: &[u8]) -> Result<Vec<Vec<u8>>, KplError> {
    Ok(records(blob)?.into_iter().map(<[u8]>::to_vec).collect())
}

/// [`deaggregate`] without copying: the user records' data, borrowed from `blob`.
pub fn records(blob: &[u8]) -> Result<Vec<&[u8]>, KplError> {
    if blob.len() < MAGIC.len() + DIGEST_LEN || blob[..MAGIC.len()] != MAGIC {
        return Ok(vec![blob]);
    }
    let body = &blob[MAGIC.len()..blob.len() - DIGEST_LEN];
    let digest = &blob[blob.len() - DIGEST_LEN..];
    if Md5::digest(body).as_slice() != digest {
        return Err(KplError::Checksum { len: body.len() });
    }
    let dec = |e: prost::DecodeError| KplError::Decode(e.to_string());
    let mut out = Vec::new();
    let mut buf = body;
    while !buf.is_empty() {
        let (tag, wt) = prost::encoding::decode_key(&mut buf).map_err(dec)?;
        if tag == 3 && wt == WireType::LengthDelimited {
            let mut msg = length_delimited(&mut buf)?;
            // Record { partition_key_index = 1, explicit_hash_key_index = 2, data = 3 }.
            let mut data: &[u8] = &[];
            while !msg.is_empty() {
                let (t, w) = prost::encoding::decode_key(&mut msg).map_err(dec)?;
                if t == 3 && w == WireType::LengthDelimited {
                    data = length_delimited(&mut msg)?;
                } else {
                    prost::encoding::skip_field(w, t, &mut msg, Default::default()).map_err(dec)?;
                }
            }
            out.push(data);
        } else {
            prost::encoding::skip_field(wt, tag, &mut buf, Default::default()).map_err(dec)?;
        }
    }
    Ok(out)
}

fn length_delimited<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], KplError> {
    let len = prost::encoding::decode_varint(buf).map_err(|e| KplError::Decode(e.to_string()))?;
    if len > buf.len() as u64 {
        return Err(KplError::Decode("buffer underflow".into()));
    }
    let (v, rest) = buf.split_at(len as usize);
    *buf = rest;
    Ok(v)
}

/// Walk the top-level fields of an aggregate without copying record data:
/// calls `f(tag, value)` for each length-delimited field; stops on malformed input.
fn top_level_fields(blob: &[u8], mut f: impl FnMut(u32, &[u8]) -> bool) {
    if blob.len() < MAGIC.len() + DIGEST_LEN || blob[..MAGIC.len()] != MAGIC {
        return;
    }
    let mut body = &blob[MAGIC.len()..blob.len() - DIGEST_LEN];
    while !body.is_empty() {
        let Ok((tag, wire)) = prost::encoding::decode_key(&mut body) else {
            return;
        };
        if wire != WireType::LengthDelimited {
            return;
        }
        let Ok(len) = prost::encoding::decode_varint(&mut body) else {
            return;
        };
        let len = len as usize;
        if len > body.len() {
            return;
        }
        let (value, rest) = body.split_at(len);
        if !f(tag, value) {
            return;
        }
        body = rest;
    }
}

/// The partition key of an aggregated blob (the batch id the gateway gave it), read without
/// decoding the records.
pub fn partition_key(blob: &[u8]) -> Option<String> {
    let mut key = None;
    top_level_fields(blob, |tag, value| {
        if tag == 1 {
            key = String::from_utf8(value.to_vec()).ok();
            return false;
        }
        true
    });
    key
}

/// How many user records an aggregate holds (1 for a plain blob), without decoding them.
pub fn count_records(blob: &[u8]) -> u64 {
    if blob.len() < MAGIC.len() + DIGEST_LEN || blob[..MAGIC.len()] != MAGIC {
        return 1;
    }
    let mut n = 0;
    top_level_fields(blob, |tag, _| {
        n += u64::from(tag == 3);
        true
    });
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_matches_the_reference_message() {
        let mut a = Aggregator::new("batch-1", MAX_KINESIS_RECORD_BYTES - 7);
        assert!(a.try_push(b"one"));
        assert!(a.try_push(b""));
        assert!(a.try_push(&[7u8; 300]));
        let size = a.size();
        let blob = a.finish();
        assert_eq!(blob.len(), size);
        // Same bytes prost would produce for the reference message.
        let reference = AggregatedRecord {
            partition_key_table: vec!["batch-1".into()],
            explicit_hash_key_table: vec![],
            records: [b"one".to_vec(), vec![], vec![7u8; 300]]
                .into_iter()
                .map(|data| Record {
                    partition_key_index: 0,
                    explicit_hash_key_index: None,
                    data,
                })
                .collect(),
        };
        assert_eq!(
            &blob[4..blob.len() - 16],
            reference.encode_to_vec().as_slice()
        );
        assert_eq!(
            deaggregate(&blob).unwrap(),
            vec![b"one".to_vec(), vec![], vec![7u8; 300]]
        );
        assert_eq!(partition_key(&blob).as_deref(), Some("batch-1"));
        assert_eq!(count_records(&blob), 3);
        assert_eq!(count_records(b"plain"), 1);
    }

    #[test]
    fn corrupt_and_plain_blobs() {
        let mut a = Aggregator::new("k", 1000);
        a.try_push(b"x");
        let mut blob = a.finish();
        let n = blob.len();
        blob[n - 20] ^= 1;
        assert!(matches!(deaggregate(&blob), Err(KplError::Checksum { .. })));
        assert_eq!(deaggregate(b"plain").unwrap(), vec![b"plain".to_vec()]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn never_exceeds_the_limit(sizes in prop::collection::vec(0usize..70_000, 1..200), limit in 1_000usize..MAX_KINESIS_RECORD_BYTES) {
            let mut blobs = Vec::new();
            let mut a = Aggregator::new("pk", limit);
            let mut pushed = 0usize;
            for s in &sizes {
                let data = vec![1u8; *s];
                if !a.try_push(&data) {
                    let full = std::mem::replace(&mut a, Aggregator::new("pk", limit));
                    if !full.is_empty() { blobs.push(full.finish()); }
                    if !a.try_push(&data) { continue; } // larger than any aggregate: rejected
                }
                pushed += 1;
            }
            if !a.is_empty() { blobs.push(a.finish()); }
            let mut total = 0;
            for b in &blobs {
                prop_assert!(b.len() <= limit);
                total += deaggregate(b).unwrap().len();
            }
            prop_assert_eq!(total, pushed);
        }
    }
}
