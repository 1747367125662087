//! One sealed file → one Parquet object in the lake, durable before this returns.
//!
//! In: a [`Sealed`] file from [`super::open_file`]: its key and the time-ordered merge of its
//! rows. Out: the object at that key, written batch by batch through the Parquet writer into a
//! streaming multipart upload (so the file is never whole in memory), closed, and fsynced
//! when the lake is a local directory; and what was written ([`Written`]). Only after this
//! returns may the checkpoint move past the file's records ([`super::commit`]).

use object_store::buffered::BufWriter;
use object_store::ObjectStoreExt;
use parquet::arrow::AsyncArrowWriter;

use super::open_file::Sealed;
use super::WriteError;
use crate::lake::Lake;

/// A durable file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Written {
    /// Rows, as the file's footer counts them.
    pub rows: u64,
    /// Size of the object (0 when the store could not say).
    pub bytes: u64,
}

/// Write `file` to the lake and make it durable.
pub(super) async fn upload(lake: &Lake, file: Sealed) -> Result<Written, WriteError> {
    let Sealed {
        key,
        schema,
        mut merge,
        ..
    } = file;
    let perr = |source| WriteError::Parquet {
        key: key.clone(),
        source,
    };
    let out = BufWriter::new(lake.store.clone(), lake.path(&key));
    let mut w = AsyncArrowWriter::try_new(
        out,
        schema,
        Some(edgeway_record::parquet::writer_properties()),
    )
    .map_err(perr)?;
    while let Some(batch) = merge.next_batch()? {
        w.write(&batch).await.map_err(perr)?;
    }
    let md = w.close().await.map_err(perr)?;
    lake.sync(&key).await.map_err(WriteError::Sync)?;
    let bytes = lake
        .store
        .head(&lake.path(&key))
        .await
        .map(|m| m.size)
        .unwrap_or(0);
    Ok(Written {
        rows: md.file_metadata().num_rows() as u64,
        bytes,
    })
}
