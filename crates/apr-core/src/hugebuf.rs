//! Large zeroed byte buffers on 2 MiB pages where Linux offers them (transparent huge pages in
//! `madvise` mode need the request): decode streams every weight byte once per token, and on
//! 4 KiB pages that costs a TLB miss every 4 KiB and stops the hardware prefetcher at each page.
//! Smaller buffers, and other systems, use an ordinary allocation.

/// Huge-page granule.
const HUGE: usize = 2 << 20;
/// Buffers from this size on get their own 2 MiB-aligned mapping.
const MIN_HUGE_BYTES: usize = 1 << 20;

/// A fixed-size zeroed byte buffer.
pub struct HugeBuf {
    ptr: *mut u8,
    len: usize,
    /// Bytes mapped at `ptr` (0: `ptr` came from a Vec of capacity `len`).
    mapped: usize,
}

// SAFETY: HugeBuf owns its bytes exclusively, like a Vec<u8>.
unsafe impl Send for HugeBuf {}
unsafe impl Sync for HugeBuf {}

impl HugeBuf {
    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> Self {
        #[cfg(target_os = "linux")]
        if len >= MIN_HUGE_BYTES {
            if let Some(b) = Self::map(len) {
                return b;
            }
        }
        let mut v = std::mem::ManuallyDrop::new(vec![0u8; len].into_boxed_slice());
        HugeBuf {
            ptr: v.as_mut_ptr(),
            len,
            mapped: 0,
        }
    }

    /// An anonymous mapping rounded up to whole 2 MiB pages, 2 MiB-aligned, advised huge.
    #[cfg(target_os = "linux")]
    fn map(len: usize) -> Option<Self> {
        let size = len.div_ceil(HUGE) * HUGE;
        // SAFETY: a fresh private anonymous mapping; the unaligned head and tail of the
        // over-sized request are unmapped, the rest is owned by the returned buffer.
        unsafe {
            let raw = libc::mmap(
                std::ptr::null_mut(),
                size + HUGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if raw == libc::MAP_FAILED {
                return None;
            }
            let start = (raw as usize).div_ceil(HUGE) * HUGE;
            let head = start - raw as usize;
            if head > 0 {
                libc::munmap(raw, head);
            }
            let tail = HUGE - head;
            if tail > 0 {
                libc::munmap((start + size) as *mut libc::c_void, tail);
            }
            // Advice only: without THP the buffer still works on 4 KiB pages.
            libc::madvise(start as *mut libc::c_void, size, libc::MADV_HUGEPAGE);
            Some(HugeBuf {
                ptr: start as *mut u8,
                len,
                mapped: size,
            })
        }
    }
}

impl std::ops::Deref for HugeBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr holds len initialized (zeroed or written) bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl std::ops::DerefMut for HugeBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in deref, and &mut self is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Clone for HugeBuf {
    fn clone(&self) -> Self {
        let mut b = HugeBuf::zeroed(self.len);
        b.copy_from_slice(self);
        b
    }
}

impl std::fmt::Debug for HugeBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HugeBuf({} bytes, {} mapped)", self.len, self.mapped)
    }
}

impl Drop for HugeBuf {
    fn drop(&mut self) {
        if self.mapped > 0 {
            #[cfg(target_os = "linux")]
            // SAFETY: the mapping made in `map`, unmapped once.
            unsafe {
                libc::munmap(self.ptr as *mut libc::c_void, self.mapped);
            }
        } else {
            // SAFETY: the boxed slice leaked in `zeroed`, rebuilt once.
            unsafe {
                drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                    self.ptr, self.len,
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_buffers_are_zeroed_writable_and_cloned() {
        for len in [0, 100, MIN_HUGE_BYTES + 12345, 3 * HUGE] {
            let mut b = HugeBuf::zeroed(len);
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|&x| x == 0));
            for (i, x) in b.iter_mut().enumerate() {
                *x = (i % 251) as u8;
            }
            let c = b.clone();
            assert_eq!(&c[..], &b[..]);
            if len >= MIN_HUGE_BYTES && cfg!(target_os = "linux") {
                assert_eq!(b.ptr as usize % HUGE, 0, "huge buffers are 2 MiB-aligned");
            }
        }
    }
}
