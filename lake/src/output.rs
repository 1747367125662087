//! Printing results: an aligned table (default), CSV with a header, or a JSON array.

use std::io::Write;

use datafusion::arrow::csv::WriterBuilder;
use datafusion::arrow::json::ArrayWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;

use crate::LakeError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

pub fn write(
    out: &mut dyn Write,
    format: Format,
    schema: &datafusion::arrow::datatypes::SchemaRef,
    batches: &[RecordBatch],
) -> Result<(), LakeError> {
    let io = |e: std::io::Error| LakeError::Io(e.to_string());
    let arrow = |e: datafusion::arrow::error::ArrowError| LakeError::Engine(e.to_string());
    match format {
        Format::Table => {
            let text = if batches.is_empty() {
                pretty_format_batches(&[RecordBatch::new_empty(schema.clone())]).map_err(arrow)?
            } else {
                pretty_format_batches(batches).map_err(arrow)?
            };
            writeln!(out, "{text}").map_err(io)?;
        }
        Format::Csv => {
            let mut buf = Vec::new();
            {
                let mut w = WriterBuilder::new().with_header(true).build(&mut buf);
                if batches.is_empty() {
                    w.write(&RecordBatch::new_empty(schema.clone()))
                        .map_err(arrow)?;
                }
                for b in batches {
                    w.write(b).map_err(arrow)?;
                }
            }
            out.write_all(&buf).map_err(io)?;
        }
        Format::Json => {
            let mut buf = Vec::new();
            {
                let mut w = ArrayWriter::new(&mut buf);
                for b in batches {
                    w.write(b).map_err(arrow)?;
                }
                w.finish().map_err(arrow)?;
            }
            if buf.is_empty() {
                buf.extend_from_slice(b"[]");
            }
            out.write_all(&buf).map_err(io)?;
            writeln!(out).map_err(io)?;
        }
    }
    Ok(())
}
