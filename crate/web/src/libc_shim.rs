//! The C allocator functions the openjp2 crate (JPEG 2000 in DICOM, a c2rust translation) calls.
//! wasm32-unknown-unknown has no libc, so without these definitions the linker leaves them as
//! `env` imports and the module cannot be instantiated at all; here they map to Rust's allocator.
//! A 16-byte header before each block holds its size, which free/realloc need.
#![cfg(target_arch = "wasm32")]

use std::alloc::{Layout, alloc, alloc_zeroed, dealloc, realloc as re_alloc};
use std::ptr::null_mut;

const HEADER: usize = 16;

fn layout(size: usize) -> Option<Layout> {
    Layout::from_size_align(size.checked_add(HEADER)?, HEADER).ok()
}

/// # Safety
/// C semantics: the result is freed with `free` only.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut u8 {
    let Some(l) = layout(size) else {
        return null_mut();
    };
    // SAFETY: l has a non-zero size (HEADER > 0).
    unsafe { with_header(alloc(l), size) }
}

/// # Safety
/// As `malloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut u8 {
    let Some(l) = n.checked_mul(size).and_then(layout) else {
        return null_mut();
    };
    // SAFETY: as malloc.
    unsafe { with_header(alloc_zeroed(l), n * size) }
}

/// # Safety
/// `p` is null or came from malloc/calloc/realloc and was not freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(p: *mut u8) {
    if p.is_null() {
        return;
    }
    // SAFETY: p is HEADER bytes into a block of the recorded size (see with_header).
    unsafe {
        let base = p.sub(HEADER);
        let size = (base as *const usize).read();
        dealloc(base, layout(size).expect("size was valid at allocation"));
    }
}

/// # Safety
/// As `free` for `p`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(p: *mut u8, size: usize) -> *mut u8 {
    if p.is_null() {
        // SAFETY: plain malloc.
        return unsafe { malloc(size) };
    }
    let Some(new) = layout(size) else {
        return null_mut();
    };
    // SAFETY: as free; the new layout keeps the alignment.
    unsafe {
        let base = p.sub(HEADER);
        let old = (base as *const usize).read();
        let grown = re_alloc(base, layout(old).expect("valid"), new.size());
        with_header(grown, size)
    }
}

/// # Safety
/// `src` is NUL-terminated and `dst` holds it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strcpy(dst: *mut u8, src: *const u8) -> *mut u8 {
    let mut i = 0;
    // SAFETY: the caller's contract.
    unsafe {
        loop {
            let c = *src.add(i);
            *dst.add(i) = c;
            if c == 0 {
                return dst;
            }
            i += 1;
        }
    }
}

/// Records `size` in the header and returns the user pointer (null stays null).
unsafe fn with_header(base: *mut u8, size: usize) -> *mut u8 {
    if base.is_null() {
        return base;
    }
    // SAFETY: base is a fresh block of at least HEADER bytes, aligned to 16.
    unsafe {
        (base as *mut usize).write(size);
        base.add(HEADER)
    }
}
