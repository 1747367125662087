//! Request identity: keep a well-formed incoming `X-Request-Id`, otherwise mint a UUIDv7
//! (time-ordered, so ids sort like the log).

use http::header::HeaderName;

/// The header that carries the request id in both directions.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The name as written on the wire, for `insert_header`: a `&'static str` is used as it is,
/// where a `HeaderName` would be copied and title-cased on every insert.
pub const X_REQUEST_ID_WIRE: &str = "X-Request-Id";

/// Longest incoming id we keep; longer ones are replaced, not truncated.
pub const MAX_LEN: usize = 128;

/// `true` for 1..=128 bytes of `[A-Za-z0-9._:-]`: safe in headers, logs and file names.
pub fn is_well_formed(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The incoming id when it is well formed (`true`: client-supplied), else a new UUIDv7.
pub fn accept_or_generate(incoming: Option<&[u8]>) -> (String, bool) {
    match incoming {
        // Checked above to be ASCII, so this cannot fail.
        Some(id) if is_well_formed(id) => (String::from_utf8_lossy(id).into_owned(), true),
        _ => (generate(), false),
    }
}

/// A new time-ordered id.
pub fn generate() -> String {
    uuid::Uuid::now_v7().as_hyphenated().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_good_ids_and_replaces_bad_ones() {
        assert_eq!(
            accept_or_generate(Some(b"abc-123")),
            ("abc-123".to_string(), true)
        );
        for bad in [
            &b""[..],
            b"a b",
            b"x\r\nInjected: 1",
            &[b'a'; 129],
            "é".as_bytes(),
        ] {
            let (id, from_client) = accept_or_generate(Some(bad));
            assert!(!from_client);
            assert_eq!(id.len(), 36, "{bad:?}");
            assert!(is_well_formed(id.as_bytes()));
        }
        assert_ne!(accept_or_generate(None), accept_or_generate(None));
    }
}
