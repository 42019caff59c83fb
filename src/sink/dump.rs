//! A dump file or stdout as the target.
//!
//! A file is written to a temporary file in the same folder and renamed over the target only when
//! the whole run succeeded, so a failed or interrupted run never leaves a partial file behind (the
//! temporary file is removed when the sink is dropped without [`DumpSink::commit`]).

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// Smaller than a batch of rows, so whole batches go straight to the file without a copy.
const BUFFER: usize = 64 * 1024;

pub struct DumpSink {
    out: BufWriter<Box<dyn Write + Send>>,
    temp: Option<(NamedTempFile, PathBuf)>,
}

impl DumpSink {
    /// `-` is stdout; anything else a file path.
    pub fn open(target: &str) -> io::Result<Self> {
        if target == "-" {
            return Ok(DumpSink {
                out: BufWriter::with_capacity(BUFFER, Box::new(io::stdout())),
                temp: None,
            });
        }
        let path = PathBuf::from(target);
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "dump".into());
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(&dir)?;
        log::debug!("writing to {}, renamed at the end", temp.path().display());
        let file = temp.as_file().try_clone()?;
        Ok(DumpSink {
            out: BufWriter::with_capacity(BUFFER, Box::new(file)),
            temp: Some((temp, path)),
        })
    }

    pub fn is_stdout(&self) -> bool {
        self.temp.is_none()
    }

    pub fn writer(&mut self) -> &mut (dyn Write + Send) {
        &mut self.out
    }

    /// Flush, sync and move the file into place.
    pub fn commit(mut self) -> io::Result<()> {
        self.out.flush()?;
        if let Some((temp, path)) = self.temp.take() {
            temp.as_file().sync_all()?;
            temp.persist(&path).map_err(|e| e.error)?;
            log::info!("renamed the finished output to {}", path.display());
            sync_dir(&path);
        }
        Ok(())
    }
}

/// Make the rename durable; a failure here only weakens crash safety, so it is not an error.
fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_appears_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.sql");
        let mut sink = DumpSink::open(target.to_str().unwrap()).unwrap();
        sink.writer().write_all(b"hello\n").unwrap();
        assert!(!target.exists());
        sink.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "hello\n");

        let failed = dir.path().join("failed.sql");
        let mut sink = DumpSink::open(failed.to_str().unwrap()).unwrap();
        sink.writer().write_all(b"partial").unwrap();
        drop(sink);
        assert!(!failed.exists());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "only out.sql remains");
    }
}
