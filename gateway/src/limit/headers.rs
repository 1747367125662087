//! The rate-limit response headers: `RateLimit-Policy` and `RateLimit` of
//! draft-ietf-httpapi-ratelimit-headers-08, and the `X-RateLimit-Limit`, `-Remaining` and
//! `-Reset` trio clients already parse. The parts a tier fixes are made once.

use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use pingora::http::ResponseHeader;

use super::{Rate, RequestState};

/// `RateLimit` and `RateLimit-Policy` of draft-ietf-httpapi-ratelimit-headers-08.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
pub const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
pub const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// The parts of the rate-limit headers that one tier of one limit fixes, made once when the
/// limiter is built rather than formatted per response.
#[derive(Debug, PartialEq, Eq)]
pub struct TierHeaders {
    pub policy: Arc<str>,
    pub quota: u32,
    pub window_secs: u64,
    policy_value: HeaderValue,
    limit_value: HeaderValue,
}

impl TierHeaders {
    pub(super) fn new(policy: &Arc<str>, rate: &Rate) -> TierHeaders {
        let quota = rate.rate.get();
        let window_secs = whole_secs(rate.per).max(1);
        TierHeaders {
            policy: Arc::clone(policy),
            quota,
            window_secs,
            // Limit names are validated (letters, digits, `-_.`): always a valid value.
            policy_value: HeaderValue::from_str(&format!("\"{policy}\";q={quota};w={window_secs}"))
                .unwrap_or(HeaderValue::from_static("")),
            limit_value: HeaderValue::from(quota),
        }
    }
}

/// The numbers behind the rate-limit headers of one response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderInfo {
    pub tier: Arc<TierHeaders>,
    pub remaining: u32,
    pub reset_secs: u64,
}

/// Whole seconds, rounded up (a client told to wait 0.2 s waits 1).
pub(super) fn whole_secs(d: Duration) -> u64 {
    let s = d.as_secs();
    if d.subsec_nanos() > 0 {
        s + 1
    } else {
        s
    }
}

/// The rate-limit headers: the IETF draft's (revision 08) and the `X-RateLimit-*` ones.
pub fn header_values(h: &HeaderInfo) -> [(HeaderName, HeaderValue); 5] {
    let t = &h.tier;
    let ratelimit = format!("\"{}\";r={};t={}", t.policy, h.remaining, h.reset_secs);
    [
        (RATELIMIT_POLICY, t.policy_value.clone()),
        (
            RATELIMIT,
            HeaderValue::from_str(&ratelimit).unwrap_or(HeaderValue::from_static("")),
        ),
        (X_RATELIMIT_LIMIT, t.limit_value.clone()),
        (X_RATELIMIT_REMAINING, HeaderValue::from(h.remaining)),
        (X_RATELIMIT_RESET, HeaderValue::from(h.reset_secs)),
    ]
}

/// `response_filter` step: the rate-limit headers of an allowed request.
pub fn response_headers(state: &RequestState, resp: &mut ResponseHeader) -> pingora::Result<()> {
    if let Some(h) = &state.headers {
        for (name, value) in header_values(h) {
            resp.insert_header(name, value)?;
        }
    }
    Ok(())
}
