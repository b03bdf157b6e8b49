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
//! An `AlignedBuf` comes from the heap, or from a [`BufArena`]: one
//! anonymous mapping cut into equal slots (the engine's buffer pool keeps
//! its frames' pages there). A slot is owned by at most one live buffer:
//! the arena hands out each slot once and takes it back when that buffer
//! is dropped. The mapping is reserved, not touched, when the arena is
//! made, so memory is faulted in only as slots are first used. Every slot
//! is all zero when handed out: a slot given back is zeroed, and a fresh
//! one is zero already (the kernel zeroes anonymous memory as it faults
//! it in), so handing it out writes one zero into each of its 4 KiB
//! pages, in order: that write is the first touch of the memory, so each
//! page is faulted in writable at once. (Read first, a page would map
//! the kernel's shared zero page, and the first write after it would copy
//! that page and flush the TLB of every CPU running the process.)
//!
//! Huge pages are the arena's maker's choice ([`BufArena::new`]). Asked
//! for (`MADV_HUGEPAGE` on Linux), the first write into each 2 MiB of the
//! mapping faults in and zeroes a whole huge page: fewer TLB misses later
//! when slots are read at random, but that first write waits for 2 MiB,
//! and on a virtual machine whose host takes back the guest's free
//! memory, for the host to back all of it. Not asked for, the mapping
//! follows the system's transparent huge page setting.
//!
//! Left out: registered (fixed) buffers.

use std::alloc::{self, Layout};
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::Arc;

use parking_lot::Mutex;

/// The alignment O_DIRECT requests must respect: offsets, lengths and buffer
/// addresses are multiples of it. 4096 covers both 512-byte and 4 KiB
/// logical-sector devices; the cost is that small direct I/Os round up.
pub const DIRECT_IO_ALIGN: usize = 4096;

/// A zeroed buffer aligned to [`DIRECT_IO_ALIGN`], on the heap or in a
/// [`BufArena`]'s slot.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    cap: usize,
    /// The arena and slot the memory belongs to; `None` for heap memory.
    home: Option<(Arc<ArenaMap>, usize)>,
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
        // A length no allocation can hold (rounding it up overflows) is an
        // allocation failure, never a smaller buffer claiming `len` bytes.
        let cap = len
            .max(1)
            .checked_next_multiple_of(DIRECT_IO_ALIGN)
            .unwrap_or_else(|| alloc::handle_alloc_error(Layout::new::<u8>()));
        let layout = Self::layout(cap);
        // SAFETY: the layout has a non-zero size (cap >= DIRECT_IO_ALIGN).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        AlignedBuf {
            ptr,
            len,
            cap,
            home: None,
        }
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

    /// Sets the length to `len` for a caller that writes every byte up to
    /// it before reading any: within the capacity the bytes keep what the
    /// buffer last held there (its memory is zeroed when allocated, so
    /// they are earlier contents or zeroes, never uninitialised memory);
    /// past it, a zeroed buffer of at least twice the capacity replaces
    /// this one, its bytes not copied.
    pub fn set_len_for_overwrite(&mut self, len: usize) {
        if len > self.cap {
            *self = AlignedBuf::zeroed(len.max(self.cap.saturating_mul(2)));
        }
        self.len = len;
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
        match self.home.take() {
            Some((arena, slot)) => arena.give_back(slot),
            // SAFETY: ptr was allocated in `zeroed` with exactly this layout
            // and is freed only here, once.
            None => unsafe { alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.cap)) },
        }
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

/// Equal slots of one anonymous mapping, handed out as [`AlignedBuf`]s
/// (module docs). Cloning shares the arena.
#[derive(Clone)]
pub struct BufArena(Arc<ArenaMap>);

/// The mapping behind a [`BufArena`]; unmapped when the arena and every
/// buffer from it are gone.
struct ArenaMap {
    /// Where the mapping starts (what `munmap` takes).
    map: NonNull<u8>,
    map_bytes: usize,
    /// The first slot: `map` rounded up to [`HUGE_PAGE_BYTES`].
    base: NonNull<u8>,
    slot_bytes: usize,
    slots: usize,
    free: Mutex<ArenaSlots>,
}

/// Which slots are free: every slot from `fresh` on (never handed out,
/// never touched), and those in `returned`.
struct ArenaSlots {
    fresh: usize,
    returned: Vec<usize>,
}

// SAFETY: the mapping is owned by the ArenaMap; each slot's bytes are
// reachable only through the one AlignedBuf that holds the slot (handed
// out under the `free` mutex, once, until given back), so sharing the map
// between threads shares no bytes.
unsafe impl Send for ArenaMap {}
// SAFETY: as for Send; `&ArenaMap` only reaches the mutex-guarded slot lists.
unsafe impl Sync for ArenaMap {}

/// The size of a transparent huge page on x86-64 and arm64 (4 KiB base
/// pages): the arena's slots start at a multiple of it so whole huge
/// pages can back them.
const HUGE_PAGE_BYTES: usize = 2 << 20;

impl BufArena {
    /// An arena of `slots` slots of `slot_bytes` each (a non-zero multiple
    /// of [`DIRECT_IO_ALIGN`]), its mapping advised for transparent huge
    /// pages when `huge_pages` is set (module docs); `None` when the sizes
    /// are not or the mapping cannot be made (callers fall back to heap
    /// buffers).
    pub fn new(slot_bytes: usize, slots: usize, huge_pages: bool) -> Option<BufArena> {
        if slot_bytes == 0 || !slot_bytes.is_multiple_of(DIRECT_IO_ALIGN) || slots == 0 {
            return None;
        }
        let bytes = slot_bytes.checked_mul(slots)?;
        let map_bytes = bytes.checked_add(HUGE_PAGE_BYTES)?;
        // SAFETY: a new private anonymous mapping; it aliases nothing.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return None;
        }
        let map = NonNull::new(raw.cast::<u8>())?;
        let skip =
            (map.as_ptr() as usize).next_multiple_of(HUGE_PAGE_BYTES) - map.as_ptr() as usize;
        // SAFETY: skip < HUGE_PAGE_BYTES, so base + bytes stays in the map.
        let base = unsafe { map.add(skip) };
        #[cfg(target_os = "linux")]
        if huge_pages {
            // SAFETY: the range lies inside the mapping made above. The
            // advice is a hint: without huge pages the slots still work.
            let _ = unsafe { libc::madvise(base.as_ptr().cast(), bytes, libc::MADV_HUGEPAGE) };
        }
        #[cfg(not(target_os = "linux"))]
        let _ = huge_pages;
        Some(BufArena(Arc::new(ArenaMap {
            map,
            map_bytes,
            base,
            slot_bytes,
            slots,
            free: Mutex::new(ArenaSlots {
                fresh: 0,
                returned: Vec::new(),
            }),
        })))
    }

    /// A zeroed buffer of one slot's bytes, or `None` when every slot is
    /// in use.
    pub fn zeroed(&self) -> Option<AlignedBuf> {
        let (slot, fresh) = {
            let mut free = self.0.free.lock();
            if let Some(slot) = free.returned.pop() {
                (slot, false)
            } else if free.fresh < self.0.slots {
                free.fresh += 1;
                (free.fresh - 1, true)
            } else {
                return None;
            }
        };
        // SAFETY: slot < slots, so the slot lies inside the mapping.
        let ptr = unsafe { self.0.base.add(slot * self.0.slot_bytes) };
        let mut buf = AlignedBuf {
            ptr,
            len: self.0.slot_bytes,
            cap: self.0.slot_bytes,
            home: Some((Arc::clone(&self.0), slot)),
        };
        if fresh {
            // Never touched since the mapping was made, so all zero; its
            // first touch is a write (module docs). The slot's size is a
            // multiple of DIRECT_IO_ALIGN, and no page is smaller.
            for page in buf.chunks_exact_mut(DIRECT_IO_ALIGN) {
                page[0] = 0;
            }
        } else {
            buf.fill(0);
        }
        Some(buf)
    }

    /// Bytes of one slot.
    pub fn slot_bytes(&self) -> usize {
        self.0.slot_bytes
    }
}

impl ArenaMap {
    /// Takes back `slot` from the buffer that held it (being dropped).
    fn give_back(&self, slot: usize) {
        self.free.lock().returned.push(slot);
    }
}

impl Drop for ArenaMap {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `BufArena::new`; no buffer holds a
        // slot any more (each holds an Arc of this map).
        let _ = unsafe { libc::munmap(self.map.as_ptr().cast(), self.map_bytes) };
    }
}

impl fmt::Debug for BufArena {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufArena")
            .field("slot_bytes", &self.0.slot_bytes)
            .field("slots", &self.0.slots)
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

    /// Bytes the buffer holds without reallocating.
    pub fn capacity(&self) -> usize {
        match &self.0 {
            Inner::Vec(v) => v.capacity(),
            Inner::Aligned(a) => a.capacity(),
        }
    }

    /// [`AlignedBuf::set_len_for_overwrite`] (a `Vec` is resized, zeroing
    /// growth): for a caller that writes every byte up to `len`.
    pub fn set_len_for_overwrite(&mut self, len: usize) {
        match &mut self.0 {
            Inner::Vec(v) => v.resize(len, 0),
            Inner::Aligned(a) => a.set_len_for_overwrite(len),
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

    /// Within the capacity the length moves and no byte changes; past it
    /// the buffer at least doubles, aligned and zeroed.
    #[test]
    fn a_length_for_overwrite_keeps_the_bytes_and_grows_by_doubling() {
        let mut b = AlignedBuf::zeroed(3 * DIRECT_IO_ALIGN);
        b.fill(9);
        b.set_len_for_overwrite(10);
        assert_eq!(b.len(), 10);
        b.set_len_for_overwrite(3 * DIRECT_IO_ALIGN);
        assert!(b.iter().all(|&x| x == 9), "bytes within the capacity kept");
        b.set_len_for_overwrite(3 * DIRECT_IO_ALIGN + 1);
        assert_eq!(b.len(), 3 * DIRECT_IO_ALIGN + 1);
        assert_eq!(b.capacity(), 6 * DIRECT_IO_ALIGN);
        assert_eq!(b.as_ptr() as usize % DIRECT_IO_ALIGN, 0);
        assert!(b.iter().all(|&x| x == 0), "a new buffer is zeroed");
        let mut v = IoBuf::from(vec![1u8; 4]);
        v.set_len_for_overwrite(6);
        assert_eq!(&v[..], &[1, 1, 1, 1, 0, 0]);
    }

    #[test]
    fn arena_slots_are_aligned_zeroed_owned_once_and_reused_after_drop() {
        let arena = BufArena::new(2 * DIRECT_IO_ALIGN, 3, false).unwrap();
        let mut a = arena.zeroed().unwrap();
        let b = arena.zeroed().unwrap();
        let c = arena.zeroed().unwrap();
        assert!(arena.zeroed().is_none(), "three slots, three buffers");
        for buf in [&a, &b, &c] {
            assert_eq!(buf.len(), 2 * DIRECT_IO_ALIGN);
            assert_eq!(buf.as_ptr() as usize % DIRECT_IO_ALIGN, 0);
            assert!(buf.iter().all(|&x| x == 0));
        }
        assert_ne!(a.as_ptr(), b.as_ptr());
        assert_ne!(b.as_ptr(), c.as_ptr());
        a.fill(0xaa);
        let at = a.as_ptr();
        drop(a);
        let again = arena.zeroed().unwrap();
        assert_eq!(
            again.as_ptr(),
            at,
            "the slot given back is handed out again"
        );
        assert!(
            again.iter().all(|&x| x == 0),
            "zeroed when handed out again"
        );
        // Growing past a slot moves the bytes to the heap and frees the slot.
        let mut grown = again;
        grown[0] = 5;
        grown.resize(3 * DIRECT_IO_ALIGN);
        assert_eq!(grown[0], 5);
        assert!(arena.zeroed().is_some());
        // Buffers outlive the arena handle: the mapping stays until the last.
        drop(arena);
        assert!(c.iter().all(|&x| x == 0));
        assert!(BufArena::new(100, 1, false).is_none());
        assert!(BufArena::new(DIRECT_IO_ALIGN, 0, true).is_none());
    }

    /// The kernel's flags (`VmFlags` in /proc/self/smaps) of the mapping
    /// that holds `addr`.
    #[cfg(target_os = "linux")]
    fn vm_flags(addr: usize) -> Vec<String> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            let range = line.split_whitespace().next().unwrap_or("");
            if let Some((lo, hi)) = range.split_once('-')
                && let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = (lo..hi).contains(&addr);
            } else if inside && let Some(flags) = line.strip_prefix("VmFlags:") {
                return flags.split_whitespace().map(str::to_string).collect();
            }
        }
        panic!("no mapping of /proc/self/smaps holds {addr:#x}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_arena_asks_for_huge_pages_only_when_told() {
        let thp = std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists();
        for huge in [false, true] {
            let arena = BufArena::new(DIRECT_IO_ALIGN, 1024, huge).unwrap();
            let slot = arena.zeroed().unwrap();
            let flags = vm_flags(slot.as_ptr() as usize);
            assert_eq!(
                flags.iter().any(|f| f == "hg"),
                huge && thp,
                "huge_pages {huge}: the slots' mapping has flags {flags:?}"
            );
        }
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
