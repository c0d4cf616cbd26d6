//! RFC 3994 message composition indication (`application/im-iscomposing+xml`).
//!
//! The document is tiny and fixed; it is written and read here without an XML
//! library: read tolerantly (namespaces prefixed or not, any order, whitespace),
//! written exactly as RFC 3994 §6 shows.

use std::time::Duration;

/// The content type of a composing indication.
pub const ISCOMPOSING: &str = "application/im-iscomposing+xml";

/// How long an `active` indication lasts without a refresh (RFC 3994 §3.2: the refresh
/// interval SHOULD NOT be below 60 s; 120 s recommended).
pub const ACTIVE_REFRESH: Duration = Duration::from_secs(120);

/// A parsed indication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Composing {
    /// `active` (true) or `idle` (false).
    pub active: bool,
    /// The sender's refresh interval; absent: the receiver assumes 120 s (§4).
    pub refresh: Option<Duration>,
}

/// Writes an indication (RFC 3994 §6).
pub fn build(active: bool, refresh: Option<Duration>) -> String {
    let state = if active { "active" } else { "idle" };
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<isComposing xmlns=\"urn:ietf:params:xml:ns:im-iscomposing\">\r\n",
    );
    xml.push_str(&format!("  <state>{state}</state>\r\n"));
    xml.push_str("  <contenttype>text/plain</contenttype>\r\n");
    if let (true, Some(refresh)) = (active, refresh) {
        xml.push_str(&format!("  <refresh>{}</refresh>\r\n", refresh.as_secs()));
    }
    xml.push_str("</isComposing>\r\n");
    xml
}

/// Reads an indication; `None` when it is not one (no isComposing root or no state).
pub fn parse(body: &[u8]) -> Option<Composing> {
    let text = std::str::from_utf8(body).ok()?;
    if !text.contains("isComposing") {
        return None;
    }
    let state = element(text, "state")?;
    let active = match state.trim() {
        "active" => true,
        "idle" => false,
        _ => return None,
    };
    let refresh = element(text, "refresh")
        .and_then(|r| r.trim().parse::<u64>().ok())
        .filter(|&s| s > 0)
        .map(Duration::from_secs);
    Some(Composing { active, refresh })
}

/// The text of the first element named `name`, with or without a namespace prefix.
fn element<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = text;
    while let Some(lt) = rest.find('<') {
        let after = rest.get(lt + 1..)?;
        let gt = after.find('>')?;
        let tag = after.get(..gt)?;
        let local = tag.rsplit(':').next().unwrap_or(tag);
        let local = local.split_whitespace().next().unwrap_or_default();
        let body = after.get(gt + 1..)?;
        if local == name && !tag.starts_with('/') && !tag.ends_with('/') {
            let end = body.find("</")?;
            return body.get(..end);
        }
        rest = body;
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip() {
        let xml = build(true, Some(ACTIVE_REFRESH));
        assert_eq!(
            parse(xml.as_bytes()),
            Some(Composing {
                active: true,
                refresh: Some(ACTIVE_REFRESH)
            })
        );
        let idle = build(false, None);
        assert_eq!(
            parse(idle.as_bytes()),
            Some(Composing {
                active: false,
                refresh: None
            })
        );
    }

    #[test]
    fn reads_the_rfc_example_with_prefixes() {
        // RFC 3994 §6, with a namespace prefix as some clients write it.
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<is:isComposing xmlns:is="urn:ietf:params:xml:ns:im-iscomposing">
  <is:state>active</is:state>
  <is:contenttype>text/plain</is:contenttype>
  <is:refresh>90</is:refresh>
</is:isComposing>"#;
        let c = parse(xml.as_bytes()).unwrap();
        assert!(c.active);
        assert_eq!(c.refresh, Some(Duration::from_secs(90)));
    }

    #[test]
    fn refuses_what_is_not_an_indication() {
        assert_eq!(parse(b"hello"), None);
        assert_eq!(
            parse(b"<isComposing><state>busy</state></isComposing>"),
            None
        );
        assert_eq!(parse(&[0xff, 0xfe]), None);
        assert_eq!(parse(b"<isComposing><state>active"), None);
    }
}
