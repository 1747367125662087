//! Append-only segment files with checksummed frames: the gateway's disk spool (Kinesis
//! outage) and the embedded local log (no Kinesis configured) are the same format, and the
//! pipeline's local mode reads it.
//!
//! ```text
//! <dir>/<segment id, 20 digits>.seg:  "EWSEG001" | frame*
//! frame:                              u32 LE payload length | u32 LE CRC-32C(payload) | payload
//! ```
//!
//! Writers only ever append to a segment they created; a restarted writer starts a new
//! segment. A write that fails part-way (a full disk, an I/O error) is cut back to the last
//! whole frame, or, when even that fails, the writer moves on to a new segment. A torn frame
//! (crash mid-write, or an uncuttable failed write) can therefore only be the tail of a
//! segment; readers treat it as that segment's end. A reader's progress is a [`Position`] that it persists
//! atomically (write to a temporary file, fsync, rename) with [`save_position`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const SEGMENT_MAGIC: &[u8; 8] = b"EWSEG001";
const FRAME_HEADER: u64 = 8;
/// A frame larger than this is corruption, not data (Kinesis records are at most 1 MiB).
pub const MAX_FRAME_BYTES: u32 = 8 * 1024 * 1024;

/// When appended frames reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// fsync after every append: nothing acknowledged is lost on power failure.
    Always,
    /// fsync at most once per interval (and on roll and close): bounded loss window.
    Interval(Duration),
    /// Leave it to the OS: survives a process crash, not a power failure.
    Never,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            other => humantime::parse_duration(other)
                .map(FsyncPolicy::Interval)
                .map_err(|_| {
                    format!("found `{other}`, expected `always`, `never` or a duration like `1s`")
                }),
        }
    }
}

/// The local pipeline's durable checkpoint as a position in the log, kept in the log's
/// directory: every frame before it is in a durable file of the lake and saved as such in the
/// pipeline's checkpoint. The gateway (local mode) deletes the segments wholly before it.
pub const LOCAL_CONSUMER_POSITION_FILE: &str = "pipeline.pos";

/// A reader's place: the next frame to read is at `offset` in segment `segment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("segment log {dir}: {source}")]
    Io { dir: PathBuf, source: io::Error },
    #[error(
        "segment log {dir} is full: {used} of {cap} bytes used, frame of {frame} bytes refused"
    )]
    Full {
        dir: PathBuf,
        used: u64,
        cap: u64,
        frame: u64,
    },
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")]
    FrameTooLarge(usize),
}

fn io_err(dir: &Path, source: io::Error) -> SegmentError {
    SegmentError::Io {
        dir: dir.to_path_buf(),
        source,
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

/// Segment ids present in `dir`, ascending.
pub fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for e in fs::read_dir(dir)? {
        let name = e?.file_name();
        let name = name.to_string_lossy();
        if let Some(id) = name
            .strip_suffix(".seg")
            .and_then(|n| n.parse::<u64>().ok())
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Total bytes of all segments in `dir`.
pub fn disk_usage(dir: &Path) -> io::Result<u64> {
    let mut total = 0;
    for id in list_segments(dir)? {
        total += fs::metadata(segment_path(dir, id))
            .map(|m| m.len())
            .unwrap_or(0);
    }
    Ok(total)
}

/// The file a [`SegmentWriter`] appends to: a real [`File`] in append mode, or a test's
/// file that fails the way a full or broken disk does.
pub trait SegmentFile: Write {
    /// Cut the file back to `len` bytes (drop a torn frame).
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    fn sync_data(&mut self) -> io::Result<()>;
    /// Bytes in the file.
    fn size(&self) -> io::Result<u64>;
}

impl SegmentFile for File {
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.set_len(len)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }
    fn size(&self) -> io::Result<u64> {
        self.metadata().map(|m| m.len())
    }
}

/// Creates segment files. Listing, reading and deleting segments always use the real file
/// system; only appends go through [`SegmentFile`].
pub trait SegmentFs {
    type File: SegmentFile;
    /// Create `path`, failing if it exists, opened for appending.
    fn create_new(&self, path: &Path) -> io::Result<Self::File>;
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskFs;

impl SegmentFs for DiskFs {
    type File = File;
    fn create_new(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new().create_new(true).append(true).open(path)
    }
}

pub struct SegmentWriter<S: SegmentFs = DiskFs> {
    fs: S,
    dir: PathBuf,
    file: S::File,
    id: u64,
    /// Bytes of whole frames in the open segment: where the next frame goes.
    len: u64,
    max_segment_bytes: u64,
    cap_bytes: u64,
    used_bytes: u64,
    fsync: FsyncPolicy,
    last_sync: Instant,
    dirty: bool,
    /// The open segment may end in bytes that are not a whole frame (a failed write could
    /// not be cut off): the next append starts a new segment.
    broken: bool,
    /// One frame being written, reused so that an append allocates only when a frame is
    /// larger than every earlier one.
    frame: Vec<u8>,
}

impl SegmentWriter {
    /// Open `dir` for appending: a new segment after any existing ones.
    pub fn open(
        dir: &Path,
        max_segment_bytes: u64,
        cap_bytes: u64,
        fsync: FsyncPolicy,
    ) -> Result<Self, SegmentError> {
        Self::open_with(DiskFs, dir, max_segment_bytes, cap_bytes, fsync)
    }
}

impl<S: SegmentFs> SegmentWriter<S> {
    /// [`SegmentWriter::open`] with segment files created by `fs`.
    pub fn open_with(
        fs: S,
        dir: &Path,
        max_segment_bytes: u64,
        cap_bytes: u64,
        fsync: FsyncPolicy,
    ) -> Result<Self, SegmentError> {
        let err = |source| SegmentError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        fs::create_dir_all(dir).map_err(err)?;
        let next = list_segments(dir).map_err(err)?.last().map_or(1, |l| l + 1);
        let used = disk_usage(dir).map_err(err)?;
        let (file, len) = Self::create(&fs, dir, next).map_err(err)?;
        Ok(SegmentWriter {
            fs,
            dir: dir.to_path_buf(),
            file,
            id: next,
            len,
            max_segment_bytes: max_segment_bytes.max(1024),
            cap_bytes,
            used_bytes: used + len,
            fsync,
            last_sync: Instant::now(),
            dirty: false,
            broken: false,
            frame: Vec::new(),
        })
    }

    fn create(fs: &S, dir: &Path, id: u64) -> io::Result<(S::File, u64)> {
        let path = segment_path(dir, id);
        let mut f = fs.create_new(&path)?;
        // Make the new file's directory entry durable too.
        let header = f
            .write_all(SEGMENT_MAGIC)
            .and_then(|()| File::open(dir)?.sync_all());
        if let Err(e) = header {
            // Leave no half-made segment behind: the next roll creates this id again.
            drop(f);
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        Ok((f, SEGMENT_MAGIC.len() as u64))
    }

    /// Append one frame. Fails with [`SegmentError::Full`] when the cap would be exceeded;
    /// the caller decides what to drop and counts it.
    ///
    /// A frame that fails to be written (or fsynced) is not in the log: its bytes are cut
    /// off again, so frames appended later stay readable. When the cut itself fails, the
    /// next append starts a new segment and readers see the leftover as that segment's end.
    pub fn append(&mut self, payload: &[u8]) -> Result<Position, SegmentError> {
        if payload.len() > MAX_FRAME_BYTES as usize {
            return Err(SegmentError::FrameTooLarge(payload.len()));
        }
        let frame = FRAME_HEADER + payload.len() as u64;
        let rolls = self.broken
            || (self.len + frame > self.max_segment_bytes && self.len > SEGMENT_MAGIC.len() as u64);
        // A roll starts a new file with its header: that counts against the cap too.
        let header = if rolls { SEGMENT_MAGIC.len() as u64 } else { 0 };
        if self.used_bytes + header + frame > self.cap_bytes {
            return Err(SegmentError::Full {
                dir: self.dir.clone(),
                used: self.used_bytes,
                cap: self.cap_bytes,
                frame,
            });
        }
        if rolls {
            self.roll().map_err(|e| io_err(&self.dir, e))?;
        }
        let pos = Position {
            segment: self.id,
            offset: self.len,
        };
        self.frame.clear();
        self.frame
            .extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.frame
            .extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
        self.frame.extend_from_slice(payload);
        if let Err(e) = self.file.write_all(&self.frame) {
            self.cut_back();
            return Err(io_err(&self.dir, e));
        }
        self.dirty = true;
        let synced = match self.fsync {
            FsyncPolicy::Always => self.sync(),
            FsyncPolicy::Interval(d) if self.last_sync.elapsed() >= d => self.sync(),
            _ => Ok(()),
        };
        if let Err(e) = synced {
            // After a failed fsync the kernel may have dropped dirty pages of this file: the
            // frame is reported as not written, and later frames go to a new segment.
            self.cut_back();
            self.broken = true;
            return Err(io_err(&self.dir, e));
        }
        self.len += frame;
        self.used_bytes += frame;
        Ok(pos)
    }

    /// A frame failed part-way: cut the segment back to its last whole frame, or, when that
    /// fails too, count what is left on disk and start a new segment on the next append.
    fn cut_back(&mut self) {
        if self.file.truncate(self.len).is_ok() {
            return;
        }
        self.broken = true;
        // The leftover bytes stay on disk until the segment is released: count them.
        let leftover = self
            .file
            .size()
            .map_or(self.frame.len() as u64, |n| n.saturating_sub(self.len));
        self.used_bytes += leftover;
    }

    fn roll(&mut self) -> io::Result<()> {
        if self.fsync != FsyncPolicy::Never {
            // A segment whose write failed may fail its fsync too; its whole frames are
            // counted as written already, and a new file is what matters now.
            if let Err(e) = self.sync() {
                if !self.broken {
                    return Err(e);
                }
            }
        }
        let (file, len) = Self::create(&self.fs, &self.dir, self.id + 1)?;
        self.file = file;
        self.id += 1;
        self.len = len;
        self.used_bytes += len;
        self.broken = false;
        self.dirty = false;
        Ok(())
    }

    pub fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            self.file.sync_data()?;
            self.dirty = false;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Where the next frame will go.
    pub fn end(&self) -> Position {
        Position {
            segment: self.id,
            offset: self.len,
        }
    }

    pub fn used_bytes(&self) -> u64 {
        self.used_bytes
    }

    /// Delete whole segments before `pos.segment` (fully consumed), never the open one.
    /// Returns the bytes freed; what was deleted before an error is accounted for too.
    pub fn release_before(&mut self, pos: Position) -> io::Result<u64> {
        let mut freed = 0;
        let mut result = Ok(());
        for id in list_segments(&self.dir)? {
            if id >= pos.segment || id >= self.id {
                break;
            }
            let p = segment_path(&self.dir, id);
            let len = fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            if let Err(e) = fs::remove_file(p) {
                result = Err(e);
                break;
            }
            freed += len;
        }
        self.used_bytes = self.used_bytes.saturating_sub(freed);
        result.map(|()| freed)
    }
}

/// A frame read back, with the position just after it.
#[derive(Debug)]
pub struct Frame {
    pub at: Position,
    pub next: Position,
    pub payload: Vec<u8>,
}

/// Reads frames in order from a position. Returns `None` at the current end of the log; call
/// again later to see frames appended since.
pub struct SegmentReader {
    dir: PathBuf,
    pos: Position,
    file: Option<BufReader<File>>,
    /// Torn or corrupt frames skipped so far (each ends its segment).
    pub skipped_tails: u64,
}

impl SegmentReader {
    pub fn new(dir: &Path, from: Position) -> Self {
        SegmentReader {
            dir: dir.to_path_buf(),
            pos: from,
            file: None,
            skipped_tails: 0,
        }
    }

    pub fn position(&self) -> Position {
        self.pos
    }

    /// Continue reading from `pos` (a position this reader returned earlier).
    pub fn seek(&mut self, pos: Position) {
        self.pos = pos;
        self.file = None;
    }

    fn open_at(&mut self) -> io::Result<bool> {
        let segs = list_segments(&self.dir)?;
        // The segment we are at may have been released; move to the first one after it.
        let Some(&id) = segs.iter().find(|&&s| s >= self.pos.segment) else {
            return Ok(false);
        };
        if id != self.pos.segment {
            self.pos = Position {
                segment: id,
                offset: 0,
            };
        }
        let mut f = File::open(segment_path(&self.dir, id))?;
        let mut magic = [0u8; 8];
        if f.read_exact(&mut magic).is_err() || &magic != SEGMENT_MAGIC {
            // Empty or foreign file at the head of a new segment: treat as not yet written.
            return Ok(segs.last() != Some(&id) && self.advance_segment(&segs));
        }
        let offset = self.pos.offset.max(SEGMENT_MAGIC.len() as u64);
        f.seek(SeekFrom::Start(offset))?;
        self.pos.offset = offset;
        self.file = Some(BufReader::with_capacity(256 * 1024, f));
        Ok(true)
    }

    fn advance_segment(&mut self, segs: &[u64]) -> bool {
        match segs.iter().find(|&&s| s > self.pos.segment) {
            Some(&next) => {
                self.pos = Position {
                    segment: next,
                    offset: 0,
                };
                self.file = None;
                true
            }
            None => false,
        }
    }

    pub fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if self.file.is_none() && !self.open_at()? {
                return Ok(None);
            }
            let Some(f) = self.file.as_mut() else {
                continue;
            };
            match read_frame(f)? {
                ReadOutcome::Frame(payload) => {
                    let at = self.pos;
                    self.pos.offset += FRAME_HEADER + payload.len() as u64;
                    return Ok(Some(Frame {
                        at,
                        next: self.pos,
                        payload,
                    }));
                }
                end => {
                    // End of this segment's valid data. If a newer segment exists, this one
                    // is finished for good (writers never return to it).
                    let segs = list_segments(&self.dir)?;
                    if segs.iter().any(|&s| s > self.pos.segment) {
                        if matches!(end, ReadOutcome::Torn) {
                            self.skipped_tails += 1;
                        }
                        self.advance_segment(&segs);
                        continue;
                    }
                    // Still the newest segment: more may be appended. Re-open next time.
                    self.file = None;
                    return Ok(None);
                }
            }
        }
    }
}

enum ReadOutcome {
    Frame(Vec<u8>),
    /// Clean end of file.
    End,
    /// Partial or corrupt frame.
    Torn,
}

fn read_frame(r: &mut impl Read) -> io::Result<ReadOutcome> {
    let mut header = [0u8; 8];
    match read_full(r, &mut header)? {
        0 => return Ok(ReadOutcome::End),
        8 => {}
        _ => return Ok(ReadOutcome::Torn),
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_FRAME_BYTES {
        return Ok(ReadOutcome::Torn);
    }
    let mut payload = vec![0u8; len as usize];
    if read_full(r, &mut payload)? != len as usize || crc32c::crc32c(&payload) != crc {
        return Ok(ReadOutcome::Torn);
    }
    Ok(ReadOutcome::Frame(payload))
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Persist a reader position atomically (temp file, fsync, rename, fsync directory).
pub fn save_position(path: &Path, pos: Position) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        writeln!(f, "{} {}", pos.segment, pos.offset)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Load a position saved by [`save_position`]; the start of the log when absent.
pub fn load_position(path: &Path) -> io::Result<Position> {
    match fs::read_to_string(path) {
        Ok(s) => {
            let mut it = s.split_whitespace().map(|v| v.parse::<u64>());
            match (it.next(), it.next()) {
                (Some(Ok(segment)), Some(Ok(offset))) => Ok(Position { segment, offset }),
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: expected `<segment> <offset>`, found {s:?}",
                        path.display()
                    ),
                )),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Position::default()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(r: &mut SegmentReader) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| r.next_frame().unwrap())
            .map(|f| f.payload)
            .collect()
    }

    #[test]
    fn append_roll_read_release() {
        let d = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::open(d.path(), 2048, 1 << 20, FsyncPolicy::Always).unwrap();
        let data: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; 100 + i as usize]).collect();
        for p in &data {
            w.append(p).unwrap();
        }
        assert!(list_segments(d.path()).unwrap().len() > 3, "rolled by size");
        let mut r = SegmentReader::new(d.path(), Position::default());
        assert_eq!(payloads(&mut r), data);
        // Appends after reaching the end become visible.
        w.append(b"later").unwrap();
        assert_eq!(payloads(&mut r), vec![b"later".to_vec()]);
        let used = w.used_bytes();
        let freed = w.release_before(r.position()).unwrap();
        assert!(freed > 0 && w.used_bytes() == used - freed);
        assert_eq!(w.used_bytes(), disk_usage(d.path()).unwrap());
    }

    #[test]
    fn torn_tail_is_skipped_and_a_restart_continues_in_a_new_segment() {
        let d = tempfile::tempdir().unwrap();
        {
            let mut w =
                SegmentWriter::open(d.path(), 1 << 20, 1 << 20, FsyncPolicy::Never).unwrap();
            w.append(b"one").unwrap();
            w.append(b"two").unwrap();
        }
        // Simulate a crash mid-frame: a header promising more bytes than were written.
        let seg = segment_path(d.path(), 1);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&100u32.to_le_bytes()).unwrap();
        f.write_all(&[1, 2, 3, 4, 5]).unwrap();
        drop(f);
        let mut w = SegmentWriter::open(d.path(), 1 << 20, 1 << 20, FsyncPolicy::Never).unwrap();
        w.append(b"three").unwrap();
        let mut r = SegmentReader::new(d.path(), Position::default());
        assert_eq!(
            payloads(&mut r),
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
        );
        assert_eq!(r.skipped_tails, 1);
    }

    #[test]
    fn corrupt_frame_fails_its_checksum() {
        let d = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::open(d.path(), 1 << 20, 1 << 20, FsyncPolicy::Never).unwrap();
        w.append(b"good").unwrap();
        let bad = w.append(b"flipped").unwrap();
        drop(w);
        let seg = segment_path(d.path(), 1);
        let mut bytes = fs::read(&seg).unwrap();
        bytes[(bad.offset + FRAME_HEADER) as usize] ^= 0xff;
        fs::write(&seg, bytes).unwrap();
        let mut r = SegmentReader::new(d.path(), Position::default());
        assert_eq!(payloads(&mut r), vec![b"good".to_vec()]);
    }

    #[test]
    fn cap_refuses_and_release_makes_room() {
        let d = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::open(d.path(), 1024, 4096, FsyncPolicy::Never).unwrap();
        let mut n = 0;
        while w.append(&[0u8; 500]).is_ok() {
            n += 1;
        }
        assert!(matches!(
            w.append(&[0u8; 500]),
            Err(SegmentError::Full { .. })
        ));
        assert!(n >= 6, "{n}");
        let mut r = SegmentReader::new(d.path(), Position::default());
        while r.next_frame().unwrap().is_some() {}
        w.release_before(r.position()).unwrap();
        w.append(&[0u8; 500]).unwrap();
    }

    #[test]
    fn the_cap_holds_on_disk_whatever_the_frame_sizes() {
        // A frame that fills the cap exactly while forcing a roll used to leave the new
        // segment's header over the cap.
        for size in (100usize..1010).step_by(3) {
            let d = tempfile::tempdir().unwrap();
            let cap = 4096;
            let mut w = SegmentWriter::open(d.path(), 1024, cap, FsyncPolicy::Never).unwrap();
            while w.append(&vec![7u8; size]).is_ok() {}
            let on_disk = disk_usage(d.path()).unwrap();
            assert!(on_disk <= cap, "frames of {size}: {on_disk} bytes on disk");
            assert_eq!(on_disk, w.used_bytes(), "frames of {size}");
        }
    }

    /// A disk that can fill up (a write takes what still fits, then fails with ENOSPC),
    /// refuse to truncate, or fail fsync. Files are real; only appends are intercepted.
    #[derive(Default)]
    struct Disk {
        free: Option<u64>,
        fail_truncate: bool,
        fail_sync: bool,
    }

    #[derive(Clone, Default)]
    struct FaultyFs(std::sync::Arc<std::sync::Mutex<Disk>>);

    struct FaultyFile {
        inner: File,
        disk: std::sync::Arc<std::sync::Mutex<Disk>>,
    }

    const ENOSPC: i32 = 28;

    impl Write for FaultyFile {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut d = self.disk.lock().unwrap();
            let n = match d.free {
                None => buf.len(),
                Some(0) => return Err(io::Error::from_raw_os_error(ENOSPC)),
                Some(free) => buf.len().min(free as usize),
            };
            let n = self.inner.write(&buf[..n])?;
            if let Some(free) = d.free.as_mut() {
                *free -= n as u64;
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.inner.flush()
        }
    }

    impl SegmentFile for FaultyFile {
        fn truncate(&mut self, len: u64) -> io::Result<()> {
            if self.disk.lock().unwrap().fail_truncate {
                return Err(io::Error::other("injected truncate failure"));
            }
            self.inner.set_len(len)
        }
        fn sync_data(&mut self) -> io::Result<()> {
            if self.disk.lock().unwrap().fail_sync {
                return Err(io::Error::from_raw_os_error(5)); // EIO
            }
            self.inner.sync_data()
        }
        fn size(&self) -> io::Result<u64> {
            self.inner.size()
        }
    }

    impl SegmentFs for FaultyFs {
        type File = FaultyFile;
        fn create_new(&self, path: &Path) -> io::Result<FaultyFile> {
            Ok(FaultyFile {
                inner: DiskFs.create_new(path)?,
                disk: self.0.clone(),
            })
        }
    }

    impl FaultyFs {
        fn set(&self, f: impl FnOnce(&mut Disk)) {
            f(&mut self.0.lock().unwrap())
        }
    }

    /// A writer with 1 MiB segments and cap on a disk the test can fill or break.
    fn faulty_writer(dir: &Path, fsync: FsyncPolicy) -> (FaultyFs, SegmentWriter<FaultyFs>) {
        let fs = FaultyFs::default();
        let w = SegmentWriter::open_with(fs.clone(), dir, 1 << 20, 1 << 20, fsync).unwrap();
        (fs, w)
    }

    #[test]
    fn a_torn_write_is_cut_off_and_later_frames_stay_readable() {
        let d = tempfile::tempdir().unwrap();
        let (fs, mut w) = faulty_writer(d.path(), FsyncPolicy::Never);
        w.append(b"one").unwrap();
        w.append(b"two").unwrap();
        // The disk fills after 5 bytes of the next frame's header.
        fs.set(|d| d.free = Some(5));
        assert!(matches!(
            w.append(b"three, torn"),
            Err(SegmentError::Io { .. })
        ));
        assert_eq!(disk_usage(d.path()).unwrap(), w.used_bytes());
        // Space comes back.
        fs.set(|d| d.free = None);
        let four = w.append(b"four").unwrap();
        w.append(b"five").unwrap();
        assert_eq!(
            four.segment, 1,
            "the same segment, cut back to its last frame"
        );
        let mut r = SegmentReader::new(d.path(), Position::default());
        assert_eq!(
            payloads(&mut r),
            vec![
                b"one".to_vec(),
                b"two".to_vec(),
                b"four".to_vec(),
                b"five".to_vec()
            ]
        );
        assert_eq!(r.skipped_tails, 0);
        assert_eq!(disk_usage(d.path()).unwrap(), w.used_bytes());
    }

    #[test]
    fn a_filling_disk_loses_exactly_the_refused_frames() {
        let d = tempfile::tempdir().unwrap();
        let fs = FaultyFs::default();
        let mut w =
            SegmentWriter::open_with(fs.clone(), d.path(), 4096, 1 << 30, FsyncPolicy::Never)
                .unwrap();
        // xorshift64: a fixed, dependency-free sequence of sizes.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut acked = Vec::new();
        let mut refused = 0;
        for i in 0..400u32 {
            // Every 20 frames the disk gets a little room, often less than a frame.
            if i % 20 == 0 {
                let free = next(2000);
                fs.set(|d| d.free = Some(free));
            }
            let p = vec![i as u8; 1 + next(300) as usize];
            match w.append(&p) {
                Ok(_) => acked.push(p),
                Err(SegmentError::Io { .. }) => refused += 1,
                Err(e) => panic!("{e}"),
            }
            assert_eq!(disk_usage(d.path()).unwrap(), w.used_bytes(), "frame {i}");
        }
        assert!(refused > 100 && acked.len() > 50, "{refused} refused");
        let mut r = SegmentReader::new(d.path(), Position::default());
        let read = payloads(&mut r);
        let lens = |v: &[Vec<u8>]| v.iter().map(|p| (p[0], p.len())).collect::<Vec<_>>();
        assert_eq!(
            lens(&read),
            lens(&acked),
            "every acknowledged frame (first byte, length), in order"
        );
        assert!(read == acked);
        assert_eq!(r.skipped_tails, 0);
    }

    #[test]
    fn when_the_cut_fails_the_next_frame_starts_a_new_segment() {
        let d = tempfile::tempdir().unwrap();
        let (fs, mut w) = faulty_writer(d.path(), FsyncPolicy::Never);
        w.append(b"one").unwrap();
        w.append(b"two").unwrap();
        fs.set(|d| {
            d.free = Some(5);
            d.fail_truncate = true;
        });
        assert!(w.append(b"three, torn").is_err());
        assert_eq!(
            disk_usage(d.path()).unwrap(),
            w.used_bytes(),
            "leftover counted"
        );
        fs.set(|d| d.free = None);
        let four = w.append(b"four").unwrap();
        assert_eq!(four.segment, 2);
        let mut r = SegmentReader::new(d.path(), Position::default());
        assert_eq!(
            payloads(&mut r),
            vec![b"one".to_vec(), b"two".to_vec(), b"four".to_vec()]
        );
        assert_eq!(r.skipped_tails, 1, "the leftover ends segment 1");
        assert_eq!(disk_usage(d.path()).unwrap(), w.used_bytes());
    }

    #[test]
    fn a_failed_fsync_drops_the_frame_and_moves_to_a_new_segment() {
        let d = tempfile::tempdir().unwrap();
        let (fs, mut w) = faulty_writer(d.path(), FsyncPolicy::Always);
        w.append(b"one").unwrap();
        fs.set(|d| d.fail_sync = true);
        assert!(w.append(b"two, not durable").is_err());
        fs.set(|d| d.fail_sync = false);
        let three = w.append(b"three").unwrap();
        assert_eq!(three.segment, 2);
        let mut r = SegmentReader::new(d.path(), Position::default());
        assert_eq!(payloads(&mut r), vec![b"one".to_vec(), b"three".to_vec()]);
        assert_eq!(r.skipped_tails, 0);
        assert_eq!(disk_usage(d.path()).unwrap(), w.used_bytes());
    }

    #[test]
    fn positions_persist_atomically() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("cursor");
        assert_eq!(load_position(&p).unwrap(), Position::default());
        save_position(
            &p,
            Position {
                segment: 3,
                offset: 99,
            },
        )
        .unwrap();
        assert_eq!(
            load_position(&p).unwrap(),
            Position {
                segment: 3,
                offset: 99
            }
        );
        fs::write(&p, "garbage").unwrap();
        assert!(load_position(&p).is_err());
    }
}
