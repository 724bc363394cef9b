//! Starting a worker process the way Node's `child_process.fork` does: the
//! executable with its argv and env, stdio laid out slot by slot, and the IPC
//! channel end placed at its slot without close-on-exec.

use crate::core::io::sys;
use std::ffi::{CString, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

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
    /// A new session and process group (`setsid`), as Node's `detached`:
    /// signals a terminal sends to the parent's foreground process group
    /// (Ctrl-C's SIGINT) do not reach the child.
    pub detached: bool,
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

/// The child's side of its stdio, made ready before the child exists: kept
/// open until it has been forked, then closed in the parent.
#[derive(Debug)]
pub struct ChildEnds {
    keep: Vec<OwnedFd>,
    /// (slot in the child, descriptor in the parent)
    moves: Vec<(RawFd, RawFd)>,
}

/// Descriptors laid out for a child before it exists: the parent's ends
/// (channel, pipes) and the child's.
#[derive(Debug)]
pub struct Prepared {
    pub channel: OwnedFd,
    /// Per stdio slot: the parent's end for `Pipe` slots.
    pub pipes: Vec<Option<OwnedFd>>,
    pub child: ChildEnds,
}

/// A started process.
#[derive(Debug)]
pub struct Launched {
    pub pid: i32,
    pub pidfd: OwnedFd,
}

/// Creates the channel, pipes and other stdio descriptors for `spec`.
pub fn prepare(spec: &SpawnSpec) -> Result<Prepared, SpawnError> {
    let ipc_slots = spec.stdio.iter().filter(|s| **s == StdioSlot::Ipc).count();
    if ipc_slots != 1 {
        return Err(SpawnError::Invalid(format!(
            "stdio must contain exactly one 'ipc' slot, found {ipc_slots}"
        )));
    }
    let mut channel = None;
    let mut pipes: Vec<Option<OwnedFd>> = Vec::with_capacity(spec.stdio.len());
    let mut keep: Vec<OwnedFd> = Vec::new();
    let mut moves: Vec<(RawFd, RawFd)> = Vec::new();
    for (slot, kind) in spec.stdio.iter().enumerate() {
        let slot = slot as RawFd;
        let child_end = match kind {
            StdioSlot::Inherit => {
                pipes.push(None);
                moves.push((slot, slot));
                continue;
            }
            StdioSlot::Fd(fd) => {
                pipes.push(None);
                sys::dup_cloexec(*fd)?
            }
            StdioSlot::Ignore => {
                pipes.push(None);
                OwnedFd::from(File::options().read(true).write(true).open("/dev/null")?)
            }
            StdioSlot::Pipe => {
                let (parent, child) = sys::socketpair()?;
                pipes.push(Some(parent));
                child
            }
            StdioSlot::Ipc => {
                let (parent, child) = sys::socketpair()?;
                sys::set_nonblocking(parent.as_raw_fd(), true)?;
                channel = Some(parent);
                pipes.push(None);
                child
            }
        };
        moves.push((slot, child_end.as_raw_fd()));
        keep.push(child_end);
    }
    let channel = channel.ok_or_else(|| SpawnError::Invalid("no ipc slot".into()))?;
    Ok(Prepared {
        channel,
        pipes,
        child: ChildEnds { keep, moves },
    })
}

/// Forks and execs the child with its prepared descriptors, which are
/// closed in the parent afterwards.
pub fn launch(spec: &SpawnSpec, child: ChildEnds) -> Result<Launched, SpawnError> {
    let pid = if spec.uid.is_some() || spec.gid.is_some() {
        // The fast path does not change credentials.
        spawn_forked(spec, &child.moves)?
    } else {
        spawn_fast(spec, &child.moves)?
    };
    drop(child.keep);
    // The child is never reaped by anyone but us (libuv waits only for its own
    // pids), so the pid cannot be recycled before the pidfd is open.
    let pidfd = sys::pidfd_open(pid)?;
    Ok(Launched { pid, pidfd })
}

fn cstring(s: &[u8]) -> Result<CString, SpawnError> {
    CString::new(s).map_err(|_| SpawnError::Invalid("argument contains a NUL byte".into()))
}

/// The first descriptor number above every source and target, so that
/// sources can be lifted there before being placed, whatever their order.
fn lift_base(moves: &[(RawFd, RawFd)]) -> RawFd {
    moves.iter().flat_map(|(t, s)| [*t, *s]).max().unwrap_or(2) + 1
}

/// Plain `fork` + `execve` without waiting for the exec: `fork()` in the
/// primary returns as soon as the kernel has copied the page tables, while
/// the child execs on its own. (posix_spawn and std's Command both suspend
/// the caller until exec completes, which on a loaded machine means waiting
/// behind every other starting worker.) An exec failure shows as exit code
/// 127; a missing cwd is checked before forking so it stays an error.
fn spawn_fast(spec: &SpawnSpec, moves: &[(RawFd, RawFd)]) -> Result<i32, SpawnError> {
    let file = cstring(spec.file.as_bytes())?;
    let mut argv_c = vec![file.clone()];
    for a in &spec.args {
        argv_c.push(cstring(a.as_bytes())?);
    }
    let mut env_c = Vec::with_capacity(spec.env.len());
    for (k, v) in &spec.env {
        let mut kv = k.as_bytes().to_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        env_c.push(cstring(&kv)?);
    }
    let cwd = spec
        .cwd
        .as_deref()
        .map(|c| cstring(c.as_bytes()))
        .transpose()?;
    if let Some(dir) = &spec.cwd {
        if !std::fs::metadata(dir)?.is_dir() {
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR).into());
        }
    }
    let mut argv: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env_c.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());
    let base = lift_base(moves);
    let cwd_ptr = cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // glibc's SIGRTMAX() is a function call that is not on the
    // async-signal-safe list, so it is asked here, before forking.
    let sigrtmax = libc::SIGRTMAX();
    let detached = spec.detached;

    // SAFETY: fork itself is a plain syscall. In the child only
    // async-signal-safe calls run (sigaction, sigprocmask, setsid,
    // dup2, close, chdir, execve, _exit) on data prepared above, with no
    // allocation, so locks held by other threads of the parent at fork
    // time cannot bite.
    unsafe {
        let pid = libc::fork();
        if pid < 0 {
            return Err(io::Error::last_os_error().into());
        }
        if pid > 0 {
            return Ok(pid);
        }
        // Child: a clean signal state, as libuv gives its children (Node
        // ignores SIGPIPE, for one; dispositions survive exec).
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for sig in 1..sigrtmax {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        if detached && libc::setsid() < 0 {
            libc::_exit(127);
        }
        for (i, (_, src)) in moves.iter().enumerate() {
            if libc::dup2(*src, base + i as RawFd) < 0 {
                libc::_exit(127);
            }
        }
        // dup2 onto the slot clears FD_CLOEXEC: the slot survives exec.
        for (i, (target, _)) in moves.iter().enumerate() {
            if libc::dup2(base + i as RawFd, *target) < 0 {
                libc::_exit(127);
            }
            libc::close(base + i as RawFd);
        }
        if !cwd_ptr.is_null() && libc::chdir(cwd_ptr) != 0 {
            libc::_exit(127);
        }
        libc::execve(file.as_ptr(), argv.as_ptr(), envp.as_ptr());
        libc::_exit(127);
    }
}

/// fork/exec through `std::process::Command`, for credential changes.
fn spawn_forked(spec: &SpawnSpec, moves: &[(RawFd, RawFd)]) -> Result<i32, SpawnError> {
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
    let moves = moves.to_vec();
    let base = lift_base(&moves);
    let detached = spec.detached;
    // SAFETY: the closure runs in the forked child before exec and only
    // calls async-signal-safe setsid/dup2/close; it
    // allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if detached && libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            for (i, (_, src)) in moves.iter().enumerate() {
                if libc::dup2(*src, base + i as RawFd) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            // dup2 clears FD_CLOEXEC on the target: it survives exec.
            for (i, (target, _)) in moves.iter().enumerate() {
                if libc::dup2(base + i as RawFd, *target) < 0 {
                    return Err(io::Error::last_os_error());
                }
                libc::close(base + i as RawFd);
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    Ok(child.id() as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn spec(script: &str, stdio: Vec<StdioSlot>) -> SpawnSpec {
        SpawnSpec {
            file: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("MARK".into(), "m1".into())],
            cwd: Some("/".into()),
            uid: None,
            gid: None,
            stdio,
            detached: false,
        }
    }

    fn wait(pid: i32) -> sys::ExitStatus {
        loop {
            if let Some(s) = sys::try_reap(pid).expect("waitid") {
                return s;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Starts `s` (its stdout a pipe), waits for a clean exit: its pid,
    /// what it printed, and the primary's end of its channel.
    fn run_to_exit(s: &SpawnSpec) -> (i32, String, OwnedFd) {
        let mut child = prepare(s).expect("prepare");
        let launched = launch(s, child.child).expect("launch");
        assert_eq!(wait(launched.pid), sys::ExitStatus::Code(0));
        let mut out = String::new();
        let stdout = child.pipes[1].take().expect("stdout pipe");
        File::from(stdout).read_to_string(&mut out).expect("read");
        (launched.pid, out, child.channel)
    }

    #[test]
    fn lays_out_stdio_env_and_cwd() {
        let s = spec(
            "echo \"$MARK $(pwd)\" >&1; echo ipc >&3",
            vec![
                StdioSlot::Ignore,
                StdioSlot::Pipe,
                StdioSlot::Inherit,
                StdioSlot::Ipc,
            ],
        );
        let (_, out, channel) = run_to_exit(&s);
        assert_eq!(out, "m1 /\n");
        sys::set_nonblocking(channel.as_raw_fd(), false).expect("blocking");
        let mut ipc = String::new();
        File::from(channel)
            .read_to_string(&mut ipc)
            .expect("read ipc");
        assert_eq!(ipc, "ipc\n");
    }

    #[test]
    fn a_missing_cwd_is_an_os_error() {
        let mut s = spec(
            "true",
            vec![
                StdioSlot::Ignore,
                StdioSlot::Ignore,
                StdioSlot::Ignore,
                StdioSlot::Ipc,
            ],
        );
        s.cwd = Some("/no/such/dir".into());
        let prepared = prepare(&s).expect("prepare");
        let err = launch(&s, prepared.child).expect_err("must fail");
        assert_eq!(err.errno(), Some(libc::ENOENT));
    }

    /// The child's process group and session, as `pgrp sid`.
    fn group_and_session(detached: bool) -> (i32, String) {
        let mut s = spec(
            "read -r _ _ _ _ pgrp sid _ < /proc/$$/stat; echo $pgrp $sid",
            vec![
                StdioSlot::Ignore,
                StdioSlot::Pipe,
                StdioSlot::Ignore,
                StdioSlot::Ipc,
            ],
        );
        s.detached = detached;
        let (pid, out, _) = run_to_exit(&s);
        (pid, out.trim().to_string())
    }

    #[test]
    fn detached_starts_a_session_of_its_own() {
        let (pid, ids) = group_and_session(true);
        assert_eq!(ids, format!("{pid} {pid}"));
        // SAFETY: plain syscalls without arguments to check.
        let ours = unsafe { format!("{} {}", libc::getpgrp(), libc::getsid(0)) };
        let (pid, ids) = group_and_session(false);
        assert_ne!(ids, format!("{pid} {pid}"));
        assert_eq!(ids, ours);
    }

    #[test]
    fn exactly_one_ipc_slot() {
        let s = spec("true", vec![StdioSlot::Ignore]);
        assert!(matches!(prepare(&s), Err(SpawnError::Invalid(_))));
    }
}
