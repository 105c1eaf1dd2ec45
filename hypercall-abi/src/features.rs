//! Feature bits reported by XENVER_get_features and named in the FEATURES ELF note
//! (features.h). Submap 0 holds bits 0-31.

pub const XENFEAT_WRITABLE_PAGE_TABLES: u32 = 0;
pub const XENFEAT_WRITABLE_DESCRIPTOR_TABLES: u32 = 1;
pub const XENFEAT_AUTO_TRANSLATED_PHYSMAP: u32 = 2;
pub const XENFEAT_SUPERVISOR_MODE_KERNEL: u32 = 3;
pub const XENFEAT_PAE_PGDIR_ABOVE_4GB: u32 = 4;
pub const XENFEAT_MMU_PT_UPDATE_PRESERVE_AD: u32 = 5;
pub const XENFEAT_HIGHMEM_ASSIST: u32 = 6;
pub const XENFEAT_GNTTAB_MAP_AVAIL_BITS: u32 = 7;
pub const XENFEAT_HVM_CALLBACK_VECTOR: u32 = 8;
pub const XENFEAT_HVM_SAFE_PVCLOCK: u32 = 9;
pub const XENFEAT_HVM_PIRQS: u32 = 10;
pub const XENFEAT_DOM0: u32 = 11;
/// XENMEM_get_vnumainfo is available.
pub const XENFEAT_MEMORY_OP_VNODE_SUPPORTED: u32 = 13;
/// The domain's memory is mapped 1:1 (what an x86 PV domain's machine frames are).
pub const XENFEAT_DIRECT_MAPPED: u32 = 17;
pub const XENFEAT_NR_SUBMAPS: u32 = 1;

/// The names a FEATURES note may use, with their bits.
pub const FEATURE_NAMES: &[(&str, u32)] = &[
    ("writable_page_tables", XENFEAT_WRITABLE_PAGE_TABLES),
    ("writable_descriptor_tables", XENFEAT_WRITABLE_DESCRIPTOR_TABLES),
    ("auto_translated_physmap", XENFEAT_AUTO_TRANSLATED_PHYSMAP),
    ("supervisor_mode_kernel", XENFEAT_SUPERVISOR_MODE_KERNEL),
    ("pae_pgdir_above_4gb", XENFEAT_PAE_PGDIR_ABOVE_4GB),
    ("hvm_callback_vector", XENFEAT_HVM_CALLBACK_VECTOR),
    ("dom0", XENFEAT_DOM0),
];

pub fn feature_from_name(name: &str) -> Option<u32> {
    FEATURE_NAMES.iter().find(|(n, _)| *n == name).map(|&(_, bit)| bit)
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_map_to_bits() {
        assert_eq!(super::feature_from_name("dom0"), Some(11));
        assert_eq!(super::feature_from_name("pae_pgdir_above_4gb"), Some(4));
        assert_eq!(super::feature_from_name("nonsense"), None);
    }
}
