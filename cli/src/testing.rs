//! What the unit tests of several commands share.

use std::path::PathBuf;

/// A folder of one test's own, removed when dropped.
pub(crate) struct Folder(pub(crate) PathBuf);

impl Folder {
    /// An empty folder for the test `name` of the part `part`.
    pub(crate) fn new(part: &str, name: &str) -> Folder {
        let path = std::env::temp_dir().join(format!(
            "warren-{part}-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&path).expect("a folder");
        Folder(path)
    }

    /// Writes `text` to the file `relative` (its folders made as needed); its path.
    pub(crate) fn write(&self, relative: &str, text: &str) -> PathBuf {
        let path = self.0.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create folders");
        }
        std::fs::write(&path, text).expect("write");
        path
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
