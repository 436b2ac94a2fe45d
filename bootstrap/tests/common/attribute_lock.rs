//! One writer of custom search attributes at a time on the stack's shared server, across test
//! processes.
//!
//! With Elasticsearch/OpenSearch visibility the server's AddSearchAttributes reads the
//! cluster's attribute list, updates the index mapping, then saves the list it read plus the
//! new names as a whole (`searchattribute.managerImpl.SaveSearchAttributes` in 1.32.2): two
//! adds that overlap keep only the last one's view, and the other's attributes disappear from
//! the cluster metadata although the call succeeded and they were briefly listed. Tests run in
//! parallel processes against one server, so every test that may add attributes holds this
//! lock while it does; reading needs no lock.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;

/// Held until dropped (closing the file releases the lock).
pub struct AttributeWriter {
    _file: File,
}

/// Blocks until no other test process is adding search attributes.
pub fn attribute_writer() -> AttributeWriter {
    let dir = std::env::var_os("TB_REPO_LOCAL")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let path = dir.join("search-attributes.test-lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    file.lock()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", path.display()));
    AttributeWriter { _file: file }
}
