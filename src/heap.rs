//! How much heap the program holds, for `make bench`'s memory-per-pod
//! figures: with `KUBECTL_IPPOOL_HEAP_REPORT=1`, `status` and `verify` say
//! on stderr how many bytes are live once everything is read.
//!
//! The figure is glibc's own count (`mallinfo`: bytes in use in every
//! arena plus the large blocks it mmaps), so it includes malloc's chunk
//! headers and rounding, what each allocation really costs, and needs no
//! allocator of ours in between: nothing changes when the variable is unset.

/// The environment variable that turns the report on.
pub const REPORT_ENV: &str = "KUBECTL_IPPOOL_HEAP_REPORT";

/// Whether the user asked for the report.
pub fn report_wanted() -> bool {
    std::env::var_os(REPORT_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Bytes of heap in use now; None where glibc's malloc is not the allocator.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn live_bytes() -> Option<u64> {
    /// glibc's `struct mallinfo` (malloc.h): ten `int`s. `mallinfo2`, with
    /// `size_t` fields, needs glibc 2.33; the release build targets 2.17,
    /// and `int` holds up to 2 GiB, far above what these verbs use.
    #[repr(C)]
    struct MallInfo {
        arena: i32,
        ordblks: i32,
        smblks: i32,
        hblks: i32,
        hblkhd: i32,
        usmblks: i32,
        fsmblks: i32,
        uordblks: i32,
        fordblks: i32,
        keepcost: i32,
    }
    extern "C" {
        fn mallinfo() -> MallInfo;
    }
    // SAFETY: mallinfo takes no arguments and returns a plain struct by
    // value; glibc takes each arena's lock while it counts.
    let info = unsafe { mallinfo() };
    Some(info.uordblks as u32 as u64 + info.hblkhd as u32 as u64)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn live_bytes() -> Option<u64> {
    None
}

/// The report line: `heap: 12345678 bytes live after <what>`.
pub fn report(what: &str) -> Option<String> {
    report_wanted().then(|| match live_bytes() {
        Some(n) => format!("heap: {n} bytes live after {what}"),
        None => format!("heap: not measurable on this platform (after {what})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A large block held shows in the count, and is gone once freed.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn counts_a_block_while_it_is_held() {
        const SIZE: usize = 64 << 20;
        let before = live_bytes().unwrap();
        let block = vec![1u8; SIZE];
        let held = live_bytes().unwrap();
        assert!(held >= before + SIZE as u64 - (4 << 20), "before {before}, held {held}");
        drop(std::hint::black_box(block));
        let after = live_bytes().unwrap();
        assert!(after + (SIZE as u64 - (4 << 20)) <= held, "held {held}, after {after}");
    }
}
