//! Test helpers: a raw zip writer that can produce any header (including lying ones), and
//! golden-file comparison.
#![allow(dead_code, unreachable_pub)]

use std::io::Write;

pub const MAIN_OK: &str = "from luna_lambda_tools import StandaloneLambdaRequest\n\n\
async def main(request: StandaloneLambdaRequest) -> dict:\n    return {\"ok\": True}\n";

/// One entry of a hand-made zip.
#[derive(Clone, Debug)]
pub struct RawEntry {
    pub name: Vec<u8>,
    /// The bytes as stored (already compressed when `method == 8`).
    pub data: Vec<u8>,
    pub method: u16,
    pub crc: u32,
    pub size: u32,
    pub flags: u16,
    pub external_attr: u32,
}

impl RawEntry {
    /// A stored file with honest headers and mode 0644.
    pub fn stored(name: &str, data: &[u8]) -> Self {
        Self {
            name: name.as_bytes().to_vec(),
            data: data.to_vec(),
            method: 0,
            crc: crc32fast::hash(data),
            size: data.len() as u32,
            flags: 0x0800,
            external_attr: 0o100644 << 16,
        }
    }

    /// A deflated file with honest headers.
    pub fn deflated(name: &str, data: &[u8]) -> Self {
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(data).unwrap();
        Self {
            data: enc.finish().unwrap(),
            method: 8,
            ..Self::stored(name, data)
        }
    }
}

/// Writes entries as a zip with the exact headers given.
pub fn raw_zip(entries: &[RawEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for e in entries {
        let offset = out.len() as u32;
        let le16 = |v: &mut Vec<u8>, x: u16| v.extend_from_slice(&x.to_le_bytes());
        let le32 = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&x.to_le_bytes());
        // local header
        le32(&mut out, 0x0403_4b50);
        le16(&mut out, 20);
        le16(&mut out, e.flags);
        le16(&mut out, e.method);
        le16(&mut out, 0);
        le16(&mut out, 0x21);
        le32(&mut out, e.crc);
        le32(&mut out, e.data.len() as u32);
        le32(&mut out, e.size);
        le16(&mut out, e.name.len() as u16);
        le16(&mut out, 0);
        out.extend_from_slice(&e.name);
        out.extend_from_slice(&e.data);
        // central record
        le32(&mut central, 0x0201_4b50);
        le16(&mut central, (3 << 8) | 20);
        le16(&mut central, 20);
        le16(&mut central, e.flags);
        le16(&mut central, e.method);
        le16(&mut central, 0);
        le16(&mut central, 0x21);
        le32(&mut central, e.crc);
        le32(&mut central, e.data.len() as u32);
        le32(&mut central, e.size);
        le16(&mut central, e.name.len() as u16);
        le16(&mut central, 0);
        le16(&mut central, 0);
        le16(&mut central, 0);
        le16(&mut central, 0);
        le32(&mut central, e.external_attr);
        le32(&mut central, offset);
        central.extend_from_slice(&e.name);
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    let n = entries.len() as u16;
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

/// A zip of stored files with honest headers.
pub fn zip_of(files: &[(&str, &str)]) -> Vec<u8> {
    raw_zip(
        &files
            .iter()
            .map(|(n, d)| RawEntry::stored(n, d.as_bytes()))
            .collect::<Vec<_>>(),
    )
}

/// Compares `actual` with `tests/golden/<name>`; `UPDATE_GOLDEN=1` rewrites the file.
pub fn golden(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    assert_eq!(
        actual, expected,
        "golden file {name} differs (UPDATE_GOLDEN=1 rewrites it)"
    );
}
