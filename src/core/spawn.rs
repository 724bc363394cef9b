//! Starting a worker process the way Node's `child_process.fork` does: the
//! executable with its argv and env, stdio laid out slot by slot, and the IPC
//! channel end placed at its slot without close-on-exec.

use crate::core::sys;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// What one stdio slot of the child is connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StdioSlot {
    /// The parent's descriptor of the same number.
    Inherit,
    /// `/dev/null`.
    Ignore,
    /// A new socketpair; the parent keeps the other end.
    Pipe,
    /// The IPC channel (exactly one slot).
    Ipc,
    /// A descriptor of the parent, given by number.
    Fd(RawFd),
}

#[derive(Debug, Clone, Default)]
pub struct SpawnSpec {
    pub file: String,
    /// argv[1..]; argv[0] is `file`, as with Node's fork.
    pub args: Vec<String>,
    /// Complete environment, `KEY=VALUE`.
    pub env: Vec<(OsString, OsString)>,
    pub cwd: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub stdio: Vec<StdioSlot>,
}

/// A started child and the parent's ends of its channel and pipes.
#[derive(Debug)]
pub struct Spawned {
    pub pid: i32,
    pub pidfd: OwnedFd,
    pub channel: OwnedFd,
    /// Per stdio slot: the parent's end for `Pipe` slots.
    pub pipes: Vec<Option<OwnedFd>>,
}

#[derive(Debug)]
pub enum SpawnError {
    /// The spec itself is unusable (no IPC slot, two IPC slots...).
    Invalid(String),
    /// The kernel refused: fork, exec, chdir, setuid...
    Os(io::Error),
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpawnError::Invalid(m) => write!(f, "invalid spawn options: {m}"),
            SpawnError::Os(e) => write!(f, "spawn failed: {e}"),
        }
    }
}

impl std::error::Error for SpawnError {}

impl From<io::Error> for SpawnError {
    fn from(e: io::Error) -> Self {
        SpawnError::Os(e)
    }
}

impl SpawnError {
    pub fn errno(&self) -> Option<i32> {
        match self {
            SpawnError::Os(e) => e.raw_os_error(),
            SpawnError::Invalid(_) => None,
        }
    }
}

pub fn spawn(spec: &SpawnSpec) -> Result<Spawned, SpawnError> {
    let ipc_slots = spec.stdio.iter().filter(|s| **s == StdioSlot::Ipc).count();
    if ipc_slots != 1 {
        return Err(SpawnError::Invalid(format!(
            "stdio must contain exactly one 'ipc' slot, found {ipc_slots}"
        )));
    }
    let mut cmd = Command::new(&spec.file);
    cmd.args(&spec.args);
    cmd.env_clear();
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    if let Some(uid) = spec.uid {
        cmd.uid(uid);
    }
    if let Some(gid) = spec.gid {
        cmd.gid(gid);
    }

    let mut channel = None;
    let mut pipes: Vec<Option<OwnedFd>> = Vec::with_capacity(spec.stdio.len());
    // Child-side descriptors that must stay open until the child has exec'd.
    let mut keep: Vec<OwnedFd> = Vec::new();
    // (target slot >= 3, source descriptor in the parent)
    let mut high: Vec<(RawFd, RawFd)> = Vec::new();
    for (slot, kind) in spec.stdio.iter().enumerate() {
        let slot = slot as RawFd;
        let child_end: Option<OwnedFd> = match kind {
            StdioSlot::Inherit => {
                if slot >= 3 {
                    high.push((slot, slot));
                }
                pipes.push(None);
                None
            }
            StdioSlot::Fd(fd) => {
                pipes.push(None);
                Some(sys::dup_cloexec(*fd)?)
            }
            StdioSlot::Ignore => {
                pipes.push(None);
                let f = File::options().read(true).write(true).open("/dev/null")?;
                Some(OwnedFd::from(f))
            }
            StdioSlot::Pipe => {
                let (parent, child) = sys::socketpair()?;
                pipes.push(Some(parent));
                Some(child)
            }
            StdioSlot::Ipc => {
                let (parent, child) = sys::socketpair()?;
                sys::set_nonblocking(parent.as_raw_fd(), true)?;
                channel = Some(parent);
                pipes.push(None);
                Some(child)
            }
        };
        let Some(end) = child_end else {
            continue;
        };
        match slot {
            0 => {
                cmd.stdin(Stdio::from(end));
            }
            1 => {
                cmd.stdout(Stdio::from(end));
            }
            2 => {
                cmd.stderr(Stdio::from(end));
            }
            _ => {
                high.push((slot, end.as_raw_fd()));
                keep.push(end);
            }
        }
    }
    let channel = channel.ok_or_else(|| SpawnError::Invalid("no ipc slot".into()))?;

    if !high.is_empty() {
        let moves = high.clone();
        // SAFETY: the closure runs in the forked child before exec and only
        // calls async-signal-safe fcntl/dup2 on descriptors inherited across
        // fork; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                // First lift every source above all targets so that no dup2
                // clobbers a source another move still needs.
                let mut lifted = [0 as RawFd; 64];
                let n = moves.len().min(lifted.len());
                for (i, (_, src)) in moves.iter().take(n).enumerate() {
                    let fd = libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, 256);
                    if fd < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    lifted[i] = fd;
                }
                for (i, (target, _)) in moves.iter().take(n).enumerate() {
                    // dup2 clears FD_CLOEXEC on the target: it survives exec.
                    if libc::dup2(lifted[i], *target) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }

    let child = cmd.spawn()?;
    let pid = child.id() as i32;
    drop(keep);
    // The child is never reaped by anyone but us (libuv waits only for its own
    // pids), so the pid cannot be recycled before the pidfd is open.
    let pidfd = sys::pidfd_open(pid)?;
    Ok(Spawned {
        pid,
        pidfd,
        channel,
        pipes,
    })
}
