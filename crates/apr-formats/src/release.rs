//! Handing a memory-mapped file's pages back once a pass over them is done: streaming
//! operations (merge, quantize, convert) read each input tensor once, and without this every
//! page read stays in the process's resident set until the end, so peak RSS would be the size
//! of the inputs rather than a few tensors. The pages stay in the page cache; a later read
//! maps them in again.

use crate::{Gguf, TensorInfo};

/// Page size assumed for alignment (4 KiB; a larger real page only widens the range).
const PAGE: usize = 4096;

/// Drops `bytes` (a slice of a memory-mapped file) from the resident set; a no-op elsewhere.
pub fn release_mapped(bytes: &[u8]) {
    #[cfg(target_os = "linux")]
    if !bytes.is_empty() {
        let start = (bytes.as_ptr() as usize) / PAGE * PAGE;
        let end = (bytes.as_ptr() as usize + bytes.len()).div_ceil(PAGE) * PAGE;
        // SAFETY: advice on pages of a read-only file mapping that outlives this call; the
        // data reads back from the file on the next access.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = bytes;
}

impl Gguf {
    /// Drops tensor `t`'s pages from the resident set (see the module docs). Only for files
    /// opened with [`Gguf::open`] (mapped); an in-memory image is left alone.
    pub fn release(&self, t: &TensorInfo) {
        if self.is_mapped_tensor(t) {
            release_mapped(self.tensor_data(t));
        }
    }
}
