//! Malformed input: truncations at every offset of valid messages, mutated
//! words and random bytes never panic, and no decode allocates beyond what
//! the input can justify (a trusted length of 2^32-1 would ask for GiBs).
//!
//! One test in this binary: the allocation probe is process-wide.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use openefs_nfs_wire::nfs4::*;
use openefs_nfs_wire::rpc::{CallHeader, RecordDecoder};
use openefs_nfs_wire::xdr::{self, Decoder, XdrDecode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Records the largest single allocation.
struct Probe;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Probe {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: as for `alloc`/`dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Probe = Probe;

/// Largest allocation a decode may make beyond a copy of its input (the
/// record decoder's stream buffer): the biggest legitimate one is a
/// `Vec<ArgOp>` of up to `MAX_COMPOUND_OPS` elements grown by doubling.
const ALLOCATION_BOUND: usize = 64 * 1024;

/// Runs every decoder on `input`; results are irrelevant, panics and
/// allocations are not.
fn decode_all(input: &Bytes) {
    LARGEST.store(0, Ordering::Relaxed);
    decode_each(input);
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest <= input.len() + ALLOCATION_BOUND,
        "decoding {} bytes allocated {largest} bytes at once",
        input.len()
    );
}

fn decode_each(input: &Bytes) {
    let _ = Compound4Args::decode(&mut Decoder::new(input.clone()));
    let _ = xdr::from_bytes::<Compound4Res>(input.clone());
    let _ = ResOp::decode(&mut Decoder::new(input.clone()));
    let mut dec = Decoder::new(input.clone());
    if CallHeader::decode(&mut dec).is_ok() {
        let _ = Compound4Args::decode(&mut dec);
    }
    let fattr = Fattr4 {
        attrmask: Bitmap4::from_words(vec![u32::MAX; 3]),
        attr_vals: xdr::Opaque(input.clone()),
    };
    let _ = FileAttrs::decode(&fattr);
    if let Ok(f) = xdr::from_bytes::<Fattr4>(input.clone()) {
        let _ = FileAttrs::decode(&f);
    }
    common::nfs3::decode_each(input);
    let mut stream = BytesMut::from(&input[..]);
    let mut records = RecordDecoder::new(64 * 1024);
    while let Ok(Some(_)) = records.decode(&mut stream) {}
}

fn valid_messages() -> Vec<Bytes> {
    let mut out = Vec::new();
    for op in common::sample_arg_ops() {
        let args = Compound4Args {
            tag: common::s("t"),
            minorversion: 1,
            declared_ops: 1,
            ops: vec![op],
            error: None,
        };
        out.push(xdr::to_bytes(&args));
    }
    for r in common::sample_res_ops() {
        out.push(xdr::to_bytes(&r));
    }
    out.extend(common::nfs3::encoded_samples());
    out
}

#[test]
fn malformed_input_never_panics_nor_overallocates() {
    let messages = valid_messages();
    let mut rng = StdRng::seed_from_u64(0x006f_7065_6e65_6673);

    // Every truncation of every valid message.
    for msg in &messages {
        for cut in 0..msg.len().min(2048) {
            decode_all(&msg.slice(..cut));
        }
    }

    // Valid messages with one or two words replaced by hostile values.
    let hostile = [0, 1, 2, 3, 0x7fff_ffff, 0x8000_0000, 0xffff_fff0, u32::MAX];
    for _ in 0..10_000 {
        let msg = &messages[rng.random_range(0..messages.len())];
        let mut bytes = msg.to_vec();
        for _ in 0..rng.random_range(1..=2) {
            let words = bytes.len() / 4;
            if words == 0 {
                break;
            }
            let at = rng.random_range(0..words) * 4;
            let v = if rng.random_bool(0.5) {
                hostile[rng.random_range(0..hostile.len())]
            } else {
                rng.random()
            };
            bytes[at..at + 4].copy_from_slice(&v.to_be_bytes());
        }
        decode_all(&Bytes::from(bytes));
    }

    // Random bytes, biased towards small words so that counts and
    // discriminants often look plausible.
    for _ in 0..10_000 {
        let len = rng.random_range(0..512usize);
        let bytes: Vec<u8> = (0..len)
            .map(|i| {
                if i % 4 == 3 {
                    rng.random_range(0..64)
                } else if rng.random_bool(0.8) {
                    0
                } else {
                    rng.random()
                }
            })
            .collect();
        decode_all(&Bytes::from(bytes));
    }
}
