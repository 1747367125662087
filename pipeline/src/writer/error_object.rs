//! Records the pipeline cannot store as rows → one JSON object each under `errors/<shard>/`.
//!
//! In: the position of an undecodable Kinesis record (its sequence number, and the index of
//! the user record inside the aggregate, or none when the whole aggregate is unreadable),
//! the reason and the bytes. Out: `errors/<shard>/<sequence>-<sub>.json` in the lake,
//! written and fsynced before the writer reads on, holding the reason and the first
//! [`MAX_ERROR_DATA_BYTES`] of the data in hex. The key depends only on the position, so a
//! replay overwrites the same object.

use object_store::{ObjectStoreExt, PutPayload};

use edgeway_record::table;

use super::WriteError;
use crate::checkpoint::Seq;
use crate::lake::Lake;

/// Bytes of an undecodable record kept in its error object.
pub const MAX_ERROR_DATA_BYTES: usize = 64 * 1024;

/// One undecodable record.
pub(super) struct Rejected<'a> {
    pub shard: &'a str,
    pub seq: &'a Seq,
    /// The user record inside the aggregate; `None` for the whole Kinesis record.
    pub sub: Option<u32>,
    pub reason: &'a str,
    pub data: &'a [u8],
}

impl Rejected<'_> {
    /// Key of the object relative to the lake root.
    pub fn key(&self) -> String {
        table::error_key(self.shard, self.seq.as_str(), self.sub.unwrap_or(0))
    }

    /// The object's JSON.
    pub fn body(&self) -> serde_json::Value {
        let data = self.data;
        let kept = &data[..data.len().min(MAX_ERROR_DATA_BYTES)];
        let hex: String = kept.iter().map(|b| format!("{b:02x}")).collect();
        serde_json::json!({
            "shard": self.shard,
            "sequence_number": self.seq.as_str(),
            "sub_sequence": self.sub,
            "whole_kinesis_record": self.sub.is_none(),
            "reason": self.reason,
            "data_bytes": data.len(),
            "data_hex": hex,
            "data_truncated": kept.len() < data.len(),
        })
    }

    /// Write the object and make it durable.
    pub async fn write(&self, lake: &Lake) -> Result<(), WriteError> {
        let key = self.key();
        lake.store
            .put(
                &lake.path(&key),
                PutPayload::from(self.body().to_string().into_bytes()),
            )
            .await?;
        lake.sync(&key).await.map_err(WriteError::Sync)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_object_names_its_position_and_keeps_a_bounded_prefix_of_the_data() {
        let seq = Seq::parse("42").unwrap();
        let small = Rejected {
            shard: "s1",
            seq: &seq,
            sub: Some(3),
            reason: "not an AccessLogRecord",
            data: &[0x00, 0xab, 0xff],
        };
        assert_eq!(small.key(), "errors/s1/42-3.json");
        assert_eq!(
            small.body(),
            serde_json::json!({
                "shard": "s1",
                "sequence_number": "42",
                "sub_sequence": 3,
                "whole_kinesis_record": false,
                "reason": "not an AccessLogRecord",
                "data_bytes": 3,
                "data_hex": "00abff",
                "data_truncated": false,
            })
        );
        let big = vec![0x5a; MAX_ERROR_DATA_BYTES + 1];
        let whole = Rejected {
            sub: None,
            data: &big,
            ..small
        };
        assert_eq!(whole.key(), "errors/s1/42-0.json");
        let b = whole.body();
        assert_eq!(b["whole_kinesis_record"], true);
        assert_eq!(b["sub_sequence"], serde_json::Value::Null);
        assert_eq!(b["data_bytes"], MAX_ERROR_DATA_BYTES + 1);
        assert_eq!(b["data_truncated"], true);
        assert_eq!(
            b["data_hex"].as_str().unwrap().len(),
            2 * MAX_ERROR_DATA_BYTES
        );
        let exact = Rejected {
            data: &big[..MAX_ERROR_DATA_BYTES],
            ..whole
        };
        assert_eq!(exact.body()["data_truncated"], false);
    }
}
