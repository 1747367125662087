//! Shard leases in DynamoDB, with KCL's semantics: one item per shard, taken and renewed with
//! conditional writes on a counter, so two workers never both believe they own a shard; an
//! owner that stops renewing loses the shard once its lease expires. The item also carries the
//! shard's checkpoint, written under the same condition.
//!
//! Item: `shard_id` (hash key), `owner`, `counter`, `expires_ms`, `checkpoint` (JSON),
//! `ended`, `parents`.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use aws_sdk_dynamodb::Client;

use crate::checkpoint::Checkpoint;
use crate::clock::Clock;
use crate::metrics::{inc, Metrics};

/// Default lease duration: a dead worker's shards move after this long.
pub const DEFAULT_LEASE_MS: i64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease on {shard} lost to another worker")]
    Lost { shard: String },
    #[error("dynamodb {op} on {table}: {message}")]
    Dynamo {
        op: &'static str,
        table: String,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub shard: String,
    pub owner: String,
    pub counter: i64,
    pub expires_ms: i64,
    pub checkpoint: Option<String>,
    pub ended: bool,
}

pub struct LeaseTable {
    client: Client,
    pub table: String,
    pub owner: String,
    pub duration_ms: i64,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl LeaseTable {
    pub fn new(
        client: Client,
        table: &str,
        owner: &str,
        duration_ms: i64,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> LeaseTable {
        LeaseTable {
            client,
            table: table.to_string(),
            owner: owner.to_string(),
            duration_ms,
            clock,
            metrics,
        }
    }

    fn err<E: ProvideErrorMetadata + std::fmt::Debug>(&self, op: &'static str, e: E) -> LeaseError {
        LeaseError::Dynamo {
            op,
            table: self.table.clone(),
            message: match (e.code(), e.message()) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                _ => format!("{e:?}"),
            },
        }
    }

    /// Create the table (on-demand billing) if it does not exist.
    pub async fn ensure_table(&self) -> Result<(), LeaseError> {
        match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(_) => return Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) => {}
            Err(e) => return Err(self.err("DescribeTable", e)),
        }
        let build = |e| LeaseError::Dynamo {
            op: "CreateTable",
            table: self.table.clone(),
            message: format!("{e}"),
        };
        let res = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("shard_id")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(build)?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("shard_id")
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(build)?,
            )
            .send()
            .await;
        match res {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) => {}
            Err(e) => return Err(self.err("CreateTable", e)),
        }
        // Wait until ACTIVE.
        for _ in 0..120 {
            if let Ok(d) = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
            {
                if d.table()
                    .and_then(|t| t.table_status())
                    .is_some_and(|s| s.as_str() == "ACTIVE")
                {
                    return Ok(());
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        Ok(())
    }

    pub async fn list(&self) -> Result<Vec<Lease>, LeaseError> {
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let resp = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.err("Scan", e))?;
            for item in resp.items() {
                let gs = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
                let gn = |k: &str| {
                    item.get(k)
                        .and_then(|v| v.as_n().ok())
                        .and_then(|v| v.parse::<i64>().ok())
                        .unwrap_or(0)
                };
                let Some(shard) = gs("shard_id") else {
                    continue;
                };
                out.push(Lease {
                    shard,
                    owner: gs("owner").unwrap_or_default(),
                    counter: gn("counter"),
                    expires_ms: gn("expires_ms"),
                    checkpoint: gs("checkpoint"),
                    ended: item
                        .get("ended")
                        .and_then(|v| v.as_bool().ok())
                        .copied()
                        .unwrap_or(false),
                });
            }
            match resp.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Add an unowned lease for a new shard (no-op if it exists).
    pub async fn create_if_missing(&self, shard: &str) -> Result<(), LeaseError> {
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("shard_id", s(shard))
            .item("owner", s(""))
            .item("counter", n(0))
            .item("expires_ms", n(0))
            .item("ended", AttributeValue::Bool(false))
            .condition_expression("attribute_not_exists(shard_id)")
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(self.err("PutItem", e)),
        }
    }

    /// Conditional update on `counter` (and `owner` when `must_own`); `Ok(false)` when the
    /// condition failed (someone else moved the lease).
    #[allow(clippy::too_many_arguments)] // the item's fields, each conditionally written
    async fn update(
        &self,
        op: &'static str,
        shard: &str,
        counter: i64,
        must_own: bool,
        set_owner: Option<&str>,
        checkpoint: Option<(&str, bool)>,
        expires_ms: i64,
    ) -> Result<bool, LeaseError> {
        let mut expr = "SET #c = :next, #e = :exp".to_string();
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("shard_id", s(shard))
            .expression_attribute_names("#c", "counter")
            .expression_attribute_names("#e", "expires_ms")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":seen", n(counter))
            .expression_attribute_values(":next", n(counter + 1))
            .expression_attribute_values(":exp", n(expires_ms));
        if let Some(o) = set_owner {
            expr.push_str(", #o = :newowner");
            req = req.expression_attribute_values(":newowner", s(o));
        }
        if let Some((ck, ended)) = checkpoint {
            expr.push_str(", #ck = :ck, #end = :ended");
            req = req
                .expression_attribute_names("#ck", "checkpoint")
                .expression_attribute_names("#end", "ended")
                .expression_attribute_values(":ck", s(ck))
                .expression_attribute_values(":ended", AttributeValue::Bool(ended));
        }
        let cond = if must_own {
            req = req.expression_attribute_values(":me", s(&self.owner));
            "#c = :seen AND #o = :me"
        } else {
            "#c = :seen"
        };
        match req
            .update_expression(expr)
            .condition_expression(cond)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.err(op, e)),
        }
    }

    /// Take `lease` (free, expired, or stolen from a busier worker) if nobody moved it since
    /// it was read.
    pub async fn take(
        self: &Arc<Self>,
        lease: &Lease,
        stolen: bool,
    ) -> Result<Option<LeaseHandle>, LeaseError> {
        let exp = self.clock.now_ms() + self.duration_ms;
        if !self
            .update(
                "UpdateItem(take)",
                &lease.shard,
                lease.counter,
                false,
                Some(&self.owner),
                None,
                exp,
            )
            .await?
        {
            return Ok(None);
        }
        inc(
            if stolen {
                &self.metrics.leases_stolen
            } else {
                &self.metrics.leases_taken
            },
            1,
        );
        tracing::info!(shard = %lease.shard, from = %lease.owner, stolen, "lease taken");
        Ok(Some(LeaseHandle {
            table: self.clone(),
            shard: lease.shard.clone(),
            counter: lease.counter + 1,
            checkpoint: lease.checkpoint.clone(),
            renewed_ms: self.clock.now_ms(),
        }))
    }
}

/// A lease this worker holds.
pub struct LeaseHandle {
    table: Arc<LeaseTable>,
    pub shard: String,
    counter: i64,
    /// The checkpoint read with the lease.
    pub checkpoint: Option<String>,
    renewed_ms: i64,
}

impl LeaseHandle {
    fn lost(&self) -> LeaseError {
        inc(&self.table.metrics.leases_lost, 1);
        tracing::warn!(shard = %self.shard, "lease lost");
        LeaseError::Lost {
            shard: self.shard.clone(),
        }
    }

    async fn bump(&mut self, op: &'static str, ck: Option<(&str, bool)>) -> Result<(), LeaseError> {
        let t = self.table.clone();
        let exp = t.clock.now_ms() + t.duration_ms;
        if t.update(op, &self.shard, self.counter, true, None, ck, exp)
            .await?
        {
            self.counter += 1;
            self.renewed_ms = t.clock.now_ms();
            Ok(())
        } else {
            Err(self.lost())
        }
    }

    /// Renew when a third of the lease has passed.
    pub async fn renew_if_due(&mut self) -> Result<(), LeaseError> {
        if self.table.clock.now_ms() - self.renewed_ms >= self.table.duration_ms / 3 {
            self.bump("UpdateItem(renew)", None).await
        } else {
            Ok(())
        }
    }

    pub async fn checkpoint(&mut self, c: &Checkpoint) -> Result<(), LeaseError> {
        let json = c.to_json();
        self.bump("UpdateItem(checkpoint)", Some((&json, c.ended)))
            .await
    }

    pub async fn release(&mut self) {
        let t = self.table.clone();
        let _ = t
            .update(
                "UpdateItem(release)",
                &self.shard,
                self.counter,
                true,
                Some(""),
                None,
                0,
            )
            .await;
    }
}
