//! XDR (RFC 4506): a bounded, zero-copy decoder over [`Bytes`] and an encoder
//! that keeps large opaque payloads as separate chunks.
//!
//! Hand-written on purpose: the XDR crates on crates.io (serde-xdr,
//! xdr-codec, xdrgen output) either trust a length before allocating or copy
//! opaque data into a `Vec`; a server needs every length checked against the
//! input and WRITE/READ payloads that stay `Bytes` end to end.

use bytes::{BufMut, Bytes, BytesMut};

/// Default cap on the element count of a variable-length array whose type
/// gives no tighter bound.
pub const MAX_ARRAY: usize = 1024;
/// Cap on strings (names, link text, owners, tags): PATH_MAX.
pub const MAX_STRING: usize = 4096;

/// Payloads at least this long are kept as their own chunk by
/// [`Encoder::put_opaque_bytes`] instead of being copied.
const ZERO_COPY_MIN: usize = 1024;

/// Why XDR input could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XdrError {
    /// The input ended before the item did.
    #[error("truncated XDR: needed {needed} bytes, {remaining} remain")]
    Truncated { needed: usize, remaining: usize },
    /// A length or count exceeded the type's maximum.
    #[error("{what} too long: {len} > {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    /// An enum or union discriminant (or a boolean) outside its defined set.
    #[error("invalid {what} value {value}")]
    BadDiscriminant { what: &'static str, value: u32 },
    /// A complete item was followed by unexpected bytes.
    #[error("{len} trailing bytes after {what}")]
    TrailingBytes { what: &'static str, len: usize },
}

/// Bytes of padding after `len` bytes of opaque data.
pub const fn pad(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// Reads XDR items from a [`Bytes`] buffer; opaque data is returned as
/// slices of that buffer, never copied.
#[derive(Debug, Clone)]
pub struct Decoder {
    buf: Bytes,
}

impl Decoder {
    pub fn new(buf: Bytes) -> Self {
        Self { buf }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The undecoded rest, e.g. procedure arguments after an RPC header.
    pub fn into_rest(self) -> Bytes {
        self.buf
    }

    /// Fails unless all input was consumed.
    pub fn finish(&self, what: &'static str) -> Result<(), XdrError> {
        match self.buf.len() {
            0 => Ok(()),
            len => Err(XdrError::TrailingBytes { what, len }),
        }
    }

    fn take(&mut self, n: usize) -> Result<Bytes, XdrError> {
        if n > self.buf.len() {
            return Err(XdrError::Truncated {
                needed: n,
                remaining: self.buf.len(),
            });
        }
        Ok(self.buf.split_to(n))
    }

    fn array4(&mut self) -> Result<[u8; 4], XdrError> {
        let b = self.take(4)?;
        Ok([b[0], b[1], b[2], b[3]])
    }

    pub fn u32(&mut self) -> Result<u32, XdrError> {
        self.array4().map(u32::from_be_bytes)
    }

    pub fn i32(&mut self) -> Result<i32, XdrError> {
        self.array4().map(i32::from_be_bytes)
    }

    pub fn u64(&mut self) -> Result<u64, XdrError> {
        let hi = u64::from(self.u32()?);
        let lo = u64::from(self.u32()?);
        Ok(hi << 32 | lo)
    }

    pub fn i64(&mut self) -> Result<i64, XdrError> {
        self.u64().map(|v| v as i64)
    }

    pub fn bool(&mut self) -> Result<bool, XdrError> {
        match self.u32()? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(XdrError::BadDiscriminant {
                what: "bool",
                value,
            }),
        }
    }

    /// Fixed-length opaque (`opaque x[N]`), with its padding.
    pub fn fixed<const N: usize>(&mut self) -> Result<[u8; N], XdrError> {
        let b = self.take(N + pad(N))?;
        let mut out = [0u8; N];
        out.copy_from_slice(&b[..N]);
        Ok(out)
    }

    /// Variable-length opaque (`opaque x<max>`), checked against `max` and
    /// the bytes remaining before anything is taken.
    pub fn opaque(&mut self, what: &'static str, max: usize) -> Result<Bytes, XdrError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(XdrError::TooLong { what, len, max });
        }
        let mut b = self.take(len + pad(len))?;
        b.truncate(len);
        Ok(b)
    }

    /// An array count, checked against `max` and against the input: every
    /// XDR item takes at least four bytes, so `count * 4` must remain. Call
    /// this before `Vec::with_capacity(count)`.
    pub fn count(&mut self, what: &'static str, max: usize) -> Result<usize, XdrError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(XdrError::TooLong { what, len, max });
        }
        if len.saturating_mul(4) > self.buf.len() {
            return Err(XdrError::Truncated {
                needed: len.saturating_mul(4),
                remaining: self.buf.len(),
            });
        }
        Ok(len)
    }

    /// A counted array of `T` with at most `max` elements.
    pub fn array<T: XdrDecode>(
        &mut self,
        what: &'static str,
        max: usize,
    ) -> Result<Vec<T>, XdrError> {
        let n = self.count(what, max)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(T::decode(self)?);
        }
        Ok(out)
    }
}

/// A linked list of optional-data entries (`entry *next`, as in directory
/// listings and MOUNT's lists): each element preceded by TRUE, the end by
/// FALSE. At most `max` elements; each takes at least four bytes of input,
/// so a list cannot claim more elements than the input could hold.
pub fn decode_list<T: XdrDecode>(
    dec: &mut Decoder,
    what: &'static str,
    max: usize,
) -> Result<Vec<T>, XdrError> {
    let mut out = Vec::new();
    while dec.bool()? {
        if out.len() == max {
            return Err(XdrError::TooLong {
                what,
                len: max + 1,
                max,
            });
        }
        out.push(T::decode(dec)?);
    }
    Ok(out)
}

/// Writes `items` as an optional-data linked list (see [`decode_list`]).
pub fn encode_list<T: XdrEncode>(enc: &mut Encoder, items: &[T]) {
    for item in items {
        enc.put_bool(true);
        item.encode(enc);
    }
    enc.put_bool(false);
}

/// Writes XDR items. Output is a list of chunks so that large payloads
/// (READ data) are referenced, not copied; [`Encoder::into_chunks`] suits
/// vectored writes.
#[derive(Debug, Default)]
pub struct Encoder {
    done: Vec<Bytes>,
    cur: BytesMut,
    done_len: usize,
}

impl Encoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Total encoded length so far.
    pub fn len(&self) -> usize {
        self.done_len + self.cur.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn put_u32(&mut self, v: u32) {
        self.cur.put_u32(v);
    }

    pub fn put_i32(&mut self, v: i32) {
        self.cur.put_i32(v);
    }

    pub fn put_u64(&mut self, v: u64) {
        self.cur.put_u64(v);
    }

    pub fn put_i64(&mut self, v: i64) {
        self.cur.put_i64(v);
    }

    pub fn put_bool(&mut self, v: bool) {
        self.cur.put_u32(u32::from(v));
    }

    /// Fixed-length opaque with padding.
    pub fn put_fixed(&mut self, data: &[u8]) {
        self.cur.put_slice(data);
        self.cur.put_bytes(0, pad(data.len()));
    }

    /// Variable-length opaque: length, data, padding (copied). XDR cannot
    /// express lengths above `u32::MAX`; every type's cap keeps data far
    /// below that (debug-asserted).
    pub fn put_opaque(&mut self, data: &[u8]) {
        debug_assert!(u32::try_from(data.len()).is_ok());
        self.cur.put_u32(data.len() as u32);
        self.put_fixed(data);
    }

    /// Variable-length opaque whose payload is referenced rather than
    /// copied when it is large.
    pub fn put_opaque_bytes(&mut self, data: &Bytes) {
        if data.len() < ZERO_COPY_MIN {
            self.put_opaque(data);
            return;
        }
        debug_assert!(u32::try_from(data.len()).is_ok());
        self.cur.put_u32(data.len() as u32);
        self.flush_cur();
        self.done_len += data.len();
        self.done.push(data.clone());
        self.cur.put_bytes(0, pad(data.len()));
    }

    fn flush_cur(&mut self) {
        if !self.cur.is_empty() {
            let chunk = self.cur.split().freeze();
            self.done_len += chunk.len();
            self.done.push(chunk);
        }
    }

    /// Appends everything another encoder wrote.
    pub fn append(&mut self, other: Encoder) {
        for chunk in other.into_chunks() {
            if chunk.len() < ZERO_COPY_MIN {
                self.cur.put_slice(&chunk);
            } else {
                self.flush_cur();
                self.done_len += chunk.len();
                self.done.push(chunk);
            }
        }
    }

    /// The output as chunks, in order.
    pub fn into_chunks(mut self) -> Vec<Bytes> {
        self.flush_cur();
        self.done
    }

    /// The output as one buffer (copies when there are several chunks).
    pub fn into_bytes(mut self) -> Bytes {
        if self.done.is_empty() {
            return self.cur.freeze();
        }
        self.flush_cur();
        if self.done.len() == 1 {
            return self.done.swap_remove(0);
        }
        let mut out = BytesMut::with_capacity(self.done_len);
        for chunk in &self.done {
            out.put_slice(chunk);
        }
        out.freeze()
    }
}

/// A value that can be written as XDR.
pub trait XdrEncode {
    fn encode(&self, enc: &mut Encoder);
}

/// A value that can be read from XDR with every length bounded.
pub trait XdrDecode: Sized {
    fn decode(dec: &mut Decoder) -> Result<Self, XdrError>;
}

/// Encodes one value into a single buffer.
pub fn to_bytes<T: XdrEncode + ?Sized>(value: &T) -> Bytes {
    let mut enc = Encoder::new();
    value.encode(&mut enc);
    enc.into_bytes()
}

/// Decodes one value that must span the whole input.
pub fn from_bytes<T: XdrDecode>(buf: Bytes) -> Result<T, XdrError> {
    let mut dec = Decoder::new(buf);
    let v = T::decode(&mut dec)?;
    dec.finish(std::any::type_name::<T>())?;
    Ok(v)
}

macro_rules! impl_int {
    ($t:ty, $get:ident, $put:ident) => {
        impl XdrEncode for $t {
            fn encode(&self, enc: &mut Encoder) {
                enc.$put(*self);
            }
        }
        impl XdrDecode for $t {
            fn decode(dec: &mut Decoder) -> Result<Self, XdrError> {
                dec.$get()
            }
        }
    };
}
impl_int!(u32, u32, put_u32);
impl_int!(i32, i32, put_i32);
impl_int!(u64, u64, put_u64);
impl_int!(i64, i64, put_i64);
impl_int!(bool, bool, put_bool);

/// XDR `void`.
impl XdrEncode for () {
    fn encode(&self, _: &mut Encoder) {}
}

impl XdrDecode for () {
    fn decode(_: &mut Decoder) -> Result<Self, XdrError> {
        Ok(())
    }
}

/// Fixed-length opaque (`opaque x[N]`): verifiers, session ids, stateid
/// `other`.
impl<const N: usize> XdrEncode for [u8; N] {
    fn encode(&self, enc: &mut Encoder) {
        enc.put_fixed(self);
    }
}

impl<const N: usize> XdrDecode for [u8; N] {
    fn decode(dec: &mut Decoder) -> Result<Self, XdrError> {
        dec.fixed::<N>()
    }
}

/// Variable-length opaque with a maximum length: `opaque x<MAX>`, and the
/// NFS string types (kept as bytes: UTF-8 validity is the operation's
/// concern, with its own error codes).
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Opaque<const MAX: usize>(pub Bytes);

impl<const MAX: usize> Opaque<MAX> {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The contents as UTF-8, for the string types.
    pub fn as_str(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.0)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<const MAX: usize> std::fmt::Debug for Opaque<MAX> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(s) if self.0.len() <= 64 => write!(f, "{s:?}"),
            _ => write!(f, "opaque[{}]", self.0.len()),
        }
    }
}

impl<const MAX: usize> From<&str> for Opaque<MAX> {
    fn from(s: &str) -> Self {
        Self(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl<const MAX: usize> From<&[u8]> for Opaque<MAX> {
    fn from(s: &[u8]) -> Self {
        Self(Bytes::copy_from_slice(s))
    }
}

impl<const MAX: usize> From<Bytes> for Opaque<MAX> {
    fn from(b: Bytes) -> Self {
        Self(b)
    }
}

impl<const MAX: usize> XdrEncode for Opaque<MAX> {
    fn encode(&self, enc: &mut Encoder) {
        enc.put_opaque_bytes(&self.0);
    }
}

impl<const MAX: usize> XdrDecode for Opaque<MAX> {
    fn decode(dec: &mut Decoder) -> Result<Self, XdrError> {
        dec.opaque("opaque", MAX).map(Self)
    }
}

/// A variable-length array with the default cap [`MAX_ARRAY`]; types with
/// a tighter bound decode their arrays with [`Decoder::array`].
impl<T: XdrEncode> XdrEncode for Vec<T> {
    fn encode(&self, enc: &mut Encoder) {
        enc.put_u32(self.len() as u32);
        for v in self {
            v.encode(enc);
        }
    }
}

impl<T: XdrDecode> XdrDecode for Vec<T> {
    fn decode(dec: &mut Decoder) -> Result<Self, XdrError> {
        dec.array("array", MAX_ARRAY)
    }
}

/// Both `T x<1>` and optional-data `T *x` (identical on the wire: a 0/1
/// count or boolean, then the value).
impl<T: XdrEncode> XdrEncode for Option<T> {
    fn encode(&self, enc: &mut Encoder) {
        match self {
            None => enc.put_u32(0),
            Some(v) => {
                enc.put_u32(1);
                v.encode(enc);
            }
        }
    }
}

impl<T: XdrDecode> XdrDecode for Option<T> {
    fn decode(dec: &mut Decoder) -> Result<Self, XdrError> {
        match dec.u32()? {
            0 => Ok(None),
            1 => T::decode(dec).map(Some),
            value => Err(XdrError::BadDiscriminant {
                what: "optional",
                value,
            }),
        }
    }
}

/// Returns its first identifier: lets `xdr_union!` bind a payload only for
/// the variants that have one.
macro_rules! first_ident {
    ($a:ident $($rest:tt)*) => {
        $a
    };
}
pub(crate) use first_ident;

/// A struct whose fields are encoded in declaration order.
macro_rules! xdr_struct {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $f:ident : $t:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct $name { $($(#[$fm])* pub $f: $t),* }

        impl $crate::xdr::XdrEncode for $name {
            #[allow(unused_variables)]
            fn encode(&self, enc: &mut $crate::xdr::Encoder) {
                $($crate::xdr::XdrEncode::encode(&self.$f, enc);)*
            }
        }

        impl $crate::xdr::XdrDecode for $name {
            #[allow(unused_variables)]
            fn decode(dec: &mut $crate::xdr::Decoder) -> Result<Self, $crate::xdr::XdrError> {
                Ok(Self { $($f: <$t as $crate::xdr::XdrDecode>::decode(dec)?),* })
            }
        }
    };
}
pub(crate) use xdr_struct;

/// A C-like enum with explicit `u32` values; other values fail to decode.
macro_rules! xdr_enum {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $v:ident = $d:expr),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum $name { $($(#[$vm])* $v = $d),* }

        impl TryFrom<u32> for $name {
            type Error = $crate::xdr::XdrError;
            fn try_from(value: u32) -> Result<Self, Self::Error> {
                match value {
                    $(v if v == $d => Ok(Self::$v),)*
                    value => Err($crate::xdr::XdrError::BadDiscriminant { what: stringify!($name), value }),
                }
            }
        }

        impl $crate::xdr::XdrEncode for $name {
            fn encode(&self, enc: &mut $crate::xdr::Encoder) {
                enc.put_u32(*self as u32);
            }
        }

        impl $crate::xdr::XdrDecode for $name {
            fn decode(dec: &mut $crate::xdr::Decoder) -> Result<Self, $crate::xdr::XdrError> {
                Self::try_from(dec.u32()?)
            }
        }
    };
}
pub(crate) use xdr_enum;

/// A protocol's error status (an [`xdr_enum!`] of its non-OK values): the
/// wire value, `Display` as the RFC names it (`PREFIX` + variant, value) and
/// `std::error::Error`.
macro_rules! status_error {
    ($name:ident, $prefix:literal) => {
        impl $name {
            /// The wire value.
            pub fn code(self) -> u32 {
                self as u32
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!($prefix, "{:?} ({})"), self, self.code())
            }
        }

        impl std::error::Error for $name {}
    };
}
pub(crate) use status_error;

/// A discriminated union whose every arm is listed (no `default:` arm);
/// variants carry at most one payload type.
macro_rules! xdr_union {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $v:ident $(($t:ty))? = $d:expr),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum $name { $($(#[$vm])* $v $(($t))?),* }

        impl $name {
            /// The union discriminant of this value.
            pub fn discriminant(&self) -> u32 {
                match self { $(Self::$v $(($crate::xdr::first_ident!(_x $t)))? => $d,)* }
            }
        }

        impl $crate::xdr::XdrEncode for $name {
            fn encode(&self, enc: &mut $crate::xdr::Encoder) {
                enc.put_u32(self.discriminant());
                match self {
                    $(Self::$v $(($crate::xdr::first_ident!(x $t)))? => {
                        $($crate::xdr::XdrEncode::encode($crate::xdr::first_ident!(x $t), enc);)?
                    })*
                }
            }
        }

        impl $crate::xdr::XdrDecode for $name {
            fn decode(dec: &mut $crate::xdr::Decoder) -> Result<Self, $crate::xdr::XdrError> {
                match dec.u32()? {
                    $(v if v == $d => Ok(Self::$v $((<$t as $crate::xdr::XdrDecode>::decode(dec)?))?),)*
                    value => Err($crate::xdr::XdrError::BadDiscriminant { what: stringify!($name), value }),
                }
            }
        }
    };
}
pub(crate) use xdr_union;
