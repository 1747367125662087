//! Record kinds on the wire: which table a user record inside a KPL aggregate (or a segment
//! frame) belongs to.
//!
//! Access-log records are bare protobuf, as they always were, so old logs and old producers
//! stay valid. Every other kind is framed as
//!
//! ```text
//! 0x00 | kind (1 byte) | protobuf message of that kind
//! ```
//!
//! A protobuf message never starts with `0x00` (the first byte is a field key, and field
//! number 0 is invalid), so the marker cannot be mistaken for an access-log record, and a
//! pipeline that predates a kind refuses its records (they go to the lake's error prefix)
//! instead of misreading them as requests. A pipeline that meets a kind it does not know
//! reports [`KindError::Unknown`] for that record and carries on.

/// The marker byte that starts every record that is not an access-log record.
pub const MARKER: u8 = 0x00;

/// What a user record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordKind {
    /// An [`crate::AccessLogRecord`] (bare protobuf, no framing).
    AccessLog,
    /// A [`crate::policy_change::PolicyChangeRecord`], kind byte 1.
    PolicyChange,
}

impl RecordKind {
    /// The kind byte after [`MARKER`]; `None` for access-log records, which are not framed.
    pub const fn byte(self) -> Option<u8> {
        match self {
            RecordKind::AccessLog => None,
            RecordKind::PolicyChange => Some(1),
        }
    }

    fn from_byte(b: u8) -> Option<RecordKind> {
        match b {
            1 => Some(RecordKind::PolicyChange),
            _ => None,
        }
    }
}

/// Why a user record has no kind this build knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KindError {
    #[error("record kind {0} is unknown to this pipeline (written by a newer gateway?)")]
    Unknown(u8),
    #[error("record starts with the kind marker but has no kind byte")]
    Truncated,
}

/// The kind of `data` and its protobuf body.
pub fn split(data: &[u8]) -> Result<(RecordKind, &[u8]), KindError> {
    match data {
        [MARKER, kind, body @ ..] => RecordKind::from_byte(*kind)
            .map(|k| (k, body))
            .ok_or(KindError::Unknown(*kind)),
        [MARKER] => Err(KindError::Truncated),
        _ => Ok((RecordKind::AccessLog, data)),
    }
}

/// Start a framed record of `kind` in `buf` (nothing for access-log records); the caller
/// appends the protobuf body.
pub fn put_header(kind: RecordKind, buf: &mut Vec<u8>) {
    if let Some(b) = kind.byte() {
        buf.push(MARKER);
        buf.push(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AccessLogRecord;

    #[test]
    fn access_log_records_are_unframed_and_others_carry_their_kind() {
        let rec = AccessLogRecord {
            event_time: 5,
            request_id: "r".into(),
            ..Default::default()
        }
        .to_bytes();
        assert_eq!(split(&rec), Ok((RecordKind::AccessLog, rec.as_slice())));
        // An empty access-log record (all defaults) is zero bytes, still an access log.
        assert_eq!(split(&[]), Ok((RecordKind::AccessLog, &[][..])));

        let mut framed = Vec::new();
        put_header(RecordKind::PolicyChange, &mut framed);
        framed.extend_from_slice(b"body");
        assert_eq!(split(&framed), Ok((RecordKind::PolicyChange, &b"body"[..])));

        assert_eq!(split(&[0, 9, 1, 2]), Err(KindError::Unknown(9)));
        assert_eq!(split(&[0]), Err(KindError::Truncated));
    }

    #[test]
    fn a_framed_record_is_never_an_access_log_record() {
        let mut framed = Vec::new();
        put_header(RecordKind::PolicyChange, &mut framed);
        framed.extend_from_slice(&AccessLogRecord::default().to_bytes());
        assert!(AccessLogRecord::from_bytes(&framed).is_err());
        assert!(crate::AccessLogRecordRef::decode(&framed).is_err());
    }
}
