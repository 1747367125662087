//! The one way the gateway says no.
//!
//! A capability that refuses a request returns a [`Reject`]: an [`ErrorClass`] (which fixes
//! the default status, the JSON `error` code, the record's `error_class` and the metrics
//! label), an optional message that replaces the class's default, and the extra headers the
//! status calls for (`WWW-Authenticate` on 401, `Retry-After` and `RateLimit-*` on 429 and
//! 503). [`Reject::send`] writes it as a small JSON body that carries the request id:
//!
//! ```json
//! {"error":"rate_limited","message":"rate limit exceeded","status":429,"request_id":"…"}
//! ```

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use edgeway_record::outcome::ErrorClass;

#[derive(Debug, Clone)]
pub struct Reject {
    pub class: ErrorClass,
    pub status: u16,
    pub message: Cow<'static, str>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Keep the client connection when the request has no body (nothing is left unread).
    pub keep_alive: bool,
}

impl Reject {
    /// A rejection with the class's status and message.
    pub fn new(class: ErrorClass) -> Reject {
        Reject {
            class,
            status: class.status(),
            message: Cow::Borrowed(class.message()),
            headers: Vec::new(),
            keep_alive: false,
        }
    }

    /// Replace the default message (no secrets, no token contents: the client sees it).
    pub fn message(mut self, message: impl Into<Cow<'static, str>>) -> Reject {
        self.message = message.into();
        self
    }

    /// Another status than the class's default (an upstream status passed through, say).
    pub fn status(mut self, status: u16) -> Reject {
        self.status = status;
        self
    }

    /// Add a response header. A value that is not a valid header value is dropped rather
    /// than failing the response.
    pub fn header(mut self, name: HeaderName, value: impl TryInto<HeaderValue>) -> Reject {
        if let Ok(v) = value.try_into() {
            self.headers.push((name, v));
        }
        self
    }

    /// Keep the connection open afterwards when the request has no body: for rejections
    /// that must stay cheap under load (an open breaker, a full bulkhead), where closing
    /// would make every client reconnect.
    pub fn keep_alive(mut self) -> Reject {
        self.keep_alive = true;
        self
    }

    /// The JSON body.
    pub fn body(&self, request_id: &str) -> Bytes {
        let body = serde_json::json!({
            "error": self.class.as_str(),
            "message": self.message,
            "status": self.status,
            "request_id": request_id,
        });
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }

    /// Write the response and close the connection afterwards (the request body, if any, was
    /// not read), unless [`Reject::keep_alive`] was asked for and there is no body.
    pub async fn send(&self, session: &mut Session, request_id: &str) -> pingora::Result<()> {
        let body = self.body(request_id);
        let mut resp = ResponseHeader::build(self.status, Some(5 + self.headers.len()))?;
        resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
        resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
        resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
        resp.insert_header(crate::request_id::X_REQUEST_ID_WIRE, request_id)?;
        for (name, value) in &self.headers {
            resp.append_header(name.clone(), value.clone())?;
        }
        if !(self.keep_alive && session.is_body_empty()) {
            session.set_keepalive(None);
        }
        session.write_response_header(Box::new(resp), false).await?;
        session.write_response_body(Some(body), true).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_and_status_come_from_the_class() {
        let r = Reject::new(ErrorClass::RateLimited)
            .message("rate limit exceeded: 10 req/s for key ip:198.51.100.7")
            .header(http::header::RETRY_AFTER, "3")
            .header(http::header::RETRY_AFTER, "bad\nvalue");
        assert_eq!(r.status, 429);
        assert_eq!(r.headers.len(), 1, "an invalid header value is dropped");
        let body: serde_json::Value = serde_json::from_slice(&r.body("req-1")).unwrap();
        assert_eq!(body["error"], "rate_limited");
        assert_eq!(body["status"], 429);
        assert_eq!(body["request_id"], "req-1");
        assert_eq!(
            body["message"],
            "rate limit exceeded: 10 req/s for key ip:198.51.100.7"
        );
        let nr = Reject::new(ErrorClass::NoRoute);
        assert_eq!(
            (nr.status, &*nr.message),
            (404, "no route matches this request")
        );
    }
}
