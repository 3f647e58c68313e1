// The zip container of a torch.save file: `<prefix>/data.pkl`, `<prefix>/data/<key>` storages,
// `<prefix>/version`, `<prefix>/byteorder`, ... where torch sets <prefix> to the file stem
// (`archive` when saving to a buffer). Reading (via the `zip` crate) finds the prefix from the
// single `*/data.pkl` entry. Writing is done here by hand, with record offsets laid out exactly
// as torch's miniz writer lays them out: stored entries, an `FB` padding extra field putting every
// record's data on a 64-byte boundary, a data descriptor after each non-empty record and zip64
// fields past 4 GiB. torch.load does not need that layout by default, but its optional
// `calculate_storage_offsets` path (and TORCH_SERIALIZATION_DEBUG) computes record offsets
// from it instead of reading headers. Output goes to a temporary file that is fsynced and
// renamed over the target.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use zip::{CompressionMethod, ZipArchive};

use super::error::PtError;

/// Alignment of record data within the file, matching torch's default `.storage_alignment`.
pub const STORAGE_ALIGNMENT: u16 = 64;

/// Read access to the records of a torch zip checkpoint.
pub struct ArchiveReader {
    zip: ZipArchive<BufReader<File>>,
    prefix: String,
    path: PathBuf,
    file_len: u64,
}

impl ArchiveReader {
    /// Opens `path`, validates the zip container and locates `<prefix>/data.pkl`.
    pub fn open(path: &Path) -> Result<Self, PtError> {
        let mut file = File::open(path).map_err(|e| PtError::io(path, e))?;
        let file_len = file.metadata().map_err(|e| PtError::io(path, e))?.len();
        let mut magic = [0u8; 4];
        let mut got = 0;
        while got < magic.len() {
            let n = file.read(&mut magic[got..]).map_err(|e| PtError::io(path, e))?;
            if n == 0 {
                break;
            }
            got += n;
        }
        if got < magic.len() {
            return Err(PtError::NotTorchArchive(format!("file is only {file_len} bytes long")));
        }
        if magic[0] == 0x80 {
            return Err(PtError::NotTorchArchive(
                "legacy (non-zip, torch < 1.6) serialization format is not supported; re-save it with a newer torch"
                    .into(),
            ));
        }
        if &magic != b"PK\x03\x04" {
            return Err(PtError::NotTorchArchive("no zip signature at the start of the file".into()));
        }
        let zip = ZipArchive::new(BufReader::new(file))?;
        let mut candidates: Vec<&str> = zip
            .file_names()
            .filter_map(|n| n.strip_suffix("/data.pkl"))
            .filter(|p| !p.is_empty() && !p.contains('/'))
            .collect();
        candidates.sort_unstable();
        let prefix = match candidates.as_slice() {
            [one] => one.to_string(),
            [] => return Err(PtError::NotTorchArchive("no <name>/data.pkl record in the zip".into())),
            many => {
                return Err(PtError::NotTorchArchive(format!("several data.pkl records ({})", many.join(", "))));
            }
        };
        Ok(ArchiveReader { zip, prefix, path: path.to_path_buf(), file_len })
    }

    /// Top-level folder name of the records (torch uses the file stem).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether `<prefix>/<name>` exists.
    pub fn has_record(&self, name: &str) -> bool {
        let full = format!("{}/{}", self.prefix, name);
        self.zip.file_names().any(|n| n == full)
    }

    /// Reads `<prefix>/<name>` completely (CRC checked by the zip reader).
    pub fn read_record(&mut self, name: &str) -> Result<Vec<u8>, PtError> {
        let full = format!("{}/{}", self.prefix, name);
        let mut entry = match self.zip.by_name(&full) {
            Ok(entry) => entry,
            Err(zip::result::ZipError::FileNotFound) => return Err(PtError::MissingRecord(full)),
            Err(e) => return Err(e.into()),
        };
        let size = entry.size();
        if entry.compression() != CompressionMethod::Stored {
            return Err(PtError::NotTorchArchive(format!(
                "record {full} is compressed ({:?}); torch writes stored records only",
                entry.compression()
            )));
        }
        // A stored entry can never be larger than the file: a bigger size is corruption, and
        // trusting it would mean a huge allocation.
        if size > self.file_len {
            return Err(PtError::NotTorchArchive(format!(
                "record {full} claims {size} bytes, file has {}",
                self.file_len
            )));
        }
        let capacity = usize::try_from(size)
            .map_err(|_| PtError::NotTorchArchive(format!("record {full} is too large for this platform")))?;
        let mut buf = Vec::with_capacity(capacity);
        entry.read_to_end(&mut buf).map_err(|e| PtError::io(&self.path, e))?;
        if buf.len() as u64 != size {
            return Err(PtError::NotTorchArchive(format!("record {full}: read {} of {size} bytes", buf.len())));
        }
        Ok(buf)
    }
}

/// Writes `records` (names relative to `prefix`) as a stored, 64-byte-aligned zip to `path`,
/// atomically: a temporary file next to `path` is written, fsynced, then renamed over it.
pub fn write_archive(path: &Path, prefix: &str, records: &[(String, &[u8])]) -> Result<(), PtError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| PtError::InvalidInput(format!("output path {} has no file name", path.display())))?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let tmp = dir.join(format!(".{}.tmp-{}-{}", file_name.to_string_lossy(), std::process::id(), nanos));

    let result = write_zip(&tmp, prefix, records).and_then(|()| {
        std::fs::rename(&tmp, path).map_err(|e| PtError::io(path, e))?;
        // Persist the rename itself; not all platforms/filesystems allow syncing a directory.
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn write_zip(tmp: &Path, prefix: &str, records: &[(String, &[u8])]) -> Result<(), PtError> {
    let file = File::options().write(true).create_new(true).open(tmp).map_err(|e| PtError::io(tmp, e))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut cursor = 0u64;
    let mut central = Vec::new();
    for (name, data) in records {
        let entry = LocalEntry::new(format!("{prefix}/{name}"), data, cursor)?;
        let header = entry.local_header();
        out.write_all(&header).map_err(|e| PtError::io(tmp, e))?;
        out.write_all(data).map_err(|e| PtError::io(tmp, e))?;
        let descriptor = entry.data_descriptor();
        out.write_all(&descriptor).map_err(|e| PtError::io(tmp, e))?;
        cursor += (header.len() + data.len() + descriptor.len()) as u64;
        entry.central_header(&mut central);
    }
    let end = end_of_central_directory(records.len() as u64, cursor, central.len() as u64);
    out.write_all(&central).map_err(|e| PtError::io(tmp, e))?;
    out.write_all(&end).map_err(|e| PtError::io(tmp, e))?;
    let file = out.into_inner().map_err(|e| PtError::io(tmp, e.into_error()))?;
    file.sync_all().map_err(|e| PtError::io(tmp, e))?;
    Ok(())
}

const U32_LIMIT: u64 = 0xFFFF_FFFF;
const LOCAL_HEADER_SIG: u32 = 0x0403_4b50;
const DESCRIPTOR_SIG: u32 = 0x0807_4b50;
const CENTRAL_HEADER_SIG: u32 = 0x0201_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const EOCD_SIG: u32 = 0x0605_4b50;
/// General purpose flag bit 3: crc and sizes follow the data in a data descriptor.
const FLAG_DESCRIPTOR: u16 = 1 << 3;
/// DOS date 1980-01-01, time 00:00 (fixed, so equal inputs give byte-identical files).
const DOS_DATE: u16 = (1 << 5) | 1;

/// One record being written: where its header starts and the sizes that decide zip64 fields.
struct LocalEntry {
    name: String,
    offset: u64,
    size: u64,
    crc: u32,
    big_size: bool,
    big_offset: bool,
}

fn put16(buf: &mut Vec<u8>, v: u16) {
    buf.extend_from_slice(&v.to_le_bytes());
}
fn put32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_le_bytes());
}
fn put64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_le_bytes());
}
fn clamp32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

impl LocalEntry {
    fn new(name: String, data: &[u8], offset: u64) -> Result<Self, PtError> {
        if u16::try_from(name.len()).is_err() {
            return Err(PtError::InvalidInput(format!("record name of {} bytes is too long for zip", name.len())));
        }
        let size = data.len() as u64;
        Ok(LocalEntry {
            name,
            offset,
            size,
            crc: crc32fast::hash(data),
            big_size: size >= U32_LIMIT,
            big_offset: offset >= U32_LIMIT,
        })
    }

    fn zip64(&self) -> bool {
        self.big_size || self.big_offset
    }

    fn flags(&self) -> u16 {
        if self.size > 0 {
            FLAG_DESCRIPTOR
        } else {
            0
        }
    }

    fn version_needed(&self) -> u16 {
        if self.zip64() {
            45
        } else {
            20
        }
    }

    /// zip64 extended information (id 0x0001): sizes if large, then the header offset if large.
    fn zip64_extra(&self, buf: &mut Vec<u8>) {
        if !self.zip64() {
            return;
        }
        let len = if self.big_size { 16 } else { 0 } + if self.big_offset { 8 } else { 0 };
        put16(buf, 0x0001);
        put16(buf, len);
        if self.big_size {
            put64(buf, self.size);
            put64(buf, self.size);
        }
        if self.big_offset {
            put64(buf, self.offset);
        }
    }

    fn local_header(&self) -> Vec<u8> {
        let mut h = Vec::with_capacity(30 + self.name.len() + 100);
        put32(&mut h, LOCAL_HEADER_SIG);
        put16(&mut h, self.version_needed());
        put16(&mut h, self.flags());
        put16(&mut h, 0); // stored
        put16(&mut h, 0); // time
        put16(&mut h, DOS_DATE);
        // With a data descriptor the local crc and sizes are zero (0xFFFFFFFF when zip64 sizes).
        let (crc, size) = match (self.flags() != 0, self.big_size) {
            (_, true) => (0, u32::MAX),
            (true, false) => (0, 0),
            (false, false) => (self.crc, clamp32(self.size)),
        };
        put32(&mut h, crc);
        put32(&mut h, size);
        put32(&mut h, size);
        put16(&mut h, self.name.len() as u16);
        let extra_len_at = h.len();
        put16(&mut h, 0);
        h.extend_from_slice(self.name.as_bytes());
        let extra_start = h.len();
        self.zip64_extra(&mut h);
        // "FB" padding field: data starts at the next multiple of the alignment after it.
        let unpadded = self.offset + h.len() as u64 + 4;
        let align = u64::from(STORAGE_ALIGNMENT);
        let pad = ((align - unpadded % align) % align) as usize;
        h.extend_from_slice(b"FB");
        put16(&mut h, pad as u16);
        h.resize(h.len() + pad, b'Z');
        let extra_len = (h.len() - extra_start) as u16;
        h[extra_len_at..extra_len_at + 2].copy_from_slice(&extra_len.to_le_bytes());
        h
    }

    fn data_descriptor(&self) -> Vec<u8> {
        let mut d = Vec::new();
        if self.flags() & FLAG_DESCRIPTOR == 0 {
            return d;
        }
        put32(&mut d, DESCRIPTOR_SIG);
        put32(&mut d, self.crc);
        if self.zip64() {
            put64(&mut d, self.size);
            put64(&mut d, self.size);
        } else {
            put32(&mut d, self.size as u32);
            put32(&mut d, self.size as u32);
        }
        d
    }

    fn central_header(&self, c: &mut Vec<u8>) {
        put32(c, CENTRAL_HEADER_SIG);
        put16(c, (3 << 8) | 45); // made by: Unix, zip 4.5
        put16(c, self.version_needed());
        put16(c, self.flags());
        put16(c, 0); // stored
        put16(c, 0);
        put16(c, DOS_DATE);
        put32(c, self.crc);
        let size = if self.big_size { u32::MAX } else { self.size as u32 };
        put32(c, size);
        put32(c, size);
        put16(c, self.name.len() as u16);
        let mut extra = Vec::new();
        self.zip64_extra(&mut extra);
        put16(c, extra.len() as u16);
        put16(c, 0); // comment
        put16(c, 0); // disk
        put16(c, 0); // internal attributes
        put32(c, 0o100644 << 16); // external attributes: regular file, rw-r--r--
        put32(c, if self.big_offset { u32::MAX } else { self.offset as u32 });
        c.extend_from_slice(self.name.as_bytes());
        c.extend_from_slice(&extra);
    }
}

/// End of central directory, preceded by the zip64 record and locator when any field overflows.
fn end_of_central_directory(entries: u64, cd_offset: u64, cd_size: u64) -> Vec<u8> {
    let mut e = Vec::new();
    if entries >= 0xFFFF || cd_offset >= U32_LIMIT || cd_size >= U32_LIMIT {
        let zip64_at = cd_offset + cd_size;
        put32(&mut e, ZIP64_EOCD_SIG);
        put64(&mut e, 44); // size of the rest of this record
        put16(&mut e, (3 << 8) | 45);
        put16(&mut e, 45);
        put32(&mut e, 0);
        put32(&mut e, 0);
        put64(&mut e, entries);
        put64(&mut e, entries);
        put64(&mut e, cd_size);
        put64(&mut e, cd_offset);
        put32(&mut e, ZIP64_LOCATOR_SIG);
        put32(&mut e, 0);
        put64(&mut e, zip64_at);
        put32(&mut e, 1);
    }
    put32(&mut e, EOCD_SIG);
    put16(&mut e, 0);
    put16(&mut e, 0);
    let n = u16::try_from(entries).unwrap_or(u16::MAX);
    put16(&mut e, n);
    put16(&mut e, n);
    put32(&mut e, clamp32(cd_size));
    put32(&mut e, clamp32(cd_offset));
    put16(&mut e, 0); // comment length
    e
}
