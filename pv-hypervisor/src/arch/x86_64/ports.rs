//! The machine's I/O ports, for the `in`/`out` a guest's virtual IOPL lets through
//! (trap::ports decides which ports it reaches).

use crate::trap::decode::OperandSize;
use crate::trap::ports::PortIo;
use x86_64::instructions::port::Port;

pub struct HardwarePorts;

impl PortIo for HardwarePorts {
    fn read(&mut self, port: u16, size: OperandSize) -> u32 {
        // SAFETY: trap::ports only lets through ports that are not the hypervisor's
        // (PIC, PIT, its serial port, the debug-exit port); reading a device port has
        // no effect on the hypervisor's memory.
        unsafe {
            match size {
                OperandSize::Byte => u32::from(Port::<u8>::new(port).read()),
                OperandSize::Word => u32::from(Port::<u16>::new(port).read()),
                OperandSize::Dword => Port::<u32>::new(port).read(),
            }
        }
    }

    fn write(&mut self, port: u16, size: OperandSize, value: u32) {
        // SAFETY: as for reads; dom0 owns the devices behind these ports, as on Xen
        // without an IOMMU.
        unsafe {
            match size {
                OperandSize::Byte => Port::<u8>::new(port).write(value as u8),
                OperandSize::Word => Port::<u16>::new(port).write(value as u16),
                OperandSize::Dword => Port::<u32>::new(port).write(value),
            }
        }
    }
}
