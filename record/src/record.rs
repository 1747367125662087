//! The one definition of an access-log record.
//!
//! Wire encoding: protobuf (proto3) via prost. Field tags never change meaning; a newer gateway
//! adds fields with new tags and an older pipeline skips them (protobuf ignores unknown
//! fields). Removing or retyping a field is a breaking change: the Glue column check refuses
//! it. Columns are typed (numbers stay numbers), names are snake_case, times are UTC
//! milliseconds, and there are no unsigned or nanosecond types (Athena/Hive cannot read them).
//!
//! Never put a token, cookie or `Authorization` value in a record: `auth_subject` is the
//! verified `sub` claim, and `query` holds only the parameters the policy allow-lists.

/// Version of the record contract, stamped on every record. Bump on additions.
pub const RECORD_VERSION: i32 = 4;

/// How a field maps to a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// `i64` UTC milliseconds → Parquet INT64 TIMESTAMP(MILLIS, UTC) → Glue `timestamp`.
    TimestampMs,
    /// `String` → UTF8 → `string`.
    Str,
    /// `Option<String>` → nullable UTF8 → `string`.
    OptStr,
    /// `i32` → INT32 → `int`.
    Int32,
    /// `Option<i32>` → nullable INT32 → `int`.
    OptInt32,
    /// `i64` → INT64 → `bigint`.
    Int64,
    /// `f64` → DOUBLE → `double`.
    Float64,
    /// `Option<f64>` → nullable DOUBLE → `double`.
    OptFloat64,
    /// `Vec<String>` → LIST of UTF8 → `array<string>` (not used by the access-log record;
    /// the `policy_changes` table's file and error lists).
    StrList,
    /// `Option<bool>` → nullable BOOLEAN → `boolean`.
    OptBool,
}

impl ColumnKind {
    /// The Hive/Glue type name.
    pub const fn glue_type(self) -> &'static str {
        match self {
            ColumnKind::TimestampMs => "timestamp",
            ColumnKind::Str | ColumnKind::OptStr => "string",
            ColumnKind::Int32 | ColumnKind::OptInt32 => "int",
            ColumnKind::Int64 => "bigint",
            ColumnKind::Float64 | ColumnKind::OptFloat64 => "double",
            ColumnKind::StrList => "array<string>",
            ColumnKind::OptBool => "boolean",
        }
    }

    pub const fn nullable(self) -> bool {
        matches!(
            self,
            ColumnKind::OptStr
                | ColumnKind::OptInt32
                | ColumnKind::OptFloat64
                | ColumnKind::OptBool
        )
    }
}

/// One column of the table, in record order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub kind: ColumnKind,
    pub doc: &'static str,
}

/// Per-kind Arrow plumbing used by the generated [`ColumnBuilders`].
#[cfg(feature = "arrow")]
macro_rules! arrow_col {
    (builder TimestampMs) => { ::arrow_array::builder::TimestampMillisecondBuilder };
    (builder Str) => { ::arrow_array::builder::StringBuilder };
    (builder OptStr) => { ::arrow_array::builder::StringBuilder };
    (builder Int32) => { ::arrow_array::builder::Int32Builder };
    (builder OptInt32) => { ::arrow_array::builder::Int32Builder };
    (builder Int64) => { ::arrow_array::builder::Int64Builder };
    (builder Float64) => { ::arrow_array::builder::Float64Builder };
    (builder OptFloat64) => { ::arrow_array::builder::Float64Builder };
    (builder OptBool) => { ::arrow_array::builder::BooleanBuilder };
    (new Str, $rows:expr) => { ::arrow_array::builder::StringBuilder::with_capacity($rows, $rows * 24) };
    (new OptStr, $rows:expr) => { ::arrow_array::builder::StringBuilder::with_capacity($rows, $rows * 16) };
    (new $k:ident, $rows:expr) => { <arrow_col!(builder $k)>::with_capacity($rows) };
    (append Str, $b:expr, $v:expr) => { $b.append_value($v) };
    (append OptStr, $b:expr, $v:expr) => { $b.append_option($v) };
    (append OptInt32, $b:expr, $v:expr) => { $b.append_option($v) };
    (append OptFloat64, $b:expr, $v:expr) => { $b.append_option($v) };
    (append OptBool, $b:expr, $v:expr) => { $b.append_option($v) };
    (append $k:ident, $b:expr, $v:expr) => { $b.append_value($v) };
    (finish TimestampMs, $b:expr) => { ::std::sync::Arc::new($b.finish().with_timezone("UTC")) as ::arrow_array::ArrayRef };
    (finish $k:ident, $b:expr) => { ::std::sync::Arc::new($b.finish()) as ::arrow_array::ArrayRef };
}

/// Per-kind plumbing of the borrowed view [`AccessLogRecordRef`].
macro_rules! ref_col {
    (ty Str) => { &'a str };
    (ty OptStr) => { Option<&'a str> };
    (ty TimestampMs) => { i64 };
    (ty Int64) => { i64 };
    (ty Int32) => { i32 };
    (ty OptInt32) => { Option<i32> };
    (ty Float64) => { f64 };
    (ty OptFloat64) => { Option<f64> };
    (ty OptBool) => { Option<bool> };
    (borrow Str, $v:expr) => { $v.as_str() };
    (borrow OptStr, $v:expr) => { $v.as_deref() };
    (borrow $k:ident, $v:expr) => { $v };
    (own Str, $v:expr) => { $v.to_string() };
    (own OptStr, $v:expr) => { $v.map(str::to_string) };
    (own $k:ident, $v:expr) => { $v };
    (encode Str, $tag:expr, $v:expr, $buf:expr) => { if !$v.is_empty() { wire::put_string($tag, $v, $buf) } };
    (encode OptStr, $tag:expr, $v:expr, $buf:expr) => { if let Some(v) = $v { wire::put_string($tag, v, $buf) } };
    (encode TimestampMs, $tag:expr, $v:expr, $buf:expr) => { if $v != 0 { wire::put_varint($tag, $v as u64, $buf) } };
    (encode Int64, $tag:expr, $v:expr, $buf:expr) => { if $v != 0 { wire::put_varint($tag, $v as u64, $buf) } };
    (encode Int32, $tag:expr, $v:expr, $buf:expr) => { if $v != 0 { wire::put_varint($tag, $v as i64 as u64, $buf) } };
    (encode OptInt32, $tag:expr, $v:expr, $buf:expr) => { if let Some(v) = $v { wire::put_varint($tag, v as i64 as u64, $buf) } };
    (encode Float64, $tag:expr, $v:expr, $buf:expr) => { if $v != 0.0 { wire::put_double($tag, $v, $buf) } };
    (encode OptFloat64, $tag:expr, $v:expr, $buf:expr) => { if let Some(v) = $v { wire::put_double($tag, v, $buf) } };
    (encode OptBool, $tag:expr, $v:expr, $buf:expr) => { if let Some(v) = $v { wire::put_varint($tag, u64::from(v), $buf) } };
    (decode Str, $wt:expr, $buf:expr) => { wire::string($wt, $buf)? };
    (decode OptStr, $wt:expr, $buf:expr) => { Some(wire::string($wt, $buf)?) };
    (decode TimestampMs, $wt:expr, $buf:expr) => { wire::varint($wt, $buf)? as i64 };
    (decode Int64, $wt:expr, $buf:expr) => { wire::varint($wt, $buf)? as i64 };
    (decode Int32, $wt:expr, $buf:expr) => { wire::varint($wt, $buf)? as i32 };
    (decode OptInt32, $wt:expr, $buf:expr) => { Some(wire::varint($wt, $buf)? as i32) };
    (decode Float64, $wt:expr, $buf:expr) => { wire::double($wt, $buf)? };
    (decode OptFloat64, $wt:expr, $buf:expr) => { Some(wire::double($wt, $buf)?) };
    (decode OptBool, $wt:expr, $buf:expr) => { Some(wire::varint($wt, $buf)? != 0) };
}

/// Protobuf wire primitives for the borrowed decoder (the same rules as prost's).
mod wire {
    use prost::encoding::{check_wire_type, decode_varint, encode_key, encode_varint, WireType};

    use super::RecordDecodeError;

    pub fn put_varint(tag: u32, v: u64, buf: &mut Vec<u8>) {
        encode_key(tag, WireType::Varint, buf);
        encode_varint(v, buf);
    }

    pub fn put_double(tag: u32, v: f64, buf: &mut Vec<u8>) {
        encode_key(tag, WireType::SixtyFourBit, buf);
        buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn put_string(tag: u32, v: &str, buf: &mut Vec<u8>) {
        encode_key(tag, WireType::LengthDelimited, buf);
        encode_varint(v.len() as u64, buf);
        buf.extend_from_slice(v.as_bytes());
    }

    pub fn varint(wt: WireType, buf: &mut &[u8]) -> Result<u64, RecordDecodeError> {
        check_wire_type(WireType::Varint, wt)?;
        Ok(decode_varint(buf)?)
    }

    pub fn double(wt: WireType, buf: &mut &[u8]) -> Result<f64, RecordDecodeError> {
        check_wire_type(WireType::SixtyFourBit, wt)?;
        let Some((b, rest)) = buf.split_first_chunk::<8>() else {
            return Err(RecordDecodeError("buffer underflow".into()));
        };
        *buf = rest;
        Ok(f64::from_le_bytes(*b))
    }

    pub fn string<'a>(wt: WireType, buf: &mut &'a [u8]) -> Result<&'a str, RecordDecodeError> {
        check_wire_type(WireType::LengthDelimited, wt)?;
        let len = decode_varint(buf)?;
        if len > buf.len() as u64 {
            return Err(RecordDecodeError("buffer underflow".into()));
        }
        let (s, rest) = buf.split_at(len as usize);
        *buf = rest;
        std::str::from_utf8(s).map_err(|_| {
            RecordDecodeError("invalid string value: data is not UTF-8 encoded".into())
        })
    }
}

/// Why bytes are not an access-log record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RecordDecodeError(pub String);

impl From<prost::DecodeError> for RecordDecodeError {
    fn from(e: prost::DecodeError) -> Self {
        RecordDecodeError(e.to_string())
    }
}

/// The numeric value of a `tag = "N"` literal.
const fn tag_num(s: &str) -> u32 {
    let b = s.as_bytes();
    let mut n = 0u32;
    let mut i = 0;
    while i < b.len() {
        n = n * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    n
}

macro_rules! access_log_record {
    ($( #[doc = $doc:literal] #[prost(tag = $tag:tt, $($p:tt)*)] $name:ident : $ty:ty => $kind:ident, )*) => {
        /// One request as seen by the gateway. See the module docs for the rules.
        #[derive(Clone, PartialEq, ::prost::Message)]
        pub struct AccessLogRecord {
            $( #[doc = $doc] #[prost(tag = $tag, $($p)*)] pub $name: $ty, )*
        }

        /// A decoded record whose strings borrow the wire bytes: the pipeline decodes
        /// straight into Arrow builders without allocating per field.
        #[derive(Debug, Clone, Copy, PartialEq, Default)]
        pub struct AccessLogRecordRef<'a> {
            $( #[doc = $doc] pub $name: ref_col!(ty $kind), )*
        }

        impl<'a> AccessLogRecordRef<'a> {
            /// Decode protobuf as prost does (the last occurrence of a field wins; unknown,
            /// newer fields are skipped), borrowing strings from `buf`.
            pub fn decode(mut buf: &'a [u8]) -> Result<Self, RecordDecodeError> {
                let mut r = AccessLogRecordRef::default();
                let buf = &mut buf;
                while !buf.is_empty() {
                    let (tag, wt) = prost::encoding::decode_key(buf)?;
                    match tag {
                        $( t if t == const { tag_num($tag) } => r.$name = ref_col!(decode $kind, wt, buf), )*
                        _ => prost::encoding::skip_field(wt, tag, buf, Default::default())?,
                    }
                }
                Ok(r)
            }

            /// Append the protobuf encoding to `buf`: the same bytes prost writes for the
            /// owned record (fields in tag order, proto3 defaults omitted, `optional` fields
            /// written whenever present), without building the owned record first.
            pub fn encode(&self, buf: &mut Vec<u8>) {
                $( ref_col!(encode $kind, (const { tag_num($tag) }), self.$name, buf); )*
            }

            pub fn to_owned(&self) -> AccessLogRecord {
                AccessLogRecord { $( $name: ref_col!(own $kind, self.$name), )* }
            }
        }

        impl AccessLogRecord {
            pub fn as_ref(&self) -> AccessLogRecordRef<'_> {
                AccessLogRecordRef { $( $name: ref_col!(borrow $kind, self.$name), )* }
            }
        }

        /// Every column, in record order, derived from the same list as the struct.
        pub const COLUMNS: &[Column] = &[
            $( Column { name: stringify!($name), kind: ColumnKind::$kind, doc: $doc.trim_ascii() }, )*
        ];

        /// Arrow builders, one per column, generated from the same list.
        #[cfg(feature = "arrow")]
        pub struct ColumnBuilders {
            $( $name: arrow_col!(builder $kind), )*
        }

        #[cfg(feature = "arrow")]
        impl ColumnBuilders {
            pub fn with_capacity(rows: usize) -> Self {
                ColumnBuilders { $( $name: arrow_col!(new $kind, rows), )* }
            }

            pub fn append(&mut self, r: &AccessLogRecord) {
                self.append_ref(&r.as_ref());
            }

            pub fn append_ref(&mut self, r: &AccessLogRecordRef<'_>) {
                $( arrow_col!(append $kind, self.$name, r.$name); )*
            }

            /// Finished arrays in column order.
            pub fn finish(&mut self) -> Vec<::arrow_array::ArrayRef> {
                vec![ $( arrow_col!(finish $kind, self.$name), )* ]
            }
        }
    };
}

access_log_record! {
    /// Contract version of this record (RECORD_VERSION when written).
    #[prost(tag = "1", int32)] record_version: i32 => Int32,
    /// When the gateway received the request header, UTC milliseconds since the epoch.
    #[prost(tag = "2", int64)] event_time: i64 => TimestampMs,
    /// The request id (kept from a well-formed X-Request-Id, else a generated UUIDv7).
    #[prost(tag = "3", string)] request_id: String => Str,
    /// W3C trace id from the `traceparent` header, when present and valid.
    #[prost(tag = "4", string, optional)] trace_id: Option<String> => OptStr,
    /// Client IP as seen by the gateway (the TCP peer, or the first untrusted X-Forwarded-For hop).
    #[prost(tag = "5", string)] client_ip: String => Str,
    /// Client TCP port.
    #[prost(tag = "6", int32)] client_port: i32 => Int32,
    /// HTTP method.
    #[prost(tag = "7", string)] method: String => Str,
    /// `http` or `https`.
    #[prost(tag = "8", string)] scheme: String => Str,
    /// Host header or :authority, without port.
    #[prost(tag = "9", string)] host: String => Str,
    /// Path without the query string.
    #[prost(tag = "10", string)] path: String => Str,
    /// Query parameters allow-listed by the policy, `k=v&k2=v2`; absent when none are kept.
    #[prost(tag = "11", string, optional)] query: Option<String> => OptStr,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2`.
    #[prost(tag = "12", string)] http_version: String => Str,
    /// Status sent to the client; 0 when the client went away before any response.
    #[prost(tag = "13", int32)] status: i32 => Int32,
    /// Request body bytes received from the client.
    #[prost(tag = "14", int64)] bytes_in: i64 => Int64,
    /// Response body bytes sent to the client.
    #[prost(tag = "15", int64)] bytes_out: i64 => Int64,
    /// Total time from request header to the end of the response, milliseconds.
    #[prost(tag = "16", double)] duration_ms: f64 => Float64,
    /// Time to connect to the upstream (TCP + TLS), milliseconds; absent for a reused connection or no upstream.
    #[prost(tag = "17", double, optional)] upstream_connect_ms: Option<f64> => OptFloat64,
    /// Time from sending the request upstream to its response header, milliseconds.
    #[prost(tag = "18", double, optional)] upstream_response_ms: Option<f64> => OptFloat64,
    /// Name of the matched route; absent when none matched.
    #[prost(tag = "19", string, optional)] route: Option<String> => OptStr,
    /// Upstream cluster the route points at.
    #[prost(tag = "20", string, optional)] upstream_cluster: Option<String> => OptStr,
    /// Endpoint address of the last upstream attempt.
    #[prost(tag = "21", string, optional)] upstream_addr: Option<String> => OptStr,
    /// Shard the request was routed by, when the route is shard-aware.
    #[prost(tag = "22", string, optional)] shard: Option<String> => OptStr,
    /// CDN cache classification stamped on the response (e.g. `public`, `private`, `no-store`).
    #[prost(tag = "23", string, optional)] cache_status: Option<String> => OptStr,
    /// Authentication outcome: `none`, `ok`, `missing`, `invalid`, `expired`, `denied`.
    #[prost(tag = "24", string)] auth_result: String => Str,
    /// Verified subject (`sub` claim); never the token.
    #[prost(tag = "25", string, optional)] auth_subject: Option<String> => OptStr,
    /// Issuer of the verified token.
    #[prost(tag = "26", string, optional)] auth_issuer: Option<String> => OptStr,
    /// Rate-limit decision: `allowed`, `limited`, or absent when no limit applies.
    #[prost(tag = "27", string, optional)] rate_limit: Option<String> => OptStr,
    /// Circuit breaker state seen by the request: `closed`, `open`, `half_open`.
    #[prost(tag = "28", string, optional)] breaker_state: Option<String> => OptStr,
    /// Error class when the request failed (`no_route`, `upstream_timeout`, ...).
    #[prost(tag = "29", string, optional)] error_class: Option<String> => OptStr,
    /// Negotiated TLS version (`TLSv1.3`); absent for plain HTTP.
    #[prost(tag = "30", string, optional)] tls_version: Option<String> => OptStr,
    /// Negotiated TLS cipher suite.
    #[prost(tag = "31", string, optional)] tls_cipher: Option<String> => OptStr,
    /// User-Agent header, truncated to 512 bytes.
    #[prost(tag = "32", string, optional)] user_agent: Option<String> => OptStr,
    /// Referer header without its query string, truncated to 512 bytes.
    #[prost(tag = "33", string, optional)] referer: Option<String> => OptStr,
    /// Policy version (content hash) that served the request.
    #[prost(tag = "34", string)] policy_version: String => Str,
    /// Gateway instance id (host name or configured id).
    #[prost(tag = "35", string)] gateway_instance: String => Str,
    /// Upstream attempts (1 + retries); absent when none started. Since record version 2.
    #[prost(tag = "36", int32, optional)] upstream_attempts: Option<i32> => OptInt32,
    /// Canary arm of a route with a canary: `stable` or `canary`; absent on other routes.
    #[prost(tag = "37", string, optional)] canary: Option<String> => OptStr,
    /// Whether `request_id` is the `X-Request-Id` the client sent (`false`: minted). Since version 4.
    #[prost(tag = "38", bool, optional)] request_id_from_client: Option<bool> => OptBool,
}

impl AccessLogRecord {
    /// Encode as protobuf.
    pub fn to_bytes(&self) -> Vec<u8> {
        prost::Message::encode_to_vec(self)
    }

    /// Decode protobuf; unknown (newer) fields are skipped.
    pub fn from_bytes(b: &[u8]) -> Result<Self, prost::DecodeError> {
        prost::Message::decode(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn full() -> AccessLogRecord {
        AccessLogRecord {
            record_version: RECORD_VERSION,
            event_time: 1_763_776_800_123,
            request_id: "01a2-req".into(),
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            client_ip: "203.0.113.9".into(),
            client_port: 51234,
            method: "POST".into(),
            scheme: "https".into(),
            host: "api.example.com".into(),
            path: "/v1/orders".into(),
            query: Some("page=2".into()),
            http_version: "HTTP/2".into(),
            status: 201,
            bytes_in: 512,
            bytes_out: 2048,
            duration_ms: 12.5,
            upstream_connect_ms: Some(0.75),
            upstream_response_ms: Some(10.25),
            route: Some("orders".into()),
            upstream_cluster: Some("orders".into()),
            upstream_addr: Some("10.0.0.5:8080".into()),
            shard: Some("7".into()),
            cache_status: Some("private".into()),
            auth_result: "ok".into(),
            auth_subject: Some("alice".into()),
            auth_issuer: Some("https://idp.example.com".into()),
            rate_limit: Some("allowed".into()),
            breaker_state: Some("closed".into()),
            error_class: None,
            tls_version: Some("TLSv1.3".into()),
            tls_cipher: Some("TLS13_AES_128_GCM_SHA256".into()),
            user_agent: Some("curl/8".into()),
            referer: Some("https://example.com/".into()),
            policy_version: "bf97fbc0fc64".into(),
            gateway_instance: "gw-1".into(),
            upstream_attempts: Some(2),
            canary: Some("canary".into()),
            request_id_from_client: Some(true),
        }
    }

    #[test]
    fn every_field_survives_encode_decode() {
        let r = full();
        assert_eq!(AccessLogRecord::from_bytes(&r.to_bytes()).unwrap(), r);
        let empty = AccessLogRecord::default();
        assert_eq!(
            AccessLogRecord::from_bytes(&empty.to_bytes()).unwrap(),
            empty
        );
    }

    #[test]
    fn the_borrowed_decoder_agrees_with_prost() {
        let r = full();
        let bytes = r.to_bytes();
        let v = AccessLogRecordRef::decode(&bytes).unwrap();
        assert_eq!(v, r.as_ref());
        assert_eq!(v.to_owned(), r);
        let empty = AccessLogRecord::default();
        assert_eq!(
            AccessLogRecordRef::decode(&empty.to_bytes())
                .unwrap()
                .to_owned(),
            empty
        );
        // Garbage is refused by both, never misread.
        for cut in 1..bytes.len() {
            let ours = AccessLogRecordRef::decode(&bytes[..cut]).map(|v| v.to_owned());
            let prost = AccessLogRecord::from_bytes(&bytes[..cut]);
            assert_eq!(ours.is_ok(), prost.is_ok(), "cut at {cut}");
            if let (Ok(a), Ok(b)) = (ours, prost) {
                assert_eq!(a, b);
            }
        }
        let mut bad = bytes.clone();
        let pos = bad.windows(4).position(|w| w == b"POST").unwrap();
        bad[pos] = 0xff;
        assert!(AccessLogRecordRef::decode(&bad).is_err());
        assert!(AccessLogRecord::from_bytes(&bad).is_err());
    }

    #[test]
    fn the_borrowed_encoder_writes_prosts_bytes() {
        let mut r = full();
        let mut buf = Vec::new();
        r.as_ref().encode(&mut buf);
        assert_eq!(buf, r.to_bytes());
        // Negative numbers, empty optionals, defaults.
        r.status = -1;
        r.bytes_in = -5;
        r.duration_ms = -0.5;
        r.route = Some(String::new());
        r.upstream_connect_ms = Some(0.0);
        r.error_class = None;
        r.request_id.clear();
        buf.clear();
        r.as_ref().encode(&mut buf);
        assert_eq!(buf, r.to_bytes());
        buf.clear();
        AccessLogRecord::default().as_ref().encode(&mut buf);
        assert!(buf.is_empty());
    }

    #[test]
    fn unknown_newer_fields_are_tolerated() {
        let mut bytes = full().to_bytes();
        // Field 200, wire type 2 (length-delimited): what a newer gateway might add.
        prost::encoding::encode_key(200, prost::encoding::WireType::LengthDelimited, &mut bytes);
        prost::encoding::encode_varint(3, &mut bytes);
        bytes.extend_from_slice(b"new");
        // Field 201, varint.
        prost::encoding::encode_key(201, prost::encoding::WireType::Varint, &mut bytes);
        prost::encoding::encode_varint(42, &mut bytes);
        assert_eq!(AccessLogRecord::from_bytes(&bytes).unwrap(), full());
        assert_eq!(
            AccessLogRecordRef::decode(&bytes).unwrap().to_owned(),
            full()
        );
    }

    #[test]
    fn columns_follow_the_struct() {
        assert_eq!(COLUMNS.len(), 38);
        assert_eq!(COLUMNS[1].name, "event_time");
        assert_eq!(COLUMNS[1].kind.glue_type(), "timestamp");
        let mut names: Vec<_> = COLUMNS.iter().map(|c| c.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), COLUMNS.len(), "column names are unique");
        assert!(COLUMNS.iter().all(|c| !c.doc.is_empty()
            && c.name
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch == '_')));
    }

    #[test]
    fn typical_record_is_compact() {
        let n = full().to_bytes().len();
        assert!(n < 400, "{n} bytes");
    }
}
