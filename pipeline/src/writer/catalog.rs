//! Registering the partitions files land in with the Glue catalog (`--register-partitions`).
//!
//! In: the partition of each durable file, after its upload ([`PartitionRegistry::ensure`]).
//! Out: one BatchCreatePartition per partition and process, for engines that do not read
//! Athena's partition projection. A failure is logged and retried with the partition's next
//! file; it never holds up the data or the checkpoint.

use std::collections::HashSet;
use std::sync::Mutex;

use edgeway_record::table::{self, Partition};

use crate::metrics::{inc, Metrics};

/// Registers each partition files land in with Glue, once per process (see the module doc).
pub struct PartitionRegistry {
    glue: aws_sdk_glue::Client,
    location: String,
    known: Mutex<HashSet<Partition>>,
}

impl PartitionRegistry {
    pub fn new(glue: aws_sdk_glue::Client, location: String) -> PartitionRegistry {
        PartitionRegistry {
            glue,
            location,
            known: Default::default(),
        }
    }

    pub(super) async fn ensure(&self, p: Partition, metrics: &Metrics) {
        if self.known.lock().is_ok_and(|k| k.contains(&p)) {
            return;
        }
        match table::register_partitions(&self.glue, &self.location, &[p]).await {
            Ok(n) => {
                inc(&metrics.partitions_registered, n as u64);
                if let Ok(mut k) = self.known.lock() {
                    k.insert(p);
                }
            }
            Err(e) => {
                inc(&metrics.retries, 1);
                tracing::warn!(partition = %p.path(), error = %e, "partition registration failed; retried with the partition's next file");
            }
        }
    }
}
