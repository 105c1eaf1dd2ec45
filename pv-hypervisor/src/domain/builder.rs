//! Builds a PV domain from a kernel image the way Xen's PV domain builder lays it out
//! (see `layout`): allocates and zeroes its memory, loads the ELF segments, writes the
//! hypercall page, the p2m list, start_info and the initial page tables, and prepares
//! the vCPU to enter at the kernel's entry point with RSI = start_info.
//!
//! Pure logic over [`MachineMemory`] and a frame source, so the whole build is tested on
//! the host.

use super::elf_image::{AlignedImage, GuestImage, ImageError};
use super::hypercall_page::hypercall_page;
use super::layout::{initial_page_tables, DomainLayout, LayoutError, LayoutInput};
use super::vcpu::GuestRegisters;
use super::{Domain, DomainId, DomainState, DomuRings, COUNTED_HYPERCALLS};
use crate::mm::guest_walk::MachineMemory;
use crate::trap::state::TrapState;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use hypercall_abi::arch_x86_64::{FLAT_RING3_CS64, FLAT_RING3_SS64};
use hypercall_abi::features::{feature_from_name, XENFEAT_DOM0, XENFEAT_PAE_PGDIR_ABOVE_4GB, XENFEAT_WRITABLE_PAGE_TABLES};
use hypercall_abi::shared_info::SharedInfo;
use hypercall_abi::start_info::{StartInfo, SIF_INITDOMAIN, SIF_MOD_START_PFN, SIF_PRIVILEGED};
use zerocopy::{FromZeros, IntoBytes};

const PAGE: u64 = 4096;
/// The L4 slots the hypervisor owns in every address space (256-271).
pub const HYPERVISOR_L4_SLOTS: core::ops::Range<usize> = 256..272;

pub struct DomainSpec<'a> {
    pub id: DomainId,
    pub name: &'a str,
    pub kernel: &'a [u8],
    pub cmdline: &'a [u8],
    pub nr_pages: u64,
    pub privileged: bool,
    /// The initial ramdisk (empty: none), placed after the kernel and named in
    /// start_info's mod_start/mod_len.
    pub module: &'a [u8],
}

#[derive(Debug)]
pub enum BuildError {
    Image(ImageError),
    Layout(LayoutError),
    /// Not enough free machine frames for the domain's memory.
    OutOfMemory {
        needed: u64,
    },
    /// The image's hypercall page is not inside the initial mapping.
    HypercallPageUnmapped(u64),
    /// The command line does not fit start_info (1024 bytes with the NUL).
    CommandLineTooLong(usize),
    /// The hypervisor heap cannot hold the list of the domain's frames.
    HeapExhausted {
        pages: u64,
    },
    /// Writing the domain's memory failed: the frame source gave a frame the memory
    /// accessor refuses (a hypervisor bug, reported rather than panicking).
    MemoryWrite(u64),
    /// The kernel's FEATURES note requires ('!') a feature we do not offer this domain.
    UnsupportedFeature(String),
    /// Built as dom0, the kernel's SUPPORTED_FEATURES note does not list XENFEAT_dom0.
    NotADom0Kernel,
    /// A domU's xenstore or console event channel could not be allocated.
    EventChannel(hypercall_abi::Errno),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Image(e) => write!(f, "{e}"),
            BuildError::Layout(e) => write!(f, "{e}"),
            BuildError::OutOfMemory { needed } => write!(f, "not enough free memory: needs {needed} pages"),
            BuildError::HeapExhausted { pages } => write!(f, "the hypervisor heap cannot hold the frame list of {pages} pages"),
            BuildError::HypercallPageUnmapped(va) => write!(f, "hypercall page {va:#x} is outside the initial mapping"),
            BuildError::CommandLineTooLong(len) => write!(f, "command line of {len} bytes does not fit start_info (max 1023)"),
            BuildError::MemoryWrite(maddr) => write!(f, "cannot write machine address {maddr:#x}"),
            BuildError::UnsupportedFeature(name) => write!(f, "the kernel requires feature '{name}', which this hypervisor does not offer"),
            BuildError::EventChannel(e) => write!(f, "cannot allocate the xenstore or console event channel ({e:?})"),
            BuildError::NotADom0Kernel => {
                write!(f, "the kernel does not support dom0 operation (its SUPPORTED_FEATURES note lacks XENFEAT_dom0)")
            }
        }
    }
}

/// Writes into the domain by guest virtual address inside its initial mapping.
struct DomainWriter<'a, M: MachineMemory> {
    memory: &'a mut M,
    layout: &'a DomainLayout,
    p2m: &'a [u64],
}

impl<M: MachineMemory> DomainWriter<'_, M> {
    fn write(&mut self, mut va: u64, mut bytes: &[u8]) -> Result<(), BuildError> {
        while !bytes.is_empty() {
            let pfn = self.layout.pfn_of(va).ok_or(BuildError::MemoryWrite(va))?;
            let mfn = *self.p2m.get(pfn as usize).ok_or(BuildError::MemoryWrite(va))?;
            let offset = va % PAGE;
            let len = ((PAGE - offset) as usize).min(bytes.len());
            let maddr = mfn * PAGE + offset;
            self.memory.write_bytes(maddr, &bytes[..len]).ok_or(BuildError::MemoryWrite(maddr))?;
            bytes = &bytes[len..];
            va += len as u64;
        }
        Ok(())
    }
}

fn zero_frame<M: MachineMemory>(memory: &mut M, mfn: u64) -> Result<(), BuildError> {
    const ZEROS: [u8; PAGE as usize] = [0; PAGE as usize];
    memory.write_bytes(mfn * PAGE, &ZEROS).ok_or(BuildError::MemoryWrite(mfn * PAGE))
}

/// The features (features.h) a kernel may require with '!' in its FEATURES note and
/// get: writable page tables (trap::ptwr), page directories above 4 GiB (we never limit
/// where frames come from), and dom0 operation for the initial domain.
fn offered_features(privileged: bool) -> u32 {
    let mut offered = (1 << XENFEAT_WRITABLE_PAGE_TABLES) | (1 << XENFEAT_PAE_PGDIR_ABOVE_4GB);
    if privileged {
        offered |= 1 << XENFEAT_DOM0;
    }
    offered
}

/// Refuses a kernel that requires a feature we do not offer, or one whose name we do
/// not know, naming the first such; features it merely supports need nothing.
fn check_required_features(features: &str, privileged: bool) -> Result<(), BuildError> {
    let offered = offered_features(privileged);
    for name in features.split('|').filter_map(|f| f.strip_prefix('!')) {
        if feature_from_name(name).is_none_or(|bit| offered & (1 << bit) == 0) {
            return Err(BuildError::UnsupportedFeature(String::from(name)));
        }
    }
    Ok(())
}

/// A kernel with a SUPPORTED_FEATURES note must list XENFEAT_dom0 in it (or "dom0" in
/// its FEATURES string) to be dom0, as Xen 4.17's dom0 builder demands ("Kernel does not
/// support Dom0 operation"); one without the note is taken, as Xen takes it.
fn declares_dom0_support(notes: &crate::domain::elf_image::XenNotes<'_>) -> bool {
    let in_string = notes.features.unwrap_or("").split('|').any(|f| f.trim_start_matches('!') == "dom0");
    !notes.has_supported_features_note || notes.supported_features & (1 << hypercall_abi::features::XENFEAT_DOM0) != 0 || in_string
}

/// Builds the domain. `hypervisor_l4` holds the hypervisor's L4 entries, of which the
/// reserved slots are copied into the guest's L4. On failure, the frames taken so far are
/// handed back through `release`.
pub fn build_domain<M: MachineMemory>(
    spec: &DomainSpec<'_>,
    memory: &mut M,
    alloc_frame: &mut dyn FnMut() -> Option<u64>,
    release: &mut dyn FnMut(u64),
    hypervisor_l4: &[u64; 512],
) -> Result<Domain, BuildError> {
    let aligned = AlignedImage::new(spec.kernel).map_err(BuildError::Image)?;
    let image = GuestImage::parse(aligned.bytes()).map_err(BuildError::Image)?;
    check_required_features(image.notes.features.unwrap_or(""), spec.privileged)?;
    if spec.privileged && !declares_dom0_support(&image.notes) {
        return Err(BuildError::NotADom0Kernel);
    }
    let layout = DomainLayout::compute(&LayoutInput {
        virt_base: image.virt_base,
        virt_kstart: image.virt_kstart,
        virt_kend: image.virt_kend,
        nr_pages: spec.nr_pages,
        module_len: spec.module.len() as u64,
        p2m_at: image.notes.init_p2m,
        toolstack_pages: !spec.privileged,
    })
    .map_err(BuildError::Layout)?;
    if spec.cmdline.len() >= 1024 {
        return Err(BuildError::CommandLineTooLong(spec.cmdline.len()));
    }

    let mut frames: Vec<u64> = Vec::new();
    let count = usize::try_from(spec.nr_pages + 1).map_err(|_| BuildError::HeapExhausted { pages: spec.nr_pages })?;
    frames.try_reserve_exact(count).map_err(|_| BuildError::HeapExhausted { pages: spec.nr_pages })?;
    let result = (|| {
        for _ in 0..spec.nr_pages + 1 {
            let mfn = alloc_frame().ok_or(BuildError::OutOfMemory { needed: spec.nr_pages + 1 })?;
            frames.push(mfn);
            zero_frame(memory, mfn)?;
        }
        let shared_info_mfn = frames[spec.nr_pages as usize];
        let p2m = &frames[..spec.nr_pages as usize];
        populate(spec, memory, &image, &layout, p2m, shared_info_mfn, hypervisor_l4)
    })();
    match result {
        Ok(mut domain) => {
            frames.truncate(spec.nr_pages as usize);
            domain.p2m = frames;
            Ok(domain)
        }
        Err(e) => {
            frames.into_iter().for_each(release);
            Err(e)
        }
    }
}

fn populate<M: MachineMemory>(
    spec: &DomainSpec<'_>,
    memory: &mut M,
    image: &GuestImage<'_>,
    layout: &DomainLayout,
    p2m: &[u64],
    shared_info_mfn: u64,
    hypervisor_l4: &[u64; 512],
) -> Result<Domain, BuildError> {
    let mut writer = DomainWriter { memory: &mut *memory, layout, p2m };
    for segment in image.segments() {
        writer.write(segment.dest_vaddr, segment.file_bytes)?;
    }
    if let Some(va) = image.hypercall_page {
        layout.pfn_of(va).ok_or(BuildError::HypercallPageUnmapped(va))?;
        writer.write(va, &hypercall_page())?;
    }
    // A page of entries at a time: no second copy of the list on the heap.
    let mut page = [0u8; PAGE as usize];
    for (i, chunk) in p2m.chunks(PAGE as usize / 8).enumerate() {
        for (bytes, mfn) in page.chunks_exact_mut(8).zip(chunk) {
            bytes.copy_from_slice(&mfn.to_le_bytes());
        }
        writer.write(layout.p2m.start + i as u64 * PAGE, &page[..chunk.len() * 8])?;
    }

    writer.write(layout.module.start, spec.module)?;

    let mut start_info = StartInfo::new_zeroed();
    start_info.magic[..StartInfo::MAGIC.len()].copy_from_slice(StartInfo::MAGIC);
    start_info.nr_pages = spec.nr_pages;
    start_info.shared_info = shared_info_mfn * PAGE;
    start_info.flags = if spec.privileged { SIF_PRIVILEGED | SIF_INITDOMAIN } else { 0 };
    start_info.pt_base = layout.page_tables.start;
    start_info.nr_pt_frames = layout.nr_pt_frames;
    start_info.mfn_list = layout.p2m.start;
    if let Some(first) = layout.p2m_first_pfn {
        // INIT_P2M: the list's own frames, which the kernel must not reuse.
        start_info.first_p2m_pfn = first;
        start_info.nr_p2m_frames = (layout.p2m.end - layout.p2m.start) / PAGE;
    }
    start_info.cmd_line[..spec.cmdline.len()].copy_from_slice(spec.cmdline);
    if !spec.module.is_empty() {
        // A virtual address, or (MOD_START_PFN note) the guest frame number of its start.
        start_info.mod_len = spec.module.len() as u64;
        start_info.mod_start = if image.notes.mod_start_pfn {
            start_info.flags |= SIF_MOD_START_PFN;
            layout.pfn_of(layout.module.start).ok_or(BuildError::MemoryWrite(layout.module.start))?
        } else {
            layout.module.start
        };
    }
    // A domU's xenstore and console: zeroed pages and unbound ports for dom0 to bind,
    // store first (libxl allocates them in that order, so they are ports 1 and 2).
    let mut events = crate::evtchn::EventChannels::new(spec.id);
    let rings = if layout.console.is_empty() {
        None
    } else {
        let mfn = |va: u64| layout.pfn_of(va).and_then(|pfn| p2m.get(pfn as usize).copied()).ok_or(BuildError::MemoryWrite(va));
        let store_port = events.alloc_unbound(spec.id, 0).map_err(BuildError::EventChannel)?;
        let console_port = events.alloc_unbound(spec.id, 0).map_err(BuildError::EventChannel)?;
        Some(DomuRings { store_mfn: mfn(layout.xenstore.start)?, store_port, console_mfn: mfn(layout.console.start)?, console_port })
    };
    if let Some(rings) = rings {
        start_info.store_mfn = rings.store_mfn;
        start_info.store_evtchn = rings.store_port;
        start_info.set_domu_console(rings.console_mfn, rings.console_port);
    }
    writer.write(layout.start_info.start, start_info.as_bytes())?;

    let mut pt_error = None;
    initial_page_tables(
        layout,
        |pfn| p2m.get(pfn as usize).copied().unwrap_or(0),
        |w| {
            let Some(&table_mfn) = p2m.get(w.table_pfn as usize) else {
                pt_error = Some(BuildError::MemoryWrite(w.table_pfn));
                return;
            };
            let maddr = table_mfn * PAGE + w.index as u64 * 8;
            if memory.write_bytes(maddr, &w.value.to_le_bytes()).is_none() {
                pt_error = Some(BuildError::MemoryWrite(maddr));
            }
        },
    );
    if let Some(e) = pt_error {
        return Err(e);
    }
    let l4_pfn = layout.pfn_of(layout.page_tables.start).ok_or(BuildError::MemoryWrite(layout.page_tables.start))?;
    let l4_maddr = p2m[l4_pfn as usize] * PAGE;
    for slot in HYPERVISOR_L4_SLOTS {
        let maddr = l4_maddr + slot as u64 * 8;
        memory.write_bytes(maddr, &hypervisor_l4[slot].to_le_bytes()).ok_or(BuildError::MemoryWrite(maddr))?;
    }

    let mut shared_info = SharedInfo::new_zeroed();
    // Events stay masked until the guest is ready for upcalls (Xen enters the same way).
    shared_info.vcpu_info[0].evtchn_upcall_mask = 1;
    shared_info.arch.max_pfn = spec.nr_pages;
    memory.write_bytes(shared_info_mfn * PAGE, shared_info.as_bytes()).ok_or(BuildError::MemoryWrite(shared_info_mfn * PAGE))?;

    let vcpu = GuestRegisters {
        rip: image.virt_entry,
        rsp: layout.boot_stack.end,
        rsi: layout.start_info.start,
        cs: FLAT_RING3_CS64 as u64,
        ss: FLAT_RING3_SS64 as u64,
        rflags: 0x202, // IF set; the virtual interrupt flag (upcall mask) is what masks events
        ..Default::default()
    };
    Ok(Domain {
        id: spec.id,
        name: String::from(spec.name),
        privileged: spec.privileged,
        state: DomainState::Running,
        p2m: Vec::new(),
        // dom0 may balloon up as far as free memory goes: Xen 4.17 gives it UINT_MAX
        // unless dom0_mem names a max: (seen by `memory`). Others get their size.
        max_pages: if spec.privileged { u64::from(u32::MAX) } else { spec.nr_pages },
        tot_pages: spec.nr_pages,
        shared_info_mfn,
        vcpu,
        traps: TrapState::new(l4_maddr),
        hypercall_counts: [0; COUNTED_HYPERCALLS + 1],
        hypercall_cycles: [0; COUNTED_HYPERCALLS],
        hypercalls_traced: false,
        crash_reason: None,
        console: Default::default(),
        events,
        rings,
        timer_deadline: None,
        periodic_timer: None,
        periodic_last_event: 0,
        sched: Default::default(),
        sched_state: Default::default(),
        fpu: Default::default(),
        data_selectors: [0; 4],
        poll: None,
        shutdown_code: None,
        watchdogs: [None; hypercall_abi::ops::sched_op::WATCHDOGS_PER_DOMAIN],
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::elf_image::tests::valid_kernel;
    use crate::mm::guest_walk::{read_guest, translate, Access};
    use crate::mm::test_memory::SparseMemory as Frames;

    pub(crate) fn build(nr_pages: u64, free_frames: u64) -> (Result<Domain, BuildError>, Frames, Vec<u64>) {
        build_with_module(nr_pages, free_frames, b"")
    }

    fn build_with_module(nr_pages: u64, free_frames: u64, module: &[u8]) -> (Result<Domain, BuildError>, Frames, Vec<u64>) {
        build_as(true, nr_pages, free_frames, module)
    }

    fn build_as(privileged: bool, nr_pages: u64, free_frames: u64, module: &[u8]) -> (Result<Domain, BuildError>, Frames, Vec<u64>) {
        let kernel = valid_kernel();
        let id = u16::from(!privileged);
        let spec = DomainSpec { id, name: "d", kernel: &kernel, cmdline: b"hello", nr_pages, privileged, module };
        let mut memory = Frames::default();
        // Machine frames handed out in a scrambled order, starting at 0x1000.
        let mut pool: Vec<u64> = (0..free_frames).map(|i| 0x1000 + (i * 7919) % free_frames).collect();
        pool.reverse();
        for &f in &pool {
            memory.add_frame(f, 0xaa);
        }
        let mut released = Vec::new();
        let mut hv_l4 = [0u64; 512];
        hv_l4[262] = 0xdead_0003;
        let result = build_domain(&spec, &mut memory, &mut || pool.pop(), &mut |mfn| released.push(mfn), &hv_l4);
        (result, memory, released)
    }

    #[test]
    fn an_initrd_follows_the_kernel_and_start_info_names_it() {
        let ramdisk: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let (domain, memory, _) = build_with_module(2048, 4096, &ramdisk);
        let domain = domain.unwrap();
        let l4 = domain.l4_maddr();
        let info: StartInfo = read_guest(&memory, l4, domain.vcpu.rsi).unwrap();
        assert_eq!(info.mod_len, 10_000);
        assert_eq!(info.flags & SIF_MOD_START_PFN, 0, "a virtual address: the kernel has no MOD_START_PFN note");
        for offset in [0u64, 4095, 4096, 9_999] {
            let byte: u8 = read_guest(&memory, l4, info.mod_start + offset).unwrap();
            assert_eq!(byte, ramdisk[offset as usize], "byte {offset}");
        }
        assert!(info.mod_start + info.mod_len <= info.mfn_list, "before the p2m list");
    }

    /// A domU gets what Xen's toolstack gives one: zeroed xenstore and console pages
    /// after start_info, named by their machine frames, and ports 1 (store) and 2
    /// (console) unbound with dom0 as the remote end. dom0 gets neither.
    #[test]
    fn a_domu_gets_xenstore_and_console_rings() {
        let (domain, memory, _) = build_as(false, 2048, 4096, b"");
        let domain = domain.unwrap();
        let info: StartInfo = read_guest(&memory, domain.l4_maddr(), domain.vcpu.rsi).unwrap();
        let (console_mfn, console_port) = info.domu_console();
        assert_eq!((info.store_evtchn, console_port), (1, 2));
        let page_after = |va: u64| translate(&memory, domain.l4_maddr(), va + 4096, Access::Read).unwrap() / 4096;
        assert_eq!(info.store_mfn, page_after(domain.vcpu.rsi), "the page after start_info");
        assert_eq!(console_mfn, page_after(domain.vcpu.rsi + 4096));
        for mfn in [info.store_mfn, console_mfn] {
            assert!((0..512).all(|i| memory.read_u64(mfn * 4096 + i * 8) == Some(0)), "zeroed");
        }
        for port in [1, 2] {
            assert_eq!(domain.events.binding(port), Some(crate::evtchn::Binding::Unbound { remote: 0 }));
        }
        assert_eq!(domain.rings, Some(DomuRings { store_mfn: info.store_mfn, store_port: 1, console_mfn, console_port: 2 }));
        let (dom0, memory, _) = build(2048, 4096);
        let dom0 = dom0.unwrap();
        let info: StartInfo = read_guest(&memory, dom0.l4_maddr(), dom0.vcpu.rsi).unwrap();
        assert_eq!((info.store_mfn, info.store_evtchn, dom0.rings), (0, 0, None));
    }

    #[test]
    fn builds_a_bootable_domain() {
        let (domain, memory, _) = build(2048, 4096);
        let domain = domain.unwrap();
        let l4 = domain.l4_maddr();
        assert_eq!(memory.read_u64(l4 + 262 * 8), Some(0xdead_0003), "hypervisor slot copied");
        assert_eq!(memory.read_u64(l4 + 256 * 8), Some(0));
        // Entry state: RSI -> start_info, whose fields describe the layout.
        let regs = domain.vcpu;
        assert_eq!((regs.rip, regs.cs, regs.ss), (0x100000, 0xe033, 0xe02b));
        let info: StartInfo = read_guest(&memory, l4, regs.rsi).unwrap();
        assert_eq!(info.magic_bytes(), StartInfo::MAGIC);
        assert_eq!(info.nr_pages, 2048);
        assert_eq!(info.flags, SIF_PRIVILEGED | SIF_INITDOMAIN);
        assert_eq!(info.cmd_line_bytes(), b"hello");
        assert_eq!(info.shared_info, domain.shared_info_mfn * 4096);
        // The p2m list in the guest agrees with the domain's.
        for pfn in [0u64, 1, 255, 2047] {
            let mfn: u64 = read_guest(&memory, l4, info.mfn_list + pfn * 8).unwrap();
            assert_eq!(mfn, domain.p2m[pfn as usize]);
        }
        // The kernel is loaded, its bss and the rest of memory are zeroed, and the
        // hypercall page holds stubs.
        assert_eq!(read_guest::<u8>(&memory, l4, 0x100000), Ok(0x90));
        assert_eq!(read_guest::<u8>(&memory, l4, 0x103fff), Ok(0));
        assert_eq!(read_guest::<[u8; 4]>(&memory, l4, 0x101000 + 18 * 32), Ok([0x51, 0x41, 0x53, 0xb8]));
        // Page tables are mapped but read-only; the boot stack is writable.
        assert!(translate(&memory, l4, info.pt_base, Access::Read).is_ok());
        assert!(translate(&memory, l4, info.pt_base, Access::Write).is_err());
        assert!(translate(&memory, l4, regs.rsp - 8, Access::Write).is_ok());
        assert_eq!(domain.p2m.len(), 2048);
    }

    #[test]
    fn failures_give_every_frame_back() {
        let (result, _, released) = build(2048, 1000);
        assert!(matches!(result, Err(BuildError::OutOfMemory { .. })));
        assert_eq!(released.len(), 1000);
        let (result, _, released) = build(512, 4096);
        assert!(matches!(result, Err(BuildError::Layout(_))), "4 MiB mapping in 2 MiB of memory");
        assert!(released.is_empty());
    }

    #[test]
    fn bad_images_are_refused_before_allocating() {
        let mut memory = Frames::default();
        let spec = DomainSpec { id: 0, name: "d0", kernel: b"not an elf", cmdline: b"", nr_pages: 1024, privileged: true, module: b"" };
        let mut allocated = 0;
        let result = build_domain(
            &spec,
            &mut memory,
            &mut || {
                allocated += 1;
                None
            },
            &mut |_| {},
            &[0; 512],
        );
        assert!(matches!(result, Err(BuildError::Image(_))));
        assert_eq!(allocated, 0);
    }

    #[test]
    fn a_kernel_requiring_what_we_do_not_offer_is_refused_by_name() {
        use crate::domain::elf_image::tests::{elf, Note};
        use hypercall_abi::elfnote::{XEN_ELFNOTE_FEATURES, XEN_ELFNOTE_HYPERCALL_PAGE, XEN_ELFNOTE_LOADER, XEN_ELFNOTE_XEN_VERSION};
        let page = 0x101000u64.to_le_bytes();
        let kernel = |features: &'static [u8]| {
            let notes = [
                Note(XEN_ELFNOTE_XEN_VERSION, b"xen-3.0\0"),
                Note(XEN_ELFNOTE_LOADER, b"generic\0"),
                Note(XEN_ELFNOTE_FEATURES, features),
                Note(XEN_ELFNOTE_HYPERCALL_PAGE, &page),
            ];
            elf(0x100000, &[0x90; 0x3000], 0x1000, &notes)
        };
        let build_with = |features: &'static [u8], privileged: bool| {
            let image = kernel(features);
            let spec = DomainSpec { id: 1, name: "d1", kernel: &image, cmdline: b"", nr_pages: 2048, privileged, module: b"" };
            let mut memory = Frames::default();
            let mut pool: Vec<u64> = (0x1000..0x1000 + 4096).collect();
            for &f in &pool {
                memory.add_frame(f, 0);
            }
            build_domain(&spec, &mut memory, &mut || pool.pop(), &mut |_| {}, &[0; 512]).err().map(|e| std::format!("{e}"))
        };
        // Linux's note: writable page tables required, the rest merely supported.
        assert_eq!(build_with(b"!writable_page_tables|pae_pgdir_above_4gb\0", false), None);
        assert_eq!(build_with(b"writable_descriptor_tables|supervisor_mode_kernel\0", false), None);
        let refused = build_with(b"writable_page_tables|!writable_descriptor_tables\0", true).unwrap();
        assert!(refused.contains("'writable_descriptor_tables'"), "{refused}");
        assert!(build_with(b"!dom0\0", false).unwrap().contains("'dom0'"));
        assert_eq!(build_with(b"!dom0\0", true), None);
        assert!(build_with(b"!no_such_feature\0", true).unwrap().contains("'no_such_feature'"));
    }

    #[test]
    fn a_dom0_kernel_with_a_supported_features_note_must_list_dom0() {
        use crate::domain::elf_image::tests::{elf, standard_notes, Note};
        use hypercall_abi::elfnote::{XEN_ELFNOTE_FEATURES, XEN_ELFNOTE_SUPPORTED_FEATURES};
        let page = 0x101000u64.to_le_bytes();
        let build_with = |supported: u32, features: &'static [u8], privileged: bool| {
            let bits = supported.to_le_bytes();
            let mut notes: Vec<Note<'_>> = standard_notes(&page).into_iter().filter(|n| n.0 != XEN_ELFNOTE_FEATURES).collect();
            notes.push(Note(XEN_ELFNOTE_FEATURES, features));
            notes.push(Note(XEN_ELFNOTE_SUPPORTED_FEATURES, &bits));
            let image = elf(0x100000, &[0x90; 0x3000], 0x1000, &notes);
            let spec = DomainSpec { id: 0, name: "d0", kernel: &image, cmdline: b"", nr_pages: 2048, privileged, module: b"" };
            let mut memory = Frames::default();
            let mut pool: Vec<u64> = (0x1000..0x1000 + 4096).collect();
            for &f in &pool {
                memory.add_frame(f, 0);
            }
            build_domain(&spec, &mut memory, &mut || pool.pop(), &mut |_| {}, &[0; 512]).err().map(|e| std::format!("{e}"))
        };
        let dom0_bit = 1 << hypercall_abi::features::XENFEAT_DOM0;
        assert!(build_with(0, b"writable_page_tables\0", true).unwrap().contains("does not support dom0"));
        assert_eq!(build_with(0, b"writable_page_tables\0", false), None, "a domU need not");
        assert_eq!(build_with(dom0_bit, b"writable_page_tables\0", true), None);
        assert_eq!(build_with(0, b"writable_page_tables|dom0\0", true), None, "the FEATURES string counts too");
    }
}
