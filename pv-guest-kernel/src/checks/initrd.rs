//! `initrd`: what start_info says about the initial ramdisk (mod_start, mod_len, and
//! whether mod_start is a frame number, SIF_MOD_START_PFN) and an FNV-1a hash of its
//! bytes, read where start_info says they are. Compared with Xen 4.17.

use crate::console::println;
use hypercall_abi::start_info::{StartInfo, SIF_MOD_START_PFN};

pub fn run(info: &StartInfo) {
    let len = info.mod_len;
    if len == 0 {
        println!("RESULT test=initrd check=module mod_len=0 status=fail reason=no-module");
        return;
    }
    // Our kernel has no MOD_START_PFN note: a virtual address in the initial mapping.
    let pfn_flag = u8::from(info.flags & SIF_MOD_START_PFN != 0);
    let start = if pfn_flag == 1 { crate::platform::virt_base() + info.mod_start * 4096 } else { info.mod_start };
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for offset in 0..len {
        // SAFETY: start_info says the module's `len` bytes are mapped from `start`.
        let byte = unsafe { ((start + offset) as *const u8).read_volatile() };
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    let after_kernel = u8::from(start >= crate::platform::virt_base() && start < info.mfn_list);
    println!(
        "RESULT test=initrd check=module mod_len={len} fnv1a={hash:#018x} mod_start_pfn={pfn_flag} between_kernel_and_p2m={after_kernel} status=pass"
    );
    println!("RESULT test=initrd status=pass checks=1 failed=0");
}
