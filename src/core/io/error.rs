//! The one error type of the core's public face ([`Primary`](super::Primary)):
//! each kind has a stable code, the one JavaScript sees as `err.code`
//! (Node's style: `ERR_NATIVE_CLUSTER_*`, or the errno's name such as
//! `ESRCH` for an operating-system error), so callers branch on the code,
//! never on the message.

use super::spawn::SpawnError;
use std::io;
use std::sync::{Mutex, MutexGuard, PoisonError};

#[derive(Debug)]
pub enum CoreError {
    /// The I/O thread has stopped; nothing can be delivered.
    Stopped,
    /// The I/O thread did not answer within the caller's limit (`what` it
    /// was asked to do).
    TimedOut { what: &'static str },
    /// A system call failed; `context` says which, and on what.
    Io { context: String, error: io::Error },
    /// The worker process could not be started.
    Spawn(SpawnError),
}

impl CoreError {
    pub fn io(context: impl Into<String>, error: io::Error) -> CoreError {
        CoreError::Io {
            context: context.into(),
            error,
        }
    }

    /// The positive errno of an operating-system error.
    pub fn errno(&self) -> Option<i32> {
        match self {
            CoreError::Io { error, .. } => error.raw_os_error(),
            CoreError::Spawn(e) => e.errno(),
            CoreError::Stopped | CoreError::TimedOut { .. } => None,
        }
    }

    /// The code JavaScript sees as `err.code`.
    pub fn code(&self) -> &'static str {
        match self {
            CoreError::Stopped => "ERR_NATIVE_CLUSTER_STOPPED",
            CoreError::TimedOut { .. } => "ERR_NATIVE_CLUSTER_TIMEOUT",
            CoreError::Spawn(SpawnError::Invalid(_)) => "ERR_NATIVE_CLUSTER_SPAWN",
            CoreError::Io { .. } | CoreError::Spawn(_) => self
                .errno()
                .and_then(errno_name)
                .unwrap_or("ERR_NATIVE_CLUSTER_SYSTEM"),
        }
    }
}

impl std::fmt::Display for CoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CoreError::Stopped => write!(f, "the cluster I/O thread is not running"),
            CoreError::TimedOut { what } => {
                write!(f, "the cluster I/O thread did not {what} in time")
            }
            CoreError::Io { context, error } => write!(f, "{context}: {error}"),
            CoreError::Spawn(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for CoreError {}

/// The name Node gives an errno (`err.code`), for those a cluster call can
/// meet; `None` for others.
pub fn errno_name(errno: i32) -> Option<&'static str> {
    Some(match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::ENOEXEC => "ENOEXEC",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ETXTBSY => "ETXTBSY",
        libc::ENOSPC => "ENOSPC",
        libc::EPIPE => "EPIPE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ELOOP => "ELOOP",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ECONNRESET => "ECONNRESET",
        libc::ENOTCONN => "ENOTCONN",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNREFUSED => "ECONNREFUSED",
        _ => return None,
    })
}

/// Locks `m` even if a thread panicked while holding it. Every mutex of
/// the core guards a table updated in one step (an insert, a removal, a
/// counter), with no invariant that a panic half-way could break, so the
/// data a poisoned lock guards is as consistent as any other; refusing it
/// would only turn one panic into lost exits and pids.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_code() {
        assert_eq!(CoreError::Stopped.code(), "ERR_NATIVE_CLUSTER_STOPPED");
        let t = CoreError::TimedOut {
            what: "gather stats",
        };
        assert_eq!(t.code(), "ERR_NATIVE_CLUSTER_TIMEOUT");
        assert_eq!(
            t.to_string(),
            "the cluster I/O thread did not gather stats in time"
        );
        let e = CoreError::io("kill", io::Error::from_raw_os_error(libc::ESRCH));
        assert_eq!((e.code(), e.errno()), ("ESRCH", Some(libc::ESRCH)));
        let odd = CoreError::io("x", io::Error::from_raw_os_error(4095));
        assert_eq!(odd.code(), "ERR_NATIVE_CLUSTER_SYSTEM");
    }

    #[test]
    fn a_poisoned_lock_still_gives_its_data() {
        let m = std::sync::Arc::new(Mutex::new(vec![1]));
        let held = m.clone();
        let _ = std::thread::spawn(move || {
            let _guard = held.lock().unwrap();
            panic!("poisons the lock");
        })
        .join();
        assert!(m.is_poisoned());
        lock(&m).push(2);
        assert_eq!(*lock(&m), vec![1, 2]);
    }
}
