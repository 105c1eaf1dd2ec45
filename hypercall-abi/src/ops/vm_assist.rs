//! `vm_assist(cmd, type)` (xen.h VMASST_*).

pub const VMASST_CMD_ENABLE: u32 = 0;
pub const VMASST_CMD_DISABLE: u32 = 1;

pub const VMASST_TYPE_4GB_SEGMENTS: u32 = 0;
pub const VMASST_TYPE_4GB_SEGMENTS_NOTIFY: u32 = 1;
pub const VMASST_TYPE_WRITABLE_PAGETABLES: u32 = 2;
pub const VMASST_TYPE_PAE_EXTENDED_CR3: u32 = 3;
/// Virtual IOPL follows the guest's own iret frames and shows in its bounce frames.
pub const VMASST_TYPE_ARCHITECTURAL_IOPL: u32 = 4;
/// x86-64: hide the M2P table from guest user mode strictly (xen.h): L4s are created
/// with it and lose it when used as user base pointers (without the assist they are
/// created without it and gain it when used as kernel ones).
pub const VMASST_TYPE_M2P_STRICT: u32 = 32;
