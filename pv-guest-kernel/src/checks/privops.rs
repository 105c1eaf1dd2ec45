//! `privops`: every privileged instruction a PV kernel might execute, with what the
//! hypervisor made of it: an emulated value, or the exception it reflected.

use super::{probe, report, Expect, Tally};
use crate::console::println;
use crate::platform;
use hypercall_abi::start_info::StartInfo;

const MSR_EFER: u64 = 0xC000_0080;
const MSR_APIC_BASE: u64 = 0x1b;

fn gp0() -> Expect {
    Expect::fault(13, 0)
}

/// One check that reports a value when the instruction was emulated.
fn value_check(tally: &mut Tally, check: &str, probed: &super::Probed, expect: &Expect, value: Option<u64>) {
    let pass = report("privops", check, probed, expect);
    if let (None, Some(v)) = (probed.trap, value) {
        println!("RESULT test=privops check={check}_value value={v:#x}");
    }
    tally.add(pass);
}

fn cpuid_checks(tally: &mut Tally) {
    let [eax, ebx, ecx, edx] = platform::xen_cpuid(0x4000_0000, 0);
    let mut signature = [0u8; 12];
    for (chunk, word) in signature.chunks_exact_mut(4).zip([ebx, ecx, edx]) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    let signature = core::str::from_utf8(&signature).unwrap_or("?");
    let pass = signature == "XenVMMXenVMM" && eax >= 0x4000_0002;
    println!("RESULT test=privops check=cpuid_hypervisor_base max_leaf={eax:#x} signature={signature} status={}", pass_fail(pass));
    tally.add(pass);

    let version = platform::xen_cpuid(0x4000_0001, 0)[0];
    let (major, minor) = platform::hypervisor_version();
    let pass = version == (major << 16) | minor;
    println!("RESULT test=privops check=cpuid_hypervisor_version version={version:#x} status={}", pass_fail(pass));
    tally.add(pass);

    let [_, b, c, d] = platform::xen_cpuid(0, 0);
    let mut vendor = [0u8; 12];
    for (chunk, word) in vendor.chunks_exact_mut(4).zip([b, d, c]) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    println!("RESULT test=privops check=cpuid_vendor vendor={}", core::str::from_utf8(&vendor).unwrap_or("?"));

    let leaf1 = platform::xen_cpuid(1, 0);
    let ext1 = platform::xen_cpuid(0x8000_0001, 0);
    let bit = |v: u32, n: u32| (v >> n) & 1;
    let (vmx, monitor, hypervisor, svm) = (bit(leaf1[2], 5), bit(leaf1[2], 3), bit(leaf1[2], 31), bit(ext1[2], 2));
    let pass = vmx == 0 && svm == 0 && monitor == 0 && hypervisor == 1;
    println!(
        "RESULT test=privops check=cpuid_hidden_features vmx={vmx} svm={svm} monitor={monitor} hypervisor={hypervisor} status={}",
        pass_fail(pass)
    );
    tally.add(pass);
}

fn pass_fail(pass: bool) -> &'static str {
    if pass {
        "pass"
    } else {
        "fail"
    }
}

pub fn run(info: &StartInfo) {
    let mut tally = Tally::new("privops");
    let installed = crate::traps::install();
    if installed != 0 {
        println!("RESULT test=privops check=set_trap_table ret={installed} status=fail");
        tally.add(false);
        tally.finish();
        return;
    }
    cpuid_checks(&mut tally);

    // Control registers: CR0 and CR4 as the hypervisor shows them, CR2 after a fault,
    // CR3 = the machine address of the running L4.
    let p = probe!("", "mov rax, cr0");
    value_check(&mut tally, "read_cr0", &p, &Expect::none(), Some(p.rax));
    let p = probe!("", "mov rax, qword ptr [rdi]", 0x0000_7fff_dead_0000u64, 0u64);
    let fault_cr2 = p.trap.map_or(0, |t| t.cr2);
    let p = probe!("", "mov rax, cr2");
    let pass = report("privops", "read_cr2", &p, &Expect::none()) && p.rax == fault_cr2 && fault_cr2 != 0;
    println!("RESULT test=privops check=read_cr2_is_last_fault matches={} status={}", u8::from(p.rax == fault_cr2), pass_fail(pass));
    tally.add(pass);
    let p = probe!("", "mov rax, cr3");
    let l4_pfn = (info.pt_base - platform::virt_base()) >> 12;
    let l4_mfn = platform::pfn_to_mfn(info, l4_pfn);
    let pass = report("privops", "read_cr3", &p, &Expect::none()) && Some(p.rax >> 12) == l4_mfn;
    println!("RESULT test=privops check=read_cr3_is_l4 matches={} status={}", u8::from(Some(p.rax >> 12) == l4_mfn), pass_fail(pass));
    tally.add(pass);
    let p = probe!("", "mov rax, cr4");
    value_check(&mut tally, "read_cr4", &p, &Expect::none(), Some(p.rax));
    let p = probe!("mov rax, cr0\nand rax, ~(1 << 16)", "mov cr0, rax");
    tally.add(report("privops", "write_cr0_wp", &p, &gp0()));
    let p = probe!("", "clts");
    tally.add(report("privops", "clts", &p, &Expect::none()));

    // MSRs: FS_BASE round trip (and the base really used), EFER readable, the rest #GP.
    static FS_TARGET: u64 = 0x5a5a_1234_8765_a5a5;
    let target = core::ptr::addr_of!(FS_TARGET) as u64;
    let p = probe!("mov ecx, 0xC0000100\nmov rax, rdi\nmov rdx, rdi\nshr rdx, 32", "wrmsr", target, 0u64);
    tally.add(report("privops", "wrmsr_fs_base", &p, &Expect::none()));
    let p = probe!("mov ecx, 0xC0000100", "rdmsr");
    let read_back = (p.rdx << 32) | (p.rax & 0xffff_ffff);
    let pass = report("privops", "rdmsr_fs_base", &p, &Expect::none()) && read_back == target;
    println!("RESULT test=privops check=rdmsr_fs_base_round_trip matches={} status={}", u8::from(read_back == target), pass_fail(pass));
    tally.add(pass);
    let p = probe!("", "mov rax, qword ptr fs:[0]");
    let pass = report("privops", "fs_base_in_use", &p, &Expect::none()) && p.rax == FS_TARGET;
    println!("RESULT test=privops check=fs_base_loaded matches={} status={}", u8::from(p.rax == FS_TARGET), pass_fail(pass));
    tally.add(pass);
    let p = probe!("mov rcx, rdi", "rdmsr", MSR_EFER, 0u64);
    value_check(&mut tally, "rdmsr_efer", &p, &Expect::none(), Some((p.rdx << 32) | (p.rax & 0xffff_ffff)));
    // Writing back the value just read is accepted (and changes nothing); flipping a
    // bit (NXE) is refused.
    let p = probe!("mov rcx, rdi\nrdmsr", "wrmsr", MSR_EFER, 0u64);
    tally.add(report("privops", "wrmsr_efer_same_value", &p, &Expect::none()));
    let p = probe!("mov rcx, rdi\nrdmsr\nxor eax, 0x800", "wrmsr", MSR_EFER, 0u64);
    tally.add(report("privops", "wrmsr_efer_changed", &p, &gp0()));
    let p = probe!("mov rcx, rdi", "rdmsr", MSR_APIC_BASE, 0u64);
    value_check(&mut tally, "rdmsr_apic_base", &p, &Expect::none(), Some((p.rdx << 32) | (p.rax & 0xffff_ffff)));
    let p = probe!("mov ecx, 0xC0000082", "rdmsr");
    tally.add(report("privops", "rdmsr_lstar", &p, &gp0()));

    // I/O and the interrupt flag under the default virtual IOPL (0): #GP.
    for (check, p) in [
        ("cli", probe!("", "cli")),
        ("sti", probe!("", "sti")),
        ("in_port_0x80", probe!("", "in al, 0x80")),
        ("out_port_0x80", probe!("", "out 0x80, al")),
        ("hlt", probe!("", "hlt")),
        ("lgdt", probe!("", "lgdt [rsp]")),
        ("invlpg", probe!("", "invlpg [rsp]")),
    ] {
        tally.add(report("privops", check, &p, &gp0()));
    }
    // Descriptor-table and machine-status stores: Xen 4.17 does not use UMIP for PV
    // guests, so they complete there (showing Xen's own values).
    static mut TABLE_REGISTER: [u8; 16] = [0; 16];
    let store = core::ptr::addr_of_mut!(TABLE_REGISTER) as u64;
    let p = probe!("", "sgdt [rdi]", store, 0u64);
    // SAFETY: the probe's store is done (or faulted); nothing else writes TABLE_REGISTER.
    let gdt_limit = u16::from_le_bytes(unsafe { [(*core::ptr::addr_of!(TABLE_REGISTER))[0], (*core::ptr::addr_of!(TABLE_REGISTER))[1]] });
    value_check(&mut tally, "sgdt", &p, &Expect::none(), Some(u64::from(gdt_limit)));
    let p = probe!("", "sidt [rdi]", store, 0u64);
    // SAFETY: as for sgdt.
    let idt_limit = u16::from_le_bytes(unsafe { [(*core::ptr::addr_of!(TABLE_REGISTER))[0], (*core::ptr::addr_of!(TABLE_REGISTER))[1]] });
    value_check(&mut tally, "sidt", &p, &Expect::none(), Some(u64::from(idt_limit)));
    let p = probe!("xor eax, eax", "sldt ax");
    value_check(&mut tally, "sldt", &p, &Expect::none(), Some(p.rax & 0xffff));
    let p = probe!("xor eax, eax", "str ax");
    value_check(&mut tally, "str", &p, &Expect::none(), Some(p.rax & 0xffff));
    let p = probe!("xor eax, eax", "smsw eax");
    value_check(&mut tally, "smsw", &p, &Expect::none(), Some(p.rax & 0xffff));
    // With a virtual IOPL of 1 the kernel (ring 1 in Xen's model) may run cli, sti, in
    // and out: cli/sti do nothing, in reads what the port gives.
    let iopl = hypercall_abi::ops::physdev::PhysdevSetIopl { iopl: 1 };
    // SAFETY: a readable PhysdevSetIopl.
    let ret = unsafe { hypercall_abi::guest::calls::physdev_op(6, hypercall_abi::GuestHandle::from_ref(&iopl)) };
    println!("RESULT test=privops check=physdev_set_iopl_1 ret={ret} status={}", pass_fail(ret == 0));
    tally.add(ret == 0);
    for (check, p) in [("cli_iopl1", probe!("", "cli")), ("sti_iopl1", probe!("", "sti")), ("out_port_0x80_iopl1", probe!("", "out 0x80, al"))] {
        tally.add(report("privops", check, &p, &Expect::none()));
    }
    // dom0 reaches PCI configuration space through 0xcf8/0xcfc (Xen emulates it for
    // dom0 on a latched address): the id of QEMU's host bridge, 00:00.0.
    let p = probe!("mov eax, 0x80000000\n mov dx, 0xcf8\n out dx, eax\n mov dx, 0xcfc", "in eax, dx");
    value_check(&mut tally, "pci_config_00_0_id", &p, &Expect::none(), Some(p.rax & 0xffff_ffff));
    // A device that is not there reads as all ones (00:1f.0 on the pc machine).
    let p = probe!("mov eax, 0x8000f800\n mov dx, 0xcf8\n out dx, eax\n mov dx, 0xcfc", "in eax, dx");
    value_check(&mut tally, "pci_config_absent_device", &p, &Expect::none(), Some(p.rax & 0xffff_ffff));
    // The PIC's mask register is the hypervisor's port: dom0 reads an empty bus.
    let p = probe!("mov eax, 0x12345678", "in al, 0x21");
    value_check(&mut tally, "in_pic_port", &p, &Expect::none(), Some(p.rax & 0xffff_ffff));
    let bad = hypercall_abi::ops::physdev::PhysdevSetIopl { iopl: 4 };
    // SAFETY: as above.
    let ret = unsafe { hypercall_abi::guest::calls::physdev_op(6, hypercall_abi::GuestHandle::from_ref(&bad)) };
    println!("RESULT test=privops check=physdev_set_iopl_4 ret={ret} status={}", pass_fail(ret == -22));
    tally.add(ret == -22);
    let zero = hypercall_abi::ops::physdev::PhysdevSetIopl { iopl: 0 };
    // SAFETY: as above.
    unsafe { hypercall_abi::guest::calls::physdev_op(6, hypercall_abi::GuestHandle::from_ref(&zero)) };
    let p = probe!("", "mov rax, dr7");
    value_check(&mut tally, "read_dr7", &p, &Expect::none(), Some(p.rax));
    let p = probe!("", "rdtsc");
    tally.add(report("privops", "rdtsc", &p, &Expect::none()));

    tally.finish();
}
