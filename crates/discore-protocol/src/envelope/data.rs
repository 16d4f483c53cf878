//! The data `d` of an envelope, read only by whoever wants it.

use super::{Envelope, EnvelopeError, scan::Span};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::fmt;

/// The data (`d`) of one payload, borrowed from the frame and not yet read.
///
/// Every way of reading it validates it: a payload that is not JSON fails
/// with an error for which [`EnvelopeError::is_malformed`] is `true`, never
/// with a wrong value.
#[derive(Clone, Copy)]
pub struct PayloadData<'a> {
    inner: Inner<'a>,
}

#[derive(Clone, Copy)]
enum Inner<'a> {
    /// Validated by the strict parser.
    Checked(&'a RawValue),
    /// Located by the scan and not validated yet. Its range is exact when
    /// `d` is the last member of the object (Discord's order); otherwise the
    /// first parse fails and the strict parser finds `d` in `frame`.
    Unchecked {
        frame: &'a str,
        start: usize,
        end: usize,
    },
}

impl<'a> PayloadData<'a> {
    pub(super) const fn checked(raw: &'a RawValue) -> Self {
        Self {
            inner: Inner::Checked(raw),
        }
    }

    pub(super) const fn unchecked(frame: &'a str, span: Span) -> Self {
        Self {
            inner: Inner::Unchecked {
                frame,
                start: span.range.start,
                end: span.range.end,
            },
        }
    }

    /// The data's text as located in the frame, not necessarily validated.
    /// Use [`raw`](Self::raw) for JSON that is known to be valid.
    pub fn text(&self) -> &'a str {
        match self.inner {
            Inner::Checked(raw) => raw.get(),
            Inner::Unchecked { frame, start, end } => frame.get(start..end).unwrap_or("null"),
        }
    }

    /// The data as validated raw JSON.
    ///
    /// # Errors
    ///
    /// A malformed [`EnvelopeError`] when the payload is not JSON.
    pub fn raw(&self) -> Result<&'a RawValue, EnvelopeError> {
        match self.inner {
            Inner::Checked(raw) => Ok(raw),
            Inner::Unchecked { frame, .. } => match serde_json::from_str(self.text()) {
                Ok(raw) => Ok(raw),
                Err(_) => validated_data(frame),
            },
        }
    }

    /// Deserializes the data into `T`.
    ///
    /// # Errors
    ///
    /// [`EnvelopeError`]: malformed when the payload is not JSON, otherwise
    /// a mismatch with the shape of `T`.
    pub fn deserialize<T: Deserialize<'a>>(&self) -> Result<T, EnvelopeError> {
        self.parse_with(serde_json::from_str)
    }

    /// Runs `parse` over the data's text: one pass that both validates and
    /// builds the value. `parse` must reject trailing characters (as
    /// `serde_json::from_str` and `Deserializer::end` do), and may be called
    /// a second time with the exact text of `d` when the first call failed
    /// on a payload whose members are not in Discord's order.
    ///
    /// # Errors
    ///
    /// [`EnvelopeError`]: malformed when the payload is not JSON, otherwise
    /// the error `parse` returned for the data.
    pub fn parse_with<T>(
        &self,
        parse: impl FnMut(&'a str) -> Result<T, serde_json::Error>,
    ) -> Result<T, EnvelopeError> {
        self.parse_exact_with(parse).map(|(value, _)| value)
    }

    /// As [`parse_with`](Self::parse_with), and also returns the exact text
    /// of `d` that `parse` accepted: a slice of the frame, without the
    /// whitespace around the value. Keeping the data as received costs no
    /// pass over it beyond the parse.
    ///
    /// # Errors
    ///
    /// As [`parse_with`](Self::parse_with).
    pub fn parse_exact_with<T>(
        &self,
        mut parse: impl FnMut(&'a str) -> Result<T, serde_json::Error>,
    ) -> Result<(T, &'a str), EnvelopeError> {
        let text = self.text();
        let error = match parse(text) {
            // `parse` accepted it, so it is one JSON value: only whitespace
            // may surround it (the scan runs `d` to the closing brace).
            Ok(value) => return Ok((value, text.trim_matches(JSON_WHITESPACE))),
            Err(error) => error,
        };
        let Inner::Unchecked { frame, .. } = self.inner else {
            return Err(EnvelopeError::mismatch(error));
        };
        // The scan's range may be wrong (members after `d`) or the payload
        // may not be JSON: let the strict parser decide.
        let exact = validated_data(frame)?.get();
        if exact == text {
            return Err(EnvelopeError::mismatch(error));
        }
        parse(exact)
            .map(|value| (value, exact))
            .map_err(EnvelopeError::mismatch)
    }
}

/// The whitespace JSON allows between tokens (RFC 8259, section 2).
const JSON_WHITESPACE: [char; 4] = [' ', '\t', '\n', '\r'];

/// `d` of a frame, found and validated by the strict parser.
fn validated_data(frame: &str) -> Result<&RawValue, EnvelopeError> {
    let envelope = Envelope::peek_strict(frame)?;
    Ok(match envelope.data {
        Some(PayloadData {
            inner: Inner::Checked(raw),
        }) => raw,
        _ => RawValue::NULL,
    })
}

impl fmt::Debug for PayloadData<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let checked = matches!(self.inner, Inner::Checked(_));
        f.debug_struct("PayloadData")
            .field("text", &self.text())
            .field("checked", &checked)
            .finish()
    }
}
