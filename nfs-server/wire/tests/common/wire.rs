//! An independent XDR writer for golden byte layouts.

use bytes::Bytes;

/// Big-endian words and padded opaques, written independently of `xdr`.
#[derive(Default)]
pub struct Wire(pub Vec<u8>);

impl Wire {
    pub fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u64(self, v: u64) -> Self {
        self.u32((v >> 32) as u32).u32(v as u32)
    }
    pub fn fixed(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
        self
    }
    pub fn opaque(self, b: &[u8]) -> Self {
        self.u32(b.len() as u32).fixed(b)
    }
    pub fn bytes(self) -> Bytes {
        Bytes::from(self.0)
    }
}
