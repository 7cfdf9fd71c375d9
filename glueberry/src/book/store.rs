//! The book's file: locked, loaded, recovered when corrupt, written atomically.

use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use super::{Book, ParseError, Skipped, format};

/// Files larger than this are refused before being read.
pub const MAX_FILE_SIZE: u64 = 64 * 1024 * 1024;

/// Why the book cannot be opened or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BookError {
    /// Another process (or another node in this one) has the book open.
    #[error("address book {0} is in use by another process (its lock file is held)")]
    Locked(PathBuf),
    /// The file is larger than [`MAX_FILE_SIZE`].
    #[error("address book {path} is {size} bytes, over the {MAX_FILE_SIZE}-byte limit")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size, in bytes.
        size: u64,
    },
    /// The file has a version this crate does not read; it is left untouched.
    #[error("address book {path}: {source}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// The error.
        source: ParseError,
    },
    /// Reading or writing failed.
    #[error("address book {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// What happened to a corrupt file found at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Where the corrupt file was moved.
    pub backup: PathBuf,
    /// What was wrong with it.
    pub reason: String,
}

/// The open book file. Holds an exclusive advisory lock on `<path>.lock` until dropped, and
/// removes that file when dropped (a clean exit leaves no lock file behind).
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    _lock: File,
}

impl Drop for Store {
    fn drop(&mut self) {
        // Removed while still locked: a process that opened it meanwhile finds it held, and
        // one that comes later makes a new one.
        let _ = fs::remove_file(with_suffix(&self.path, ".lock"));
    }
}

impl Store {
    /// Opens (or creates) the book at `path`: takes the lock, reads and parses the file.
    ///
    /// A corrupt file is moved aside (to `<path>.bak`, or `<path>.bak.N` if that exists, so
    /// that no earlier backup is overwritten) and an empty book is returned with
    /// [`Recovered`]. A file of an unknown version is an error and is left as it is.
    pub fn open(path: &Path) -> Result<(Self, Book, Vec<Skipped>, Option<Recovered>), BookError> {
        let io = |source| BookError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(io)?;
        }
        let lock_path = with_suffix(path, ".lock");
        let lock = lock_file(&lock_path).map_err(io)?;
        let Some(lock) = lock else {
            return Err(BookError::Locked(path.to_owned()));
        };
        let store = Self {
            path: path.to_owned(),
            _lock: lock,
        };
        let bytes = match File::open(path) {
            Ok(f) => {
                let size = f.metadata().map_err(io)?.len();
                if size > MAX_FILE_SIZE {
                    return Err(BookError::TooLarge {
                        path: path.to_owned(),
                        size,
                    });
                }
                let mut bytes = Vec::with_capacity(size as usize);
                f.take(MAX_FILE_SIZE + 1)
                    .read_to_end(&mut bytes)
                    .map_err(io)?;
                bytes
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(e)),
        };
        match format::parse(&bytes) {
            Ok((peers, skipped)) => {
                let book = Book::from_entries(peers).with_bans(format::parse_bans(&bytes));
                Ok((store, book, skipped, None))
            }
            Err(e @ ParseError::UnsupportedVersion(_)) => Err(BookError::Unsupported {
                path: path.to_owned(),
                source: e,
            }),
            Err(ParseError::Corrupt(reason)) => {
                let backup = free_backup_path(path);
                fs::rename(path, &backup).map_err(io)?;
                sync_dir(path).map_err(io)?;
                let recovered = Recovered { backup, reason };
                Ok((store, Book::default(), Vec::new(), Some(recovered)))
            }
        }
    }

    /// The book's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file with `bytes` atomically: write `<path>.tmp`, fsync it, rename it over
    /// the file, fsync the directory. A crash at any point leaves the old or the new file.
    pub fn save(&self, bytes: &[u8]) -> Result<(), BookError> {
        let io = |source| BookError::Io {
            path: self.path.clone(),
            source,
        };
        let tmp = with_suffix(&self.path, ".tmp");
        let written = (|| {
            let mut f = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            sync_dir(&self.path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written.map_err(io)
    }
}

/// Opens and locks `path`; `None` if another holder has it. A holder removes the file when it
/// closes (while still holding it): a lock taken on a file that was removed meanwhile is not
/// the one at `path`, so it is taken again on the new file.
fn lock_file(path: &Path) -> std::io::Result<Option<File>> {
    for _ in 0..8 {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        if same_file(&file, path)? {
            return Ok(Some(file));
        }
    }
    Ok(None)
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt as _;
    let held = file.metadata()?;
    match fs::metadata(path) {
        Ok(now) => Ok(now.dev() == held.dev() && now.ino() == held.ino()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn same_file(_: &File, _: &Path) -> std::io::Result<bool> {
    Ok(true)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn free_backup_path(path: &Path) -> PathBuf {
    let first = with_suffix(path, ".bak");
    if !first.exists() {
        return first;
    }
    (1..)
        .map(|n| with_suffix(path, &format!(".bak.{n}")))
        .find(|p| !p.exists())
        .expect("some backup name is free")
}

/// Makes a rename in the directory of `path` durable.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}
