//! The kernel a user brings, made into the Xen PV ELF image the hypervisor boots: an
//! ELF passes as it is; a Linux bzImage (the format distributions ship) is unpacked as
//! Xen unpacks it, here when the bundle is built: the setup header (Linux's
//! Documentation/arch/x86/boot.rst: "HdrS" at 0x202, protocol >= 2.08 for
//! payload_offset at 0x248 and payload_length at 0x24c, setup_sects at 0x1f1) locates
//! the compressed ELF, which is gzip, xz (with its x86 BCJ filter) or zstd, the
//! formats distribution kernels use. A bare compressed ELF is accepted too.

use std::io::Read;

const ELF_MAGIC: &[u8] = b"\x7fELF";
const GZIP_MAGIC: &[u8] = b"\x1f\x8b";
const XZ_MAGIC: &[u8] = b"\xfd7zXZ\x00";
const ZSTD_MAGIC: &[u8] = b"\x28\xb5\x2f\xfd";
const SETUP_SECTS: usize = 0x1f1;
const HEADER_MAGIC_AT: usize = 0x202;
const VERSION_AT: usize = 0x206;
const PAYLOAD_OFFSET_AT: usize = 0x248;
const PAYLOAD_LENGTH_AT: usize = 0x24c;
/// The boot protocol that added payload_offset/payload_length (Linux 2.6.30).
const PAYLOAD_PROTOCOL: u16 = 0x0208;
/// A decompressed kernel larger than this is refused (a corrupt or hostile file).
const MAX_KERNEL_BYTES: u64 = 512 << 20;

/// The compressions a payload may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Xz,
    Zstd,
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// Whether `bytes` start like a bzImage (the setup header's magic).
pub fn is_bzimage(bytes: &[u8]) -> bool {
    bytes.get(HEADER_MAGIC_AT..HEADER_MAGIC_AT + 4) == Some(b"HdrS")
}

/// The ELF image inside `bytes` (the file itself when it is one), or why there is none.
pub fn pv_elf(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if bytes.starts_with(ELF_MAGIC) {
        return Ok(bytes.to_vec());
    }
    let payload = if is_bzimage(bytes) { bzimage_payload(bytes)? } else { bytes };
    let elf = decompress(payload)?;
    if !elf.starts_with(ELF_MAGIC) {
        return Err(String::from("the decompressed payload is not an ELF image"));
    }
    Ok(elf)
}

fn bzimage_payload(bytes: &[u8]) -> Result<&[u8], String> {
    let version = u16_at(bytes, VERSION_AT).ok_or("truncated setup header")?;
    if version < PAYLOAD_PROTOCOL {
        return Err(format!(
            "a bzImage of boot protocol {}.{:02}: one of 2.08 or later is needed (its payload cannot be found)",
            version >> 8,
            version & 0xff
        ));
    }
    let setup_sects = match bytes[SETUP_SECTS] {
        0 => 4,
        n => usize::from(n),
    };
    let offset = u32_at(bytes, PAYLOAD_OFFSET_AT).ok_or("truncated setup header")? as usize;
    let length = u32_at(bytes, PAYLOAD_LENGTH_AT).ok_or("truncated setup header")? as usize;
    let start = (setup_sects + 1) * 512 + offset;
    bytes.get(start..start.saturating_add(length)).ok_or_else(|| format!("the payload ({length} bytes at {start:#x}) runs past the end of the file"))
}

/// Decompresses a gzip, xz or zstd stream (trailing bytes, such as the size Linux's
/// build appends, are ignored).
pub fn decompress(payload: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let limited = |reader: &mut dyn Read, out: &mut Vec<u8>, what: &str| -> Result<(), String> {
        reader.take(MAX_KERNEL_BYTES + 1).read_to_end(out).map_err(|e| format!("corrupt {what} payload: {e}"))?;
        if out.len() as u64 > MAX_KERNEL_BYTES {
            return Err(format!("the {what} payload unpacks to more than {} MiB", MAX_KERNEL_BYTES >> 20));
        }
        Ok(())
    };
    if payload.starts_with(GZIP_MAGIC) {
        limited(&mut flate2::read::GzDecoder::new(payload), &mut out, "gzip")?;
    } else if payload.starts_with(XZ_MAGIC) {
        limited(&mut lzma_rust2::XzReader::new(payload, false), &mut out, "xz")?;
    } else if payload.starts_with(ZSTD_MAGIC) {
        let mut decoder = ruzstd::decoding::StreamingDecoder::new(payload).map_err(|e| format!("corrupt zstd payload: {e}"))?;
        limited(&mut decoder, &mut out, "zstd")?;
    } else {
        let name = match payload.get(..4) {
            Some([b'B', b'Z', b'h', _]) => "bzip2",
            Some([0x5d, 0, 0, _]) => "lzma",
            Some([0x02, 0x21, 0x4c, 0x18]) => "lz4",
            Some([0x89, b'L', b'Z', b'O']) => "lzo",
            _ => "an unknown format",
        };
        return Err(format!("not a PV kernel: neither ELF nor a payload in gzip, xz or zstd (it looks like {name})"));
    }
    Ok(out)
}

/// Compresses `data` (tests and `bzimage`).
pub fn compress(data: &[u8], compression: Compression) -> Vec<u8> {
    use std::io::Write;
    match compression {
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(data).expect("writing to memory");
            encoder.finish().expect("writing to memory")
        }
        Compression::Xz => {
            let mut options = lzma_rust2::XzOptions::with_preset(1);
            // As Linux compresses its kernels: with the x86 branch filter in front.
            options.prepend_pre_filter(lzma_rust2::filter::FilterType::BcjX86, 0);
            let mut writer = lzma_rust2::XzWriter::new(Vec::new(), options).expect("xz options");
            writer.write_all(data).expect("writing to memory");
            writer.finish().expect("writing to memory")
        }
        Compression::Zstd => ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest),
    }
}

/// A minimal bzImage around `elf` (boot protocol 2.15, one setup sector, the payload
/// right after it), as a Linux build lays one out: what the `bzimage` scenario boots.
pub fn bzimage(elf: &[u8], compression: Compression) -> Vec<u8> {
    let mut payload = compress(elf, compression);
    // Linux's build appends the uncompressed size.
    payload.extend_from_slice(&(elf.len() as u32).to_le_bytes());
    let setup_sects = 1u8;
    let mut image = vec![0u8; (usize::from(setup_sects) + 1) * 512];
    image[SETUP_SECTS] = setup_sects;
    image[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
    image[HEADER_MAGIC_AT..HEADER_MAGIC_AT + 4].copy_from_slice(b"HdrS");
    image[VERSION_AT..VERSION_AT + 2].copy_from_slice(&0x020fu16.to_le_bytes());
    image[PAYLOAD_OFFSET_AT..PAYLOAD_OFFSET_AT + 4].copy_from_slice(&0u32.to_le_bytes());
    image[PAYLOAD_LENGTH_AT..PAYLOAD_LENGTH_AT + 4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    image.extend_from_slice(&payload);
    image
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_elf() -> Vec<u8> {
        let mut elf = b"\x7fELF".to_vec();
        elf.extend((0..200_000u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8));
        elf
    }

    #[test]
    fn every_distribution_compression_round_trips_through_a_bzimage() {
        let elf = fake_elf();
        for compression in [Compression::Gzip, Compression::Xz, Compression::Zstd] {
            let image = bzimage(&elf, compression);
            assert!(is_bzimage(&image));
            assert_eq!(pv_elf(&image).unwrap(), elf, "{compression:?}");
            // A bare compressed ELF too.
            assert_eq!(pv_elf(&compress(&elf, compression)).unwrap(), elf, "{compression:?}");
        }
        assert_eq!(pv_elf(&elf).unwrap(), elf, "an ELF passes as it is");
    }

    #[test]
    fn what_cannot_be_booted_is_named() {
        let elf = fake_elf();
        let mut old = bzimage(&elf, Compression::Gzip);
        old[VERSION_AT..VERSION_AT + 2].copy_from_slice(&0x0206u16.to_le_bytes());
        assert!(pv_elf(&old).unwrap_err().contains("boot protocol 2.06"));
        let mut short = bzimage(&elf, Compression::Gzip);
        short.truncate(2000);
        assert!(pv_elf(&short).unwrap_err().contains("runs past the end"));
        assert!(pv_elf(b"BZh91AY&SY...").unwrap_err().contains("bzip2"));
        assert!(pv_elf(b"plain text").unwrap_err().contains("neither ELF"));
        let not_elf = bzimage(b"just some bytes, no ELF here", Compression::Zstd);
        assert!(pv_elf(&not_elf).unwrap_err().contains("not an ELF"));
        let mut corrupt = compress(&elf, Compression::Xz);
        corrupt[40] ^= 0xff;
        assert!(pv_elf(&corrupt).is_err());
    }
}
