//! What the fuzzer calls and what it accepts back: one generator per implemented
//! hypercall, which draws arguments and predicts the result from the ABI (and, for calls
//! that read guest structures, from the bytes it left there).

use super::args::{any_arg, harmless_read_target, pointer, random_args, small, write_target, Ptr, Rng};
use super::memory::{self, Layout, PAGE};
use core::sync::atomic::{AtomicBool, Ordering::Relaxed};
use hypercall_abi::nr;
use hypercall_abi::ops::callback::{CALLBACKOP_REGISTER, CALLBACKOP_UNREGISTER};
use hypercall_abi::ops::console_io::{CONSOLEIO_READ, CONSOLEIO_WRITE};
use hypercall_abi::ops::sched_op::*;
use hypercall_abi::ops::vm_assist::{VMASST_CMD_DISABLE, VMASST_CMD_ENABLE, VMASST_TYPE_M2P_STRICT, VMASST_TYPE_WRITABLE_PAGETABLES};
use hypercall_abi::ops::xen_version::*;

/// Whether the run is on real Xen (the reference) rather than pv-hypervisor: then
/// Xen's answers are required exactly, and calls that are harmless only because
/// pv-hypervisor refuses them are not made.
static ON_XEN: AtomicBool = AtomicBool::new(false);

pub fn set_on_xen(on_xen: bool) {
    ON_XEN.store(on_xen, Relaxed);
}

pub fn on_xen() -> bool {
    ON_XEN.load(Relaxed)
}

pub const EPERM: i64 = -1;
pub const E2BIG: i64 = -7;
pub const ESRCH: i64 = -3;
pub const EFAULT: i64 = -14;
pub const EINVAL: i64 = -22;
pub const ENOSYS: i64 = -38;
pub const EBUSY: i64 = -16;
pub const ENOBUFS: i64 = -105;
pub const ENODEV: i64 = -19;
pub const ENOENT: i64 = -2;
pub const EEXIST: i64 = -17;
pub const ENOSPC: i64 = -28;
pub const EOPNOTSUPP: i64 = -95;
pub const ETIME: i64 = -62;

/// What a call may return.
#[derive(Clone, Copy, Debug)]
pub enum Expect {
    Exact(i64),
    /// Xen's answer, and the one pv-hypervisor is known to give instead (on
    /// pv-hypervisor a known deviation, counted under `kind` but not a failure).
    Xen {
        xen: i64,
        ours: i64,
        kind: &'static str,
    },
    NonNegative,
    /// 0, or one of these errors.
    ZeroOr(&'static [i64]),
    /// One of these errors.
    OneOf(&'static [i64]),
    /// A count from 0 to `max`, or one of these errors.
    UpTo(u64, &'static [i64]),
}

pub enum Verdict {
    Pass,
    KnownDeviation,
    Fail,
}

impl Expect {
    pub fn judge(&self, ret: i64) -> Verdict {
        let ok = match *self {
            Expect::Exact(v) => ret == v,
            Expect::Xen { xen, ours, .. } => {
                if ret == ours && ret != xen && !on_xen() {
                    return Verdict::KnownDeviation;
                }
                ret == xen
            }
            Expect::NonNegative => ret >= 0,
            Expect::ZeroOr(errors) => ret == 0 || errors.contains(&ret),
            Expect::OneOf(errors) => errors.contains(&ret),
            Expect::UpTo(max, errors) => (ret >= 0 && ret as u64 <= max) || errors.contains(&ret),
        };
        if ok {
            Verdict::Pass
        } else {
            Verdict::Fail
        }
    }
}

/// What the fuzzer must put back after the call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Restore {
    Nothing,
    TrapTable,
    Fpu,
    KernelStack,
    NmiCallback,
    SegmentBases,
    DebugRegisters,
    Iopl,
}

pub struct Call {
    pub nr: u64,
    pub args: [u64; 6],
    pub expect: Expect,
    pub restore: Restore,
    /// A pointer argument aimed at a checksummed region.
    pub guarded: bool,
}

impl Call {
    pub fn new(nr: u64, args: [u64; 6], expect: Expect) -> Call {
        Call { nr, args, expect, restore: Restore::Nothing, guarded: false }
    }
}

/// Success if the hypervisor can read `size` bytes at `p`, else -EFAULT.
fn read_or_efault(p: &Ptr, size: u64) -> i64 {
    if p.read_room >= size {
        0
    } else {
        EFAULT
    }
}

/// Success if the hypervisor can write `size` bytes at `p`, else -EFAULT.
fn write_or_efault(p: &Ptr, size: u64) -> i64 {
    if p.write_room >= size {
        0
    } else {
        EFAULT
    }
}

/// A call to a number the hypervisor does not implement (or that is out of range).
pub fn unimplemented(rng: &mut Rng, l: &Layout, number: u64) -> Call {
    let args = core::array::from_fn(|_| any_arg(rng, l));
    Call::new(number, args, Expect::Exact(ENOSYS))
}

/// A call to an implemented hypercall, with its expected result.
pub fn implemented(rng: &mut Rng, l: &Layout, number: u64, version: i64, memory_facts: &super::model_memory::MemoryFacts) -> Call {
    let mut args = random_args(rng, l);
    match number {
        nr::set_trap_table => set_trap_table(rng, l, args),
        nr::stack_switch => Call { restore: Restore::KernelStack, ..Call::new(number, args, Expect::Exact(0)) },
        nr::set_callbacks => Call::new(number, args, Expect::Exact(0)),
        nr::fpu_taskswitch => Call { restore: Restore::Fpu, ..Call::new(number, args, Expect::Exact(0)) },
        nr::vm_assist => {
            let cmd = rng.pick(&[VMASST_CMD_ENABLE, VMASST_CMD_DISABLE, 2, 0xffff_ffff]);
            let mut kind = if rng.percent(70) { rng.below(40) as u32 } else { small(rng) as u32 };
            if on_xen() && kind == VMASST_TYPE_WRITABLE_PAGETABLES && cmd == VMASST_CMD_ENABLE {
                // Xen would then emulate hypercall writes to our page tables as PTE
                // updates instead of failing them.
                kind = VMASST_TYPE_M2P_STRICT;
            }
            args[0] = rng.widen(cmd);
            args[1] = rng.widen(kind);
            let valid_type = kind <= 5 || kind == 32;
            let expect = if !valid_type {
                EINVAL
            } else if cmd > VMASST_CMD_DISABLE {
                ENOSYS
            } else {
                0
            };
            Call::new(number, args, Expect::Exact(expect))
        }
        nr::callback_op => callback_op(rng, l, args),
        nr::xen_version => xen_version(rng, l, args, version),
        nr::console_io => console_io(rng, l, args),
        nr::sched_op => sched_op(rng, l, args),
        nr::hypercall_count => {
            let n = if rng.percent(70) { rng.below(80) } else { small(rng) };
            args[0] = n;
            let expect = if (n as u32) < 64 { Expect::NonNegative } else { Expect::Exact(EINVAL) };
            Call::new(number, args, expect)
        }
        nr::set_segment_base => super::model_cpu::set_segment_base(rng, args),
        nr::set_debugreg => super::model_cpu::set_debugreg(rng, args),
        nr::get_debugreg => super::model_cpu::get_debugreg(rng, args),
        nr::physdev_op => super::model_cpu::physdev_op(rng, args),
        nr::update_va_mapping => super::model_cpu::update_va_mapping(rng, l, args),
        nr::mmu_update => super::model_cpu::mmu_update(rng, l, args),
        nr::mmuext_op => super::model_cpu::mmuext_op(rng, l, args),
        nr::set_gdt => super::model_cpu::set_gdt(rng, l, args),
        nr::update_descriptor => super::model_cpu::update_descriptor(rng, l, args),
        nr::multicall => super::model_cpu::multicall(rng, args),
        nr::memory_op => super::model_memory::memory_op(rng, l, args, memory_facts),
        nr::event_channel_op => event_channel_op(rng, args),
        nr::vcpu_op => vcpu_op(rng, args),
        nr::nmi_op => nmi_op(rng, l, args),
        // A handled hypercall this model does not know yet: any Xen error will do.
        _ => Call::new(number, args, Expect::ZeroOr(&[EPERM, EFAULT, EINVAL, ENOSYS])),
    }
}

/// Every command (and some that do not exist) on the scratch buffer's random bytes or
/// a pointer nothing maps: commands write OUT fields at offsets inside their structure,
/// so only memory the hypervisor may write is offered. Any errno event_channel.c can
/// answer is allowed; `evtchn-ops` checks each case exactly against Xen.
fn event_channel_op(rng: &mut Rng, mut args: [u64; 6]) -> Call {
    let cmd = if rng.percent(90) { rng.below(14) } else { small(rng) };
    args[0] = rng.widen(cmd as u32);
    args[1] = if rng.percent(70) {
        super::args::scratch_ptr(rng).addr
    } else {
        rng.pick(&[0x7fff_dead_0000, 0xffff_8300_0000_0000, 0x8000_0000_0000_0000, u64::MAX - 3])
    };
    Call::new(nr::event_channel_op, args, Expect::ZeroOr(&[EPERM, ENOENT, ESRCH, EFAULT, EEXIST, EINVAL, ENOSPC, ENOSYS, EOPNOTSUPP]))
}

/// A vCPU other than 0 does not exist (-ENOENT before anything else); is_up answers 1;
/// the timer commands read their structure from scratch or fail to; the rest are not
/// offered. Timers set here raise VIRQ_TIMER, which the fuzzer never binds.
fn vcpu_op(rng: &mut Rng, mut args: [u64; 6]) -> Call {
    let cmd = if rng.percent(90) { rng.below(12) as u32 } else { small(rng) as u32 };
    let vcpu = if rng.percent(80) { 0 } else { small(rng) as u32 };
    args[0] = rng.widen(cmd);
    args[1] = rng.widen(vcpu);
    args[2] = if rng.percent(70) { super::args::scratch_ptr(rng).addr } else { rng.pick(&[0, 0x7fff_dead_0000, 0x8000_0000_0000_0000]) };
    let expect = match (vcpu, cmd) {
        (1.., _) => Expect::Exact(ENOENT),
        (_, 3) => Expect::Exact(1),
        // send_nmi: the NMI is dropped on the way out, as the NMI callback (trap-table
        // entry 2) is never left registered (Restore::NmiCallback, Restore::TrapTable).
        (_, 11) if args[2] == 0 => Expect::Exact(0),
        (_, 11) => Expect::Exact(EINVAL),
        (_, 6..=9) => Expect::ZeroOr(&[EFAULT, EINVAL, ETIME]),
        _ => Expect::Exact(ENOSYS),
    };
    Call::new(nr::vcpu_op, args, expect)
}

pub(super) fn guarded(mut call: Call, p: &Ptr) -> Call {
    call.guarded = p.guarded;
    call
}

/// The array ends at the first entry with address 0; a non-canonical address is
/// -EINVAL; an unreadable entry -EFAULT (Xen's pv/traps.c). The model walks the same
/// bytes the hypervisor will.
fn set_trap_table(rng: &mut Rng, l: &Layout, mut args: [u64; 6]) -> Call {
    let p = pointer(rng, l);
    args[0] = p.addr;
    if let (Some(offset), true) = (p.scratch, rng.percent(60)) {
        // Valid-looking entries, then an ending: terminator, non-canonical, or noise.
        let entries = rng.below(12);
        for i in 0..entries {
            let (near, far) = (0x10_0000 + rng.below(0x10_0000), rng.next() & 0x7fff_ffff_ffff);
            let address = rng.pick(&[near, 0xffff_8300_0000_1000, 0xffff_ffff_8000_0000, 1, far]);
            let mut entry = [0u8; 16];
            entry[0] = rng.next() as u8;
            entry[1] = rng.next() as u8;
            entry[2..4].copy_from_slice(&(rng.next() as u16).to_le_bytes());
            entry[8..].copy_from_slice(&address.to_le_bytes());
            memory::poke_scratch(offset + i * 16, &entry);
        }
        let noise = rng.next();
        let ending: u64 = rng.pick(&[0, 0x8000_0000_0000_0000, noise]);
        memory::poke_scratch(offset + entries * 16 + 8, &ending.to_le_bytes());
    }
    let expect = if p.addr == 0 { 0 } else { walk_trap_table(&p) };
    let call = Call { restore: Restore::TrapTable, ..Call::new(nr::set_trap_table, args, Expect::Exact(expect)) };
    guarded(call, &p)
}

fn walk_trap_table(p: &Ptr) -> i64 {
    let mut offset = 0u64;
    loop {
        if p.read_room < offset.saturating_add(16) {
            return EFAULT;
        }
        let address = memory::peek_u64(p.addr + offset + 8);
        if address == 0 {
            return 0;
        }
        if !is_canonical(address) {
            return EINVAL;
        }
        offset += 16;
    }
}

pub fn is_canonical(address: u64) -> bool {
    let top = address >> 47;
    top == 0 || top == 0x1_ffff
}

/// callback.h: register checks the address (canonical, else -EINVAL) and then the type
/// (-ENOSYS for one x86_64 lacks); unregister takes back only the NMI callback.
fn callback_op(rng: &mut Rng, l: &Layout, mut args: [u64; 6]) -> Call {
    const REGISTERABLE: [u16; 6] = [0, 1, 2, 4, 5, 7];
    let other = rng.below(16) as u32;
    let cmd = rng.pick(&[CALLBACKOP_REGISTER, CALLBACKOP_UNREGISTER, 2, 0xffff_ffff, other]);
    let p = pointer(rng, l);
    args[0] = rng.widen(cmd);
    args[1] = p.addr;
    if let Some(offset) = p.scratch {
        if rng.percent(70) {
            let kind = if rng.percent(80) { rng.below(9) as u16 } else { rng.next() as u16 };
            let noise = rng.next();
            let address = rng.pick(&[0x10_0000, 0xffff_8300_0000_0000, 0x8000_0000_0000_0000, 0, noise]);
            memory::poke_scratch(offset, &kind.to_le_bytes());
            memory::poke_scratch(offset + 8, &address.to_le_bytes());
        }
    }
    let expect = match cmd {
        CALLBACKOP_REGISTER if p.read_room < 16 => EFAULT,
        CALLBACKOP_REGISTER => {
            let kind = memory::peek_u16(p.addr);
            if !is_canonical(memory::peek_u64(p.addr + 8)) {
                EINVAL
            } else if REGISTERABLE.contains(&kind) {
                0
            } else {
                ENOSYS
            }
        }
        CALLBACKOP_UNREGISTER if p.read_room < 4 => EFAULT,
        CALLBACKOP_UNREGISTER => match memory::peek_u16(p.addr) {
            4 => 0,
            k if REGISTERABLE.contains(&k) => EINVAL,
            _ => ENOSYS,
        },
        _ => ENOSYS,
    };
    let call = Call { restore: Restore::NmiCallback, ..Call::new(nr::callback_op, args, Expect::Exact(expect)) };
    guarded(call, &p)
}

/// nmi_op (nmi.h): register reads a 16-byte xennmi_callback whose address must be
/// canonical; unregister takes nothing; other commands do not exist. The callback is
/// unregistered again afterwards.
fn nmi_op(rng: &mut Rng, l: &Layout, mut args: [u64; 6]) -> Call {
    let cmd = if rng.percent(90) { rng.below(3) as u32 } else { small(rng) as u32 };
    let p = pointer(rng, l);
    args[0] = rng.widen(cmd);
    args[1] = p.addr;
    if let (Some(offset), true) = (p.scratch, rng.percent(50)) {
        let noise = rng.next();
        let address: u64 = rng.pick(&[0x10_0000, 0x8000_0000_0000_0000, 0, noise]);
        memory::poke_scratch(offset, &address.to_le_bytes());
    }
    let expect = match cmd {
        0 if p.read_room < 16 => EFAULT,
        0 if !is_canonical(memory::peek_u64(p.addr)) => EINVAL,
        0 | 1 => 0,
        _ => ENOSYS,
    };
    let call = Call { restore: Restore::NmiCallback, ..Call::new(nr::nmi_op, args, Expect::Exact(expect)) };
    guarded(call, &p)
}

/// version.h: sub-operations that write a structure of this many bytes.
fn xen_version_output(cmd: u32) -> Option<u64> {
    Some(match cmd {
        XENVER_EXTRAVERSION | XENVER_GUEST_HANDLE => 16,
        XENVER_COMPILE_INFO => 144,
        XENVER_CAPABILITIES | XENVER_COMMANDLINE => 1024,
        XENVER_CHANGESET => 64,
        XENVER_PLATFORM_PARAMETERS | XENVER_GET_FEATURES => 8,
        XENVER_BUILD_ID => 260,
        _ => return None,
    })
}

fn xen_version(rng: &mut Rng, l: &Layout, mut args: [u64; 6], version: i64) -> Call {
    let cmd = if rng.percent(85) { rng.below(12) as u32 } else { small(rng) as u32 };
    args[0] = rng.widen(cmd);
    let expect = match (cmd, xen_version_output(cmd)) {
        (XENVER_VERSION, _) => Expect::Exact(version),
        // Answered only to a NULL handle (Xen's common/kernel.c).
        (XENVER_PAGESIZE, _) => {
            if rng.percent(40) {
                args[1] = 0;
            }
            Expect::Exact(if args[1] == 0 { PAGE as i64 } else { EINVAL })
        }
        (_, Some(size)) => {
            let p = write_target(rng, l, size);
            args[1] = p.addr;
            if let (Some(offset), XENVER_BUILD_ID | XENVER_GET_FEATURES) = (p.scratch, cmd) {
                // build_id: a length that fits; get_features: submap 0, or one Xen lacks.
                let first = if cmd == XENVER_BUILD_ID { rng.below(size - 4) as u32 } else { rng.pick(&[0, 0, 1, 0xffff_ffff]) };
                memory::poke_scratch(offset, &first.to_le_bytes());
            }
            let ret = write_or_efault(&p, size).min(read_or_efault(&p, size));
            let call = match cmd {
                XENVER_EXTRAVERSION | XENVER_CAPABILITIES | XENVER_PLATFORM_PARAMETERS => Call::new(nr::xen_version, args, Expect::Exact(ret)),
                // Only submap 0 exists: Xen reads the index and refuses any other.
                XENVER_GET_FEATURES => {
                    let expect = if p.read_room < size {
                        EFAULT
                    } else if memory::peek_u32(p.addr) != 0 {
                        EINVAL
                    } else {
                        ret
                    };
                    Call::new(nr::xen_version, args, Expect::Exact(expect))
                }
                // Xen has these (build_id answers its size to a NULL handle and
                // writes only as many bytes as its id has, so it may succeed where
                // the room for the largest id is missing); pv-hypervisor does not
                // offer them yet.
                _ if ret == 0 => Call::new(nr::xen_version, args, Expect::UpTo(PAGE, &[ENOSYS, EPERM, ENOBUFS, EINVAL])),
                XENVER_BUILD_ID if p.read_room >= 4 => {
                    Call::new(nr::xen_version, args, Expect::UpTo(PAGE, &[EFAULT, ENOSYS, EPERM, ENOBUFS, EINVAL]))
                }
                _ => Call::new(nr::xen_version, args, Expect::OneOf(&[EFAULT, ENOSYS, EPERM, EINVAL])),
            };
            return guarded(call, &p);
        }
        _ => Expect::Exact(ENOSYS),
    };
    Call::new(nr::xen_version, args, expect)
}

/// CONSOLEIO_write prints `count` bytes (-EFAULT if any is unreadable); CONSOLEIO_read
/// is dom0's; anything else is -ENOSYS (Xen's drivers/char/console.c).
fn console_io(rng: &mut Rng, l: &Layout, mut args: [u64; 6]) -> Call {
    let other = rng.below(16) as u32;
    let cmd = rng.pick(&[CONSOLEIO_WRITE, CONSOLEIO_WRITE, CONSOLEIO_WRITE, CONSOLEIO_READ, 2, 0xffff_ffff, other]);
    args[0] = rng.widen(cmd);
    // Keep what a successful write prints short: a huge count only where the readable
    // bytes run out soon.
    let mut p = pointer(rng, l);
    let huge = rng.percent(30);
    let count: u32 = if huge {
        while p.read_room > 256 {
            p = pointer(rng, l);
        }
        rng.pick(&[257, 4096, 65536, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff])
    } else {
        rng.pick(&[0, 1, 2, 3, 7, 8, 15, 16, 31, 64])
    };
    args[1] = rng.widen(count);
    args[2] = p.addr;
    let expect = match cmd {
        CONSOLEIO_WRITE if count == 0 => Expect::Exact(0),
        CONSOLEIO_WRITE if count as u64 <= p.read_room => Expect::Exact(0),
        CONSOLEIO_WRITE if count > i32::MAX as u32 => Expect::OneOf(&[EFAULT, E2BIG]),
        CONSOLEIO_WRITE => Expect::Exact(EFAULT),
        CONSOLEIO_READ => {
            if p.write_room >= count as u64 && p.may_write < count as u64 {
                // It could overwrite our own memory with console input: do not ask.
                p = Ptr::bad(0x7fff_dead_0000);
                args[2] = p.addr;
            }
            Expect::UpTo(count as u64, &[EFAULT, ENOSYS, EPERM, E2BIG])
        }
        _ => Expect::Exact(ENOSYS),
    };
    guarded(Call::new(nr::console_io, args, expect), &p)
}

/// Where a shutdown request may point: scratch holding an invalid reason (which
/// pv-hypervisor refuses), or memory the hypervisor cannot read. Xen acts on any reason
/// (domain_shutdown), so on Xen only the latter.
fn shutdown_target(rng: &mut Rng, l: &Layout, size: u64) -> Ptr {
    let mut p = harmless_read_target(rng, l, size);
    while on_xen() && p.read_room >= size {
        p = pointer(rng, l);
    }
    p
}

/// sched.h. Never asked: SCHEDOP_block (waits for an event that never comes), and any
/// shutdown, remote shutdown, watchdog or poll the hypervisor could act on; those get
/// only invalid reasons or unreadable arguments.
fn sched_op(rng: &mut Rng, l: &Layout, mut args: [u64; 6]) -> Call {
    let mut cmd = if rng.percent(85) { rng.below(10) as u32 } else { small(rng) as u32 };
    if cmd == SCHEDOP_BLOCK {
        cmd = SCHEDOP_YIELD;
    }
    args[0] = rng.widen(cmd);
    let invalid_reason = |rng: &mut Rng| rng.pick(&[6u32, 7, 255, 256, 0x8000_0000, 0xffff_ffff]).max(6);
    let (p, expect) = match cmd {
        SCHEDOP_YIELD => (None, Expect::Exact(0)),
        SCHEDOP_SHUTDOWN | SCHEDOP_SHUTDOWN_CODE => {
            let p = shutdown_target(rng, l, 4);
            if let Some(offset) = p.scratch {
                memory::poke_scratch(offset, &invalid_reason(rng).to_le_bytes());
            }
            let expect = if p.read_room < 4 {
                Expect::OneOf(&[EFAULT, ENOSYS])
            } else if cmd == SCHEDOP_SHUTDOWN {
                // Xen passes any reason on to domain_shutdown; refusing one it does not
                // know is the only answer that lets the caller go on.
                Expect::Exact(EINVAL)
            } else {
                Expect::OneOf(&[EINVAL, ENOSYS])
            };
            (Some(p), expect)
        }
        SCHEDOP_REMOTE_SHUTDOWN => {
            let p = shutdown_target(rng, l, 8);
            if let Some(offset) = p.scratch {
                memory::poke_scratch(offset, &(rng.next() as u16).to_le_bytes());
                memory::poke_scratch(offset + 4, &invalid_reason(rng).to_le_bytes());
            }
            let expect = if p.read_room < 8 { Expect::OneOf(&[EFAULT, ENOSYS]) } else { Expect::OneOf(&[EINVAL, ESRCH, EPERM, ENOSYS]) };
            (Some(p), expect)
        }
        SCHEDOP_POLL | SCHEDOP_WATCHDOG => {
            let mut p = pointer(rng, l);
            while p.read_room > 0 {
                p = pointer(rng, l);
            }
            (Some(p), Expect::OneOf(&[EFAULT, ENOSYS]))
        }
        SCHEDOP_PIN_OVERRIDE => {
            let p = pointer(rng, l);
            let expect = if p.read_room < 4 { Expect::OneOf(&[EFAULT, ENOSYS]) } else { Expect::ZeroOr(&[EINVAL, EPERM, EBUSY, ENOSYS]) };
            (Some(p), expect)
        }
        _ => (None, Expect::Exact(ENOSYS)),
    };
    match p {
        Some(p) => {
            args[1] = p.addr;
            guarded(Call::new(nr::sched_op, args, expect), &p)
        }
        None => Call::new(nr::sched_op, args, expect),
    }
}
