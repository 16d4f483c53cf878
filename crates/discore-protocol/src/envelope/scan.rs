//! The fast path of [`Envelope::peek`](super::Envelope::peek): a byte scan
//! that reads `op`, `s` and `t` and finds where `d` lies without reading it.
//!
//! Discord sends `{"t":…,"s":…,"op":…,"d":…}` in that order. When `op`, `s`
//! and `t` of a dispatch have been read by the time `d` starts, `d` runs to
//! the object's closing brace and is not scanned at all: whoever wants the
//! event parses it (and that parse validates it); nobody reads an event that
//! nobody wants. Any other order costs a quick bracket-counting skip of `d`.
//!
//! The scan is deliberately narrow. Whatever it does not expect (escapes in
//! keys or in `t`, numbers that are not plain unsigned integers, duplicate
//! keys, trailing bytes, a member other than `op`, `s`, `t`, `d` whose value
//! is not JSON) makes it return `None`, and the strict serde parser decides,
//! with its precise error.

use memchr::memchr2;
use serde::de::IgnoredAny;
use std::ops::Range;

/// What the scan read.
pub(super) struct Scanned<'a> {
    pub(super) op: u8,
    pub(super) sequence: Option<u64>,
    pub(super) event_name: Option<&'a str>,
    /// Where `d` lies; `None` when it is absent or `null`.
    pub(super) data: Option<Span>,
}

/// The byte range of `d` in the frame: found by skipping the value, or, in
/// Discord's member order, assumed to run to the object's closing brace
/// (see the module docs).
pub(super) struct Span {
    pub(super) range: Range<usize>,
}

/// Scans one frame; `None` means "ask the strict parser".
pub(super) fn scan(json: &str) -> Option<Scanned<'_>> {
    let mut cursor = Cursor { json, pos: 0 };
    cursor.skip_whitespace();
    cursor.eat(b'{')?;
    cursor.skip_whitespace();
    let mut op: Option<u8> = None;
    let mut sequence: Option<Option<u64>> = None;
    let mut event_name: Option<Option<&str>> = None;
    let mut data: Option<Option<Span>> = None;
    loop {
        let key = cursor.plain_string()?;
        cursor.skip_whitespace();
        cursor.eat(b':')?;
        cursor.skip_whitespace();
        match key {
            "op" if op.is_none() => op = Some(u8::try_from(cursor.unsigned()?).ok()?),
            "s" if sequence.is_none() => {
                sequence = Some(if cursor.null() {
                    None
                } else {
                    Some(cursor.unsigned()?)
                });
            }
            "t" if event_name.is_none() => {
                event_name = Some(if cursor.null() {
                    None
                } else {
                    Some(cursor.plain_string()?)
                });
            }
            "d" if data.is_none() => {
                let start = cursor.pos;
                if op == Some(0) && sequence.is_some() && event_name.is_some() {
                    // Discord's order: `d` is the last member. Take the rest
                    // of the object without looking at it.
                    let end = json.trim_end().strip_suffix('}')?.trim_end().len();
                    if end <= start {
                        return None;
                    }
                    let span = Span { range: start..end };
                    return Some(Scanned {
                        op: 0,
                        sequence: sequence.flatten(),
                        event_name: event_name.flatten(),
                        data: not_null(json, span),
                    });
                }
                cursor.skip_value()?;
                let span = Span {
                    range: start..cursor.pos,
                };
                data = Some(not_null(json, span));
            }
            "op" | "s" | "t" | "d" => return None,
            _ => {
                // Members Discord does not send are rare: validate them
                // here, since nobody parses them later.
                let start = cursor.pos;
                cursor.skip_value()?;
                serde_json::from_str::<IgnoredAny>(json.get(start..cursor.pos)?).ok()?;
            }
        }
        cursor.skip_whitespace();
        match cursor.next()? {
            b',' => cursor.skip_whitespace(),
            b'}' => break,
            _ => return None,
        }
    }
    cursor.skip_whitespace();
    if cursor.pos != json.len() {
        return None;
    }
    Some(Scanned {
        op: op?,
        sequence: sequence.flatten(),
        event_name: event_name.flatten(),
        data: data.flatten(),
    })
}

fn not_null(json: &str, span: Span) -> Option<Span> {
    (json.get(span.range.clone()) != Some("null")).then_some(span)
}

struct Cursor<'a> {
    json: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.json.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        Some(byte)
    }

    fn eat(&mut self, expected: u8) -> Option<()> {
        (self.next()? == expected).then_some(())
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    /// `null`, consumed if it is there.
    fn null(&mut self) -> bool {
        let found = self.bytes()[self.pos..].starts_with(b"null");
        if found {
            self.pos += 4;
        }
        found
    }

    /// A string with no escapes and no control characters, borrowed.
    fn plain_string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.pos;
        let length = memchr2(b'"', b'\\', &self.bytes()[start..])?;
        let end = start + length;
        let text = &self.bytes()[start..end];
        if self.bytes()[end] != b'"' || text.iter().any(|&byte| byte < 0x20) {
            return None;
        }
        self.pos = end + 1;
        // Both ends are ASCII quotes, so the slice is on char boundaries.
        self.json.get(start..end)
    }

    /// A JSON number that is a plain unsigned integer fitting in a u64.
    fn unsigned(&mut self) -> Option<u64> {
        let start = self.pos;
        let mut value: u64 = 0;
        while let Some(byte @ b'0'..=b'9') = self.peek() {
            value = value.checked_mul(10)?.checked_add(u64::from(byte - b'0'))?;
            self.pos += 1;
        }
        let digits = self.pos - start;
        let leading_zero = digits > 1 && self.bytes()[start] == b'0';
        if digits == 0 || leading_zero || matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        Some(value)
    }

    /// Skips a string, escapes included, without checking them.
    fn skip_string(&mut self) -> Option<()> {
        self.eat(b'"')?;
        loop {
            let offset = memchr2(b'"', b'\\', &self.bytes()[self.pos..])?;
            self.pos += offset;
            if self.next()? == b'"' {
                return Some(());
            }
            // A backslash: whatever follows it is part of the string.
            self.next()?;
        }
    }

    /// Skips one value by counting brackets outside strings. It does not
    /// validate: whoever parses the value later does.
    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.skip_string(),
            b'{' | b'[' => {
                let mut depth = 0_usize;
                loop {
                    match self.peek()? {
                        b'"' => self.skip_string()?,
                        b'{' | b'[' => {
                            depth += 1;
                            self.pos += 1;
                        }
                        b'}' | b']' => {
                            depth -= 1;
                            self.pos += 1;
                            if depth == 0 {
                                return Some(());
                            }
                        }
                        _ => self.pos += 1,
                    }
                }
            }
            _ => {
                let start = self.pos;
                while let Some(byte) = self.peek() {
                    if matches!(byte, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t') {
                        break;
                    }
                    self.pos += 1;
                }
                (self.pos > start).then_some(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::scan;

    fn data(json: &str) -> Option<&str> {
        let scanned = scan(json).expect("scans");
        scanned.data.map(|span| &json[span.range])
    }

    #[test]
    fn discord_order_takes_the_rest_of_the_object_as_data() {
        let json = r#"{"t":"MESSAGE_CREATE","s":7,"op":0,"d":{"content":"}"} }"#;
        let scanned = scan(json).expect("scans");
        assert_eq!(scanned.op, 0);
        assert_eq!(scanned.sequence, Some(7));
        assert_eq!(scanned.event_name, Some("MESSAGE_CREATE"));
        let span = scanned.data.expect("data");
        assert_eq!(&json[span.range], r#"{"content":"}"}"#);
    }

    #[test]
    fn other_orders_skip_the_data() {
        let json = r#"{ "op" : 0 , "d" : {"a":[1,"]\"}",{"b":null}]} , "s":1, "t":"X" }"#;
        let scanned = scan(json).expect("scans");
        assert_eq!((scanned.sequence, scanned.event_name), (Some(1), Some("X")));
        let span = scanned.data.expect("data");
        assert_eq!(&json[span.range], r#"{"a":[1,"]\"}",{"b":null}]}"#);
        assert_eq!(data(r#"{"op":9,"d":false}"#), Some("false"));
        assert_eq!(data(r#"{"op":11,"d":null}"#), None);
        assert_eq!(data(r#"{"t":null,"s":null,"op":11,"d":null}"#), None);
        assert_eq!(data(r#"{"t":"X","s":2,"op":0,"d":null}"#), None);
        assert_eq!(data(r#"{"op":11}"#), None);
    }

    #[test]
    fn unknown_members_are_skipped() {
        let json = r#"{"x":{"op":5},"y":[],"z":-1.5e3,"op":1,"d":4}"#;
        let scanned = scan(json).expect("scans");
        assert_eq!(scanned.op, 1);
        assert_eq!(data(json), Some("4"));
    }

    #[test]
    fn anything_unusual_is_left_to_the_strict_parser() {
        for json in [
            "",
            "{",
            "{}",
            "[]",
            r#"{"op":"1"}"#,
            r#"{"op":256}"#,
            r#"{"op":01}"#,
            r#"{"op":1.0}"#,
            r#"{"op":-1}"#,
            r#"{"op":1,"op":2}"#,
            r#"{"o\u0070":1}"#,
            r#"{"t":"A\u0042","s":1,"op":0,"d":{}}"#,
            r#"{"op":1} x"#,
            r#"{"op":1,}"#,
            r#"{"s":18446744073709551616,"op":0}"#,
            r#"{"t":"X","s":1,"op":0,"d":}"#,
            r#"{"op":1,"d":{"a":"unterminated}}"#,
            r#"{"t":"X","s":10,"op":0,"Ad":{"a":}}"#,
            r#"{"op":1,"x":[1,}"#,
        ] {
            assert!(scan(json).is_none(), "{json}");
        }
    }
}
