//! Sessions in one JSON file: for a deploy on one machine.

use super::{SavedSession, SessionStore, SessionStoreError, StoreFuture};
use discore_protocol::ShardId;
use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeMap,
    fs, io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
};

/// The file's layout.
#[derive(Default, Deserialize, Serialize)]
struct FileContents {
    /// The layout version.
    version: u32,
    sessions: Vec<SavedSession>,
}

const VERSION: u32 = 1;

/// A session store in one JSON file.
///
/// Every change rewrites the file atomically (a temporary file renamed over
/// it), so a crash never leaves half a file. Changes from one process are
/// serialized; two processes must not share a file. File IO runs on the
/// blocking thread pool, never on an arbiter. The file holds session ids and
/// resume URLs, never the token.
#[derive(Clone, Debug)]
pub struct JsonFileSessionStore {
    path: Arc<Path>,
    /// Serializes read-modify-write cycles.
    lock: Arc<Mutex<()>>,
}

impl JsonFileSessionStore {
    /// A store in `path`. The file need not exist; it and its directory are
    /// created on the first save.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: Arc::from(path.into()),
            lock: Arc::default(),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the blocking pool under the store's lock.
    fn run<T, F>(&self, f: F) -> StoreFuture<T>
    where
        T: Send + 'static,
        F: FnOnce(&Path) -> Result<T, SessionStoreError> + Send + 'static,
    {
        let path = Arc::clone(&self.path);
        let lock = Arc::clone(&self.lock);
        Box::pin(async move {
            actix_rt::task::spawn_blocking(move || {
                let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
                f(&path)
            })
            .await
            .map_err(|e| SessionStoreError::Io(format!("file task failed: {e}")))?
        })
    }
}

fn read(path: &Path) -> Result<BTreeMap<(u32, u32), SavedSession>, SessionStoreError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(error) => return Err(io_error(path, &error)),
    };
    let contents: FileContents = serde_json::from_slice(&bytes)
        .map_err(|e| SessionStoreError::Corrupt(format!("{}: {e}", path.display())))?;
    if contents.version != VERSION {
        return Err(SessionStoreError::Corrupt(format!(
            "{}: layout version {} is not {VERSION}",
            path.display(),
            contents.version
        )));
    }
    Ok(contents
        .sessions
        .into_iter()
        .map(|s| ((s.shard.total(), s.shard.number()), s))
        .collect())
}

fn write(
    path: &Path,
    sessions: BTreeMap<(u32, u32), SavedSession>,
) -> Result<(), SessionStoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| io_error(dir, &e))?;
    }
    let contents = FileContents {
        version: VERSION,
        sessions: sessions.into_values().collect(),
    };
    let json = serde_json::to_vec_pretty(&contents)
        .map_err(|e| SessionStoreError::Io(format!("encoding sessions: {e}")))?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    fs::write(&temporary, json).map_err(|e| io_error(&temporary, &e))?;
    fs::rename(&temporary, path).map_err(|e| io_error(path, &e))
}

fn io_error(path: &Path, error: &io::Error) -> SessionStoreError {
    SessionStoreError::Io(format!("{}: {error}", path.display()))
}

impl SessionStore for JsonFileSessionStore {
    fn save(&self, sessions: Vec<SavedSession>) -> StoreFuture<()> {
        self.run(move |path| {
            let mut all = read(path)?;
            for saved in sessions {
                all.insert((saved.shard.total(), saved.shard.number()), saved);
            }
            write(path, all)
        })
    }

    fn load(&self) -> StoreFuture<Vec<SavedSession>> {
        self.run(|path| Ok(read(path)?.into_values().collect()))
    }

    fn remove(&self, shards: Vec<ShardId>) -> StoreFuture<()> {
        self.run(move |path| {
            let mut all = read(path)?;
            let before = all.len();
            for shard in shards {
                all.remove(&(shard.total(), shard.number()));
            }
            if all.len() == before {
                return Ok(());
            }
            write(path, all)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::JsonFileSessionStore;
    use crate::session_store::{SessionStore, SessionStoreError, conformance};
    use std::{
        path::PathBuf,
        sync::{
            Arc,
            atomic::{AtomicU32, Ordering},
        },
    };

    /// A fresh path under the system's temporary directory.
    fn temporary_path(name: &str) -> PathBuf {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        std::env::temp_dir().join(format!(
            "discore-manager-{}-{}-{name}/sessions.json",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ))
    }

    #[actix_rt::test]
    async fn conforms() {
        let path = temporary_path("conformance");
        conformance::run(Arc::new(JsonFileSessionStore::new(&path)))
            .await
            .expect("the JSON file store passes the conformance suite");
        if let Some(dir) = path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    #[actix_rt::test]
    async fn a_corrupt_file_is_an_error_not_an_empty_store() {
        let path = temporary_path("corrupt");
        let dir = path.parent().expect("has a parent");
        std::fs::create_dir_all(dir).expect("create dir");
        std::fs::write(&path, b"{ not json").expect("write");
        let store = JsonFileSessionStore::new(&path);
        let error = store.load().await.expect_err("corrupt");
        assert!(matches!(error, SessionStoreError::Corrupt(_)), "{error:?}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
