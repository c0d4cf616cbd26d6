//! The `Digest` parameter list shared by challenges and credentials (RFC 3261 §25.1:
//! `challenge`, `credentials`; RFC 7616 §3.3, §3.4).
//!
//! Lenient where the field is: LWS (including folded lines) around `=` and `,`, empty list
//! elements, quoted values where a token is expected and tokens that carry `/` or `=`
//! (base64 nonces). Strict where it matters: an unterminated quoted string, a missing `=`,
//! and a parameter given twice are errors. Never panics.

use crate::AuthError;

/// One `name=value` pair: the name lowercased, the value unquoted and unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Param {
    pub name: String,
    pub value: Vec<u8>,
}

/// RFC 3261 §25.1 `token` characters.
pub(crate) fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// LWS, folding included (RFC 3261 §25.1: `LWS = [*WSP CRLF] 1*WSP`).
fn is_lws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// A byte allowed in an unquoted value: anything visible but `,` and `"`.
fn is_bare_value_char(c: u8) -> bool {
    c > 0x20 && c != 0x7f && c != b',' && c != b'"'
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn skip_lws(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(is_lws) {
            self.pos += 1;
        }
        self.pos > start
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &[u8] {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        self.b.get(start..self.pos).unwrap_or_default()
    }

    fn err(&self, expected: &'static str) -> AuthError {
        AuthError::Syntax {
            offset: self.pos,
            expected,
        }
    }

    /// A quoted-string after its opening quote (RFC 3261 §25.1): `\` escapes the next
    /// byte but CR and LF; CR and LF of a folded line are dropped. So a value never holds
    /// CR or LF.
    fn quoted(&mut self) -> Result<Vec<u8>, AuthError> {
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.err("closing quote")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    // quoted-pair excludes CR and LF (RFC 3261 §25.1).
                    match self.peek() {
                        Some(b'\r' | b'\n') | None => return Err(self.err("escaped character")),
                        Some(c) => {
                            out.push(c);
                            self.pos += 1;
                        }
                    }
                }
                Some(b'\r' | b'\n') => self.pos += 1,
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }
}

/// Parses `Digest name=value, name="value", ...`. The scheme is case-insensitive; any other
/// scheme is [`AuthError::NotDigest`].
pub(crate) fn parse_digest(value: &[u8]) -> Result<Vec<Param>, AuthError> {
    let mut c = Cursor { b: value, pos: 0 };
    c.skip_lws();
    let scheme = c.take_while(is_token_char);
    if scheme.is_empty() {
        return Err(c.err("authentication scheme"));
    }
    if !scheme.eq_ignore_ascii_case(b"Digest") {
        return Err(AuthError::NotDigest {
            scheme: String::from_utf8_lossy(scheme).into_owned(),
        });
    }
    if !c.skip_lws() && c.peek().is_some() {
        return Err(c.err("whitespace after the scheme"));
    }
    let mut params: Vec<Param> = Vec::new();
    loop {
        // Empty list elements are allowed (RFC 7230 §7 `#rule`).
        while c.skip_lws() || c.peek() == Some(b',') {
            if c.peek() == Some(b',') {
                c.pos += 1;
            }
        }
        if c.peek().is_none() {
            break;
        }
        let name = c.take_while(is_token_char).to_ascii_lowercase();
        if name.is_empty() {
            return Err(c.err("parameter name"));
        }
        c.skip_lws();
        if c.peek() != Some(b'=') {
            return Err(c.err("'='"));
        }
        c.pos += 1;
        c.skip_lws();
        let value = if c.peek() == Some(b'"') {
            c.pos += 1;
            c.quoted()?
        } else {
            let v = c.take_while(is_bare_value_char).to_vec();
            if v.is_empty() {
                return Err(c.err("parameter value"));
            }
            v
        };
        c.skip_lws();
        match c.peek() {
            None | Some(b',') => {}
            Some(_) => return Err(c.err("',' or the end")),
        }
        // Names are made of token characters, hence ASCII.
        let name = String::from_utf8_lossy(&name).into_owned();
        if params.iter().any(|p| p.name == name) {
            return Err(AuthError::DuplicateParameter { name });
        }
        params.push(Param { name, value });
    }
    Ok(params)
}

/// Writes `"value"` with `\` and `"` escaped (RFC 3261 §25.1 `quoted-pair`). CR and LF
/// cannot be carried in a quoted-string and are dropped, so no value can split a header.
pub(crate) fn push_quoted(out: &mut String, value: &str) {
    out.push('"');
    for ch in value.chars() {
        match ch {
            '"' | '\\' => {
                out.push('\\');
                out.push(ch);
            }
            '\r' | '\n' => {}
            _ => out.push(ch),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]
    use super::*;

    fn pairs(v: &[u8]) -> Vec<(String, String)> {
        parse_digest(v)
            .unwrap()
            .into_iter()
            .map(|p| (p.name, String::from_utf8(p.value).unwrap()))
            .collect()
    }

    #[test]
    fn tokens_quoted_strings_and_escapes() {
        assert_eq!(
            pairs(br#"Digest realm="a \"b\" \\c", algorithm=MD5, nonce=ab/c+d=="#),
            vec![
                ("realm".into(), r#"a "b" \c"#.into()),
                ("algorithm".into(), "MD5".into()),
                ("nonce".into(), "ab/c+d==".into()),
            ]
        );
    }

    #[test]
    fn lws_and_folding_around_separators() {
        assert_eq!(
            pairs(b"  dIgEsT\r\n  REALM \t=\r\n \"x\"\r\n\t,,  Nonce= y ,\r\n "),
            vec![("realm".into(), "x".into()), ("nonce".into(), "y".into())]
        );
    }

    #[test]
    fn other_schemes_and_broken_lists_are_errors() {
        assert_eq!(
            parse_digest(b"Basic realm=\"x\""),
            Err(AuthError::NotDigest {
                scheme: "Basic".into()
            })
        );
        assert!(matches!(
            parse_digest(b"Digest realm=\"x"),
            Err(AuthError::Syntax { .. })
        ));
        assert!(matches!(
            parse_digest(b"Digest realm"),
            Err(AuthError::Syntax { .. })
        ));
        assert!(matches!(
            parse_digest(b"Digest realm=\"x\" nonce=\"y\""),
            Err(AuthError::Syntax { .. })
        ));
        assert!(matches!(
            parse_digest(b"Digestrealm=\"x\""),
            Err(AuthError::NotDigest { .. })
        ));
        assert!(matches!(
            parse_digest(b""),
            Err(AuthError::Syntax { offset: 0, .. })
        ));
        assert_eq!(
            parse_digest(b"Digest realm=a, REALM=b"),
            Err(AuthError::DuplicateParameter {
                name: "realm".into()
            })
        );
        assert!(matches!(
            parse_digest(b"Digest realm=\"x\\"),
            Err(AuthError::Syntax { .. })
        ));
        assert!(matches!(
            parse_digest(b"Digest realm=\"x\\\r\n y\""),
            Err(AuthError::Syntax { .. })
        ));
    }

    #[test]
    fn quoting_escapes_and_drops_line_breaks() {
        let mut s = String::new();
        push_quoted(&mut s, "a\"b\\c\r\nd");
        assert_eq!(s, r#""a\"b\\cd""#);
    }
}
