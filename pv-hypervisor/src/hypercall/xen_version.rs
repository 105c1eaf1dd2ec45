//! `xen_version` (version.h): which Xen interface we implement and what it offers.

use super::HypercallContext;
use crate::mm::guest_walk::MachineMemory;
use hypercall_abi::arch_x86_64::HYPERVISOR_VIRT_START;
use hypercall_abi::features::{
    XENFEAT_DIRECT_MAPPED, XENFEAT_DOM0, XENFEAT_HIGHMEM_ASSIST, XENFEAT_MMU_PT_UPDATE_PRESERVE_AD, XENFEAT_PAE_PGDIR_ABOVE_4GB,
};
use hypercall_abi::ops::xen_version::{
    XenFeatureInfo, XENVER_CAPABILITIES, XENVER_EXTRAVERSION, XENVER_GET_FEATURES, XENVER_PAGESIZE, XENVER_PLATFORM_PARAMETERS, XENVER_VERSION,
};
use hypercall_abi::{Errno, GuestHandle};

/// We report the Xen release whose public ABI we follow; the extraversion says who we are.
pub const VERSION_MAJOR: u32 = 4;
pub const VERSION_MINOR: u32 = 17;
pub const EXTRAVERSION: &[u8] = b"-pvhv";
/// The only guest type we run (version.h XENVER_capabilities format).
pub const CAPABILITIES: &[u8] = b"xen-3.0-x86_64";

/// XENVER_version, the null hypercall of benchmarks and of guests probing for a
/// hypervisor, is answered inline in the dispatch: no call, no guest memory.
#[inline(always)]
pub fn xen_version<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, cmd: u32, arg: GuestHandle) -> Result<i64, Errno> {
    if cmd == XENVER_VERSION {
        return Ok(((VERSION_MAJOR << 16) | VERSION_MINOR) as i64);
    }
    xen_version_query(ctx, cmd, arg)
}

#[inline(never)]
fn xen_version_query<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, cmd: u32, arg: GuestHandle) -> Result<i64, Errno> {
    match cmd {
        XENVER_EXTRAVERSION => {
            let mut text = [0u8; 16];
            text[..EXTRAVERSION.len()].copy_from_slice(EXTRAVERSION);
            arg.into_out().write(ctx, &text)?;
            Ok(0)
        }
        XENVER_CAPABILITIES => {
            let mut text = [0u8; 1024];
            text[..CAPABILITIES.len()].copy_from_slice(CAPABILITIES);
            arg.into_out().write(ctx, &text)?;
            Ok(0)
        }
        XENVER_PLATFORM_PARAMETERS => {
            arg.into_out().write(ctx, &HYPERVISOR_VIRT_START)?;
            Ok(0)
        }
        XENVER_GET_FEATURES => {
            let (mut info, out) = arg.into_in_out::<XenFeatureInfo>().read(ctx)?;
            // One submap exists (XENFEAT_NR_SUBMAPS is 1 in features.h): Xen refuses others.
            if info.submap_idx != 0 {
                return Err(Errno::EINVAL);
            }
            info.submap = feature_submap_0(ctx.domain.privileged);
            out.write(ctx, &info)?;
            Ok(0)
        }
        // Answered only to a NULL handle, as Xen does (common/kernel.c).
        XENVER_PAGESIZE if arg.is_null() => Ok(4096),
        XENVER_PAGESIZE => Err(Errno::EINVAL),
        _ => Err(Errno::ENOSYS),
    }
}

/// Features we offer (features.h), each one something we do: page directories may
/// live above 4 GiB (we never limit where frames come from), MMU_PT_UPDATE_PRESERVE_AD,
/// MMUEXT_CLEAR_PAGE/COPY_PAGE (highmem_assist), direct-mapped memory, and dom0
/// operation for the initial domain. Xen 4.17 also offers gnttab_map_avail_bits and
/// memory_op_vnode_supported (0x228f0 in all, seen by `hypercalls`): grant tables and
/// vNUMA information are not implemented here, so those stay off. (Linux refuses to
/// boot without gnttab_map_avail_bits: the `linux` scenario records it.)
fn feature_submap_0(privileged: bool) -> u32 {
    let mut map =
        (1 << XENFEAT_PAE_PGDIR_ABOVE_4GB) | (1 << XENFEAT_MMU_PT_UPDATE_PRESERVE_AD) | (1 << XENFEAT_HIGHMEM_ASSIST) | (1 << XENFEAT_DIRECT_MAPPED);
    if privileged {
        map |= 1 << XENFEAT_DOM0;
    }
    map
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{TestGuest, GUEST_DATA_VA};
    use hypercall_abi::nr;

    #[test]
    fn version_and_features() {
        let mut guest = TestGuest::new();
        assert_eq!(guest.call(nr::xen_version, [0, 0, 0, 0, 0, 0]), (4 << 16) | 17);
        guest.poke(GUEST_DATA_VA, &[0u8; 8]);
        assert_eq!(guest.call(nr::xen_version, [6, GUEST_DATA_VA, 0, 0, 0, 0]), 0);
        let submap = u32::from_le_bytes(guest.peek(GUEST_DATA_VA + 4, 4).try_into().unwrap());
        assert_eq!(submap, (1 << 4) | (1 << 5) | (1 << 6) | (1 << 11) | (1 << 17), "Xen's 0x228f0 less grant tables and vNUMA");
        assert_eq!(guest.call(nr::xen_version, [1, GUEST_DATA_VA, 0, 0, 0, 0]), 0);
        assert_eq!(&guest.peek(GUEST_DATA_VA, 6), b"-pvhv\0");
    }

    #[test]
    fn outputs_to_bad_pointers_fail_cleanly() {
        let mut guest = TestGuest::new();
        assert_eq!(guest.call(nr::xen_version, [1, 0, 0, 0, 0, 0]), -14);
        assert_eq!(guest.call(nr::xen_version, [6, 0xffff_8000_0000_0000, 0, 0, 0, 0]), -14);
        assert_eq!(guest.call(nr::xen_version, [99, 0, 0, 0, 0, 0]), -38);
    }
}
