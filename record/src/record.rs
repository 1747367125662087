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
pub const RECORD_VERSION: i32 = 1;

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
        }
    }

    pub const fn nullable(self) -> bool {
        matches!(
            self,
            ColumnKind::OptStr | ColumnKind::OptInt32 | ColumnKind::OptFloat64
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
    (new Str, $rows:expr) => { ::arrow_array::builder::StringBuilder::with_capacity($rows, $rows * 24) };
    (new OptStr, $rows:expr) => { ::arrow_array::builder::StringBuilder::with_capacity($rows, $rows * 16) };
    (new $k:ident, $rows:expr) => { <arrow_col!(builder $k)>::with_capacity($rows) };
    (append Str, $b:expr, $v:expr) => { $b.append_value(&$v) };
    (append OptStr, $b:expr, $v:expr) => { $b.append_option($v.as_deref()) };
    (append OptInt32, $b:expr, $v:expr) => { $b.append_option($v) };
    (append OptFloat64, $b:expr, $v:expr) => { $b.append_option($v) };
    (append $k:ident, $b:expr, $v:expr) => { $b.append_value($v) };
    (finish TimestampMs, $b:expr) => { ::std::sync::Arc::new($b.finish().with_timezone("UTC")) as ::arrow_array::ArrayRef };
    (finish $k:ident, $b:expr) => { ::std::sync::Arc::new($b.finish()) as ::arrow_array::ArrayRef };
}

macro_rules! access_log_record {
    ($( #[doc = $doc:literal] #[prost($($p:tt)*)] $name:ident : $ty:ty => $kind:ident, )*) => {
        /// One request as seen by the gateway. See the module docs for the rules.
        #[derive(Clone, PartialEq, ::prost::Message)]
        pub struct AccessLogRecord {
            $( #[doc = $doc] #[prost($($p)*)] pub $name: $ty, )*
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
    #[prost(int32, tag = "1")] record_version: i32 => Int32,
    /// When the gateway received the request header, UTC milliseconds since the epoch.
    #[prost(int64, tag = "2")] event_time: i64 => TimestampMs,
    /// The request id (kept from a well-formed X-Request-Id, else a generated UUIDv7).
    #[prost(string, tag = "3")] request_id: String => Str,
    /// W3C trace id from the `traceparent` header, when present and valid.
    #[prost(string, optional, tag = "4")] trace_id: Option<String> => OptStr,
    /// Client IP as seen by the gateway (the TCP peer, or the first untrusted X-Forwarded-For hop).
    #[prost(string, tag = "5")] client_ip: String => Str,
    /// Client TCP port.
    #[prost(int32, tag = "6")] client_port: i32 => Int32,
    /// HTTP method.
    #[prost(string, tag = "7")] method: String => Str,
    /// `http` or `https`.
    #[prost(string, tag = "8")] scheme: String => Str,
    /// Host header or :authority, without port.
    #[prost(string, tag = "9")] host: String => Str,
    /// Path without the query string.
    #[prost(string, tag = "10")] path: String => Str,
    /// Query parameters allow-listed by the policy, `k=v&k2=v2`; absent when none are kept.
    #[prost(string, optional, tag = "11")] query: Option<String> => OptStr,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2`.
    #[prost(string, tag = "12")] http_version: String => Str,
    /// Status sent to the client; 0 when the client went away before any response.
    #[prost(int32, tag = "13")] status: i32 => Int32,
    /// Request body bytes received from the client.
    #[prost(int64, tag = "14")] bytes_in: i64 => Int64,
    /// Response body bytes sent to the client.
    #[prost(int64, tag = "15")] bytes_out: i64 => Int64,
    /// Total time from request header to the end of the response, milliseconds.
    #[prost(double, tag = "16")] duration_ms: f64 => Float64,
    /// Time to connect to the upstream (TCP + TLS), milliseconds; absent for a reused connection or no upstream.
    #[prost(double, optional, tag = "17")] upstream_connect_ms: Option<f64> => OptFloat64,
    /// Time from sending the request upstream to its response header, milliseconds.
    #[prost(double, optional, tag = "18")] upstream_response_ms: Option<f64> => OptFloat64,
    /// Name of the matched route; absent when none matched.
    #[prost(string, optional, tag = "19")] route: Option<String> => OptStr,
    /// Upstream cluster the route points at.
    #[prost(string, optional, tag = "20")] upstream_cluster: Option<String> => OptStr,
    /// Endpoint address of the last upstream attempt.
    #[prost(string, optional, tag = "21")] upstream_addr: Option<String> => OptStr,
    /// Shard the request was routed by, when the route is shard-aware.
    #[prost(string, optional, tag = "22")] shard: Option<String> => OptStr,
    /// CDN cache classification stamped on the response (e.g. `public`, `private`, `no-store`).
    #[prost(string, optional, tag = "23")] cache_status: Option<String> => OptStr,
    /// Authentication outcome: `none`, `ok`, `missing`, `invalid`, `expired`, `denied`.
    #[prost(string, tag = "24")] auth_result: String => Str,
    /// Verified subject (`sub` claim); never the token.
    #[prost(string, optional, tag = "25")] auth_subject: Option<String> => OptStr,
    /// Issuer of the verified token.
    #[prost(string, optional, tag = "26")] auth_issuer: Option<String> => OptStr,
    /// Rate-limit decision: `allowed`, `limited`, or absent when no limit applies.
    #[prost(string, optional, tag = "27")] rate_limit: Option<String> => OptStr,
    /// Circuit breaker state seen by the request: `closed`, `open`, `half_open`.
    #[prost(string, optional, tag = "28")] breaker_state: Option<String> => OptStr,
    /// Error class when the request failed (`no_route`, `upstream_timeout`, ...).
    #[prost(string, optional, tag = "29")] error_class: Option<String> => OptStr,
    /// Negotiated TLS version (`TLSv1.3`); absent for plain HTTP.
    #[prost(string, optional, tag = "30")] tls_version: Option<String> => OptStr,
    /// Negotiated TLS cipher suite.
    #[prost(string, optional, tag = "31")] tls_cipher: Option<String> => OptStr,
    /// User-Agent header, truncated to 512 bytes.
    #[prost(string, optional, tag = "32")] user_agent: Option<String> => OptStr,
    /// Referer header without its query string, truncated to 512 bytes.
    #[prost(string, optional, tag = "33")] referer: Option<String> => OptStr,
    /// Policy version (content hash) that served the request.
    #[prost(string, tag = "34")] policy_version: String => Str,
    /// Gateway instance id (host name or configured id).
    #[prost(string, tag = "35")] gateway_instance: String => Str,
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
    }

    #[test]
    fn columns_follow_the_struct() {
        assert_eq!(COLUMNS.len(), 35);
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
