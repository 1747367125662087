//! Athena: running a query (StartQueryExecution, polling GetQueryExecution with progress,
//! GetQueryResults page by page) and the idempotent set-up `lake init` does (the workgroup
//! with its result location, the named queries).

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_athena::types::{
    QueryExecutionContext, QueryExecutionState, ResultConfiguration, ResultConfigurationUpdates,
    WorkGroupConfiguration, WorkGroupConfigurationUpdates,
};
use aws_sdk_athena::Client;
use datafusion::arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;

use crate::named::NamedQuery;
use crate::{aws_err, LakeError};

/// GetQueryResults returns at most this many rows per page (an Athena limit).
pub const RESULT_PAGE_ROWS: i32 = 1000;
/// First poll delay; doubles up to [`POLL_MAX`].
pub const POLL_MIN: Duration = Duration::from_millis(200);
pub const POLL_MAX: Duration = Duration::from_secs(2);

/// A finished Athena query.
#[derive(Debug)]
pub struct AthenaOutput {
    pub id: String,
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
    pub bytes_scanned: u64,
    pub engine_ms: u64,
    pub total_ms: u64,
    pub elapsed: Duration,
}

/// Run `sql` in `workgroup` with `database` as the default schema. `progress` gets the state
/// and time so far after every poll.
pub async fn run_query(
    client: &Client,
    sql: &str,
    workgroup: &str,
    database: &str,
    mut progress: impl FnMut(&str, Duration, u64),
) -> Result<AthenaOutput, LakeError> {
    let started = Instant::now();
    let id = client
        .start_query_execution()
        .query_string(sql)
        .work_group(workgroup)
        .query_execution_context(QueryExecutionContext::builder().database(database).build())
        .send()
        .await
        .map_err(|e| aws_err("StartQueryExecution", e))?
        .query_execution_id
        .ok_or_else(|| LakeError::Aws {
            op: "StartQueryExecution",
            message: "no query execution id in the answer".into(),
        })?;
    let mut delay = POLL_MIN;
    let (bytes_scanned, engine_ms, total_ms) = loop {
        let out = client
            .get_query_execution()
            .query_execution_id(&id)
            .send()
            .await
            .map_err(|e| aws_err("GetQueryExecution", e))?;
        let exec = out.query_execution();
        let status = exec.and_then(|e| e.status());
        let state = status
            .and_then(|s| s.state())
            .cloned()
            .unwrap_or(QueryExecutionState::Queued);
        let stats = exec.and_then(|e| e.statistics());
        let scanned = stats
            .and_then(|s| s.data_scanned_in_bytes())
            .unwrap_or(0)
            .max(0) as u64;
        progress(state.as_str(), started.elapsed(), scanned);
        match state {
            QueryExecutionState::Succeeded => {
                let engine = stats
                    .and_then(|s| s.engine_execution_time_in_millis())
                    .unwrap_or(0)
                    .max(0) as u64;
                let total = stats
                    .and_then(|s| s.total_execution_time_in_millis())
                    .unwrap_or(0)
                    .max(0) as u64;
                break (scanned, engine, total);
            }
            QueryExecutionState::Failed | QueryExecutionState::Cancelled => {
                let reason = status
                    .and_then(|s| {
                        s.athena_error()
                            .and_then(|e| e.error_message())
                            .or(s.state_change_reason())
                    })
                    .unwrap_or("no reason given")
                    .to_string();
                return Err(LakeError::AthenaQuery {
                    id,
                    state: state.as_str().to_lowercase(),
                    reason,
                });
            }
            _ => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(POLL_MAX);
            }
        }
    };
    let (schema, batches) = fetch_results(client, &id).await?;
    let rows = batches.iter().map(|b| b.num_rows()).sum();
    Ok(AthenaOutput {
        id,
        schema,
        batches,
        rows,
        bytes_scanned,
        engine_ms,
        total_ms,
        elapsed: started.elapsed(),
    })
}

/// Arrow type for an Athena result column type.
fn arrow_type(athena: &str) -> DataType {
    match athena.to_ascii_lowercase().as_str() {
        "tinyint" | "smallint" | "integer" | "int" | "bigint" => DataType::Int64,
        "double" | "float" | "real" | "decimal" => DataType::Float64,
        "boolean" => DataType::Boolean,
        _ => DataType::Utf8,
    }
}

async fn fetch_results(
    client: &Client,
    id: &str,
) -> Result<(SchemaRef, Vec<RecordBatch>), LakeError> {
    let mut token: Option<String> = None;
    let mut schema: Option<SchemaRef> = None;
    let mut batches = Vec::new();
    let mut first_page = true;
    loop {
        let page = client
            .get_query_results()
            .query_execution_id(id)
            .max_results(RESULT_PAGE_ROWS)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| aws_err("GetQueryResults", e))?;
        let Some(rs) = page.result_set() else { break };
        let cols: Vec<(String, DataType)> = rs
            .result_set_metadata()
            .map(|m| {
                m.column_info()
                    .iter()
                    .map(|c| (c.name().to_string(), arrow_type(c.r#type())))
                    .collect()
            })
            .unwrap_or_default();
        let schema = schema
            .get_or_insert_with(|| {
                Arc::new(Schema::new(
                    cols.iter()
                        .map(|(n, t)| Field::new(n, t.clone(), true))
                        .collect::<Vec<_>>(),
                ))
            })
            .clone();
        let mut rows: Vec<Vec<Option<String>>> = rs
            .rows()
            .iter()
            .map(|r| {
                r.data()
                    .iter()
                    .map(|d| d.var_char_value().map(str::to_string))
                    .collect()
            })
            .collect();
        // A SELECT's first page starts with a header row holding the column names.
        if first_page
            && rows.first().is_some_and(|r| {
                r.len() == cols.len()
                    && r.iter()
                        .zip(&cols)
                        .all(|(v, (n, _))| v.as_deref() == Some(n.as_str()))
            })
        {
            rows.remove(0);
        }
        first_page = false;
        if !rows.is_empty() && schema.fields().is_empty() {
            return Err(LakeError::Aws {
                op: "GetQueryResults",
                message: "rows without column metadata".into(),
            });
        }
        if !rows.is_empty() {
            batches.push(to_batch(&schema, &rows)?);
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    let schema = schema.unwrap_or_else(|| Arc::new(Schema::empty()));
    Ok((schema, batches))
}

fn to_batch(schema: &SchemaRef, rows: &[Vec<Option<String>>]) -> Result<RecordBatch, LakeError> {
    let cell = |r: &Vec<Option<String>>, i: usize| r.get(i).cloned().flatten();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| -> ArrayRef {
            match f.data_type() {
                DataType::Int64 => Arc::new(Int64Array::from_iter(
                    rows.iter().map(|r| cell(r, i).and_then(|v| v.parse().ok())),
                )),
                DataType::Float64 => Arc::new(Float64Array::from_iter(
                    rows.iter().map(|r| cell(r, i).and_then(|v| v.parse().ok())),
                )),
                DataType::Boolean => Arc::new(BooleanArray::from_iter(
                    rows.iter().map(|r| cell(r, i).and_then(|v| v.parse().ok())),
                )),
                _ => Arc::new(StringArray::from_iter(rows.iter().map(|r| cell(r, i)))),
            }
        })
        .collect();
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| LakeError::Engine(e.to_string()))
}

/// What `lake init` changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Created(String),
    Updated(String),
    Unchanged(String),
}

impl Change {
    pub fn changed(&self) -> bool {
        !matches!(self, Change::Unchanged(_))
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Created(s) => write!(f, "created   {s}"),
            Change::Updated(s) => write!(f, "updated   {s}"),
            Change::Unchanged(s) => write!(f, "unchanged {s}"),
        }
    }
}

/// The workgroup exists and writes results to `output`.
pub async fn ensure_workgroup(
    client: &Client,
    name: &str,
    output: &str,
) -> Result<Change, LakeError> {
    let what = format!("athena workgroup {name} (results {output})");
    // Athena answers an unknown workgroup with InvalidRequestException; moto with no body.
    let existing = match client.get_work_group().work_group(name).send().await {
        Ok(o) => o.work_group,
        Err(e) => {
            let text = format!("{:?}", e);
            if text.contains("InvalidRequestException") || text.contains("not found") {
                None
            } else {
                return Err(aws_err("GetWorkGroup", e));
            }
        }
    };
    match existing {
        None => {
            client
                .create_work_group()
                .name(name)
                .description("edgeway access-log lake (created by `lake init`)")
                .configuration(
                    WorkGroupConfiguration::builder()
                        .result_configuration(
                            ResultConfiguration::builder()
                                .output_location(output)
                                .build(),
                        )
                        .build(),
                )
                .send()
                .await
                .map_err(|e| aws_err("CreateWorkGroup", e))?;
            Ok(Change::Created(what))
        }
        Some(wg) => {
            let current = wg
                .configuration()
                .and_then(|c| c.result_configuration())
                .and_then(|r| r.output_location());
            if current == Some(output) {
                return Ok(Change::Unchanged(what));
            }
            client
                .update_work_group()
                .work_group(name)
                .configuration_updates(
                    WorkGroupConfigurationUpdates::builder()
                        .result_configuration_updates(
                            ResultConfigurationUpdates::builder()
                                .output_location(output)
                                .build(),
                        )
                        .build(),
                )
                .send()
                .await
                .map_err(|e| aws_err("UpdateWorkGroup", e))?;
            Ok(Change::Updated(format!(
                "{what}, was {}",
                current.unwrap_or("(none)")
            )))
        }
    }
}

/// Every named query exists in `workgroup` with the SQL rendered at its default parameters.
pub async fn ensure_named_queries(
    client: &Client,
    workgroup: &str,
    database: &str,
    queries: &[NamedQuery],
) -> Result<Vec<Change>, LakeError> {
    // What is registered now, by name.
    let mut ids = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .list_named_queries()
            .work_group(workgroup)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| aws_err("ListNamedQueries", e))?;
        ids.extend(page.named_query_ids().iter().cloned());
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    let mut existing = Vec::new();
    for id in ids {
        let q = client
            .get_named_query()
            .named_query_id(&id)
            .send()
            .await
            .map_err(|e| aws_err("GetNamedQuery", e))?;
        if let Some(nq) = q.named_query {
            existing.push(nq);
        }
    }
    let mut changes = Vec::new();
    for q in queries {
        let sql = q.render(&[])?;
        let what = format!("athena named query {} in {workgroup}", q.name);
        match existing.iter().find(|e| e.name() == q.name) {
            Some(e)
                if e.query_string() == sql
                    && e.database() == database
                    && e.description() == Some(q.description.as_str()) =>
            {
                changes.push(Change::Unchanged(what));
            }
            Some(e) => {
                let id = e.named_query_id().unwrap_or_default().to_string();
                client
                    .update_named_query()
                    .named_query_id(id)
                    .name(q.name)
                    .description(&q.description)
                    .query_string(&sql)
                    .send()
                    .await
                    .map_err(|e| aws_err("UpdateNamedQuery", e))?;
                changes.push(Change::Updated(what));
            }
            None => {
                client
                    .create_named_query()
                    .name(q.name)
                    .description(&q.description)
                    .database(database)
                    .query_string(&sql)
                    .work_group(workgroup)
                    .send()
                    .await
                    .map_err(|e| aws_err("CreateNamedQuery", e))?;
                changes.push(Change::Created(what));
            }
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_rows_become_typed_columns() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("route", DataType::Utf8, true),
            Field::new("requests", arrow_type("bigint"), true),
            Field::new("ratio", arrow_type("double"), true),
        ]));
        let rows = vec![
            vec![Some("users".into()), Some("12".into()), Some("0.5".into())],
            vec![None, Some("x".into()), None],
        ];
        let b = to_batch(&schema, &rows).unwrap();
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.column(1).null_count(), 1);
    }
}
