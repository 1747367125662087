//! The embedded engine: DataFusion over the lake's Parquet files, with the same table names
//! (`access_logs`, `policy_changes`), columns and partition pruning as Athena, and aliases for the Trino function names the
//! named queries use.
//!
//! Files are listed through [`ReaderStore`], which hides what an in-flight compaction must
//! hide and counts the bytes read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::DataFusionError;
use datafusion::execution::context::SessionContext;
use datafusion::functions_aggregate::approx_percentile_cont::approx_percentile_cont_udaf;
use datafusion::prelude::SessionConfig;
use futures::StreamExt;

use crate::root::Lake;
use crate::store::{ReadStats, ReaderStore};
use crate::LakeError;

/// The table names, in the default schema and in the `edgeway` schema (Athena's database):
/// `access_logs` and `policy_changes`.
pub use edgeway_record::table::{Table, DATABASE, TABLE};

/// A query's result and what it cost.
#[derive(Debug)]
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
    pub bytes_read: u64,
    pub elapsed: Duration,
}

pub struct LocalEngine {
    ctx: SessionContext,
    stats: Arc<ReadStats>,
}

impl LocalEngine {
    pub async fn open(lake: &Lake) -> Result<LocalEngine, LakeError> {
        let mut config = SessionConfig::new()
            .with_information_schema(false)
            .set_bool("datafusion.sql_parser.collect_spans", true)
            .set_bool("datafusion.execution.parquet.pushdown_filters", true)
            .set_bool("datafusion.execution.parquet.reorder_filters", true);
        config.options_mut().catalog.default_schema = "public".into();
        let ctx = SessionContext::new_with_config(config);
        let store = Arc::new(ReaderStore::new(Arc::clone(&lake.store)));
        let stats = Arc::clone(&store.stats);
        ctx.register_object_store(&lake.store_url, store);

        // Each table in the default schema and in the `edgeway` schema (Athena's database).
        let schema = Arc::new(MemorySchemaProvider::new());
        if let Some(catalog) = ctx.catalog("datafusion") {
            catalog
                .register_schema(DATABASE, schema.clone())
                .map_err(df)?;
        }
        for t in Table::ALL {
            let table = listing_table(lake, t)?;
            ctx.register_table(t.name(), table.clone()).map_err(df)?;
            use datafusion::catalog::SchemaProvider;
            schema.register_table(t.name().into(), table).map_err(df)?;
        }

        // Trino names the named queries use, mapped onto DataFusion's functions.
        let p = approx_percentile_cont_udaf()
            .as_ref()
            .clone()
            .with_aliases(["approx_percentile"]);
        ctx.register_udaf(p);
        Ok(LocalEngine { ctx, stats })
    }

    /// Run one SQL statement. `progress` is called about once a second while it runs with
    /// the time so far and the bytes read so far.
    pub async fn query(
        &self,
        sql: &str,
        mut progress: impl FnMut(Duration, u64),
    ) -> Result<QueryOutput, LakeError> {
        let started = Instant::now();
        let before = self.stats.bytes();
        let df = self.ctx.sql(sql).await.map_err(|e| sql_error(sql, e))?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        let mut stream = df.execute_stream().await.map_err(|e| sql_error(sql, e))?;
        let mut batches = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tokio::select! {
                next = stream.next() => match next {
                    Some(b) => batches.push(b.map_err(|e| sql_error(sql, e))?),
                    None => break,
                },
                _ = tick.tick() => progress(started.elapsed(), self.stats.bytes() - before),
            }
        }
        let rows = batches.iter().map(|b| b.num_rows()).sum();
        Ok(QueryOutput {
            schema,
            batches,
            rows,
            bytes_read: self.stats.bytes() - before,
            elapsed: started.elapsed(),
        })
    }
}

/// `table` as a listing table over its directory, partitioned by `dt` and `hour`, with the
/// contract's schema (a missing directory is an empty table).
fn listing_table(lake: &Lake, table: Table) -> Result<Arc<ListingTable>, LakeError> {
    let url = ListingTableUrl::parse(lake.table_url_of(table)).map_err(df)?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(crate::layout::PARQUET_EXT)
        .with_table_partition_cols(
            edgeway_record::table::PARTITION_KEYS
                .iter()
                .map(|k| (k.to_string(), DataType::Utf8))
                .collect(),
        );
    let schema = match table {
        Table::AccessLogs => edgeway_record::arrow::schema(),
        Table::PolicyChanges => edgeway_record::policy_change::schema(),
    };
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config).map_err(df)?))
}

fn df(e: DataFusionError) -> LakeError {
    LakeError::Engine(e.to_string())
}

/// The engine's message, with the line and column DataFusion reports and the offending line
/// of the SQL underlined when it knows the span.
pub fn sql_error(sql: &str, e: DataFusionError) -> LakeError {
    let mut msg = e.to_string();
    let span = e.diagnostic().and_then(|d| {
        d.span
            .or_else(|| d.notes.iter().find_map(|n| n.span))
            .or_else(|| d.helps.iter().find_map(|h| h.span))
    });
    let pos = span
        .map(|s| {
            (
                s.start.line as usize,
                s.start.column as usize,
                s.end.column as usize,
            )
        })
        .or_else(|| parser_position(&msg).map(|(l, c)| (l, c, c + 1)));
    if let Some((line, col, end)) = pos.filter(|(l, c, _)| *l > 0 && *c > 0) {
        if span.is_some() {
            msg.push_str(&format!(" (at line {line}, column {col})"));
        }
        if let Some(text) = sql.lines().nth(line - 1) {
            let width = end.saturating_sub(col).max(1);
            msg.push_str(&format!(
                "\n  {text}\n  {}{}",
                " ".repeat(col - 1),
                "^".repeat(width)
            ));
        }
    }
    LakeError::Sql(msg)
}

/// `... at Line: 1, Column: 8` as sqlparser writes it.
fn parser_position(msg: &str) -> Option<(usize, usize)> {
    let i = msg.rfind("at Line: ")?;
    let rest = &msg[i + "at Line: ".len()..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let col: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    Some((line.trim().parse().ok()?, col.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_parser_positions() {
        assert_eq!(
            parser_position(
                "sql parser error: Expected: end of statement, found: x at Line: 2, Column: 15"
            ),
            Some((2, 15))
        );
        assert_eq!(parser_position("no position"), None);
    }
}
