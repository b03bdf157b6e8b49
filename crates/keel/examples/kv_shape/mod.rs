//! What `tree_ops` and `commit_pair` share: the kv suite's key and value
//! sizes, the fixed key sequence, and the calling thread's CPU clock.

/// Bytes per key, as `keel bench kv`.
pub const KEY_BYTES: usize = 24;
/// Bytes per value, as `keel bench kv`.
pub const VALUE_BYTES: usize = 150;

/// Key `i` of the fixed sequence: 24 bytes from a xorshift of `i`.
pub fn key(i: u64) -> [u8; KEY_BYTES] {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut k = [0u8; KEY_BYTES];
    for chunk in k.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    k
}

/// User plus system CPU time of the calling thread, in seconds.
pub fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// User-space CPU time of the calling thread, in seconds (`getrusage`,
/// counted in the kernel's accounting ticks unless it accounts precisely:
/// meaningful over many operations, not one).
pub fn thread_user_cpu() -> f64 {
    // SAFETY: an all-zero rusage is a valid value to be overwritten.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer for the call.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    ru.ru_utime.tv_sec as f64 + ru.ru_utime.tv_usec as f64 * 1e-6
}
