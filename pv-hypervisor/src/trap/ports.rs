//! I/O ports a guest reaches with `in`/`out` once its virtual IOPL allows them: dom0
//! the machine's, except the hypervisor's own (PIC, PIT, ELCR, the serial port it
//! prints on, QEMU's debug-exit port), with PCI configuration mechanism #1
//! (0xcf8/0xcfc) emulated on a latched address, as Xen does for dom0; any other domain
//! none. A port nobody may reach reads as all ones (an empty bus) and ignores writes.

use super::decode::OperandSize;

/// The machine's ports, as `arch` reaches them (a fake in host tests).
pub trait PortIo {
    fn read(&mut self, port: u16, size: OperandSize) -> u32;
    fn write(&mut self, port: u16, size: OperandSize, value: u32);
}

/// The hypervisor's own ports: never a guest's.
const HYPERVISOR_PORTS: [(u16, u16); 6] = [
    (0x20, 0x21),   // master PIC
    (0xa0, 0xa1),   // slave PIC
    (0x40, 0x43),   // PIT
    (0x4d0, 0x4d1), // ELCR
    (0x3f8, 0x3ff), // COM1, the hypervisor's console
    (0xf4, 0xf7),   // QEMU's isa-debug-exit: how the hypervisor stops the machine
];
pub const PCI_CONFIG_ADDRESS: u16 = 0xcf8;
const PCI_CONFIG_DATA: u16 = 0xcfc;
const PCI_ENABLE: u32 = 1 << 31;

pub fn bytes(size: OperandSize) -> u16 {
    match size {
        OperandSize::Byte => 1,
        OperandSize::Word => 2,
        OperandSize::Dword => 4,
    }
}

pub fn all_ones(size: OperandSize) -> u32 {
    match size {
        OperandSize::Byte => 0xff,
        OperandSize::Word => 0xffff,
        OperandSize::Dword => 0xffff_ffff,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Denied,
    Direct,
    ConfigAddress,
    ConfigData,
}

fn route(privileged: bool, port: u16, size: OperandSize) -> Route {
    let last = port.saturating_add(bytes(size) - 1);
    if !privileged {
        return Route::Denied;
    }
    if port == PCI_CONFIG_ADDRESS && size == OperandSize::Dword {
        return Route::ConfigAddress;
    }
    if (PCI_CONFIG_DATA..=PCI_CONFIG_DATA + 3).contains(&port) && last <= PCI_CONFIG_DATA + 3 {
        return Route::ConfigData;
    }
    // Other accesses touching 0xcf8-0xcfb (a byte at 0xcf9 is the PCI reset register).
    let touches = |(first, end): (u16, u16)| port <= end && last >= first;
    if touches((PCI_CONFIG_ADDRESS, PCI_CONFIG_ADDRESS + 3)) || HYPERVISOR_PORTS.iter().any(|&range| touches(range)) {
        return Route::Denied;
    }
    Route::Direct
}

/// `in`: the value read. `latch` is the domain's PCI configuration address.
pub fn read(ports: &mut dyn PortIo, privileged: bool, latch: u32, port: u16, size: OperandSize) -> u32 {
    match route(privileged, port, size) {
        Route::Denied => all_ones(size),
        Route::Direct => ports.read(port, size),
        Route::ConfigAddress => latch,
        Route::ConfigData if latch & PCI_ENABLE != 0 => {
            ports.write(PCI_CONFIG_ADDRESS, OperandSize::Dword, latch);
            ports.read(port, size)
        }
        Route::ConfigData => all_ones(size),
    }
}

/// `out`: writes `value`; a write to the configuration address only moves the latch.
pub fn write(ports: &mut dyn PortIo, privileged: bool, latch: &mut u32, port: u16, size: OperandSize, value: u32) {
    match route(privileged, port, size) {
        Route::Denied => {}
        Route::Direct => ports.write(port, size, value),
        Route::ConfigAddress => *latch = value,
        Route::ConfigData if *latch & PCI_ENABLE != 0 => {
            ports.write(PCI_CONFIG_ADDRESS, OperandSize::Dword, *latch);
            ports.write(port, size, value);
        }
        Route::ConfigData => {}
    }
}

/// No ports at all: what every access reaches in host tests that do not care.
pub struct NoPorts;

impl PortIo for NoPorts {
    fn read(&mut self, _port: u16, size: OperandSize) -> u32 {
        all_ones(size)
    }
    fn write(&mut self, _port: u16, _size: OperandSize, _value: u32) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// A machine with one PCI device (00:00.0, vendor 0x8086, device 0x1237) and a
    /// log of every access that reached it.
    #[derive(Default)]
    struct Machine {
        address: u32,
        accesses: Vec<(char, u16, u32)>,
    }

    impl PortIo for Machine {
        fn read(&mut self, port: u16, size: OperandSize) -> u32 {
            self.accesses.push(('r', port, 0));
            match port {
                0xcfc if self.address == 0x8000_0000 => 0x1237_8086,
                0xcfe if self.address == 0x8000_0000 => 0x1237,
                0x80 => 0x42,
                _ => all_ones(size),
            }
        }
        fn write(&mut self, port: u16, _size: OperandSize, value: u32) {
            if port == 0xcf8 {
                self.address = value;
            }
            self.accesses.push(('w', port, value));
        }
    }

    #[test]
    fn dom0_reads_pci_configuration_through_its_latch() {
        let (mut m, mut latch) = (Machine::default(), 0);
        write(&mut m, true, &mut latch, 0xcf8, OperandSize::Dword, 0x8000_0000);
        assert_eq!(latch, 0x8000_0000);
        assert!(m.accesses.is_empty(), "the latch is ours, not the machine's");
        assert_eq!(read(&mut m, true, latch, 0xcf8, OperandSize::Dword), 0x8000_0000);
        assert_eq!(read(&mut m, true, latch, 0xcfc, OperandSize::Dword), 0x1237_8086);
        assert_eq!(read(&mut m, true, latch, 0xcfe, OperandSize::Word), 0x1237);
        // Without the enable bit the data port reads nothing.
        assert_eq!(read(&mut m, true, 0x0000_0000, 0xcfc, OperandSize::Dword), 0xffff_ffff);
    }

    #[test]
    fn the_hypervisors_ports_and_other_domains_get_nothing() {
        let mut m = Machine::default();
        for (port, size) in [
            (0x21, OperandSize::Byte),
            (0x40, OperandSize::Byte),
            (0x3f8, OperandSize::Byte),
            (0xf4, OperandSize::Dword),
            (0x1f, OperandSize::Word),
            (0xcf9, OperandSize::Byte),
            (0xcfa, OperandSize::Word),
        ] {
            assert_eq!(read(&mut m, true, 0, port, size), all_ones(size), "port {port:#x}");
            write(&mut m, true, &mut 0, port, size, 0);
        }
        assert!(m.accesses.is_empty(), "{:?}", m.accesses);
        assert_eq!(read(&mut m, false, 0x8000_0000, 0x80, OperandSize::Byte), 0xff, "a domU reaches no port");
        assert_eq!(read(&mut m, true, 0, 0x80, OperandSize::Byte), 0x42, "dom0 reaches the others");
    }
}
