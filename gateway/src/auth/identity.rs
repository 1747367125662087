//! Who a verified token says the caller is: set by the auth step, read by every later step
//! that keys on a claim (rate limits, shard routing, cache safety).

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::{Map, Value};

/// The verified claims of one token. Shared (`Arc`) between the verified-token cache and the
/// requests that present the same token.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The policy name of the issuer that verified the token (`[issuer.<name>]`).
    pub issuer: Arc<str>,
    /// The `sub` claim, when present.
    pub subject: Option<String>,
    /// Every claim of the token's payload.
    pub claims: Map<String, Value>,
}

impl Identity {
    /// A claim by name; a dotted name (`org.id`) walks into nested objects.
    pub fn claim(&self, name: &str) -> Option<&Value> {
        if let Some(v) = self.claims.get(name) {
            return Some(v);
        }
        let mut parts = name.split('.');
        let mut v = self.claims.get(parts.next()?)?;
        for part in parts {
            v = v.as_object()?.get(part)?;
        }
        Some(v)
    }

    /// A claim as text, for keys and headers: strings as they are, numbers and booleans
    /// printed; arrays, objects and null give `None`.
    pub fn claim_text(&self, name: &str) -> Option<Cow<'_, str>> {
        match self.claim(name)? {
            Value::String(s) => Some(Cow::Borrowed(s)),
            Value::Number(n) => Some(Cow::Owned(n.to_string())),
            Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_by_name_and_dotted_path() {
        let claims = serde_json::json!({"sub": "u1", "plan": "pro", "n": 7, "ok": true,
            "org": {"id": "o9"}, "a.b": "flat"});
        let id = Identity {
            issuer: "main".into(),
            subject: Some("u1".into()),
            claims: claims.as_object().cloned().unwrap_or_default(),
        };
        assert_eq!(id.claim_text("plan").as_deref(), Some("pro"));
        assert_eq!(id.claim_text("n").as_deref(), Some("7"));
        assert_eq!(id.claim_text("ok").as_deref(), Some("true"));
        assert_eq!(id.claim_text("org.id").as_deref(), Some("o9"));
        assert_eq!(id.claim_text("a.b").as_deref(), Some("flat"));
        assert_eq!(id.claim_text("org"), None);
        assert_eq!(id.claim_text("missing"), None);
    }
}
