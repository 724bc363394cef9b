//! The driver's descriptor table: every descriptor the protocol refers to
//! by token ([`FdId`]) lives here until the protocol releases the token
//! (`Output::Close`) or gives it to JavaScript. Tokens are never reused.

use crate::core::protocol::fd::FdId;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::rc::Rc;
use tokio::task::JoinHandle;

struct Slot {
    /// Shared with an acceptor task while one runs, so the descriptor is
    /// closed only after the task has deregistered it.
    fd: Rc<OwnedFd>,
    /// A Unix socket file we bound: removed when the descriptor is closed,
    /// as libuv does for its own pipe servers.
    unlink: Option<PathBuf>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Default)]
pub struct Fds {
    slots: HashMap<u64, Slot>,
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
                fd: Rc::new(fd),
                unlink,
                acceptor: None,
            },
        );
        FdId(id)
    }

    pub fn raw(&self, id: FdId) -> Option<RawFd> {
        self.slots.get(&id.0).map(|s| s.fd.as_raw_fd())
    }

    pub fn shared(&self, id: FdId) -> Option<Rc<OwnedFd>> {
        self.slots.get(&id.0).map(|s| s.fd.clone())
    }

    pub fn accepting(&self, id: FdId) -> bool {
        self.slots.get(&id.0).is_some_and(|s| s.acceptor.is_some())
    }

    pub fn set_acceptor(&mut self, id: FdId, task: JoinHandle<()>) {
        match self.slots.get_mut(&id.0) {
            Some(slot) => {
                if let Some(old) = slot.acceptor.replace(task) {
                    old.abort();
                }
            }
            None => task.abort(),
        }
    }

    pub fn stop_acceptor(&mut self, id: FdId) {
        if let Some(task) = self.slots.get_mut(&id.0).and_then(|s| s.acceptor.take()) {
            task.abort();
        }
    }

    /// Takes a descriptor out (JavaScript owns it from now on). `None` if
    /// it is shared with a task, which the protocol never allows for a
    /// descriptor it hands over.
    pub fn take(&mut self, id: FdId) -> Option<OwnedFd> {
        let slot = self.slots.remove(&id.0)?;
        if let Some(task) = slot.acceptor {
            task.abort();
        }
        Rc::try_unwrap(slot.fd).ok()
    }

    /// Releases a token: the descriptor is closed (once no task holds it).
    /// `false` for a token that is not in the table.
    pub fn close(&mut self, id: FdId) -> bool {
        let Some(slot) = self.slots.remove(&id.0) else {
            return false;
        };
        if let Some(task) = slot.acceptor {
            task.abort();
        }
        if let Some(path) = slot.unlink {
            // Already gone (someone else removed it) is fine.
            let _ = std::fs::remove_file(path);
        }
        true
    }
}
