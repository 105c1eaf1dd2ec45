//! From the PVH entry to the first guest instruction, and the handlers every later
//! entry from a guest lands in.

use super::machine_memory::DirectMap;
use super::{boot, cpu, entry, gdt, idt, lapic, phys_to_virt, pic, protect, pvh, serial};
use crate::boot_options::BootOptions;
use crate::domain::boot::{build_and_adopt, check_dom0_fits, dom0_files, plan_memory, set_up_m2p};
use crate::domain::builder::DomainSpec;
use crate::domain::bundle::{Bundle, DOM0_CMDLINE, DOM0_INITRD, DOM0_KERNEL};
use crate::domain::crash::{write_crash_report, write_hypervisor_fault_report};
use crate::domain::domu_config::domu_files;
use crate::domain::frames::tear_down;
use crate::domain::vcpu::GuestRegisters;
use crate::domain::{exit_code_for, Domain, DomainState, Others};
use crate::hypercall::trace as hypercall_trace;
use crate::hypercall::xen_version::{VERSION_MAJOR, VERSION_MINOR};
use crate::hypercall::{CallerRegisters, Host, HypercallContext, MachineInfo, TlbFlush};
use crate::mm::frame_alloc::FrameAllocator;
use crate::mm::frame_table::FrameTable;
use crate::mm::guest_walk::MachineMemory;
use crate::mm::m2p::{self, MachToPhys};
use crate::mm::owned::OwnedBy;
use crate::sched;
use crate::trap::cpuid::CpuidPolicy;
use crate::trap::deliver;
use crate::trap::emulate::HostView;
use crate::trap::entry::{self as trap_entry, ExceptionContext};
use crate::trap::frame_check;
use crate::trap::state::GuestMode;
use crate::{console, hv_println, hv_result};
use alloc::vec::Vec;
use core::fmt::Write;
use hypercall_abi::debug_exit::ExitCode;
use hypercall_abi::ops::memory::E820Entry;
use hypercall_abi::ops::sched_op::ShutdownReason;
use linked_list_allocator::LockedHeap;
use spin::Mutex;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();
/// The heap holds the frame table (12 bytes per frame of RAM) and each domain's frame
/// list (8 bytes per page), so it grows with RAM: 4 MiB plus 24 bytes per frame, and
/// never less than 16 MiB.
fn heap_frames(ram_frames: u64) -> u64 {
    (4 * 1024 * 1024 + ram_frames * 24).div_ceil(4096).max(4096)
}

/// One bit per frame the direct map can cover.
static mut FRAME_BITMAP: [u64; (super::DIRECTMAP_MAX / 4096 / 64) as usize] = [0; (super::DIRECTMAP_MAX / 4096 / 64) as usize];

/// The hypervisor's state after boot. Single CPU, so a spin lock is never contended.
struct Hypervisor {
    /// Free machine frames (`host.frames` is the frame table: who owns and uses each).
    free_frames: FrameAllocator<'static>,
    /// Guest memory, the frame table, our L4, the machine's description, dom0's serial
    /// input and the next timer interrupt: what hypercalls reach besides the domains.
    host: Host<DirectMap>,
    cpuid: CpuidPolicy,
    /// CR0 (without TS), CR4 and EFER as guests read them: fixed after boot.
    host_view: HostView,
    /// Every domain that has not been torn down yet, dom0 first.
    domains: Vec<Domain>,
    /// Index in `domains` of the domain whose vCPU the CPU runs (or last ran).
    current: usize,
    /// When `current` last started running (system time, ns): its CPU time since.
    dispatched_at: u64,
    /// Until when `current` may run before the scheduler looks again.
    slice_end: u64,
    /// When the hypervisor next looks at the serial input (the housekeeping tick).
    housekeeping_at: u64,
    /// Whether any domain crashed (the exit code says so when the last one is gone).
    any_crashed: bool,
    /// The LAPIC timer (one-shot) may have fired since it was last armed, so it may be
    /// idle: the exit path arms it again even if the deadline did not move
    /// (`sched::timer_needs_arming`).
    timer_may_have_fired: bool,
    /// Free frames and heap in use just before the first domain was built: what the
    /// teardown of the last one must leave, to the last frame and byte.
    before_domains: Usage,
}

#[derive(Clone, Copy)]
struct Usage {
    free_frames: u64,
    heap_bytes: usize,
}

/// The hypervisor's state, on a page of its own: the hypercall path reads its lock and
/// a few fields on every entry, and each page it touches is a TLB entry (under TCG, a
/// softmmu TLB entry that a guest page can evict), so they stay on one.
static HV: PageAligned<Mutex<Option<Hypervisor>>> = PageAligned(Mutex::new(None));

#[repr(C, align(4096))]
struct PageAligned<T>(T);
const _: () = assert!(core::mem::size_of::<PageAligned<Mutex<Option<Hypervisor>>>>() == 4096);

impl<T> core::ops::Deref for PageAligned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

extern "C" {
    static __image_phys_start: u8;
    static __image_phys_end: u8;
}

fn console_output(args: core::fmt::Arguments<'_>) {
    serial::write_fmt(args);
}

/// Refuses boot input: one line naming what and why, a RESULT line, and the exit code.
/// Reports a bad boot input (an option, the bundle, a kernel) and stops. It allocates
/// nothing: it also serves before the heap exists.
fn boot_error(file: &str, reason: &dyn core::fmt::Display) -> ! {
    let text = console::InQuotes(reason);
    hv_println!("error: {file}: {text}");
    hv_result!("event=boot_error file={file} reason=\"{text}\"");
    exit(ExitCode::HypervisorError)
}

fn exit(code: ExitCode) -> ! {
    hv_result!("event=exit code={}", code.name());
    cpu::exit_qemu(code)
}

#[no_mangle]
extern "C" fn pvh_entry64(start_info_paddr: u32) -> ! {
    // System time 0 for guests.
    let boot_tsc = cpu::rdtsc();
    super::set_boot_l4_phys(cpu::cr3());
    serial::init();
    console::set_output(console_output);
    let _ = log::set_logger(&console::LOGGER);
    log::set_max_level(log::LevelFilter::Info);
    // First: the GDT window's page tables use NX, which EFER.NXE must allow.
    let protections = cpu::enable_protections();
    gdt::init(boot::hypervisor_stack_top());
    // SAFETY: boot, single CPU, high addresses, NXE on (enable_protections above).
    let wx = unsafe { protect::protect_hypervisor_mappings() };
    idt::init();
    pic::remap_and_mask();
    entry::init_syscall();

    // SAFETY: EBX from QEMU, passed through unchanged by the boot code.
    let pvh = match unsafe { pvh::read(start_info_paddr as u64) } {
        Ok(info) => info,
        Err(reason) => boot_error("pvh-start-info", &reason),
    };
    let options = match BootOptions::parse(pvh.cmdline) {
        Ok(o) => o,
        Err(e) => boot_error("hypervisor-cmdline", &e),
    };
    log::set_max_level(options.log_level);
    // `lost-debug-frame` runs once dom0 exists, below.
    if let Some(test) = options.selftest.filter(|&t| t != crate::boot_options::SelfTest::LostDebugFrame) {
        hv_println!("selftest: breaking a protection on purpose ({test:?})");
        protect::run_selftest(test);
    }
    hv_println!("pv-hypervisor {} starting; command line '{}'", env!("CARGO_PKG_VERSION"), pvh.cmdline);
    log::info!(
        "protections: nx={} smep={} smap={} umip={} w^x+guard pages={wx}; entry MSRs {:x?}",
        protections.nx,
        protections.smep,
        protections.smap,
        protections.umip,
        entry::entry_msrs()
    );

    // SAFETY: boot is single-threaded and this is the only reference ever made.
    let bitmap = unsafe { &mut *core::ptr::addr_of_mut!(FRAME_BITMAP) };
    let mut frames = FrameAllocator::new(bitmap);
    let ram = pvh.memmap.iter().filter(|e| e.kind == pvh::MEMMAP_TYPE_RAM).map(|e| e.addr..e.addr.saturating_add(e.size));
    let image = (core::ptr::addr_of!(__image_phys_start) as u64)..(core::ptr::addr_of!(__image_phys_end) as u64);
    let mut reserved: [core::ops::Range<u64>; 9] = core::array::from_fn(|_| image.clone());
    for (slot, module) in reserved[1..].iter_mut().zip(pvh.modules.iter()) {
        *slot = module.paddr..module.paddr.saturating_add(module.size);
    }
    if pvh.modules.len() > reserved.len() - 1 {
        boot_error("pvh-start-info", &"more than 8 boot modules");
    }
    let plan = plan_memory(&mut frames, ram, &reserved[..1 + pvh.modules.len()], super::DIRECTMAP_MAX);
    // SAFETY: boot, single CPU, on the boot L4, NXE on (enable_protections above).
    let direct_map_end = unsafe { super::high_memory::extend_direct_map(plan.ram_end) };
    let ram_end = plan.ram_end.min(direct_map_end);
    if let Some(high) = plan.unused_high {
        log::warn!("RAM above {direct_map_end:#x} ({:#x}-{:#x}) is not used: the direct map ends there", high.start, high.end);
    }
    let heap_frames = heap_frames(ram_end / 4096);
    let Some(heap) = frames.alloc_contiguous(heap_frames) else {
        boot_error("hypervisor-heap", &"no room for the hypervisor heap");
    };
    // SAFETY: the frames were just taken from the allocator, so nothing else uses them.
    unsafe { HEAP.lock().init(phys_to_virt(heap * 4096) as *mut u8, (heap_frames * 4096) as usize) };
    log::info!("memory: {} MiB free for domains, RAM ends at {:#x}", frames.free_frames() / 256, ram_end);

    let Some(module) = pvh.modules.first() else {
        boot_error("bundle", &"no boot module: pass the bundle with -initrd");
    };
    // SAFETY: the module stays reserved above; QEMU put it in RAM below 4 GiB.
    let bundle_bytes = unsafe { core::slice::from_raw_parts(phys_to_virt(module.paddr) as *const u8, module.size as usize) };
    let (kernel, cmdline) = match dom0_files(bundle_bytes) {
        Ok(files) => files,
        Err((file, reason)) => boot_error(file, &reason),
    };
    // dom0_files validated the archive.
    let Ok(bundle) = Bundle::parse(bundle_bytes) else { boot_error("bundle", &"not a cpio newc archive") };
    let domus = match domu_files(&bundle) {
        Ok(domus) => domus,
        Err((file, reason)) => boot_error(&file, &reason),
    };

    let mut memory = DirectMap::new(ram_end);
    let nr_frames = ram_end / 4096;
    let (m2p, m2p_l4_entry) = match set_up_m2p(&mut frames, &mut memory, nr_frames) {
        Ok(table) => table,
        Err(reason) => boot_error("machine-to-phys table", &reason),
    };
    if memory.write_bytes(cpu::cr3() + m2p::L4_SLOT as u64 * 8, &m2p_l4_entry.to_le_bytes()).is_none() {
        boot_error("machine-to-phys table", &"the boot L4 is outside RAM");
    }
    let memory_map = pvh.memmap.iter().map(|e| E820Entry { addr: e.addr, size: e.size, kind: e.kind }).collect();
    let (clock, tsc_hz) = start_clock(boot_tsc);
    super::lapic::init(tsc_hz);
    let machine = MachineInfo { m2p, max_page: nr_frames, memory_map, clock };
    // SAFETY: CR3 holds the boot L4, mapped in the direct map like all low memory.
    // Boxed before the heap is measured for the domains' teardown check.
    let hypervisor_l4: alloc::boxed::Box<[u64; 512]> = alloc::boxed::Box::new(unsafe { *(phys_to_virt(cpu::cr3()) as *const [u64; 512]) });
    if let Err(e) = check_dom0_fits(options.dom0_pages, frames.free_frames()) {
        boot_error("hypervisor-cmdline", &e);
    }
    let initrd = bundle.file(DOM0_INITRD).unwrap_or(b"");
    let spec = DomainSpec { id: 0, name: "Domain-0", kernel, cmdline, nr_pages: options.dom0_pages, privileged: true, module: initrd };
    let started = cpu::rdtsc();
    let Some(mut frame_table) = FrameTable::try_new(nr_frames) else {
        boot_error("hypervisor-heap", &"no room for the frame table");
    };
    // The M2P table's frames: guests learn their numbers (machphys_mfn_list) and must
    // get Xen's answer when they name them in a page table.
    for mfn in machine.m2p.first_mfn..machine.m2p.first_mfn + MachToPhys::frames_for(machine.m2p.entries) {
        if frame_table.own_for_hypervisor(mfn).is_err() {
            boot_error("machine-to-phys table", &"its frames are outside the frame table");
        }
    }
    let before_domains = Usage { free_frames: frames.free_frames(), heap_bytes: HEAP.lock().used() };
    let dom0 = match build_and_adopt(&spec, &mut memory, &mut frames, &mut frame_table, &hypervisor_l4, &machine.m2p) {
        Ok(d) => d,
        Err(e) => boot_error(if e.cmdline_at_fault { DOM0_CMDLINE } else { DOM0_KERNEL }, &e.reason),
    };
    log::info!(
        "dom0: {} pages, entry {:#x}, L4 at {:#x}, built in {} cycles",
        dom0.nr_pages(),
        dom0.vcpu.rip,
        dom0.l4_maddr(),
        cpu::rdtsc() - started
    );
    let mut domains = alloc::vec![dom0];
    // The domUs the bundle names, built like dom0 but unprivileged (a toolstack in dom0
    // will call the same builder later).
    for (index, domu) in domus.iter().enumerate() {
        let nr_pages = domu.config.memory_mib * 256;
        let file = |what: &str| alloc::format!("domU/{}/{what}", domu.name);
        if let Err(e) = check_dom0_fits(nr_pages, frames.free_frames()) {
            boot_error(&file("config"), &alloc::format!("memory = {} MiB does not fit: {} MiB free", domu.config.memory_mib, e.free_pages / 256));
        }
        let spec = DomainSpec {
            id: index as u16 + 1,
            name: domu.name,
            kernel: domu.kernel,
            cmdline: domu.cmdline,
            nr_pages,
            privileged: false,
            module: b"",
        };
        let mut domain = match build_and_adopt(&spec, &mut memory, &mut frames, &mut frame_table, &hypervisor_l4, &machine.m2p) {
            Ok(d) => d,
            Err(e) => boot_error(&file(if e.cmdline_at_fault { "cmdline" } else { "kernel" }), &e.reason),
        };
        domain.sched = domu.config.sched;
        log::info!(
            "d{} ({}): {} MiB, weight {}, cap {}%, entry {:#x}",
            domain.id,
            domu.name,
            domu.config.memory_mib,
            domain.sched.weight,
            domain.sched.cap,
            domain.vcpu.rip
        );
        domains.push(domain);
    }
    for domain in &mut domains {
        domain.hypercalls_traced = options.trace.is_some_and(|trace| trace.covers(domain.id));
    }
    for domain in &domains {
        if machine.clock.publish(&mut memory, domain.shared_info_mfn, cpu::rdtsc()).is_none() {
            boot_error("shared_info", &"cannot write the time");
        }
    }
    let regs = domains[0].vcpu;
    let l4 = domains[0].l4_maddr();
    let version = (VERSION_MAJOR << 16) | VERSION_MINOR;
    let address_bits = 64 - ram_end.saturating_sub(1).leading_zeros();
    let cpuid = CpuidPolicy::from_host(cpu::cpuid, version, address_bits);
    cpu::enable_xsave(cpuid.xcr0_max());
    let (cr0, cr4, efer) = cpu::guest_visible_control_registers();
    let host_view = HostView { cr0, cr4, efer };
    let now = machine.clock.now_ns();
    *HV.lock() = Some(Hypervisor {
        free_frames: frames,
        host: Host {
            memory,
            frames: frame_table,
            hypervisor_l4,
            machine,
            console_input: Default::default(),
            next_interrupt_at: now + sched::TIME_SLICE_NS,
        },
        cpuid,
        host_view,
        domains,
        current: 0,
        dispatched_at: now,
        slice_end: now,
        housekeeping_at: now + HOUSEKEEPING_NS,
        any_crashed: false,
        timer_may_have_fired: false,
        before_domains,
    });
    if options.selftest == Some(crate::boot_options::SelfTest::LostDebugFrame) {
        hv_println!("selftest: a #DB over the #DB entry's own frame ({:?})", crate::boot_options::SelfTest::LostDebugFrame);
        protect::debug_frame_selftest();
    }
    hv_println!("starting dom0; serial input to dom0 (type CTRL-a three times to switch input to the hypervisor's debug keys)");
    // Preemption starts with dom0's first slice (the first slow exit schedules).
    super::lapic::arm(sched::TIME_SLICE_NS);
    // SAFETY: the guest L4 carries the hypervisor's slots (copied by the builder), and
    // boot's stack frames are not needed any more.
    unsafe {
        cpu::load_cr3(l4);
        entry::enter_guest(&regs)
    }
}

/// The clock guests read: the TSC's scale, measured now, and the RTC's time at boot.
fn start_clock(boot_tsc: u64) -> (crate::time::Clock, u64) {
    let (hz, how) = super::clock::tsc_hz();
    let Some(scale) = crate::time::TscScale::for_frequency(hz) else {
        boot_error("clock", &"no usable TSC frequency");
    };
    let now_ns = scale.to_ns(cpu::rdtsc() - boot_tsc);
    let wallclock = match super::clock::read_rtc().and_then(|t| t.unix_seconds()) {
        // Unix time at system time 0: the RTC's now, less the time since boot.
        Some(seconds) => {
            let boot_ns = (u128::from(seconds) * 1_000_000_000).saturating_sub(u128::from(now_ns));
            ((boot_ns / 1_000_000_000) as u64, (boot_ns % 1_000_000_000) as u32)
        }
        None => (0, 0),
    };
    log::info!("time: TSC {} MHz ({how}), wallclock {} s at boot", hz / 1_000_000, wallclock.0);
    (crate::time::Clock { boot_tsc, scale, wallclock, read_tsc: cpu::rdtsc }, hz)
}

/// The hypervisor state for an entry from a guest. One CPU: the lock is free unless a
/// fault hit the hypervisor while it held it (reported before we get here), so the
/// uncontended attempt comes first: one compare-exchange and one branch on the entry
/// path, where `lock()`'s spin loop costs a translation block more under TCG.
#[inline(always)]
fn lock_hypervisor() -> spin::MutexGuard<'static, Option<Hypervisor>> {
    match HV.try_lock() {
        Some(guard) => guard,
        None => HV.lock(),
    }
}

/// Every hypercall lands here, with the guest's registers at the top of the stack.
/// The common case (a guest kernel's hypercall, untraced, after which the guest may
/// resume as it is) is one straight path: under TCG each instruction on it costs about
/// three cycles of the guest's null hypercall, and an indirect branch about twenty.
#[no_mangle]
extern "C" fn hypercall_from_guest(frame: &mut GuestRegisters) -> ! {
    let mut guard = lock_hypervisor();
    let Some(hv) = guard.as_mut() else { exit(ExitCode::HypervisorPanic) };
    let (number, args) = (frame.rax, frame.hypercall_args());
    let mut ctx = hypercall_context(hv, frame);
    // User mode or traced (bytes ORed: one branch).
    if (ctx.domain.traps.mode() as u8 | u8::from(ctx.domain.hypercalls_traced)) != 0 {
        uncommon_hypercall(guard, frame);
    }
    ctx.domain.count_hypercall(number);
    let mut result = hypercall_abi::dispatch(&mut ctx, number, args);
    if ctx.left_work() {
        result = finish_hypercall(&mut ctx, number, result);
    }
    ctx.regs.set_result(result as u64);
    let replaced = ctx.regs.replaced();
    let cpu_obstacles = cpu_obstacles(ctx.domain, &ctx.host.memory);
    // A frame no handler replaced is the one syscall_entry built: flat selectors, rip
    // and rflags in rcx and r11. sysretq resumes it once rcx is known canonical (a
    // `syscall` in the last bytes below 2^47 leaves it non-canonical) and r11 holds
    // rflags a guest may run with (a ring-3 guest cannot clear IF or raise IOPL today;
    // checked rather than assumed). A replaced one (iret's) is checked in full. Both
    // read `frame` itself, the stack frame sysretq or iretq resumes.
    let frame_obstacles = match replaced {
        false => frame_check::non_canonical(frame.rcx) | frame_check::rflags_differences(frame.r11),
        true => frame_check::plain_flat_frame_differences(frame),
    };
    if (cpu_obstacles | u128::from(frame_obstacles)) != 0 {
        resume_guest_slowly(guard, frame);
    }
    if replaced {
        leave(guard, frame);
    }
    drop(guard);
    // SAFETY: `frame` is the one syscall_entry pushed at the top of the hypervisor stack,
    // unchanged but for RAX (rcx and r11 hold its rip and rflags, its selectors are the
    // flat ring-3 ones), with a canonical rcx and plain rflags in r11: what
    // `frame_check` would pass; the lock is released and no Rust frame below it is
    // needed any more.
    unsafe { entry::resume_frame_by_sysret(frame) }
}

/// The running domain's view of the hypervisor for one hypercall.
#[inline(always)]
fn hypercall_context<'a>(hv: &'a mut Hypervisor, frame: &'a mut GuestRegisters) -> HypercallContext<'a, DirectMap> {
    let Some((domain, others)) = Others::split(&mut hv.domains, hv.current) else { exit(ExitCode::HypervisorPanic) };
    HypercallContext {
        domain,
        others,
        host: &mut hv.host,
        regs: CallerRegisters::new(frame),
        frame_source: &mut hv.free_frames,
        flush: TlbFlush::None,
        continuation: None,
    }
}

/// A user program's system call (for the guest kernel), or a traced hypercall.
#[cold]
#[inline(never)]
fn uncommon_hypercall(mut guard: spin::MutexGuard<'_, Option<Hypervisor>>, frame: &mut GuestRegisters) -> ! {
    let Some(hv) = guard.as_mut() else { exit(ExitCode::HypervisorPanic) };
    let Some(domain) = hv.domains.get_mut(hv.current) else { exit(ExitCode::HypervisorPanic) };
    if domain.traps.mode() == GuestMode::User {
        let mut memory = OwnedBy::new(&mut hv.host.memory, &hv.host.frames, domain.id);
        if let Err(why) = deliver::user_syscall(domain, &mut memory, frame) {
            domain.crash(why.describe());
        }
        resume_guest(guard, frame);
    }
    traced_hypercall(guard, frame);
}

/// What a handler left: the continuation, given-back frames to free, the TLB flush.
/// The result for RAX.
#[cold]
#[inline(never)]
fn finish_hypercall(ctx: &mut HypercallContext<'_, DirectMap>, number: u64, result: i64) -> i64 {
    let (result, flush) = ctx.finish(number, result);
    flush_after_hypercall(flush, &mut ctx.host.frames);
    result
}

/// A traced hypercall: timed, counted in the domain's table, and logged with its
/// decoded arguments and result.
#[cold]
#[inline(never)]
fn traced_hypercall(mut guard: spin::MutexGuard<'_, Option<Hypervisor>>, frame: &mut GuestRegisters) -> ! {
    let Some(hv) = guard.as_mut() else { exit(ExitCode::HypervisorPanic) };
    let (number, args) = (frame.rax, frame.hypercall_args());
    let started = cpu::rdtsc();
    let mut ctx = hypercall_context(hv, frame);
    ctx.domain.count_hypercall(number);
    let result = hypercall_abi::dispatch(&mut ctx, number, args);
    let result = finish_hypercall(&mut ctx, number, result);
    let cycles = cpu::rdtsc().wrapping_sub(started);
    if let Some(slot) = ctx.domain.hypercall_cycles.get_mut(number as usize) {
        *slot += cycles;
    }
    let id = ctx.domain.id;
    ctx.regs.set_result(result as u64);
    hv_println!("trace d{id} {}", hypercall_trace::Call { number, args, result });
    resume_guest(guard, frame);
}

fn flush_after_hypercall(flush: TlbFlush, frame_table: &mut FrameTable) {
    match flush {
        TlbFlush::None => {}
        TlbFlush::Page(va) => cpu::flush_page(va),
        TlbFlush::All => {
            cpu::flush_tlb();
            frame_table.note_tlb_flushed();
        }
    }
}

/// `syscall` from 32-bit compatibility mode (trap::entry::compat_syscall).
#[no_mangle]
extern "C" fn syscall32_from_guest(frame: &mut GuestRegisters) -> ! {
    let mut guard = lock_hypervisor();
    let Some(hv) = guard.as_mut() else { exit(ExitCode::HypervisorPanic) };
    let Some(domain) = hv.domains.get_mut(hv.current) else { exit(ExitCode::HypervisorPanic) };
    trap_entry::compat_syscall(domain, &mut OwnedBy::new(&mut hv.host.memory, &hv.host.frames, domain.id), frame);
    resume_guest(guard, frame);
}

const VECTOR_NMI: u64 = 2;
const VECTOR_DOUBLE_FAULT: u64 = 8;
const VECTOR_MACHINE_CHECK: u64 = 18;

/// Whether the hypervisor already reported ignoring a guest's delayed #DB (once only: a
/// guest may repeat it at will).
static DELAYED_DEBUG_SEEN: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Every CPU exception lands here.
#[no_mangle]
extern "C" fn trap_from_cpu(frame: &mut GuestRegisters) -> ! {
    let cr2 = cpu::cr2();
    if frame.vector == u64::from(lapic::TIMER_VECTOR) || frame.vector == u64::from(lapic::SPURIOUS_VECTOR) {
        timer_interrupt(frame);
    }
    // NMIs are the platform's, not the guest's, whatever was running: they go to dom0
    // (domain::platform_nmi). On the IST stack, and perhaps over the hypervisor holding
    // its lock, the handler only leaves the flag and kicks; the kick interrupt passes it.
    if frame.vector == VECTOR_NMI {
        serial::write_emergency(format_args!("(hv) WARN  NMI at rip {:#x}, for dom0\n", frame.rip));
        PLATFORM_NMI.store(true, core::sync::atomic::Ordering::SeqCst);
        lapic::kick_self();
        // SAFETY: `frame` is the one the entry stub pushed; nothing above it is needed.
        unsafe { entry::resume_frame(frame) };
    }
    if frame.vector == u64::from(lapic::KICK_VECTOR) {
        kick_interrupt(frame);
    }
    // A #DB in ring 0 on the first instruction of an entry: a guest's data breakpoint
    // that MOV SS / POP SS delayed past its `syscall` or `int` (CVE-2018-8897, Xen's
    // XSA-260), or its single step over a `syscall`. The guest's DR7 stays loaded while
    // the hypervisor runs, so the CPU delivers it here. A trap: the entry goes on where
    // it was, and, as on Xen, the guest does not see it. (QEMU's TCG raises such a #DB
    // in the guest, after the MOV SS: only `selftest=lost-debug-frame` comes here, by
    // entering the #DB stub with the frame of the case below.)
    if frame.vector == trap_entry::VECTOR_DEBUG && !frame.from_guest() && entry::is_entry_point(frame.rip) {
        let _ = cpu::take_debug_status();
        if frame.rip == entry::trap_stub_address(trap_entry::VECTOR_DEBUG as usize) {
            // `mov ss` then `int1` (icebp): the delayed #DB came at the #DB entry itself,
            // on the same IST stack, over the frame of the guest's own #DB, which is
            // lost. The domain cannot be resumed where it was: it did this to itself.
            // Its end (teardown, scheduling) needs more than the 16 KiB IST stack: it
            // runs on the hypervisor stack, free since the guest was running.
            // SAFETY: the interrupted context was a guest's #DB delivery, so no
            // hypervisor frame lives on the hypervisor stack.
            unsafe { entry::continue_on_hypervisor_stack(frame, crash_after_lost_debug_frame) };
        }
        if !DELAYED_DEBUG_SEEN.swap(true, core::sync::atomic::Ordering::Relaxed) {
            serial::write_emergency(format_args!(
                "(hv) WARN  #DB in ring 0 at entry {:#x} (a guest's MOV SS breakpoint), ignored; not reported again\n",
                frame.rip
            ));
        }
        // SAFETY: `frame` is the one the #DB stub pushed on its IST stack; iretq goes
        // back to the entry's first instruction in ring 0 (not the #DB stub's, whose
        // stack this is), nothing above it is needed.
        unsafe { entry::resume_frame(frame) };
    }
    // A machine check is a hardware failure, not something a guest did; a double fault
    // means the hypervisor could not take an exception.
    if !frame.from_guest() || matches!(frame.vector, VECTOR_MACHINE_CHECK | VECTOR_DOUBLE_FAULT) {
        // A fault in the hypervisor itself is a bug: report it and stop, without the
        // console lock (the fault may have hit while it was held).
        let _ = write_hypervisor_fault_report(&mut EmergencyWriter, frame, cr2);
        serial::write_emergency(format_args!("(hv) RESULT event=exit code={}\n", ExitCode::HypervisorPanic.name()));
        cpu::exit_qemu(ExitCode::HypervisorPanic);
    }
    // A guest's #DB comes on the #DB IST stack (16 KiB): its handling, which may end the
    // domain (teardown, scheduling), moves to the hypervisor stack, free while a guest
    // runs.
    if frame.vector == trap_entry::VECTOR_DEBUG {
        // SAFETY: the #DB came from a guest (the hypervisor's own are handled above), so
        // nothing lives on the hypervisor stack.
        unsafe { entry::continue_on_hypervisor_stack(frame, guest_debug_exception) };
    }
    guest_trap(frame, cr2);
}

/// A guest's #DB, on the hypervisor stack (`trap_from_cpu`).
extern "C" fn guest_debug_exception(frame: &mut GuestRegisters) -> ! {
    guest_trap(frame, cpu::cr2());
}

/// An exception a guest took: emulated, bounced to its handler, or the end of it.
fn guest_trap(frame: &mut GuestRegisters, cr2: u64) -> ! {
    let debug_status = if frame.vector == trap_entry::VECTOR_DEBUG { cpu::take_debug_status() } else { 0 };
    let mut guard = lock_hypervisor();
    let Some(hv) = guard.as_mut() else { exit(ExitCode::HypervisorPanic) };
    let hardware = ExceptionContext { cr2, debug_status, host: hv.host_view };
    let Some(domain) = hv.domains.get_mut(hv.current) else { exit(ExitCode::HypervisorPanic) };
    trap_entry::guest_exception(domain, &mut hv.host.memory, &mut hv.host.frames, &hv.cpuid, &mut super::ports::HardwarePorts, frame, &hardware);
    // A store into a page table (trap::ptwr) may have dropped a given-back frame's last
    // reference.
    if hv.host.frames.has_unused_given_back() {
        crate::domain::frames::free_given_back(domain, &mut hv.host.frames, &mut hv.host.memory, &hv.host.machine.m2p, &mut hv.free_frames);
    }
    if hv.host.frames.flush_needed() {
        cpu::flush_tlb();
        hv.host.frames.note_tlb_flushed();
    }
    resume_guest(guard, frame);
}

/// The rest of a #DB that overwrote the frame of the guest's own #DB (`trap_from_cpu`),
/// on the hypervisor stack: the current domain is crashed.
extern "C" fn crash_after_lost_debug_frame(frame: &mut GuestRegisters) -> ! {
    let mut guard = lock_hypervisor();
    let Some(hv) = guard.as_mut() else { exit(ExitCode::HypervisorPanic) };
    let Some(domain) = hv.domains.get_mut(hv.current) else { exit(ExitCode::HypervisorPanic) };
    domain.crash("a #DB delayed by MOV SS hit the #DB entry: the guest's own #DB frame is lost");
    resume_guest_slowly(guard, frame);
}

/// The LAPIC timer (or a spurious interrupt). In the idle loop (ring 0) it only wakes
/// the CPU: the loop looks at the time itself. From a running guest it fires the
/// domain's timer if due (VIRQ_TIMER) and takes the slow exit, where every domain's
/// timers fire and the scheduler decides whether the guest's slice is over.
fn timer_interrupt(frame: &mut GuestRegisters) -> ! {
    if frame.vector == u64::from(lapic::TIMER_VECTOR) {
        lapic::end_of_interrupt();
    }
    if !frame.from_guest() {
        // SAFETY: the frame the entry stub pushed; the idle loop resumes after its hlt.
        unsafe { entry::resume_frame(frame) };
    }
    let mut guard = lock_hypervisor();
    let Some(hv) = guard.as_mut() else { exit(ExitCode::HypervisorPanic) };
    hv.timer_may_have_fired |= frame.vector == u64::from(lapic::TIMER_VECTOR);
    let Some(domain) = hv.domains.get_mut(hv.current) else { exit(ExitCode::HypervisorPanic) };
    crate::time::fire_if_due(domain, &mut hv.host.memory, hv.host.machine.clock.now_ns());
    domain.traps.exit.timer_changed = true;
    resume_guest(guard, frame);
}

/// A platform NMI not yet passed to dom0: set by the NMI handler, taken by
/// [`pass_platform_nmi`].
static PLATFORM_NMI: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// The kick an NMI handler sends itself (lapic::kick_self). From a guest: the platform
/// NMI goes to dom0 now, through the slow exit. In the idle loop (ring 0): it only
/// wakes the CPU, and the loop passes the NMI on itself.
fn kick_interrupt(frame: &mut GuestRegisters) -> ! {
    lapic::end_of_interrupt();
    if !frame.from_guest() {
        // SAFETY: the frame the entry stub pushed; the interrupted code resumes.
        unsafe { entry::resume_frame(frame) };
    }
    let mut guard = lock_hypervisor();
    let Some(hv) = guard.as_mut() else { exit(ExitCode::HypervisorPanic) };
    pass_platform_nmi(hv);
    resume_guest(guard, frame);
}

/// Passes a platform NMI the NMI handler left, if any, to dom0.
fn pass_platform_nmi(hv: &mut Hypervisor) {
    if PLATFORM_NMI.swap(false, core::sync::atomic::Ordering::SeqCst)
        && crate::domain::platform_nmi::pass_to_dom0(&mut hv.domains, hv.current) == crate::domain::platform_nmi::Passed::Dropped
    {
        hv_println!("NMI dropped: no dom0");
    }
}

/// Arms the LAPIC timer to fire at system time `at` (at once if that has passed).
fn arm_timer(at: u64, now_ns: u64) {
    lapic::arm(at.saturating_sub(now_ns));
}

/// The one way back to a running guest after an exception or interrupt (hypercalls
/// inline the same test). The common exit is one combined test
/// ([`may_resume_as_it_is`]); anything else takes [`resume_guest_slowly`]. Either way
/// it leaves through `frame` (the frame the entry stub pushed) with a jump: no return
/// through the Rust frames.
fn resume_guest(mut guard: spin::MutexGuard<'_, Option<Hypervisor>>, frame: &mut GuestRegisters) -> ! {
    let Some(hv) = guard.as_mut() else { exit(ExitCode::HypervisorPanic) };
    let Some(domain) = hv.domains.get(hv.current) else { exit(ExitCode::HypervisorPanic) };
    if !may_resume_as_it_is(domain, &hv.host.memory, frame) {
        resume_guest_slowly(guard, frame);
    }
    leave(guard, frame);
}

/// Whether the guest may be resumed with `frame` as it is: the domain is running, the
/// frame is a plain flat one, the page table, CR0.TS and the rest of the CPU state it
/// runs with are loaded, and no upcall is due.
#[inline(always)]
fn may_resume_as_it_is(domain: &Domain, memory: &DirectMap, frame: &GuestRegisters) -> bool {
    (cpu_obstacles(domain, memory) | u128::from(frame_check::plain_flat_frame_differences(frame))) == 0
}

/// Nonzero unless the domain is running, the page table, CR0.TS and the rest of the CPU
/// state it runs with are loaded, and no upcall is due.
#[inline(always)]
fn cpu_obstacles(domain: &Domain, memory: &DirectMap) -> u128 {
    // Words ORed, one branch: with `&` on bools the compiler branches on each.
    let obstacles = u64::from(!domain.state.is_running())
        | cpu::cr3_and_ts_differences(domain.traps.cr3_and_ts())
        | u64::from(deliver::upcall_deliverable(domain, memory));
    u128::from(obstacles) | domain.traps.cpu_state_to_load()
}

/// Resumes a frame [`may_resume_as_it_is`] passed: a plain flat frame has a canonical
/// rip and the flat selectors, so sysretq may resume it if rcx and r11 hold its rip and
/// rflags.
#[inline(always)]
fn leave(guard: spin::MutexGuard<'_, Option<Hypervisor>>, frame: &mut GuestRegisters) -> ! {
    let sysret = (frame.rcx == frame.rip) & (frame.r11 == frame.rflags);
    drop(guard);
    if sysret {
        // SAFETY: as below; and a plain flat frame whose rcx and r11 hold its rip and
        // rflags is one sysretq resumes, with a canonical rip.
        unsafe { entry::resume_frame_by_sysret(frame) }
    }
    // SAFETY: `frame` is the one the entry stub pushed at the top of the hypervisor
    // stack; the lock is released and no Rust frame below it is needed any more.
    unsafe { entry::resume_frame(frame) }
}

/// Every exit [`resume_guest`] does not take on its fast path: stop the domain if a
/// handler crashed or shut it down (tearing it down while the others go on), fire the
/// timers of every domain, let the scheduler choose who runs (idling with `hlt` when
/// nobody may), and load the page table, CR0.TS and the CPU state the chosen vCPU runs
/// with, delivering its pending NMI or event upcall.
#[cold]
#[inline(never)]
fn resume_guest_slowly(mut guard: spin::MutexGuard<'_, Option<Hypervisor>>, frame: &mut GuestRegisters) -> ! {
    let Some(hv) = guard.as_mut() else { exit(ExitCode::HypervisorPanic) };
    let Some(domain) = hv.domains.get_mut(hv.current) else { exit(ExitCode::HypervisorPanic) };
    if domain.state.is_running() {
        trap_entry::check_exit_frame(domain, &mut hv.host.memory, &mut hv.host.frames, frame);
    }
    if domain.state == DomainState::Crashed {
        let _ = write_crash_report(&mut ConsoleWriter, domain.id, frame, cpu::cr2(), domain.crash_reason);
        print_guest_stack(domain, &hv.host.memory, frame.rsp);
    }
    // The scheduler's part, when something it cares about happened: a timer
    // interrupt or a timer set, a block, poll, yield or shutdown, an event for a
    // blocked domain. Other slow exits (a page-table or mode switch, an upcall) skip it.
    let t = &domain.traps;
    if t.exit.timer_changed | t.exit.reschedule | t.exit.blocked | t.yielded | !domain.state.is_running() {
        run_scheduler(hv, frame);
    }
    let cur = hv.current;
    let Some(domain) = hv.domains.get_mut(cur) else { exit(ExitCode::HypervisorPanic) };
    domain.traps.exit.timer_changed = false;
    // An NMI, then an event upcall the guest can take now (Xen's order): it enters the
    // handler instead of where it was. An NMI handler that masks events defers the upcall
    // to its iret.
    if domain.state.is_running() {
        let mut memory = OwnedBy::new(&mut hv.host.memory, &hv.host.frames, domain.id);
        let delivered = deliver::deliver_nmi(domain, &mut memory, frame).and_then(|_| deliver::deliver_upcall(domain, &mut memory, frame));
        if let Err(why) = delivered {
            // Its end is handled like any other: through the slow path again.
            domain.crash(why.describe());
            resume_guest_slowly(guard, frame);
        }
    }
    // SAFETY: every guest L4 carries the hypervisor's slots (filled when it is
    // validated as an L4).
    if unsafe { cpu::switch_cr3(domain.active_l4()) } {
        // A CR3 write drops every translation (the hypervisor uses no global pages).
        hv.host.frames.note_tlb_flushed();
    }
    cpu::set_task_switched(domain.traps.fpu_ts());
    // The frame passed check_exit_frame (this domain's, before it was switched away
    // from, or just now); sysretq also wants a canonical rip, checked again here at the
    // price of a few instructions on the slow path rather than trusted to that chain.
    let sysret = frame.sysret_can_resume() & frame_check::is_plain_flat_frame(frame);
    if domain.traps.cpu_state_changed() {
        load_guest_cpu_state(&mut domain.traps);
    }
    drop(guard);
    if sysret {
        // SAFETY: as in `leave`; the frame passed check_exit_frame (canonical rip).
        unsafe { entry::resume_frame_by_sysret(frame) }
    }
    // SAFETY: as in `leave`.
    unsafe { entry::resume_frame(frame) }
}

/// Charges the running domain, retires stopped domains, fires every domain's timers,
/// lets the scheduler choose who runs (switching to it, or idling with `hlt` when
/// nobody may) and arms the LAPIC for the next thing that must happen.
fn run_scheduler(hv: &mut Hypervisor, frame: &mut GuestRegisters) {
    let mut now = hv.host.machine.clock.now_ns();
    charge_current(hv, now);
    let mut must_choose = (now >= hv.slice_end) | core::mem::take(&mut hv.domains[hv.current].traps.exit.reschedule);
    // Stopped (retired below with the others) or blocked: someone else must run.
    must_choose |= !hv.domains[hv.current].runnable();
    if let Some(domain) = hv.domains.get(hv.current).filter(|d| d.traps.yielded) {
        let id = domain.id;
        let others_least = sched::least_vtime(hv.domains.iter().filter(|d| d.id != id).map(|d| (d.sched_state, d.runnable())));
        let domain = &mut hv.domains[hv.current];
        domain.traps.yielded = false;
        domain.sched_state.yield_to(others_least);
    }
    // Serial input at the housekeeping tick only: reading the UART costs port I/O,
    // which the slow path of every timer or upcall exit should not pay.
    if now >= hv.housekeeping_at {
        hv.housekeeping_at = now + HOUSEKEEPING_NS;
        poll_debug_keys(hv, now);
    }
    must_choose |= fire_timers_and_wake(hv, now);
    // A watchdog may have stopped the running domain itself.
    must_choose |= retire_stopped(hv, now);
    if must_choose {
        loop {
            let candidates: Vec<sched::Candidate> =
                hv.domains.iter().map(|d| sched::Candidate { params: d.sched, state: d.sched_state, runnable: d.runnable() }).collect();
            match sched::decide(&candidates, now) {
                sched::Decision::Run { index, until_ns } => {
                    if index != hv.current {
                        switch_to(hv, frame, index);
                    }
                    hv.slice_end = until_ns;
                    break;
                }
                sched::Decision::Idle { until_ns } => {
                    // Nobody may run: wait for the next timer, a capped domain's new
                    // period, or the housekeeping tick (debug keys).
                    let wake = hv.domains.iter().filter_map(wake_deadline).chain(until_ns).min();
                    let wake = wake.unwrap_or(u64::MAX).min(now + HOUSEKEEPING_NS);
                    arm_timer(wake, now);
                    hv.host.next_interrupt_at = wake;
                    cpu::wait_for_interrupt();
                    // Woken by the timer (which the ring-0 handler does not record) or
                    // by another interrupt: either way, arm it again on the way out.
                    hv.timer_may_have_fired = true;
                    pass_platform_nmi(hv);
                    now = hv.host.machine.clock.now_ns();
                    poll_debug_keys(hv, now);
                    fire_timers_and_wake(hv, now);
                    retire_stopped(hv, now);
                }
            }
        }
        hv.dispatched_at = now;
    }
    // The next interrupt: the end of the slice or the first timer of any domain, and at
    // least the housekeeping tick.
    let next_timer = hv.domains.iter().filter_map(wake_deadline).min();
    let others = hv.domains.len() > 1;
    let deadline = next_timer.unwrap_or(u64::MAX).min(if others { hv.slice_end } else { u64::MAX }).min(hv.housekeeping_at);
    // The LAPIC is written only when the deadline moved, the last one has passed or the
    // timer fired (an MMIO write is one of the dearer things an exit can do under
    // emulation).
    if sched::timer_needs_arming(deadline, hv.host.next_interrupt_at, now, hv.timer_may_have_fired) {
        arm_timer(deadline, now);
        hv.host.next_interrupt_at = deadline;
        hv.timer_may_have_fired = false;
    }
}

/// The housekeeping tick: the longest the hypervisor goes without looking at the debug
/// keys and the clock.
const HOUSEKEEPING_NS: u64 = 100_000_000;

/// Charges the current domain for the time since it was dispatched.
fn charge_current(hv: &mut Hypervisor, now: u64) {
    let ran = now.saturating_sub(hv.dispatched_at);
    hv.dispatched_at = now;
    if let Some(domain) = hv.domains.get_mut(hv.current) {
        domain.sched_state.charge(domain.sched, ran, now);
    }
}

/// The earliest time something of `domain`'s must happen: a timer, a poll's timeout,
/// a watchdog.
fn wake_deadline(domain: &Domain) -> Option<u64> {
    let poll = domain.poll.as_ref().map(|p| p.timeout_ns).filter(|&t| t != 0);
    crate::time::next_expiry(domain).into_iter().chain(poll).chain(domain.watchdogs.iter().flatten().copied()).min()
}

/// Domains that stopped (shut down from elsewhere, or by a watchdog, the current one
/// included): retired now. Whether there were any; the scheduler must then choose (a
/// retired current domain leaves `current` pointing nowhere until it does).
fn retire_stopped(hv: &mut Hypervisor, now: u64) -> bool {
    let mut any = false;
    while let Some(index) = hv.domains.iter().position(|d| !d.state.is_running()) {
        retire(hv, index, now);
        any = true;
    }
    any
}

/// Fires every domain's due timers and watchdogs; a blocked domain with an upcall to
/// take (or a poll that is satisfied) wakes up, placed by the scheduler a little ahead
/// of the others. Whether one woke.
fn fire_timers_and_wake(hv: &mut Hypervisor, now: u64) -> bool {
    let least = sched::least_vtime(hv.domains.iter().map(|d| (d.sched_state, d.runnable())));
    let mut woke = false;
    for domain in hv.domains.iter_mut().filter(|d| d.state.is_running()) {
        if domain.watchdogs.iter().flatten().any(|&expiry| expiry <= now) {
            hv_println!("watchdog timer fired for domain {}", domain.id);
            domain.shut_down(ShutdownReason::Watchdog);
            continue;
        }
        if !domain.traps.exit.blocked {
            crate::time::fire_if_due(domain, &mut hv.host.memory, now);
            continue;
        }
        crate::time::fire_if_due_while_blocked(domain, &mut hv.host.memory, now);
        let polled = crate::hypercall::sched_op::poll_satisfied(domain, &mut hv.host.memory, now);
        let woken =
            polled || crate::domain::platform_nmi::wakes(domain) || (domain.poll.is_none() && deliver::upcall_deliverable(domain, &hv.host.memory));
        if woken {
            domain.poll = None;
            domain.traps.exit.blocked = false;
            // Running again: a period that ended meanwhile fires now.
            crate::time::fire_if_due(domain, &mut hv.host.memory, now);
            domain.traps.exit.timer_changed = true;
            if let Some(least) = least {
                domain.sched_state.wake(least);
            }
            woke = true;
        }
    }
    woke
}

/// Makes `next` the running vCPU: the outgoing one's registers (the frame at the top of
/// the stack), FPU state and data selectors go into its domain; the incoming one's come
/// out, and everything the exit path loads only on change is marked changed.
fn switch_to(hv: &mut Hypervisor, frame: &mut GuestRegisters, next: usize) {
    match hv.domains.get_disjoint_mut([hv.current, next]) {
        Ok([old, new]) => {
            old.vcpu = *frame;
            old.data_selectors = cpu::data_selectors();
            cpu::switch_fpu(&mut old.fpu, &new.fpu);
        }
        // The outgoing domain is gone (retired): its state goes with it.
        Err(_) => match hv.domains.get(next) {
            Some(new) => cpu::switch_fpu(&mut Default::default(), &new.fpu),
            None => exit(ExitCode::HypervisorPanic),
        },
    }
    let new = &mut hv.domains[next];
    *frame = new.vcpu;
    // Loaded with the rest of its CPU state, once its GDT and LDT are in the windows.
    let selectors = trap_entry::loadable_data_selectors(new, &mut hv.host.memory, &mut hv.host.frames, new.data_selectors);
    let t = &mut new.traps;
    t.data_selectors = selectors;
    t.exit.data_selectors_pending = true;
    t.bases_loaded_for = None;
    t.exit.segment_bases_dirty = true;
    t.exit.gdt_dirty = true;
    t.exit.ldt_dirty = true;
    t.exit.debugreg_dirty = true;
    t.exit.xcr0_dirty = true;
    t.exit.timer_changed = true;
    hv.current = next;
}

/// Serial input, as Xen routes it: to dom0 (queued for CONSOLEIO_read, VIRQ_CONSOLE
/// raised), or after CTRL-a three times to the debug keys: `q` prints the domain list
/// and raises VIRQ_DEBUG in every domain (Xen's 'q' asks guests to dump their state
/// the same way), `h` lists the keys.
fn poll_debug_keys(hv: &mut Hypervisor, now: u64) {
    use crate::console::input::Input;
    use hypercall_abi::ops::event_channel::{VIRQ_CONSOLE, VIRQ_DEBUG};
    while let Some(byte) = serial::try_receive() {
        match hv.host.console_input.feed(byte) {
            Input::DebugKey(b'q') => {
                print_domain_list(hv, now);
                for domain in hv.domains.iter_mut() {
                    let mut bits = crate::evtchn::SharedInfoBits { memory: &mut hv.host.memory, shared_info_mfn: domain.shared_info_mfn };
                    domain.events.raise_virq(&mut bits, VIRQ_DEBUG);
                }
            }
            Input::DebugKey(b'h') => hv_println!("debug keys: 'q' domain list (and VIRQ_DEBUG to every domain), 'h' this help"),
            Input::DebugKey(_) | Input::Nothing => {}
            Input::ForDom0 => {
                if let Some(dom0) = hv.domains.iter_mut().find(|d| d.id == 0) {
                    let mut bits = crate::evtchn::SharedInfoBits { memory: &mut hv.host.memory, shared_info_mfn: dom0.shared_info_mfn };
                    dom0.events.raise_virq(&mut bits, VIRQ_CONSOLE);
                }
            }
            Input::Switched(true) => hv_println!("serial input to the hypervisor (debug keys; 'h' lists them; CTRL-a three times: back to dom0)"),
            Input::Switched(false) => hv_println!("serial input to dom0"),
        }
    }
}

/// The `xl list`-style table of every domain.
fn print_domain_list(hv: &Hypervisor, now: u64) {
    hv_println!("{}", crate::domain::list::HEADER);
    for domain in &hv.domains {
        let mut cpu_ns = domain.sched_state.cpu_ns;
        if domain.id == hv.domains.get(hv.current).map_or(u16::MAX, |d| d.id) {
            cpu_ns += now.saturating_sub(hv.dispatched_at);
        }
        let mut row = alloc::string::String::new();
        let _ = crate::domain::list::write_row(&mut row, domain, domain.traps.exit.blocked, cpu_ns);
        hv_println!("{row}");
    }
}

/// The rarely changing CPU state a guest owns: its GS selector, GDT, debug registers
/// and segment bases (kernel and user mode each have their GS base, as swapgs gives a
/// native kernel).
fn load_guest_cpu_state(t: &mut crate::trap::state::TrapState) {
    if t.bases_loaded_for != Some(t.mode()) {
        t.exit.segment_bases_dirty = true;
        t.bases_loaded_for = Some(t.mode());
    }
    if t.exit.gdt_dirty {
        super::gdt_area::map_guest_frames(&t.gdt_frames[..t.gdt_frame_count.min(t.gdt_frames.len())]);
        t.exit.gdt_dirty = false;
    }
    if t.exit.ldt_dirty {
        super::gdt_area::map_ldt_frames(&t.ldt.frames);
        super::gdt::load_ldt(t.ldt.entries);
        t.exit.ldt_dirty = false;
    }
    if core::mem::take(&mut t.exit.data_selectors_pending) {
        cpu::load_data_selectors(t.data_selectors);
        // Loading FS and GS replaced their bases.
        t.exit.segment_bases_dirty = true;
    }
    // After the switch's selectors: a GS selector the vCPU asked for (set_segment_base)
    // in the same exit is the newer.
    if core::mem::take(&mut t.exit.gs_selector_pending) {
        cpu::load_gs_selector(t.gs_selector);
        t.exit.segment_bases_dirty = true;
    }
    if t.exit.debugreg_dirty {
        cpu::load_debug_registers(&t.debugreg);
        t.exit.debugreg_dirty = false;
    }
    if t.exit.xcr0_dirty {
        cpu::set_xcr0(t.xcr0);
        t.exit.xcr0_dirty = false;
    }
    if t.exit.segment_bases_dirty {
        let (gs, shadow) = match t.mode() {
            GuestMode::Kernel => (t.gs_base_kernel, t.gs_base_user),
            GuestMode::User => (t.gs_base_user, t.gs_base_kernel),
        };
        cpu::load_segment_bases(t.fs_base, gs, shadow);
        t.exit.segment_bases_dirty = false;
    }
}

/// The top of a crashed guest's stack, read through its page tables, as Xen prints a
/// PV guest's stack in its crash dump: the return addresses there say how it got to
/// the fault.
fn print_guest_stack(domain: &Domain, memory: &DirectMap, rsp: u64) {
    let words: Vec<u64> =
        (0..32u64).map_while(|i| crate::mm::guest_walk::read_guest::<u64>(memory, domain.active_l4(), rsp.wrapping_add(i * 8)).ok()).collect();
    for (row, chunk) in words.chunks(4).enumerate() {
        let text: Vec<alloc::string::String> = chunk.iter().map(|w| alloc::format!("{w:016x}")).collect();
        hv_println!("  stack {:#x}: {}", rsp.wrapping_add(row as u64 * 32), text.join(" "));
    }
}

/// Writes through the lock-free emergency path (fatal reports).
struct EmergencyWriter;

impl Write for EmergencyWriter {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        serial::write_emergency(format_args!("{s}"));
        Ok(())
    }
}

struct ConsoleWriter;

impl Write for ConsoleWriter {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        console::print(format_args!("{s}"));
        Ok(())
    }
}

/// A domain stopped (the current one, or another one: a remote shutdown, a watchdog):
/// report it, give its memory back and tell dom0 (VIRQ_DOM_EXC); the others go on. When it was the last, print the domain list, check
/// that the machine got everything back, and stop it.
fn retire(hv: &mut Hypervisor, index: usize, now: u64) {
    let domid = hv.domains[index].id;
    {
        let domain = &mut hv.domains[index];
        // What it left in its console ring without a notification (a crash).
        console::domu_ring::drain_into_console(domain, &mut hv.host.memory, &hv.host.frames);
        if !domain.console.is_empty() {
            domain.console.flush(&mut |line| console::guest_line::print_guest_line(domid, line));
        }
    }
    // Leave the dying domain's address space before freeing its page tables.
    // SAFETY: the boot L4 maps the hypervisor exactly as every guest L4 does.
    unsafe { cpu::load_cr3(super::boot_l4_phys()) };
    let state = hv.domains[index].state;
    match state {
        DomainState::Shutdown(reason) => hv_result!("event=domain_shutdown domid={domid} reason={}", reason.name()),
        DomainState::Crashed => hv_result!("event=domain_shutdown domid={domid} reason=crash"),
        DomainState::Running => {}
    }
    // A watchdog that fired means the domain hung: as bad as a crash for the exit code.
    hv.any_crashed |= matches!(state, DomainState::Crashed | DomainState::Shutdown(ShutdownReason::Crash | ShutdownReason::Watchdog));
    if hv.domains.len() == 1 {
        // The list as the machine stops, this domain still in it.
        print_domain_list(hv, now);
    }
    let domain = hv.domains.remove(index);
    // Its interdomain channels: the far ends wait for it again, as Xen leaves them.
    for (remote, port) in domain.events.interdomain_peers() {
        if let Some(peer) = hv.domains.iter_mut().find(|d| d.id == remote) {
            peer.events.disconnect(port, domid);
        }
    }
    let leftovers = tear_down(&domain, &mut hv.host.frames, &mut hv.host.memory, &hv.host.machine.m2p, &mut hv.free_frames);
    if leftovers.still_referenced != 0 {
        log::error!("domain {domid}: {} frames still referenced after teardown, kept", leftovers.still_referenced);
    }
    // Its breakpoints, its GDT and its LDT go with it (the window must not keep showing
    // frames that are free now); the next domain loads its own.
    super::gdt_area::map_guest_frames(&[]);
    super::gdt_area::map_ldt_frames(&[0; crate::trap::state::LDT_PAGES]);
    super::gdt::load_ldt(0);
    cpu::load_debug_registers(&[0, 0, 0, 0, 0, 0, 0xffff_0ff0, 0x400]);
    // Its hypercalls: how many of each and, where traced, the time they took.
    hv_println!("domain {domid} hypercalls: {:<22} {:>3} {:>10} {:>14} {:>10}", "name", "nr", "count", "tsc cycles", "per call");
    for row in hypercall_trace::table_rows(&domain.hypercall_counts, &domain.hypercall_cycles) {
        hv_println!("domain {domid} hypercalls: {row}");
    }
    let still_owned = hv.host.frames.frames_of(domid).count();
    let last_state = domain.state;
    hv_println!("domain {domid} ({}) is gone; {} left", domain.name, hv.domains.len());
    hv_result!("event=domain_cpu domid={domid} cpu_ms={}", domain.sched_state.cpu_ns / 1_000_000);
    drop(domain);
    // dom0 learns that a domain is gone.
    if let Some(dom0) = hv.domains.iter_mut().find(|d| d.id == 0) {
        let mut bits = crate::evtchn::SharedInfoBits { memory: &mut hv.host.memory, shared_info_mfn: dom0.shared_info_mfn };
        dom0.events.raise_virq(&mut bits, hypercall_abi::ops::event_channel::VIRQ_DOM_EXC);
    }
    // The current index: stale if it was this one (the scheduler picks again, and
    // switch_to saves nothing for a domain that is gone), one lower if after it; the
    // CPU state windows were cleared above, so the current domain loads its own again.
    if index == hv.current {
        hv.current = usize::MAX;
    } else {
        if index < hv.current {
            hv.current -= 1;
        }
        if let Some(current) = hv.domains.get_mut(hv.current) {
            current.traps.exit.gdt_dirty = true;
            current.traps.exit.ldt_dirty = true;
            current.traps.exit.debugreg_dirty = true;
        }
    }
    if !hv.domains.is_empty() {
        hv_result!("event=teardown domid={domid} frames_still_owned={still_owned} frames_still_referenced={}", leftovers.still_referenced);
        return;
    }
    // What the domains did not give back. Their frames are all free again only if no
    // reference or type outlived them; the heap only if nothing of theirs was kept.
    // The list's buffer was allocated after the baseline was taken.
    hv.domains.shrink_to_fit();
    let before = hv.before_domains;
    let frames_leaked = before.free_frames as i64 - hv.free_frames.free_frames() as i64;
    let heap_leaked = HEAP.lock().used() as i64 - before.heap_bytes as i64;
    hv_result!("event=teardown domid={domid} frames_leaked={frames_leaked} frames_still_owned={still_owned} heap_bytes_leaked={heap_leaked}");
    hv_println!("no domain left");
    let code = if hv.any_crashed { ExitCode::DomainCrash } else { exit_code_for(last_state) };
    exit(code)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    // The panic may have happened with the console lock held: do not take it.
    serial::write_emergency(format_args!("(hv) PANIC: {info}\n(hv) RESULT event=exit code={}\n", ExitCode::HypervisorPanic.name()));
    cpu::exit_qemu(ExitCode::HypervisorPanic)
}
