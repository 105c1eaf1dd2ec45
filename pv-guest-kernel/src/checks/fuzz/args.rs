//! Argument generation: the PRNG, interesting integers, and pointers into (and out of)
//! our own address space together with what the model knows about each.

use super::memory::{self, Layout, MAX_WRITE, PAGE, SCRATCH_LEN};

/// splitmix64: tiny, fast, and every seed (0 included) gives a full-period stream.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// A value for a C `unsigned int` argument: usually `value`, sometimes with garbage
    /// in the register's upper half, which the hypervisor must ignore.
    pub fn widen(&mut self, value: u32) -> u64 {
        if self.percent(20) {
            (self.next() & !0xffff_ffff) | value as u64
        } else {
            value as u64
        }
    }
}

/// Small integers, sub-operation numbers and boundary values.
pub fn small(rng: &mut Rng) -> u64 {
    match rng.below(10) {
        0..=5 => rng.below(17),
        6 => rng.pick(&[0xffff_ffff, u64::MAX, i32::MIN as u32 as u64, i32::MIN as u64, 0x7fff_ffff]),
        7 => rng.pick(&[0x8000_0000_0000_0000, 1 << 32, 0xffff, 0x1_0000, 255, 256]),
        _ => rng.next(),
    }
}

/// A pointer argument and what the model knows about it: how many bytes from `addr`
/// are readable and writable (contiguously), and how many the fuzzer lets the
/// hypervisor write (the rest of that memory is the guest's own code and data).
#[derive(Clone, Copy, Debug)]
pub struct Ptr {
    pub addr: u64,
    pub read_room: u64,
    pub write_room: u64,
    pub may_write: u64,
    /// It points into a checksummed region (hypercall page, start_info, page tables).
    pub guarded: bool,
    /// It points into the scratch buffer, at this offset.
    pub scratch: Option<u64>,
}

impl Ptr {
    pub fn bad(addr: u64) -> Ptr {
        Ptr { addr, read_room: 0, write_room: 0, may_write: 0, guarded: false, scratch: None }
    }
}

pub fn scratch_ptr(rng: &mut Rng) -> Ptr {
    let room = SCRATCH_LEN as u64 - MAX_WRITE;
    let offset = if rng.percent(70) { rng.below(room / 8) * 8 } else { rng.below(room) };
    let addr = memory::scratch_address(offset);
    Ptr { addr, read_room: u64::MAX, write_room: u64::MAX, may_write: SCRATCH_LEN as u64 - offset, guarded: false, scratch: Some(offset) }
}

/// Any pointer: into our memory (scratch, unused low memory, read-only page tables,
/// start_info, the hypercall page, the last bytes of the mapping, the start_info/page
/// table boundary) or outside it (unmapped, the hypervisor's range, our own scratch
/// through the hypervisor's direct map, non-canonical, wrapping).
pub fn pointer(rng: &mut Rng, l: &Layout) -> Ptr {
    let mapped = |addr: u64, write_end: u64, may_write: u64, guarded: bool| Ptr {
        addr,
        read_room: l.v_end - addr,
        write_room: write_end.saturating_sub(addr),
        may_write,
        guarded,
        scratch: None,
    };
    match rng.below(20) {
        0..=6 => scratch_ptr(rng),
        7 | 8 => {
            let addr = rng.pick(&[0, 1, 8, 0x10, 0xff8, 0xfff, 0x1000, 0x8_0000]);
            mapped(addr, l.pt_base, l.kernel_start - addr, false)
        }
        9 | 10 => {
            let addr = l.pt_base + rng.below(l.nr_pt_frames) * PAGE + rng.pick(&[0, 8, 0x800, 0xff8, 0xffc, 0xfff]);
            mapped(addr, 0, 0, true)
        }
        11 => mapped(l.start_info + rng.pick(&[0, 8, 0x58, 0x80, 0x400]), l.pt_base, 0, true),
        12 => mapped(l.hypercall_page + rng.pick(&[0, 8, 32 * 18, 32 * 23, 0xff8]), l.pt_base, 0, true),
        13 => {
            let k = rng.pick(&[1, 2, 3, 4, 7, 8, 15, 16, 17, 24, 100, 1000, 4096]);
            Ptr { addr: l.v_end - k, read_room: k, write_room: k, may_write: k, guarded: false, scratch: None }
        }
        14 => {
            // Writable start_info tail, then read-only page tables.
            let k = rng.pick(&[1, 4, 8, 16, 64]);
            let mut p = mapped(l.pt_base - k, l.pt_base, 0, true);
            p.write_room = k;
            p
        }
        15 => Ptr::bad(rng.pick(&[l.v_end, l.v_end + PAGE, 0x7fff_dead_0000, 0x7fff_ffff_f000, 0x7fff_ffff_fff8, 0x4000_0000, 1 << 32])),
        16 => Ptr::bad(rng.pick(&[
            0xffff_8000_0000_0000,
            0xffff_8300_0000_0000,
            0xffff_8300_0000_0000 + l.scratch_maddr,
            0xffff_8300_0010_0000,
            0xffff_87ff_ffff_fff0,
        ])),
        17 => {
            Ptr::bad(rng.pick(&[0x8000_0000_0000_0000, 0x0000_8000_0000_0000, 0xdead_beef_dead_beef, 0x7fff_ffff_ffff_ffff, 0xffff_7fff_ffff_fff8]))
        }
        18 => Ptr::bad(rng.pick(&[0xffff_8800_0000_0000, 0xffff_ffff_ffff_f000, u64::MAX, u64::MAX - 7, 0xffff_ffff_8000_0000])),
        _ => Ptr::bad(rng.next() | 0x8000_0000_0000_0000),
    }
}

/// A pointer that the hypervisor may write `size` bytes through without hurting us:
/// either it can (and we allow it), or it cannot at all (so the call must fail).
pub fn write_target(rng: &mut Rng, l: &Layout, size: u64) -> Ptr {
    let p = pointer(rng, l);
    if p.write_room >= size && p.may_write < size {
        scratch_ptr(rng)
    } else {
        p
    }
}

/// A pointer to a structure whose every readable value is harmless: scratch (the caller
/// then writes a harmless value there) or memory the hypervisor cannot read `size` bytes
/// of.
pub fn harmless_read_target(rng: &mut Rng, l: &Layout, size: u64) -> Ptr {
    let p = pointer(rng, l);
    if p.scratch.is_some() || p.read_room < size {
        p
    } else {
        scratch_ptr(rng)
    }
}

/// Any argument at all: a number or a pointer.
pub fn any_arg(rng: &mut Rng, l: &Layout) -> u64 {
    if rng.percent(50) {
        small(rng)
    } else {
        pointer(rng, l).addr
    }
}

pub fn random_args(rng: &mut Rng, l: &Layout) -> [u64; 6] {
    core::array::from_fn(|_| any_arg(rng, l))
}
