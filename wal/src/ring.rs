//! The fdatasync a glommio executor gives [`crate::Durability::sync_with`]: submitted through
//! the executor's io_uring, so the executor keeps running its other tasks while the disk syncs.
//! The WAL itself never calls it (its flush workers and `sync_here` use plain syscalls); it is
//! here so that every caller on glommio (the node's persist loop, the WAL bench and tests)
//! syncs the same way.

use std::io;
use std::os::fd::{FromRawFd, RawFd};

/// fdatasync of `fd` through the running glommio executor's io_uring. glommio's file takes
/// ownership of the descriptor it wraps, so it gets a duplicate (same open file description,
/// so the sync hears of every writeback error the WAL's own description would); dropping it
/// queues the close on the ring, with no wait and no extra syscall here. Must run on a glommio
/// executor.
pub async fn fdatasync(fd: RawFd) -> io::Result<()> {
    // SAFETY: the caller keeps `fd` open while this future runs (`Durability::sync_with`'s
    // contract); fcntl only reads it.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `dup` is a fresh descriptor owned by nobody else; the file closes it.
    let file = unsafe { glommio::io::BufferedFile::from_raw_fd(dup) };
    file.fdatasync().await.map_err(io::Error::from)
}
