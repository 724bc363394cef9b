//! The driver's descriptor table: every descriptor the protocol refers to
//! by token ([`FdId`]) lives here until the protocol releases the token
//! (`Output::Close`) or gives it to JavaScript. Tokens are never reused.
//! A listening socket being accepted on also holds its [`Acceptor`] here,
//! so that whatever removes the descriptor deregisters it first.

use crate::core::hash::IdMap;
use crate::core::io::accept::Acceptor;
use crate::core::protocol::fd::FdId;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

struct Slot {
    /// Declared before `fd`, so also dropped before it: the reactor must
    /// forget a descriptor before it is closed (its number may be reused).
    acceptor: Option<Acceptor>,
    fd: OwnedFd,
    /// A Unix socket file we bound: removed when the descriptor is closed,
    /// as libuv does for its own pipe servers.
    unlink: Option<PathBuf>,
}

#[derive(Default)]
pub struct Fds {
    slots: IdMap<u64, Slot>,
    next: u64,
}

impl Fds {
    pub fn insert(&mut self, fd: OwnedFd) -> FdId {
        self.insert_bound(fd, None)
    }

    /// A socket whose file `unlink` names, removed when it is closed.
    pub fn insert_bound(&mut self, fd: OwnedFd, unlink: Option<PathBuf>) -> FdId {
        let id = self.next;
        self.next += 1;
        self.slots.insert(
            id,
            Slot {
                acceptor: None,
                fd,
                unlink,
            },
        );
        FdId(id)
    }

    pub fn raw(&self, id: FdId) -> Option<RawFd> {
        self.slots.get(&id.0).map(|s| s.fd.as_raw_fd())
    }

    pub fn accepting(&self, id: FdId) -> bool {
        self.slots.get(&id.0).is_some_and(|s| s.acceptor.is_some())
    }

    pub fn acceptor(&self, id: FdId) -> Option<&Acceptor> {
        self.slots.get(&id.0)?.acceptor.as_ref()
    }

    /// Accepts on `id` with `acceptor`, which must watch that descriptor.
    pub fn set_acceptor(&mut self, id: FdId, acceptor: Acceptor) {
        if let Some(slot) = self.slots.get_mut(&id.0) {
            slot.acceptor = Some(acceptor);
        }
    }

    pub fn stop_acceptor(&mut self, id: FdId) {
        if let Some(slot) = self.slots.get_mut(&id.0) {
            slot.acceptor = None;
        }
    }

    /// Takes a descriptor out (JavaScript owns it from now on), no longer
    /// accepted on.
    pub fn take(&mut self, id: FdId) -> Option<OwnedFd> {
        let mut slot = self.slots.remove(&id.0)?;
        drop(slot.acceptor.take());
        Some(slot.fd)
    }

    /// Releases a token: the descriptor is closed (after its acceptor is
    /// deregistered). `false` for a token that is not in the table.
    pub fn close(&mut self, id: FdId) -> bool {
        let Some(mut slot) = self.slots.remove(&id.0) else {
            return false;
        };
        drop(slot.acceptor.take());
        if let Some(path) = slot.unlink.take() {
            // Already gone (someone else removed it) is fine.
            let _ = std::fs::remove_file(path);
        }
        true
    }
}
