//! The index writer's view of the index directory: the postings and positions files, read
//! through a small window with `pread`, and every other file memory-mapped as usual.
//!
//! A merge reads each of its segments' postings and positions from start to end. Through
//! memory maps, every page it reads stays mapped (and counted in the server's resident
//! memory) until the merged segments are dropped: a merge of eight segments of 50k
//! messages mapped some 12 MiB at once (`docs/benchmarks.md`). Read here, the bytes pass
//! through one window per file and the operating system's file cache. Searches keep
//! reading through memory maps (the reader opens the index on a plain [`MmapDirectory`]):
//! they touch a few blocks of a few posting lists, which a window would copy whole.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ::tantivy::HasLen;
use ::tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use ::tantivy::directory::{
    Directory, DirectoryLock, FileHandle, Lock, MmapDirectory, OwnedBytes, WatchCallback, WatchHandle, WritePtr,
};

/// Bytes read ahead at once: a posting list or its positions are mostly far shorter.
const WINDOW: usize = 64 * 1024;

/// The extensions of the files read through a window: postings and positions.
const WINDOWED: [&str; 2] = ["idx", "pos"];

#[derive(Clone, Debug)]
pub struct WindowedDirectory {
    root: PathBuf,
    mapped: MmapDirectory,
}

impl WindowedDirectory {
    /// `mapped` must be opened on `root`; the files not read through a window go to it.
    pub fn new(root: PathBuf, mapped: MmapDirectory) -> Self {
        Self { root, mapped }
    }
}

impl Directory for WindowedDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        let windowed = path.extension().and_then(|e| e.to_str()).is_some_and(|e| WINDOWED.contains(&e));
        if !windowed {
            return self.mapped.get_file_handle(path);
        }
        let open = || -> io::Result<WindowedFile> {
            let file = File::open(self.root.join(path))?;
            let len = usize::try_from(file.metadata()?.len()).map_err(io::Error::other)?;
            Ok(WindowedFile { file, len, window: Mutex::new(None) })
        };
        match open() {
            Ok(file) => Ok(Arc::new(file)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(OpenReadError::FileDoesNotExist(path.to_owned())),
            Err(e) => Err(OpenReadError::wrap_io_error(e, path.to_owned())),
        }
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        self.mapped.delete(path)
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        self.mapped.exists(path)
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        self.mapped.open_write(path)
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        self.mapped.atomic_read(path)
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.mapped.atomic_write(path, data)
    }

    fn sync_directory(&self) -> io::Result<()> {
        self.mapped.sync_directory()
    }

    fn acquire_lock(&self, lock: &Lock) -> Result<DirectoryLock, LockError> {
        self.mapped.acquire_lock(lock)
    }

    fn watch(&self, watch_callback: WatchCallback) -> ::tantivy::Result<WatchHandle> {
        self.mapped.watch(watch_callback)
    }
}

/// A file read with `pread`: a read shorter than [`WINDOW`] fetches a whole window from
/// where it starts and keeps it, so the reads that follow it (a merge reads in order) are
/// slices of that window; a longer read fetches just what it asks for.
#[derive(Debug)]
struct WindowedFile {
    file: File,
    len: usize,
    /// Where the window starts in the file, and its bytes.
    window: Mutex<Option<(usize, OwnedBytes)>>,
}

impl HasLen for WindowedFile {
    fn len(&self) -> usize {
        self.len
    }
}

impl FileHandle for WindowedFile {
    fn read_bytes(&self, range: Range<usize>) -> io::Result<OwnedBytes> {
        let mut window = self.window.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((start, bytes)) = window.as_ref()
            && range.start >= *start
            && range.end <= start + bytes.len()
        {
            return Ok(bytes.slice(range.start - start..range.end - start));
        }
        let keep = range.len() < WINDOW;
        let end = if keep { (range.start + WINDOW).min(self.len).max(range.end) } else { range.end };
        let mut buffer = vec![0; end - range.start];
        self.file.read_exact_at(&mut buffer, range.start as u64)?;
        let bytes = OwnedBytes::new(buffer);
        let asked = bytes.slice(0..range.len());
        if keep {
            *window = Some((range.start, bytes));
        }
        Ok(asked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_read_returns_the_bytes_asked_for_wherever_it_falls_against_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..3 * WINDOW + 123).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(dir.path().join("segment.pos"), &content).unwrap();
        let directory = WindowedDirectory::new(dir.path().to_owned(), MmapDirectory::open(dir.path()).unwrap());
        let file = directory.get_file_handle(Path::new("segment.pos")).unwrap();
        assert_eq!(file.len(), content.len());
        let reads = [
            0..10,                                     // fetches the first window
            10..1_000,                                 // within it
            WINDOW - 5..WINDOW + 5,                    // across its end: a new window
            WINDOW..WINDOW,                            // empty
            2 * WINDOW - 10..2 * WINDOW + WINDOW / 2,  // longer than what is left of the window
            100..100 + 2 * WINDOW,                     // longer than a window: read as asked
            content.len() - 3..content.len(),          // the window is cut at the end of the file
            content.len() - WINDOW - 1..content.len(), // a window's length, up to the end
        ];
        for range in reads {
            let bytes = file.read_bytes(range.clone()).unwrap();
            assert_eq!(bytes.as_slice(), &content[range.clone()], "bytes {range:?}");
        }
        assert!(file.read_bytes(content.len() - 1..content.len() + 1).is_err(), "a read past the end fails");
    }

    #[test]
    fn files_other_than_postings_and_positions_are_memory_mapped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("segment.term"), b"terms").unwrap();
        let directory = WindowedDirectory::new(dir.path().to_owned(), MmapDirectory::open(dir.path()).unwrap());
        let handle = format!("{:?}", directory.get_file_handle(Path::new("segment.term")).unwrap());
        assert!(!handle.contains("WindowedFile"), "{handle}");
        assert!(matches!(directory.get_file_handle(Path::new("missing.idx")), Err(OpenReadError::FileDoesNotExist(_))));
    }
}
