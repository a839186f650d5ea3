//! Unix-domain-socket listeners (`server.grpc_uds`, `server.http_uds`): for callers on
//! the same host, such as a sidecar in the same pod, without the TCP stack in the way.
//!
//! A socket file left by an earlier run that did not remove it is replaced at bind; a
//! live server's socket, or anything that is not a socket, is refused. The file is
//! removed when the listener's [`SocketFile`] is dropped.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// A bound Unix socket and the file that names it.
pub struct UnixSocket {
    pub listener: tokio::net::UnixListener,
    pub file: SocketFile,
}

impl UnixSocket {
    /// Binds `path` (the value of the config field `field`, named in errors), replacing
    /// a stale socket file. Needs a tokio runtime.
    pub fn bind(field: &str, path: &Path) -> anyhow::Result<Self> {
        remove_stale(field, path)?;
        let listener = tokio::net::UnixListener::bind(path)
            .with_context(|| format!("{field}: cannot listen on {}", path.display()))?;
        let inode = std::fs::symlink_metadata(path)
            .with_context(|| format!("{field}: {}", path.display()))?
            .ino();
        Ok(Self {
            listener,
            file: SocketFile {
                path: path.to_path_buf(),
                inode,
            },
        })
    }
}

/// Removes `path` if it is a socket nobody listens on; errors if it is anything else.
fn remove_stale(field: &str, path: &Path) -> anyhow::Result<()> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => bail!("{field}: cannot inspect {}: {e}", path.display()),
    };
    if !metadata.file_type().is_socket() {
        bail!(
            "{field}: {} exists and is not a socket; refusing to replace it",
            path.display()
        );
    }
    // A socket that accepts a connection belongs to a running server: taking its path
    // would silently cut it off from new callers.
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        bail!("{field}: another server is listening on {}", path.display());
    }
    std::fs::remove_file(path)
        .with_context(|| format!("{field}: cannot remove the stale socket {}", path.display()))
}

/// The socket's file, removed on drop (at shutdown) if it is still this listener's.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    /// The socket's inode: a file another server has bound at the same path since is not
    /// removed.
    inode: u64,
}

impl SocketFile {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.file_type().is_socket() && m.ino() == self.inode);
        if ours && let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the socket file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grpc.sock");
        // A socket file nobody listens on: what a killed server leaves.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let socket = UnixSocket::bind("server.grpc_uds", &path).unwrap();
        assert_eq!(socket.file.path(), path);
        drop(socket);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn a_regular_file_or_a_live_socket_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("http.sock");
        std::fs::write(&path, "data").unwrap();
        let err = UnixSocket::bind("server.http_uds", &path)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("server.http_uds") && err.contains("not a socket"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");

        let live = dir.path().join("live.sock");
        let _listening = UnixSocket::bind("server.grpc_uds", &live).unwrap();
        let err = UnixSocket::bind("server.grpc_uds", &live)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("another server is listening"), "{err}");
        assert!(live.exists());
    }
}
