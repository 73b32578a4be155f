//! One shard's log file: appending frames in batches (one `write` per loop turn, `fdatasync`
//! as the durability mode says), scanning a file back with its damage skipped and counted, and
//! replacing it atomically by a compacted copy.

use super::record::{self, Record, FRAME_HEADER_BYTES, MAGIC};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// What a scan found besides the records it handed out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanDamage {
    /// Byte ranges skipped in the middle of the file (bad checksum or length, then a valid
    /// frame again): one per damaged region.
    pub damaged_regions: u64,
    /// Bytes skipped in those regions and in a torn tail.
    pub bytes_dropped: u64,
    /// Frames with a valid checksum whose fields did not parse.
    pub records_unparsable: u64,
    /// The file ended inside a frame (a write cut short by a crash or power loss).
    pub torn_tail: bool,
    /// The file did not start with [`MAGIC`].
    pub bad_magic: bool,
}

/// Reads the whole file at `path` and hands each intact record to `f`, in order. Damage is
/// skipped: after a frame that does not check, the scan looks for the next offset where a
/// whole valid frame starts (a flipped byte costs the one record it hit; a torn tail ends the
/// scan).
pub fn scan(path: &Path, mut f: impl FnMut(Record)) -> io::Result<ScanDamage> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut damage = ScanDamage::default();
    let mut pos = if data.starts_with(MAGIC) {
        MAGIC.len()
    } else {
        damage.bad_magic = true;
        0
    };
    while pos < data.len() {
        if let Some((body, next)) = record::check_frame(&data, pos) {
            match record::decode(body) {
                Some(rec) => f(rec),
                None => damage.records_unparsable += 1,
            }
            pos = next;
            continue;
        }
        // Resynchronise: the next offset holding a whole valid frame.
        let resume = (pos + 1..data.len().saturating_sub(FRAME_HEADER_BYTES))
            .find(|&q| record::check_frame(&data, q).is_some());
        match resume {
            Some(q) => {
                damage.damaged_regions += 1;
                damage.bytes_dropped += (q - pos) as u64;
                pos = q;
            }
            None => {
                damage.torn_tail = true;
                damage.bytes_dropped += (data.len() - pos) as u64;
                break;
            }
        }
    }
    Ok(damage)
}

/// The open log of one shard, appended to.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    /// Bytes in the file.
    len: u64,
    /// Whether bytes were written since the last `fdatasync`.
    unsynced: bool,
}

impl LogWriter {
    /// Writes a new log at `path` holding `contents` (frames), fsyncs it and the directory, and
    /// atomically puts it in place of whatever was there (write to `path.new`, rename).
    pub fn create(path: &Path, contents: &[u8]) -> io::Result<LogWriter> {
        let tmp = path.with_extension("log.new");
        {
            let mut file = File::create(&tmp)?;
            file.write_all(MAGIC)?;
            file.write_all(contents)?;
            file.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        sync_dir(path)?;
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
            len: (MAGIC.len() + contents.len()) as u64,
            unsynced: false,
        })
    }

    /// Appends `bytes` (whole frames) with one `write` (no fsync).
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.file.write_all(bytes)?;
        self.len += bytes.len() as u64;
        self.unsynced = true;
        Ok(())
    }

    /// `fdatasync` if anything was written since the last one. Returns whether it synced.
    pub fn sync(&mut self) -> io::Result<bool> {
        if !self.unsynced {
            return Ok(false);
        }
        self.file.sync_data()?;
        self.unsynced = false;
        Ok(true)
    }

    pub fn unsynced(&self) -> bool {
        self.unsynced
    }

    /// Bytes in the file.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len <= MAGIC.len() as u64
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Makes a rename or a new file in `path`'s directory durable.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for id in 0..n {
            record::encode(&Record::Done { sid: 1, id }, &mut out);
        }
        out
    }

    fn ids(path: &Path) -> (Vec<u64>, ScanDamage) {
        let mut ids = Vec::new();
        let damage = scan(path, |r| {
            if let Record::Done { id, .. } = r {
                ids.push(id)
            }
        })
        .unwrap();
        (ids, damage)
    }

    #[test]
    fn damage_costs_only_the_records_it_hit() {
        let dir = std::env::temp_dir().join(format!("shardmq-log-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("shard-0.log");
        let mut log = LogWriter::create(&path, &frames(5)).unwrap();
        log.append(&frames(3)).unwrap();
        assert!(log.sync().unwrap());
        assert!(!log.sync().unwrap(), "nothing new to sync");
        let (all, damage) = ids(&path);
        assert_eq!(all, vec![0, 1, 2, 3, 4, 0, 1, 2]);
        assert_eq!(damage, ScanDamage::default());

        // A flipped byte in the third record's body: only that record is lost.
        let mut data = fs::read(&path).unwrap();
        let frame = (data.len() - MAGIC.len()) / 8;
        data[MAGIC.len() + 2 * frame + FRAME_HEADER_BYTES + 3] ^= 1;
        // A torn tail: half of the last frame.
        data.truncate(data.len() - frame / 2);
        fs::write(&path, &data).unwrap();
        let (left, damage) = ids(&path);
        assert_eq!(left, vec![0, 1, 3, 4, 0, 1]);
        assert_eq!(damage.damaged_regions, 1);
        assert!(damage.torn_tail);
        assert_eq!(damage.bytes_dropped as usize, frame + (frame - frame / 2));
        fs::remove_dir_all(&dir).unwrap();
    }
}
