//! Encryption of file contents at rest.

/// A file system's data key (DEK): the two AES-256 keys of XTS. Only ever
/// held in memory; stored wrapped by a key-encryption key (nfsd's job).
#[derive(Clone)]
pub struct ContentKey(Box<[u8; ContentKey::LEN]>);

impl ContentKey {
    pub const LEN: usize = 64;

    pub fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        Self(Box::new(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }
}

impl std::fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContentKey(..)")
    }
}
