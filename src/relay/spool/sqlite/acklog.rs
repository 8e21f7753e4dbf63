//! The ack log: where the relay makes a new event durable before it answers 204. Appending a
//! few hundred bytes and one `fdatasync` per batch is the cheapest durable write a file system
//! offers; a SQLite commit writes several pages (table, indexes, WAL frames) and locks for each
//! batch. So the ack path appends here, and the writer copies the logged events into the
//! table in large transactions off that path (see `acks` and `logged`).
//!
//! Files lie beside the store: `<store>-acklog.<generation>`, owner-only. Each starts with a
//! header (magic, the store's id, the generation) and holds records, each
//! `length · crc32 · payload`. The table remembers how far it has taken the log (the *mark*:
//! generation and offset, in `vslack_acklog`, updated in the same transaction as the rows), so
//! at open the owner stores what lies past the mark ([`replay`]) and starts a new generation.
//! A record is answered only once its batch is synced, so a torn or unsynced tail (a crash
//! mid-write) was never acknowledged: reading stops at the first record that does not check.
//! A file whose write or sync failed is never appended to again (a new generation starts).
//!
//! Files are written full of zeros ([`FILLED`] bytes) before they are used, by a thread of
//! their own while the previous one fills up (the *spare*), so that appending never changes a
//! file's size and each `fdatasync` writes only the data, not the inode: 15–25 % faster
//! acknowledgements on ext4. Zeros read as the end of the records. When the disk has no room
//! for the zeros, a file grows as it is appended to instead.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::writer::NewRow;

const MAGIC: &[u8; 8] = b"VSLKACK1";
const HEADER: u64 = 28;
/// No record is larger (a request body is far smaller): a longer length is a torn tail.
const MAX_RECORD: usize = 16 << 20;
/// How large a log file is made (the ack path moves to a new one about this often).
pub(super) const FILLED: u64 = 4 << 20;

/// Where the table has taken the log to: everything before `pos` in generation `gen`, and every
/// earlier generation, is in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(super) struct Mark {
    pub gen: u64,
    pub pos: u64,
}

/// The file of generation `gen` of the store at `store`.
pub(super) fn path_of(store: &Path, gen: u64) -> PathBuf {
    let mut p = store.as_os_str().to_owned();
    p.push(format!("-acklog.{gen}"));
    p.into()
}

/// The generations present beside `store`, oldest first.
pub(super) fn generations(store: &Path) -> Vec<u64> {
    let (Some(dir), Some(name)) = (store.parent(), store.file_name()) else {
        return Vec::new();
    };
    let prefix = format!("{}-acklog.", name.to_string_lossy());
    let mut gens: Vec<u64> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix(&prefix)?.parse().ok())
        .collect();
    gens.sort_unstable();
    gens
}

/// Whether the file of generation `gen` beside `store` may be deleted once the table holds
/// its generation: it has this store's header, or is too short to hold anything (its header
/// never reached the disk).
pub(super) fn deletable(store: &Path, store_id: i64, gen: u64) -> bool {
    let mut head = Vec::with_capacity(HEADER as usize);
    File::open(path_of(store, gen))
        .and_then(|f| f.take(HEADER).read_to_end(&mut head))
        .is_ok_and(|n| n < HEADER as usize || header_is(&head, store_id, gen))
}

fn header_is(head: &[u8], store_id: i64, gen: u64) -> bool {
    head.len() == HEADER as usize
        && &head[..8] == MAGIC
        && head[8..16] == store_id.to_le_bytes()
        && head[16..24] == gen.to_le_bytes()
        && head[24..28] == crc32fast::hash(&head[..24]).to_le_bytes()
}

/// The log being appended to.
pub(super) struct AckLog {
    store: PathBuf,
    store_id: i64,
    file: File,
    pub mark: Mark,
    buf: Vec<u8>,
    /// Whether this file was written full of zeros.
    filled: bool,
    /// A write or sync failed: never append here again.
    broken: bool,
    /// The next generation's file, being made.
    spare: Option<std::thread::JoinHandle<io::Result<AckLog>>>,
}

impl AckLog {
    /// Start generation `gen` (a new, synced file with its header; the directory synced too),
    /// written full of zeros if `fill` and there is room for them.
    pub(super) fn create(store: &Path, store_id: i64, gen: u64, fill: bool) -> io::Result<AckLog> {
        let path = path_of(store, gen);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .read(true)
            .mode(0o600)
            .open(&path)?;
        let mut head = Vec::with_capacity(HEADER as usize);
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&store_id.to_le_bytes());
        head.extend_from_slice(&gen.to_le_bytes());
        head.extend_from_slice(&crc32fast::hash(&head).to_le_bytes());
        file.write_all_at(&head, 0)?;
        let filled = fill && {
            let zeros = vec![0u8; 256 << 10];
            let mut at = HEADER;
            while at < FILLED && file.write_all_at(&zeros, at).is_ok() {
                at += zeros.len() as u64;
            }
            // (No room: the file grows as it is appended to.)
            at >= FILLED || file.set_len(HEADER).is_err()
        };
        file.sync_all()?;
        if let Some(dir) = store.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(AckLog {
            store: store.to_owned(),
            store_id,
            file,
            mark: Mark { gen, pos: HEADER },
            buf: Vec::new(),
            filled,
            broken: false,
            spare: None,
        })
    }

    /// Append `rows` and sync them: once this returns, they survive a crash. Returns the mark
    /// past them. On an error nothing is acknowledged, and the next call starts a new file.
    pub(super) fn append<'a>(
        &mut self,
        rows: impl Iterator<Item = &'a NewRow>,
    ) -> io::Result<Mark> {
        if self.broken {
            self.rotate()?;
        }
        self.buf.clear();
        for row in rows {
            encode(row, &mut self.buf);
        }
        let written = self
            .file
            .write_all_at(&self.buf, self.mark.pos)
            .and_then(|_| self.file.sync_data());
        if let Err(e) = written {
            // What reached the file may not be on disk (after a failed fsync, the kernel may
            // have dropped the pages): never build on it.
            self.broken = true;
            let _ = self.rotate();
            return Err(e);
        }
        self.mark.pos += self.buf.len() as u64;
        if !self.filled && self.spare.is_none() {
            self.make_spare();
        }
        Ok(self.mark)
    }

    /// How many bytes the current file holds.
    pub(super) fn len(&self) -> u64 {
        self.mark.pos
    }

    /// Whether this file grows as it is appended to while a filled one is ready: worth
    /// moving to it now.
    pub(super) fn spare_ready(&self) -> bool {
        !self.filled && self.spare.as_ref().is_some_and(|s| s.is_finished())
    }

    /// Continue in a new file (the next generation): the spare, if it was made, and start
    /// making the one after it.
    pub(super) fn rotate(&mut self) -> io::Result<()> {
        let gen = self.mark.gen + 1;
        let spare = self.spare.take().and_then(|s| s.join().ok()?.ok());
        // (Not a spare whose name was deleted meanwhile: what it holds would be lost.)
        *self = match spare.filter(|s| s.mark.gen == gen && s.still_named()) {
            Some(spare) => spare,
            None => AckLog::create(&self.store, self.store_id, gen, false)?,
        };
        self.make_spare();
        Ok(())
    }

    /// Whether this file is still the one its name leads to.
    fn still_named(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let named = std::fs::metadata(path_of(&self.store, self.mark.gen));
        let open = self.file.metadata();
        matches!((named, open), (Ok(n), Ok(o)) if n.ino() == o.ino() && n.dev() == o.dev())
    }

    fn make_spare(&mut self) {
        let (store, id, gen) = (self.store.clone(), self.store_id, self.mark.gen + 1);
        self.spare = std::thread::Builder::new()
            .name("vslack-acklog".into())
            .spawn(move || AckLog::create(&store, id, gen, true))
            .ok();
    }
}

fn put(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    buf.extend_from_slice(bytes);
}

fn encode(row: &NewRow, buf: &mut Vec<u8>) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 8]);
    buf.extend_from_slice(&row.key.to_le_bytes());
    buf.extend_from_slice(&row.received_at.to_le_bytes());
    put(buf, row.event_id.as_bytes());
    put(buf, row.notif_type.as_bytes());
    put(buf, row.json.as_bytes());
    put(buf, &row.body);
    let payload = start + 8;
    let len = (buf.len() - payload) as u32;
    let crc = crc32fast::hash(&buf[payload..]);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..payload].copy_from_slice(&crc.to_le_bytes());
}

/// Reads the fields of one payload in order; `None` when it ends early.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
        self.take(n)
    }
    fn text(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
}

fn decode(payload: &[u8]) -> Option<NewRow> {
    let mut f = Fields(payload);
    Some(NewRow {
        key: u128::from_le_bytes(f.take(16)?.try_into().ok()?),
        received_at: i64::from_le_bytes(f.take(8)?.try_into().ok()?),
        event_id: f.text()?,
        notif_type: f.text()?,
        json: f.text()?,
        body: f.bytes()?.to_vec(),
    })
}

/// The records of generation `gen` from `from` on (from the first record, if `from` is before
/// it), up to the first that does not check; `None` if the file is not this store's.
pub(super) fn read(
    store: &Path,
    store_id: i64,
    gen: u64,
    from: u64,
) -> io::Result<Option<Vec<NewRow>>> {
    let mut data = Vec::new();
    File::open(path_of(store, gen))?.read_to_end(&mut data)?;
    let head = &data[..data.len().min(HEADER as usize)];
    if !header_is(head, store_id, gen) {
        // A header that never reached the disk: the file was never appended to.
        return Ok((head.len() < HEADER as usize).then(Vec::new));
    }
    let mut at = from.max(HEADER) as usize;
    let mut rows = Vec::new();
    while let Some(frame) = data.get(at..at + 8) {
        let len = u32::from_le_bytes(frame[..4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(frame[4..].try_into().unwrap_or_default());
        let Some(payload) = data.get(at + 8..at + 8 + len).filter(|_| len <= MAX_RECORD) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Some(row) = decode(payload) else { break };
        rows.push(row);
        at += 8 + len;
    }
    Ok(Some(rows))
}
