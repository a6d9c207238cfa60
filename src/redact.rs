//! Keeping credentials out of everything a vendor says back.
//!
//! Vendors and token endpoints echo what they were sent ("token abc123 is revoked", a 429 body
//! that quotes the request's headers). A [`Redactor`] knows every form in which the gateway
//! itself sent a credential (raw, Basic-encoded and its decoded `user:password` pair,
//! form-encoded, percent-encoded, JSON-escaped) and replaces each with `[redacted]`. It is
//! applied where a vendor's words first enter the gateway (the raw answer body, before an
//! adapter reads or cuts it, and the outcome it reads), so that no later path (logs, answers,
//! the ledger, metrics, job results) can carry a credential.

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};

/// What a credential is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Credentials shorter than this are not searched for: they would mangle ordinary words, and
/// no real credential is that short.
const MIN_SECRET_LEN: usize = 6;

/// A text cut short (a vendor's own truncated echo, or a snippet) may end in the first
/// characters of a credential: an ending prefix this long or longer is redacted too.
const MIN_PREFIX_LEN: usize = 8;

/// The forms of an upstream's credentials to look for, longest first (so that a Basic pair is
/// replaced whole before its halves are).
#[derive(Clone, Default)]
pub struct Redactor {
    needles: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} forms)", self.needles.len())
    }
}

impl Redactor {
    /// A credential sent as it is (a bearer token, an OAuth2 access or refresh token), with
    /// the encodings a vendor might echo it in.
    pub fn secret(&mut self, secret: &SecretString) -> &mut Self {
        self.add_forms(secret.expose_secret());
        self
    }

    /// A `user:password` pair sent as HTTP Basic: each half, the decoded pair and its base64.
    pub fn basic(&mut self, user: &str, password: &str) -> &mut Self {
        let pair = format!("{user}:{password}");
        self.add(base64::engine::general_purpose::STANDARD.encode(&pair).into_bytes());
        self.add(
            base64::engine::general_purpose::STANDARD_NO_PAD
                .encode(&pair)
                .into_bytes(),
        );
        self.add_forms(&pair);
        self.add_forms(user);
        self.add_forms(password);
        self
    }

    /// Adds another redactor's forms (an OAuth2 token issued since this one was built).
    pub fn extend(&mut self, other: &Redactor) -> &mut Self {
        for needle in &other.needles {
            self.add(needle.clone());
        }
        self
    }

    fn add_forms(&mut self, raw: &str) {
        self.add(raw.as_bytes().to_vec());
        let form: String = url::form_urlencoded::byte_serialize(raw.as_bytes()).collect();
        self.add(form.into_bytes());
        let percent = form_to_percent(raw);
        self.add(percent.into_bytes());
        let json = serde_json::to_string(raw).unwrap_or_default();
        self.add(json.trim_matches('"').as_bytes().to_vec());
        self.add(base64::engine::general_purpose::STANDARD.encode(raw).into_bytes());
    }

    fn add(&mut self, needle: Vec<u8>) {
        if needle.len() < MIN_SECRET_LEN || self.needles.contains(&needle) {
            return;
        }
        let at = self.needles.partition_point(|n| n.len() >= needle.len());
        self.needles.insert(at, needle);
    }

    /// `text` with every form of every credential, and an ending prefix of one, redacted.
    pub fn text(&self, text: String) -> String {
        if self.needles.is_empty() {
            return text;
        }
        match self.redact(text.as_bytes()) {
            Some(bytes) => {
                String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
            }
            None => text,
        }
    }

    /// A raw answer body with every form of every credential redacted; `None` when it holds none.
    pub fn bytes(&self, body: &[u8]) -> Option<Vec<u8>> {
        self.redact(body)
    }

    fn redact(&self, input: &[u8]) -> Option<Vec<u8>> {
        let mut out: Option<Vec<u8>> = None;
        for needle in &self.needles {
            let current = out.as_deref().unwrap_or(input);
            if memchr::memmem::find(current, needle).is_none() {
                continue;
            }
            out = Some(replace_all(current, needle));
        }
        let current = out.as_deref().unwrap_or(input);
        if let Some(end) = self.ending_prefix(current) {
            let mut cut = current[..end].to_vec();
            cut.extend_from_slice(REDACTED.as_bytes());
            cut.extend_from_slice(&current[current.len() - trailing_ellipsis(current)..]);
            out = Some(cut);
        }
        out
    }

    /// Where an ending prefix of a credential starts, if the text ends in one (before a
    /// snippet's closing `…`, if it has one).
    fn ending_prefix(&self, text: &[u8]) -> Option<usize> {
        let body = &text[..text.len() - trailing_ellipsis(text)];
        self.needles
            .iter()
            .filter_map(|needle| {
                (MIN_PREFIX_LEN..needle.len())
                    .rev()
                    .find(|&k| body.ends_with(&needle[..k]))
                    .map(|k| body.len() - k)
            })
            .min()
    }
}

/// The length of a closing `…` (and the whitespace before it), or 0.
fn trailing_ellipsis(text: &[u8]) -> usize {
    const ELLIPSIS: &[u8] = "…".as_bytes();
    if text.ends_with(ELLIPSIS) {
        ELLIPSIS.len()
    } else {
        0
    }
}

fn replace_all(haystack: &[u8], needle: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while let Some(at) = memchr::memmem::find(rest, needle) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(REDACTED.as_bytes());
        rest = &rest[at + needle.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// Percent-encoding as in a URL (`%20` for a space, where a form writes `+`).
fn form_to_percent(raw: &str) -> String {
    url::form_urlencoded::byte_serialize(raw.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor() -> Redactor {
        let mut r = Redactor::default();
        r.secret(&SecretString::from("tok/en+with space"));
        r.basic("client-id-1", "s3cret:pass");
        r
    }

    #[test]
    fn every_form_the_gateway_sends_is_redacted() {
        let r = redactor();
        let b64 = base64::engine::general_purpose::STANDARD.encode("client-id-1:s3cret:pass");
        for form in [
            "tok/en+with space",
            "tok%2Fen%2Bwith+space",
            "tok%2Fen%2Bwith%20space",
            &b64,
            "client-id-1:s3cret:pass",
            "s3cret%3Apass",
        ] {
            let out = r.text(format!("echo <{form}> end"));
            assert_eq!(out, "echo <[redacted]> end", "{form}");
        }
    }

    #[test]
    fn an_ending_prefix_of_eight_or_more_is_redacted_even_before_an_ellipsis() {
        let r = redactor();
        assert_eq!(r.text("cut at tok/en+wi".into()), "cut at [redacted]");
        assert_eq!(r.text("cut at tok/en+wi…".into()), "cut at [redacted]…");
        // Seven characters are ordinary text.
        assert_eq!(r.text("cut at tok/en+".into()), "cut at tok/en+");
    }

    #[test]
    fn bytes_that_hold_no_credential_are_left_alone() {
        assert_eq!(redactor().bytes(b"{\"message\":\"fine\"}"), None);
    }
}
