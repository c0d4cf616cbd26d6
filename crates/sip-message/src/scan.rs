//! Byte classes and a small cursor shared by the typed parsers (RFC 3261 §25.1).

use bytes::Bytes;
use std::borrow::Cow;

/// `token` characters (RFC 3261 §25.1).
pub(crate) const TOKEN: u8 = 1;
/// Host name characters: alphanum, `-`, `.` (RFC 3261 §25.1 `hostname`).
pub(crate) const HOST: u8 = 2;
/// `unreserved` / `user-unreserved` (RFC 3261 §25.1), `%` handled apart.
pub(crate) const USER: u8 = 4;
/// `unreserved` / `&=+$,` (RFC 3261 §25.1 `password`).
pub(crate) const PASS: u8 = 8;
/// `paramchar` without escapes (RFC 3261 §25.1).
pub(crate) const PARAM: u8 = 16;
/// `hnv-unreserved` / `unreserved` (RFC 3261 §25.1).
pub(crate) const HNV: u8 = 32;
/// `word` characters of Call-ID (RFC 3261 §25.1).
pub(crate) const WORD: u8 = 64;
/// URI scheme characters after the first (RFC 3261 §25.1 `scheme`).
pub(crate) const SCHEME: u8 = 128;

#[allow(clippy::indexing_slicing)]
const fn build() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let alnum = c.is_ascii_alphanumeric();
        let mark = matches!(
            c,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        );
        let unreserved = alnum || mark;
        let mut f = 0;
        if alnum
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            )
        {
            f |= TOKEN;
        }
        if alnum || matches!(c, b'-' | b'.') {
            f |= HOST;
        }
        if unreserved || matches!(c, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/') {
            f |= USER;
        }
        if unreserved || matches!(c, b'&' | b'=' | b'+' | b'$' | b',') {
            f |= PASS;
        }
        if unreserved || matches!(c, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$') {
            f |= PARAM;
        }
        if unreserved || matches!(c, b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$') {
            f |= HNV;
        }
        if alnum
            || matches!(
                c,
                b'-' | b'.'
                    | b'!'
                    | b'%'
                    | b'*'
                    | b'_'
                    | b'+'
                    | b'`'
                    | b'\''
                    | b'~'
                    | b'('
                    | b')'
                    | b'<'
                    | b'>'
                    | b':'
                    | b'\\'
                    | b'"'
                    | b'/'
                    | b'['
                    | b']'
                    | b'?'
                    | b'{'
                    | b'}'
            )
        {
            f |= WORD;
        }
        if alnum || matches!(c, b'+' | b'-' | b'.') {
            f |= SCHEME;
        }
        t[i] = f;
        i += 1;
    }
    t
}

static CLASS: [u8; 256] = build();

#[inline]
pub(crate) fn is(b: u8, class: u8) -> bool {
    CLASS.get(b as usize).is_some_and(|c| c & class != 0)
}

#[inline]
pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// True if `b` is a non-empty RFC 3261 token.
pub(crate) fn is_token(b: &[u8]) -> bool {
    !b.is_empty() && b.iter().all(|&c| is(c, TOKEN))
}

/// `src[s..e]` as a zero-copy slice; empty if the range is out of bounds.
#[inline]
pub(crate) fn sub(src: &Bytes, s: usize, e: usize) -> Bytes {
    if s <= e && e <= src.len() {
        src.slice(s..e)
    } else {
        Bytes::new()
    }
}

/// `b[s..e]` without panicking.
#[inline]
pub(crate) fn range(b: &[u8], s: usize, e: usize) -> &[u8] {
    b.get(s..e).unwrap_or_default()
}

/// Trims linear white space (SP, HT, CR, LF) from both ends; returns the range.
pub(crate) fn trim_lws_range(b: &[u8], mut s: usize, mut e: usize) -> (usize, usize) {
    while s < e && b.get(s).is_some_and(|&c| is_lws(c)) {
        s += 1;
    }
    while e > s && b.get(e - 1).is_some_and(|&c| is_lws(c)) {
        e -= 1;
    }
    (s, e)
}

/// Trims LWS from a slice.
pub(crate) fn trim_lws(b: &[u8]) -> &[u8] {
    let (s, e) = trim_lws_range(b, 0, b.len());
    range(b, s, e)
}

/// Given `b[start] == '"'`, returns the index just past the closing quote, honouring
/// `quoted-pair` escapes (RFC 3261 §25.1). `None` if the quote is unbalanced.
pub(crate) fn scan_quoted(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        match b.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// Removes the quotes and `quoted-pair` escapes of a quoted string (RFC 3261 §25.1).
pub(crate) fn unquote(b: &[u8]) -> Cow<'_, [u8]> {
    let inner = match (b.first(), b.last()) {
        (Some(b'"'), Some(b'"')) if b.len() >= 2 => range(b, 1, b.len() - 1),
        _ => return Cow::Borrowed(b),
    };
    if !inner.contains(&b'\\') {
        return Cow::Borrowed(inner);
    }
    let mut out = Vec::with_capacity(inner.len());
    let mut it = inner.iter();
    while let Some(&c) = it.next() {
        if c == b'\\' {
            if let Some(&n) = it.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%HH` escapes (RFC 3261 §19.1.2, RFC 3986 §2.1). Invalid escapes are kept as-is.
pub(crate) fn unescape(b: &[u8]) -> Cow<'_, [u8]> {
    if !b.contains(&b'%') {
        return Cow::Borrowed(b);
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(c);
        i += 1;
    }
    Cow::Owned(out)
}

/// True if every byte is in `class` or part of a valid `%HH` escape.
pub(crate) fn all_escaped_class(b: &[u8], class: u8) -> bool {
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            if b.get(i + 1).copied().and_then(hex).is_none()
                || b.get(i + 2).copied().and_then(hex).is_none()
            {
                return false;
            }
            i += 3;
        } else if is(c, class) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// Parses 1*DIGIT into a u64, `None` on overflow, empty input or a non-digit.
pub(crate) fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(n)
}

/// A read position over a `Bytes` value; slices it without copying.
pub(crate) struct Cursor<'a> {
    pub(crate) src: &'a Bytes,
    pub(crate) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(src: &'a Bytes) -> Self {
        Cursor { src, pos: 0 }
    }
    #[inline]
    pub(crate) fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }
    #[inline]
    pub(crate) fn is_end(&self) -> bool {
        self.pos >= self.src.len()
    }
    #[inline]
    pub(crate) fn skip_lws(&mut self) {
        while self.peek().is_some_and(is_lws) {
            self.pos += 1;
        }
    }
    #[inline]
    pub(crate) fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    /// Consumes bytes of `class`; returns the start..end range.
    #[inline]
    pub(crate) fn take_class(&mut self, class: u8) -> (usize, usize) {
        let s = self.pos;
        while self.peek().is_some_and(|c| is(c, class)) {
            self.pos += 1;
        }
        (s, self.pos)
    }
    pub(crate) fn take_while(&mut self, f: impl Fn(u8) -> bool) -> (usize, usize) {
        let s = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        (s, self.pos)
    }
    #[inline]
    pub(crate) fn slice(&self, s: usize, e: usize) -> Bytes {
        sub(self.src, s, e)
    }
    pub(crate) fn bytes(&self, s: usize, e: usize) -> &'a [u8] {
        range(self.src, s, e)
    }
}
