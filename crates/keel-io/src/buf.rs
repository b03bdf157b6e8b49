//! Owned I/O buffers.
//!
//! A request takes its buffer by value and the reply hands it back, so the
//! memory is owned by the operation for as long as the kernel may read or
//! write it — even when the submitter drops the future (the io_uring backend
//! keeps the buffer in its in-flight table until the completion arrives).
//!
//! Two kinds of memory back an [`IoBuf`]:
//! - a plain `Vec<u8>` for buffered files;
//! - an [`AlignedBuf`], whose address and capacity are multiples of
//!   [`DIRECT_IO_ALIGN`] (4096 bytes), as O_DIRECT requires.
//!
//! Invariants: the heap memory of a buffer never moves while the buffer
//! lives, however often the `IoBuf` value itself is moved; every byte up to
//! `len()` is initialised (buffers are zeroed when made).
//!
//! Left out: registered (fixed) buffers and buffer pools; the buffer pool of
//! the engine owns its frames and lends them as `AlignedBuf`s.

use std::alloc::{self, Layout};
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// The alignment O_DIRECT requests must respect: offsets, lengths and buffer
/// addresses are multiples of it. 4096 covers both 512-byte and 4 KiB
/// logical-sector devices; the cost is that small direct I/Os round up.
pub const DIRECT_IO_ALIGN: usize = 4096;

/// A zeroed heap buffer aligned to [`DIRECT_IO_ALIGN`].
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    cap: usize,
}

// SAFETY: AlignedBuf owns its allocation exclusively (like Vec<u8>); moving it
// to another thread moves that ownership.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared references only give out `&[u8]`, which is Sync.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes whose capacity is `len` rounded up to
    /// a multiple of [`DIRECT_IO_ALIGN`] (at least one block).
    pub fn zeroed(len: usize) -> AlignedBuf {
        let cap = len.div_ceil(DIRECT_IO_ALIGN).max(1) * DIRECT_IO_ALIGN;
        let layout = Self::layout(cap);
        // SAFETY: the layout has a non-zero size (cap >= DIRECT_IO_ALIGN).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        AlignedBuf { ptr, len, cap }
    }

    fn layout(cap: usize) -> Layout {
        match Layout::from_size_align(cap, DIRECT_IO_ALIGN) {
            Ok(layout) => layout,
            // Only reachable for sizes near isize::MAX, which no allocator
            // could satisfy either: treat it as allocation failure.
            Err(_) => alloc::handle_alloc_error(Layout::new::<u8>()),
        }
    }

    /// Bytes in use.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no bytes are in use.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes allocated (a multiple of [`DIRECT_IO_ALIGN`]).
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Changes the length: shrinking keeps the bytes, growing zeroes the new
    /// ones and reallocates (keeping the alignment) past the capacity.
    pub fn resize(&mut self, new_len: usize) {
        if new_len > self.cap {
            let mut bigger = AlignedBuf::zeroed(new_len);
            bigger[..self.len].copy_from_slice(self);
            *self = bigger;
            return;
        }
        if new_len > self.len {
            let old = self.len;
            self.len = new_len;
            self[old..].fill(0);
        } else {
            self.len = new_len;
        }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: ptr was allocated in `zeroed` with exactly this layout and is
        // freed only here, once.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.cap)) }
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr points to `cap >= len` initialised (zeroed or written)
        // bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Clone for AlignedBuf {
    fn clone(&self) -> AlignedBuf {
        let mut copy = AlignedBuf::zeroed(self.len);
        copy.copy_from_slice(self);
        copy
    }
}

impl fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("len", &self.len)
            .field("cap", &self.cap)
            .finish()
    }
}

/// An owned buffer moved into an operation and handed back on completion.
#[derive(Clone)]
pub struct IoBuf(Inner);

#[derive(Clone)]
enum Inner {
    Vec(Vec<u8>),
    Aligned(AlignedBuf),
}

impl IoBuf {
    /// A zeroed, unaligned buffer of `len` bytes.
    pub fn zeroed(len: usize) -> IoBuf {
        IoBuf(Inner::Vec(vec![0; len]))
    }

    /// A zeroed buffer aligned for O_DIRECT.
    pub fn aligned(len: usize) -> IoBuf {
        IoBuf(Inner::Aligned(AlignedBuf::zeroed(len)))
    }

    /// A copy of `bytes` in aligned memory.
    pub fn aligned_from(bytes: &[u8]) -> IoBuf {
        let mut buf = AlignedBuf::zeroed(bytes.len());
        buf.copy_from_slice(bytes);
        IoBuf(Inner::Aligned(buf))
    }

    /// Whether the address is aligned to [`DIRECT_IO_ALIGN`].
    pub fn is_aligned(&self) -> bool {
        (self.as_ptr() as usize).is_multiple_of(DIRECT_IO_ALIGN)
    }

    /// Changes the length (zero-filling growth).
    pub fn resize(&mut self, new_len: usize) {
        match &mut self.0 {
            Inner::Vec(v) => v.resize(new_len, 0),
            Inner::Aligned(a) => a.resize(new_len),
        }
    }

    /// Shortens the buffer to `len` bytes (no-op if already shorter).
    pub fn truncate(&mut self, len: usize) {
        if len < self.len() {
            self.resize(len);
        }
    }

    /// The bytes as a `Vec` (copies aligned memory).
    pub fn into_vec(self) -> Vec<u8> {
        match self.0 {
            Inner::Vec(v) => v,
            Inner::Aligned(a) => a.to_vec(),
        }
    }
}

impl Deref for IoBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Inner::Vec(v) => v,
            Inner::Aligned(a) => a,
        }
    }
}

impl DerefMut for IoBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.0 {
            Inner::Vec(v) => v,
            Inner::Aligned(a) => a,
        }
    }
}

impl From<Vec<u8>> for IoBuf {
    fn from(v: Vec<u8>) -> IoBuf {
        IoBuf(Inner::Vec(v))
    }
}

impl From<&[u8]> for IoBuf {
    fn from(v: &[u8]) -> IoBuf {
        IoBuf(Inner::Vec(v.to_vec()))
    }
}

impl From<AlignedBuf> for IoBuf {
    fn from(a: AlignedBuf) -> IoBuf {
        IoBuf(Inner::Aligned(a))
    }
}

impl fmt::Debug for IoBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IoBuf")
            .field("len", &self.len())
            .field("aligned", &self.is_aligned())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buffers_are_aligned_zeroed_and_resizable() {
        let mut b = AlignedBuf::zeroed(100);
        assert_eq!(b.len(), 100);
        assert_eq!(b.capacity(), DIRECT_IO_ALIGN);
        assert!(b.iter().all(|&x| x == 0));
        assert_eq!(b.as_ptr() as usize % DIRECT_IO_ALIGN, 0);
        b[99] = 7;
        b.resize(10_000);
        assert_eq!(b[99], 7);
        assert!(b[100..].iter().all(|&x| x == 0));
        assert_eq!(b.as_ptr() as usize % DIRECT_IO_ALIGN, 0);
        b.resize(5);
        assert_eq!(b.len(), 5);
        let empty = AlignedBuf::zeroed(0);
        assert!(empty.is_empty());
    }

    #[test]
    fn iobuf_round_trips() {
        let b = IoBuf::from(vec![1, 2, 3]);
        assert_eq!(&b[..], &[1, 2, 3]);
        let a = IoBuf::aligned_from(&[4, 5]);
        assert!(a.is_aligned());
        assert_eq!(a.into_vec(), vec![4, 5]);
    }
}
