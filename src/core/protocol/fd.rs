//! Descriptors as the protocol sees them: opaque tokens ([`FdId`]) for
//! descriptors the driver owns. The protocol holds a token through a
//! [`Handle`], shared like an `Rc`; when the last copy goes, the token is
//! queued for release and the driver is told to close the descriptor
//! (`Output::Close`). A handle can instead be transferred to JavaScript,
//! and then it is never closed here.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;

/// A descriptor token, allocated and resolved by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FdId(pub u64);

/// Tokens whose last handle is gone, waiting to become `Output::Close`.
pub(crate) type Released = Rc<RefCell<Vec<FdId>>>;

struct Inner {
    id: FdId,
    released: Released,
    transferred: Cell<bool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if !self.transferred.get() {
            self.released.borrow_mut().push(self.id);
        }
    }
}

/// A shared reference to a descriptor token: a queued connection, a frame
/// carrying a descriptor until its ACK, a listening socket.
#[derive(Clone)]
pub struct Handle(Rc<Inner>);

impl Handle {
    pub(crate) fn new(id: FdId, released: &Released) -> Handle {
        Handle(Rc::new(Inner {
            id,
            released: released.clone(),
            transferred: Cell::new(false),
        }))
    }

    pub fn id(&self) -> FdId {
        self.0.id
    }

    /// Gives the descriptor away (to JavaScript): it is not closed when the
    /// handle goes. Every other copy of the handle must be gone already;
    /// if one is not, the descriptor stays ours and `None` is returned.
    pub(crate) fn transfer(self) -> Option<FdId> {
        let inner = Rc::try_unwrap(self.0).ok()?;
        inner.transferred.set(true);
        Some(inner.id)
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Handle({})", self.0.id.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_copy_releases_once_and_a_transfer_never() {
        let released = Released::default();
        let a = Handle::new(FdId(1), &released);
        let b = a.clone();
        drop(a);
        assert!(released.borrow().is_empty());
        drop(b);
        assert_eq!(*released.borrow(), vec![FdId(1)]);
        let c = Handle::new(FdId(2), &released);
        let d = c.clone();
        assert!(c.transfer().is_none(), "a shared handle stays ours");
        assert_eq!(d.transfer(), Some(FdId(2)));
        assert_eq!(*released.borrow(), vec![FdId(1)]);
    }
}
