//! The contents of a guest's hypercall page (xen.h, arch-x86/xen-x86_64.h): one 32-byte
//! stub per hypercall number that saves RCX and R11 (which `syscall` clobbers), loads
//! the number into EAX, does `syscall`, restores and returns. The `iret` stub never
//! returns: the guest jumps to it with its exception frame on the stack, and the stub
//! adds RCX, R11 and RAX to complete an `iret_context`.

use hypercall_abi::nr;

pub const PAGE_SIZE: usize = 4096;
pub const STUB_SIZE: usize = 32;

/// Bytes of the stub for hypercall `number`.
fn stub(number: u32) -> ([u8; STUB_SIZE], usize) {
    let mut code = [0xcc_u8; STUB_SIZE]; // int3 padding: falling off a stub traps
    let n = number.to_le_bytes();
    let bytes: &[u8] = if number as u64 == nr::iret {
        &[
            0x51, // push rcx
            0x41, 0x53, // push r11
            0x50, // push rax
            0xb8, n[0], n[1], n[2], n[3], // mov eax, number
            0x0f, 0x05, // syscall
            0x0f, 0x0b, // ud2: never reached
        ]
    } else {
        &[
            0x51, // push rcx
            0x41, 0x53, // push r11
            0xb8, n[0], n[1], n[2], n[3], // mov eax, number
            0x0f, 0x05, // syscall
            0x41, 0x5b, // pop r11
            0x59, // pop rcx
            0xc3, // ret
        ]
    };
    code[..bytes.len()].copy_from_slice(bytes);
    (code, bytes.len())
}

/// The whole page: stubs for numbers 0..128.
pub fn hypercall_page() -> [u8; PAGE_SIZE] {
    let mut page = [0u8; PAGE_SIZE];
    for (number, slot) in page.chunks_exact_mut(STUB_SIZE).enumerate() {
        slot.copy_from_slice(&stub(number as u32).0);
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_stub_loads_its_number_and_returns() {
        let page = hypercall_page();
        let console = &page[18 * 32..19 * 32];
        assert_eq!(&console[..14], &[0x51, 0x41, 0x53, 0xb8, 18, 0, 0, 0, 0x0f, 0x05, 0x41, 0x5b, 0x59, 0xc3]);
        assert!(console[14..].iter().all(|&b| b == 0xcc));
    }

    #[test]
    fn iret_stub_completes_the_frame_and_does_not_return() {
        let page = hypercall_page();
        let iret = &page[23 * 32..24 * 32];
        assert_eq!(&iret[..13], &[0x51, 0x41, 0x53, 0x50, 0xb8, 23, 0, 0, 0, 0x0f, 0x05, 0x0f, 0x0b]);
        assert!(!iret.contains(&0xc3));
    }
}
