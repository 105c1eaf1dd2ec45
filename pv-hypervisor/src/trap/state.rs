//! What a vCPU has told the hypervisor about its own trap handling: the virtual IDT,
//! the callbacks, the kernel stack, and the virtual CPU state a PV kernel owns
//! instead of the real one (CR0.TS, CR2, debug registers, IOPL, segment bases).

use hypercall_abi::ops::callback::{CALLBACKTYPE_EVENT, CALLBACKTYPE_FAILSAFE, CALLBACKTYPE_SYSCALL, CALLBACKTYPE_SYSCALL32, CALLBACKTYPE_SYSENTER};
use hypercall_abi::ops::traps::{TrapInfo, TI_FLAG_DPL_MASK, TI_FLAG_MASK_EVENTS};
use hypercall_abi::ops::vm_assist::VMASST_TYPE_ARCHITECTURAL_IOPL;

/// One entry of the virtual IDT. `address == 0` means "no handler".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrapEntry {
    pub address: u64,
    pub cs: u16,
    pub flags: u8,
}

impl TrapEntry {
    pub fn is_set(&self) -> bool {
        self.address != 0
    }

    /// The lowest ring that may raise this vector with `int n`.
    pub fn dpl(&self) -> u8 {
        self.flags & TI_FLAG_DPL_MASK
    }

    /// An interrupt gate masks events on entry; a trap gate leaves them as they were.
    pub fn masks_events(&self) -> bool {
        self.flags & TI_FLAG_MASK_EVENTS != 0
    }
}

/// A registered callback (callback.h): where to enter, and whether to mask events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Callback {
    pub address: u64,
    pub mask_events: bool,
}

/// The callbacks of callback_op / set_callbacks. `None` is "not registered". The NMI
/// callback is not here: as on Xen it is trap-table entry 2 ([`TrapState::set_nmi_callback`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Callbacks {
    pub event: Option<Callback>,
    pub failsafe: Option<Callback>,
    pub syscall: Option<Callback>,
    pub syscall32: Option<Callback>,
    pub sysenter: Option<Callback>,
}

impl Callbacks {
    /// The slot for a CALLBACKTYPE_* number, or `None` for a type x86_64 does not have.
    pub fn slot(&mut self, callback_type: u16) -> Option<&mut Option<Callback>> {
        Some(match callback_type {
            CALLBACKTYPE_EVENT => &mut self.event,
            CALLBACKTYPE_FAILSAFE => &mut self.failsafe,
            CALLBACKTYPE_SYSCALL => &mut self.syscall,
            CALLBACKTYPE_SYSCALL32 => &mut self.syscall32,
            CALLBACKTYPE_SYSENTER => &mut self.sysenter,
            _ => return None,
        })
    }
}

/// Which half of the guest runs: both are ring 3, told apart by the page table loaded.
/// Kernel is 0: the hypercall path ORs `mode as u8` with another byte into one test.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum GuestMode {
    #[default]
    Kernel = 0,
    User = 1,
}

pub const VECTORS: usize = 256;
pub const VECTOR_NMI: u8 = 2;

/// Per-vCPU trap state. Plain data: the rules that change it live in the sibling modules.
#[derive(Clone, Debug)]
pub struct TrapState {
    /// Boxed: 4 KiB used only by bounces, kept off the pages of the fields every exit
    /// reads (the hypercall path's working set).
    pub table: alloc::boxed::Box<[TrapEntry; VECTORS]>,
    pub callbacks: Callbacks,
    /// From stack_switch: where a bounce from guest user mode puts its frame.
    pub kernel_ss: u16,
    pub kernel_sp: u64,
    /// The page tables and CR0.TS the vCPU runs with: private, changed through the
    /// setters below, which keep `cr3_and_ts` (what the CPU must hold) up to date.
    mode: GuestMode,
    /// Machine address of the kernel's L4 (the domain's CR3; mmuext_op NEW_BASEPTR).
    kernel_l4: u64,
    /// Machine address of the user-mode L4 (mmuext_op NEW_USER_BASEPTR); 0 = none.
    user_l4: u64,
    /// The guest's CR0.TS (fpu_taskswitch): set, its next FPU use raises #NM.
    fpu_ts: bool,
    /// [`TrapState::active_l4`] with `fpu_ts` in bit 0, kept by the setters: every exit
    /// compares it with what the CPU holds, in one load.
    cr3_and_ts: u64,
    /// The guest's view of CR2: the address of its last page fault.
    pub cr2: u64,
    /// DR0-DR7 as the guest set them (DR4/DR5 unused).
    pub debugreg: [u64; 8],
    /// Virtual IOPL (physdev_op set_iopl), 0-3.
    pub iopl: u8,
    /// The PCI configuration address dom0 last wrote to port 0xcf8 (trap::ports).
    pub pci_cf8: u32,
    /// vm_assist bits the guest turned on (1 << VMASST_TYPE_*).
    pub vm_assist: u64,
    pub fs_base: u64,
    pub gs_base_kernel: u64,
    pub gs_base_user: u64,
    /// The mode whose GS base `arch` last loaded (None: not yet).
    pub bases_loaded_for: Option<GuestMode>,
    /// A GS selector to load into the CPU on the way back (set_segment_base
    /// SEGBASE_GS_USER_SEL), when `exit.gs_selector_pending`.
    pub gs_selector: u16,
    /// The frames of the guest's GDT (set_gdt), each typed as descriptors.
    pub gdt_frames: [u64; GDT_FRAMES],
    pub gdt_frame_count: usize,
    /// The guest's LDT (MMUEXT_SET_LDT): where it is in the guest, how many entries,
    /// and the frames mapped for the CPU so far (trap::ldt maps them on first use).
    pub ldt: LdtState,
    /// DS, ES, FS and GS to load before the vCPU runs, when `exit.data_selectors_pending`
    /// (after a domain switch; checked by trap::entry::loadable_data_selectors).
    pub data_selectors: [u16; 4],
    /// The guest's XCR0 (XSETBV, emulated; `arch` loads it when `exit.xcr0_dirty`); and
    /// its virtual CR4.OSXSAVE, without which XSETBV is #UD.
    pub xcr0: u64,
    pub cr4_osxsave: bool,
    /// SCHEDOP_yield: the others go first.
    pub yielded: bool,
    /// The guest is in its NMI handler: a further NMI waits until its `iret`.
    pub nmi_masked: bool,
    /// What the way back to the guest must do first.
    pub exit: ExitWork,
}

/// What the way back to this vCPU must do before it runs, one flag each. The common
/// exit tests all of them as one word (see [`ExitWork::word`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, zerocopy::IntoBytes, zerocopy::Immutable)]
#[repr(C)]
pub struct ExitWork {
    /// SCHEDOP_block or SCHEDOP_poll: the vCPU waits (the hypervisor runs another or
    /// idles) until an event is pending.
    pub blocked: bool,
    /// `gs_selector` is to be loaded into the CPU.
    pub gs_selector_pending: bool,
    /// `data_selectors` are to be loaded into the CPU.
    pub data_selectors_pending: bool,
    /// The LDT changed since `arch` last loaded its descriptor and mappings.
    pub ldt_dirty: bool,
    /// The GDT changed since `arch` last mapped it.
    pub gdt_dirty: bool,
    /// The segment bases changed since `arch` last loaded them into the CPU.
    pub segment_bases_dirty: bool,
    /// The debug registers changed since `arch` last loaded them.
    pub debugreg_dirty: bool,
    /// The guest's XCR0 changed since `arch` last loaded it.
    pub xcr0_dirty: bool,
    /// The timer deadline changed: `arch` arms the hardware timer again.
    pub timer_changed: bool,
    /// Something this vCPU did (an event for a blocked domain, a long hypercall that
    /// stopped early) wants the scheduler to look again on the way out.
    pub reschedule: bool,
    /// VCPUOP_send_nmi or a platform NMI: an NMI waits for the way back to the guest.
    pub nmi_pending: bool,
    /// Room for more flags: the struct is exactly the size of the word `word` reads.
    _spare: [bool; 5],
}

impl ExitWork {
    /// Every flag in one word (two loads): zero when there is nothing to do.
    #[inline(always)]
    pub fn word(&self) -> u128 {
        zerocopy::transmute!(*self)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LdtState {
    pub base: u64,
    pub entries: u32,
    /// Page n of the LDT's machine frame once mapped (typed as descriptors), else 0.
    pub frames: [u64; LDT_PAGES],
}

impl Default for LdtState {
    /// No LDT (ExitWork starts with the LDT dirty: the first time a domain runs, `arch`
    /// clears whatever LDT the CPU had, another domain's, before this one can load a
    /// selector).
    fn default() -> Self {
        LdtState { base: 0, entries: 0, frames: [0; LDT_PAGES] }
    }
}

/// At most 8192 entries of 8 bytes (xen.h MMUEXT_SET_LDT): 16 pages.
pub const LDT_MAX_ENTRIES: u32 = 8192;
pub const LDT_PAGES: usize = (LDT_MAX_ENTRIES as usize * 8) / 4096;

/// A guest GDT has at most 14 frames: the entries from 14 * 512 on are the
/// hypervisor's (arch-x86/xen.h FIRST_RESERVED_GDT_PAGE).
pub const GDT_FRAMES: usize = hypercall_abi::arch_x86_64::FIRST_RESERVED_GDT_PAGE;

/// DR6 and DR7 after reset: their reserved bits read as these (Intel SDM 17.2).
pub const DR6_DEFAULT: u64 = 0xffff_0ff0;
pub const DR7_DEFAULT: u64 = 0x400;

impl Default for TrapState {
    fn default() -> Self {
        TrapState {
            table: alloc::boxed::Box::new([TrapEntry::default(); VECTORS]),
            callbacks: Callbacks::default(),
            kernel_ss: 0,
            kernel_sp: 0,
            mode: GuestMode::Kernel,
            kernel_l4: 0,
            user_l4: 0,
            fpu_ts: false,
            cr3_and_ts: 0,
            cr2: 0,
            debugreg: [0, 0, 0, 0, 0, 0, DR6_DEFAULT, DR7_DEFAULT],
            iopl: 0,
            pci_cf8: 0,
            vm_assist: 0,
            fs_base: 0,
            gs_base_kernel: 0,
            gs_base_user: 0,
            bases_loaded_for: None,
            gs_selector: 0,
            gdt_frames: [0; GDT_FRAMES],
            gdt_frame_count: 0,
            ldt: LdtState::default(),
            data_selectors: [0; 4],
            xcr0: crate::trap::cpuid::XCR0_X87 | crate::trap::cpuid::XCR0_SSE,
            cr4_osxsave: false,
            yielded: false,
            nmi_masked: false,
            // The GDT and LDT windows may still show another domain's frames, and the
            // CPU's XCR0 be another domain's.
            exit: ExitWork { ldt_dirty: true, gdt_dirty: true, xcr0_dirty: true, ..ExitWork::default() },
        }
    }
}

impl TrapState {
    /// A vCPU's state before it first runs: kernel mode on `kernel_l4`.
    pub fn new(kernel_l4: u64) -> TrapState {
        let mut traps = TrapState::default();
        traps.set_kernel_l4(kernel_l4);
        traps
    }

    pub fn mode(&self) -> GuestMode {
        self.mode
    }

    pub fn kernel_l4(&self) -> u64 {
        self.kernel_l4
    }

    pub fn user_l4(&self) -> u64 {
        self.user_l4
    }

    pub fn fpu_ts(&self) -> bool {
        self.fpu_ts
    }

    pub fn set_mode(&mut self, mode: GuestMode) {
        self.mode = mode;
        self.refresh_cr3_and_ts();
    }

    /// `maddr` must be page-aligned (a validated L4's frame).
    pub fn set_kernel_l4(&mut self, maddr: u64) {
        self.kernel_l4 = maddr;
        self.refresh_cr3_and_ts();
    }

    /// `maddr` must be page-aligned, or 0 for none.
    pub fn set_user_l4(&mut self, maddr: u64) {
        self.user_l4 = maddr;
        self.refresh_cr3_and_ts();
    }

    pub fn set_fpu_ts(&mut self, set: bool) {
        self.fpu_ts = set;
        self.refresh_cr3_and_ts();
    }

    /// The L4 the CPU must run on: the kernel's, or in guest user mode the user one.
    pub fn active_l4(&self) -> u64 {
        match self.mode {
            GuestMode::User if self.user_l4 != 0 => self.user_l4,
            _ => self.kernel_l4,
        }
    }

    /// The L4 to run on with CR0.TS in bit 0 (free in a page-aligned address), as
    /// `arch` compares it with what the CPU holds.
    #[inline(always)]
    pub fn cr3_and_ts(&self) -> u64 {
        self.cr3_and_ts
    }

    fn refresh_cr3_and_ts(&mut self) {
        debug_assert!(self.kernel_l4.is_multiple_of(4096) && self.user_l4.is_multiple_of(4096));
        self.cr3_and_ts = self.active_l4() | u64::from(self.fpu_ts);
    }

    /// Applies one set_trap_table entry (the caller stops at the terminator).
    pub fn set_trap(&mut self, info: &TrapInfo) {
        let entry = TrapEntry { address: info.address, cs: info.cs | 3, flags: info.flags };
        self.table[info.vector as usize] = entry;
    }

    /// set_trap_table(NULL): forget every handler.
    pub fn clear_traps(&mut self) {
        *self.table = [TrapEntry::default(); VECTORS];
    }

    /// CALLBACKTYPE_NMI / XENNMI_register_callback: trap-table entry 2, entered on the
    /// kernel code selector with events masked, as Xen 4.17 sets it (so a later
    /// set_trap_table entry for vector 2 replaces it, and unregistering clears both).
    pub fn set_nmi_callback(&mut self, address: u64) {
        let entry = TrapEntry { address, cs: hypercall_abi::arch_x86_64::FLAT_KERNEL_CS64 | 3, flags: TI_FLAG_MASK_EVENTS };
        self.table[VECTOR_NMI as usize] = entry;
    }

    pub fn clear_nmi_callback(&mut self) {
        self.table[VECTOR_NMI as usize] = TrapEntry::default();
    }

    /// Whether an NMI is waiting that the guest can take now (checked on the way out).
    pub fn nmi_deliverable(&self) -> bool {
        self.exit.nmi_pending & !self.nmi_masked
    }

    pub fn trap(&self, vector: u8) -> TrapEntry {
        self.table[vector as usize]
    }

    /// Whether anything `arch` loads only on change (GS selector, GDT, LDT, data
    /// selectors, debug registers, XCR0, segment bases, or the mode whose GS base is loaded)
    /// needs loading.
    #[inline(always)]
    pub fn cpu_state_changed(&self) -> bool {
        self.cpu_state_to_load() != 0
    }

    /// Nonzero when [`TrapState::cpu_state_changed`]: a word the exit path ORs with its
    /// other conditions, to branch once.
    #[inline(always)]
    pub fn cpu_state_to_load(&self) -> u128 {
        self.exit.word() | u128::from(self.bases_loaded_for != Some(self.mode))
    }

    /// VMASST_TYPE_m2p_strict: the M2P table hidden from guest user mode (see
    /// mm::pagetable::M2pSlot).
    pub fn m2p_strict(&self) -> bool {
        self.vm_assist & (1 << hypercall_abi::ops::vm_assist::VMASST_TYPE_M2P_STRICT) != 0
    }

    pub fn architectural_iopl(&self) -> bool {
        self.vm_assist & (1 << VMASST_TYPE_ARCHITECTURAL_IOPL) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setter_keeps_the_wanted_cr3_and_ts_word() {
        let mut t = TrapState::new(0x5000);
        assert_eq!(t.cr3_and_ts(), 0x5000);
        t.set_mode(GuestMode::User);
        assert_eq!(t.cr3_and_ts(), 0x5000, "no user table: user mode runs on the kernel's");
        t.set_user_l4(0x9000);
        assert_eq!(t.cr3_and_ts(), 0x9000);
        t.set_fpu_ts(true);
        assert_eq!(t.cr3_and_ts(), 0x9001);
        t.set_mode(GuestMode::Kernel);
        assert_eq!(t.cr3_and_ts(), 0x5001);
        t.set_kernel_l4(0x7000);
        assert_eq!(t.cr3_and_ts(), 0x7001);
        t.set_fpu_ts(false);
        assert_eq!((t.cr3_and_ts(), t.active_l4()), (0x7000, 0x7000));
    }

    #[test]
    fn exit_work_word_sees_each_flag() {
        assert_eq!(ExitWork::default().word(), 0);
        let flags: [fn(&mut ExitWork) -> &mut bool; 11] = [
            |w| &mut w.blocked,
            |w| &mut w.gs_selector_pending,
            |w| &mut w.data_selectors_pending,
            |w| &mut w.ldt_dirty,
            |w| &mut w.gdt_dirty,
            |w| &mut w.segment_bases_dirty,
            |w| &mut w.debugreg_dirty,
            |w| &mut w.xcr0_dirty,
            |w| &mut w.timer_changed,
            |w| &mut w.reschedule,
            |w| &mut w.nmi_pending,
        ];
        for flag in flags {
            let mut work = ExitWork::default();
            *flag(&mut work) = true;
            assert_ne!(work.word(), 0, "{work:?}");
        }
    }

    #[test]
    fn a_new_vcpu_loads_its_descriptor_tables_and_xcr0_first() {
        let traps = TrapState::default();
        assert!(traps.exit.ldt_dirty && traps.exit.gdt_dirty && traps.exit.xcr0_dirty);
        assert!(traps.cpu_state_changed());
    }
}
