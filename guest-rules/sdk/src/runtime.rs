//! What a `no_std` policy needs from a runtime, and nothing more: an allocator and a
//! panic handler. Policies import no WASI at all — no streams, clocks or randomness — so
//! the host gives them no WASI context; a panic's message reaches the host through the
//! world's own `diagnostics` import and is shown in the `policy-error`.

use core::fmt::Write;

#[global_allocator]
static ALLOCATOR: Bump = Bump;

/// A bump allocator: the host makes a fresh instance for every decision and drops it
/// afterwards, so nothing a policy allocates needs to be freed — freeing would only cost
/// instructions (fuel) on every decision. Memory is taken from the heap the linker leaves
/// after the stack and data (`__heap_base`, up to the initial memory's end: the policies
/// are linked with `--initial-memory` headroom, see `guest-rules/.cargo/config.toml`),
/// then by growing the memory a page at a time; the manifest's memory limit still caps
/// it. A decision that fits in the headroom never grows the memory, and a memory that
/// never grows costs the host no change of page protections when its instance is
/// recycled. A reallocation of the latest block grows in place.
struct Bump;

unsafe extern "C" {
    /// Where the linker's heap begins: after the shadow stack and the static data.
    static __heap_base: u8;
}

/// Wasm pages are 64 KiB.
const PAGE: usize = 1 << 16;

/// The next free byte and the end of what is ours (0 until the first allocation).
static mut NEXT: usize = 0;
static mut END: usize = 0;

/// Grows the linear memory until `end` is ours; false if the memory cannot grow (the
/// host's memory limit), and the allocation then fails.
///
/// # Safety
/// One thread, no re-entrance: a policy instance runs one call at a time.
unsafe fn reach(end: usize) -> bool {
    unsafe {
        if end > END {
            let pages = (end - END).div_ceil(PAGE);
            if core::arch::wasm32::memory_grow(0, pages) == usize::MAX {
                return false;
            }
            END += pages * PAGE;
        }
        true
    }
}

unsafe impl core::alloc::GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
        // One thread, no re-entrance: a policy instance runs one call at a time.
        unsafe {
            if END == 0 {
                NEXT = &raw const __heap_base as usize;
                END = core::arch::wasm32::memory_size(0) * PAGE;
            }
            let start = (NEXT + layout.align() - 1) & !(layout.align() - 1);
            match start.checked_add(layout.size()) {
                Some(end) if reach(end) => {
                    NEXT = end;
                    start as *mut u8
                }
                _ => core::ptr::null_mut(),
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: core::alloc::Layout) {
        // The latest block is given back (cheap, and common for temporary strings).
        unsafe {
            if ptr as usize + layout.size() == NEXT {
                NEXT = ptr as usize;
            }
        }
    }

    unsafe fn realloc(
        &self,
        ptr: *mut u8,
        layout: core::alloc::Layout,
        new_size: usize,
    ) -> *mut u8 {
        unsafe {
            // The latest block grows (or shrinks) where it is.
            if ptr as usize + layout.size() == NEXT {
                return match (ptr as usize).checked_add(new_size) {
                    Some(end) if reach(end) => {
                        NEXT = end;
                        ptr
                    }
                    _ => core::ptr::null_mut(),
                };
            }
            let new = self.alloc(core::alloc::Layout::from_size_align_unchecked(
                new_size,
                layout.align(),
            ));
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            }
            new
        }
    }
}

/// A panic message is formatted here, without allocating: a panic may come from a
/// failed allocation.
struct Message {
    bytes: [u8; 512],
    len: usize,
}

impl Write for Message {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for c in s.chars() {
            let mut utf8 = [0; 4];
            let c = c.encode_utf8(&mut utf8).as_bytes();
            if self.len + c.len() > self.bytes.len() {
                break;
            }
            self.bytes[self.len..self.len + c.len()].copy_from_slice(c);
            self.len += c.len();
        }
        Ok(())
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut message = Message {
        bytes: [0; 512],
        len: 0,
    };
    let _ = write!(message, "{info}");
    if let Ok(text) = core::str::from_utf8(&message.bytes[..message.len]) {
        crate::bindings::cardrules::policy::diagnostics::panicked(text);
    }
    core::arch::wasm32::unreachable()
}

/// The canonical ABI's allocator entry point, through which the host hands the policy its
/// request. Rust's standard library exports it on `wasm32-wasip2`; a `no_std` policy
/// exports its own (as wit-bindgen does on the other wasm targets).
///
/// # Safety
/// Called by the host only, as the component model's canonical ABI prescribes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cabi_realloc(
    old_ptr: *mut u8,
    old_len: usize,
    align: usize,
    new_len: usize,
) -> *mut u8 {
    use alloc::alloc::{Layout, alloc, handle_alloc_error, realloc};
    let (ptr, layout) = unsafe {
        if old_len == 0 {
            if new_len == 0 {
                return align as *mut u8;
            }
            let layout = Layout::from_size_align_unchecked(new_len, align);
            (alloc(layout), layout)
        } else {
            let layout = Layout::from_size_align_unchecked(old_len, align);
            (realloc(old_ptr, layout, new_len), layout)
        }
    };
    if ptr.is_null() {
        handle_alloc_error(layout);
    }
    ptr
}

// `memcpy`, `memcmp` and friends: on `wasm32-wasip2` they come from the target's C library
// (wasi-libc), whose string functions import nothing from the host.
#[cfg(target_os = "wasi")]
#[link(name = "c")]
unsafe extern "C" {}
