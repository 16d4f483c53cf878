//! Reading structured values out of the fuzzer's bytes, and writing them
//! back for the seed corpus.
//!
//! Running out of bytes is not an error: every read then returns zero or
//! empty, so any input is a valid script.

/// A cursor over the fuzzer's bytes.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// Reads `data` from the start.
    pub const fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// Whether every byte was read.
    pub const fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte, or 0.
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((first, rest)) => {
                self.data = rest;
                *first
            }
            None => 0,
        }
    }

    /// The next two bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// The next four bytes, little-endian.
    pub fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | (u32::from(self.u16()) << 16)
    }

    /// The next eight bytes, little-endian.
    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }

    /// One byte's lowest bit.
    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// Up to `len` bytes.
    pub fn bytes(&mut self, len: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(len.min(self.data.len()));
        self.data = rest;
        head
    }

    /// A chunk prefixed by its length (two bytes, little-endian).
    pub fn chunk(&mut self) -> &'a [u8] {
        let len = usize::from(self.u16());
        self.bytes(len)
    }

    /// A string: a chunk read as UTF-8, invalid sequences replaced.
    pub fn string(&mut self) -> String {
        String::from_utf8_lossy(self.chunk()).into_owned()
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// Writes values in the layout [`Input`] reads them, for seeds and tests.
#[derive(Clone, Debug, Default)]
pub struct Output(Vec<u8>);

impl Output {
    /// An empty script.
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    /// Appends a byte.
    #[must_use]
    pub fn u8(mut self, value: u8) -> Self {
        self.0.push(value);
        self
    }

    /// Appends two bytes, little-endian.
    #[must_use]
    pub fn u16(mut self, value: u16) -> Self {
        self.0.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// Appends four bytes, little-endian.
    #[must_use]
    pub fn u32(mut self, value: u32) -> Self {
        self.0.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// Appends eight bytes, little-endian.
    #[must_use]
    pub fn u64(mut self, value: u64) -> Self {
        self.0.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// Appends a chunk with its two-byte length; longer ones are cut.
    #[must_use]
    pub fn chunk(mut self, bytes: &[u8]) -> Self {
        let len = bytes.len().min(usize::from(u16::MAX));
        self = self.u16(u16::try_from(len).unwrap_or(u16::MAX));
        self.0.extend_from_slice(&bytes[..len]);
        self
    }

    /// Appends raw bytes.
    #[must_use]
    pub fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }

    /// The bytes written.
    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::{Input, Output};

    #[test]
    fn output_is_read_back() {
        let bytes = Output::new()
            .u8(7)
            .u16(0x1234)
            .u64(u64::MAX - 1)
            .chunk(b"hello")
            .raw(b"tail")
            .finish();
        let mut input = Input::new(&bytes);
        assert_eq!(input.u8(), 7);
        assert_eq!(input.u16(), 0x1234);
        assert_eq!(input.u64(), u64::MAX - 1);
        assert_eq!(input.string(), "hello");
        assert_eq!(input.rest(), b"tail");
        assert!(input.is_empty());
        assert_eq!(input.u32(), 0);
        assert!(input.chunk().is_empty());
    }
}
