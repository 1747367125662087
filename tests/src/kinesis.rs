//! Kinesis helpers for tests: create a stream in moto and read every record back, split into
//! the gateway's batches (aggregated Kinesis records) and their access-log records.

use std::time::Duration;

use aws_sdk_kinesis::types::{ShardIteratorType, StreamStatus};
use edgeway_record::{kpl, AccessLogRecord};

use crate::aws::Moto;
use crate::eventually;

pub async fn client(moto: &Moto) -> aws_sdk_kinesis::Client {
    let conf = edgeway_record::aws::sdk_config(&edgeway_record::aws::AwsSettings {
        region: Some(crate::aws::REGION.into()),
        endpoint: Some(moto.endpoint.clone()),
    })
    .await;
    let conf = aws_sdk_kinesis::config::Builder::from(&conf)
        .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
            "testing", "testing", None, None, "moto",
        ))
        .build();
    aws_sdk_kinesis::Client::from_conf(conf)
}

/// Create `name` with `shards` shards and wait until it is ACTIVE.
pub async fn create_stream(k: &aws_sdk_kinesis::Client, name: &str, shards: i32) {
    k.create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .expect("create stream");
    eventually("stream active", Duration::from_secs(20), || async {
        let d = k
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .ok()?;
        let s = d.stream_description_summary()?;
        (s.stream_status() == &StreamStatus::Active).then_some(())
    })
    .await;
}

/// One aggregated Kinesis record as read back: its partition key (the gateway's batch id) and
/// the access-log records inside.
pub struct Batch {
    pub key: String,
    pub records: Vec<AccessLogRecord>,
}

/// Read every shard of `name` from the beginning.
pub async fn read_all(k: &aws_sdk_kinesis::Client, name: &str) -> Vec<Batch> {
    let shards = k
        .list_shards()
        .stream_name(name)
        .send()
        .await
        .expect("list shards");
    let mut out = Vec::new();
    for shard in shards.shards() {
        let mut it = k
            .get_shard_iterator()
            .stream_name(name)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("iterator")
            .shard_iterator()
            .map(str::to_string);
        while let Some(i) = it.take() {
            let r = k
                .get_records()
                .shard_iterator(i)
                .limit(1000)
                .send()
                .await
                .expect("get records");
            for rec in r.records() {
                let blob = rec.data().as_ref();
                // Access-log records only: other kinds (policy changes) are left out.
                let records = kpl::deaggregate(blob)
                    .expect("valid aggregate")
                    .iter()
                    .filter_map(|b| match edgeway_record::kind::split(b) {
                        Ok((edgeway_record::kind::RecordKind::AccessLog, body)) => {
                            Some(AccessLogRecord::from_bytes(body).expect("valid record"))
                        }
                        _ => None,
                    })
                    .collect();
                out.push(Batch {
                    key: rec.partition_key().unwrap_or_default().to_string(),
                    records,
                });
            }
            if r.records().is_empty() {
                break;
            }
            it = r.next_shard_iterator().map(str::to_string);
        }
    }
    out
}
