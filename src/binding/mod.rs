//! The N-API face of the core: converts arguments and events, owns no
//! cluster logic. Events reach JavaScript in batches, in the order the I/O
//! thread produced them, through one weak thread-safe function (JavaScript
//! refs it while workers are alive); every call from JavaScript becomes a
//! [`Command`] to the I/O thread.
//!
//! Errors, one convention: a call that fails throws a JavaScript `Error`
//! whose `code` says what failed — `ERR_NATIVE_CLUSTER_STOPPED` (the I/O
//! thread is gone), `ERR_NATIVE_CLUSTER_TIMEOUT` (it did not answer in
//! time), `ERR_INVALID_ARG_VALUE` (bad input), or the errno's name (`ESRCH`,
//! `ENOENT`...) for a system call, as Node's `err.code`. No call returns an
//! errno. The only errno numbers crossing are Node's own, negative, where
//! JavaScript hands one in (`listened`). Events carry codes the same way
//! (`errorCode`). No call holds the binding's state lock while it waits
//! for the I/O thread.

mod events;
pub mod stats;

use crate::core::codec::framing::Serialization;
use crate::core::io::spawn::{SpawnSpec, StdioSlot};
use crate::core::io::Command;
use crate::core::io::{lock, Batch, CoreError, Primary};
use crate::core::protocol::balance::Policy;
use crate::core::protocol::Input;
use events::JsEvent;
use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use std::ffi::OsString;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};

use std::sync::{Arc, Mutex};

type EventFn = ThreadsafeFunction<Batch, (), Vec<JsEvent>, Status, false, true>;

pub(crate) struct State {
    pub(crate) primary: Primary,
    tsfn: Arc<EventFn>,
}

/// Set once by [`start`]; each call clones the `Arc` and lets go of the
/// lock before doing anything, so a call that waits (`pid`, `stats`,
/// `flush`) never holds it.
static STATE: Mutex<Option<Arc<State>>> = Mutex::new(None);

/// What every call returns: a failure is an `Error` whose `code` is
/// Node-style (see the top of this module).
pub type Fallible<T> = Result<T, String>;

pub(crate) fn core_err(e: CoreError) -> Error<String> {
    Error::new(e.code().to_string(), e.to_string())
}

fn invalid(message: String) -> Error<String> {
    Error::new("ERR_INVALID_ARG_VALUE".to_string(), message)
}

/// An error of napi itself (a failed call into Node).
fn napi_err(e: Error) -> Error<String> {
    Error::new("ERR_NATIVE_CLUSTER_NAPI".to_string(), e.reason.clone())
}

pub(crate) fn state() -> Fallible<Arc<State>> {
    // Poison cannot leave the `Option` half-written: it is set in one
    // assignment.
    lock(&STATE)
        .clone()
        .ok_or_else(|| core_err(CoreError::Stopped))
}

/// Starts the I/O thread (once per process); `callback` receives event
/// batches, through the thread-safe function.
#[napi(
    ts_args_type = "callback: (events: Array<{ kind: string, id: number } & Record<string, any>>) => void"
)]
pub fn start(callback: Function<Vec<JsEvent>, ()>) -> Result<(), String> {
    let mut guard = lock(&STATE);
    if guard.is_some() {
        return Ok(());
    }
    let tsfn: EventFn = callback
        .build_threadsafe_function::<Batch>()
        .callee_handled::<false>()
        .weak::<true>()
        .build_callback(move |ctx| {
            let batch = ctx.value;
            if batch.ack {
                // JavaScript has it: the I/O thread may hand the next. With
                // no state or I/O thread there is nobody to tell.
                if let Ok(s) = state() {
                    let _ = s.primary.command(Command::Taken);
                }
            }
            Ok(batch.events.into_iter().map(JsEvent).collect::<Vec<_>>())
        })
        .map_err(napi_err)?;
    let tsfn = Arc::new(tsfn);
    let sink_fn = tsfn.clone();
    let primary = Primary::start(
        move |batch| {
            // NonBlocking never waits: the queue is unbounded, and what
            // waits in it is bounded by the flow control.
            sink_fn.call(batch, ThreadsafeFunctionCallMode::NonBlocking);
        },
        true,
    )
    .map_err(core_err)?;
    *guard = Some(Arc::new(State { primary, tsfn }));
    Ok(())
}

/// Keeps the process alive (true) while workers live, or lets it exit.
#[napi]
pub fn set_ref(env: Env, on: bool) -> Result<(), String> {
    let s = state()?;
    {
        let raw = s.tsfn.raw();
        // SAFETY: `raw` is a live thread-safe function of this env and this
        // runs on the JavaScript thread, as both calls require.
        let status = unsafe {
            if on {
                napi::sys::napi_ref_threadsafe_function(env.raw(), raw)
            } else {
                napi::sys::napi_unref_threadsafe_function(env.raw(), raw)
            }
        };
        if status != napi::sys::Status::napi_ok {
            return Err(Error::new(
                "ERR_NATIVE_CLUSTER_NAPI".to_string(),
                "cannot (un)ref the event callback".to_string(),
            ));
        }
        Ok(())
    }
}

/// Scheduling policy, handle-key style and listen grace (milliseconds a
/// primary-accepted server outlives its last worker; 0: none).
#[napi]
pub fn configure(
    policy: String,
    key_with_index: bool,
    listen_grace_ms: Option<u32>,
) -> Result<(), String> {
    let policy = match policy.as_str() {
        "rr" => Policy::RoundRobin,
        "none" => Policy::Shared,
        "reuseport" => Policy::ReusePort,
        "sticky" => Policy::Sticky,
        other => return Err(invalid(format!("unknown scheduling policy {other:?}"))),
    };
    state()?
        .primary
        .command(Command::Protocol(Input::Configure {
            policy,
            key_with_index,
            listen_grace_ms: listen_grace_ms.unwrap_or(0).into(),
        }))
        .map_err(core_err)
}

#[napi(object)]
pub struct SpawnOptions {
    pub id: u32,
    pub file: String,
    pub args: Vec<String>,
    /// `KEY=VALUE` strings.
    pub env: Vec<String>,
    pub cwd: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Per slot: `inherit`, `ignore`, `pipe`, `ipc` or a descriptor number.
    pub stdio: Vec<String>,
    pub serialization: String,
    /// A session and process group of its own (`setsid`).
    pub detached: Option<bool>,
}

fn slot(s: &str) -> Result<StdioSlot, String> {
    Ok(match s {
        "inherit" => StdioSlot::Inherit,
        "ignore" => StdioSlot::Ignore,
        "pipe" => StdioSlot::Pipe,
        "ipc" => StdioSlot::Ipc,
        n => StdioSlot::Fd(
            n.parse()
                .map_err(|_| invalid(format!("bad stdio slot {n:?}")))?,
        ),
    })
}

/// Lays out the worker's descriptors and has the I/O thread start it: the
/// call returns without waiting for the fork (see [`pid`]). Returns the
/// parent's ends of `pipe` slots, by slot.
#[napi]
pub fn spawn(opts: SpawnOptions) -> Result<Vec<Option<i32>>, String> {
    let serialization = Serialization::parse(&opts.serialization)
        .ok_or_else(|| invalid(format!("unknown serialization {:?}", opts.serialization)))?;
    let env = opts
        .env
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (OsString::from(k), OsString::from(v)),
            None => (OsString::from(kv), OsString::new()),
        })
        .collect();
    let spec = SpawnSpec {
        file: opts.file,
        args: opts.args,
        env,
        cwd: opts.cwd,
        uid: opts.uid,
        gid: opts.gid,
        stdio: opts
            .stdio
            .iter()
            .map(|s| slot(s))
            .collect::<Fallible<_>>()?,
        detached: opts.detached.unwrap_or(false),
    };
    let pipes = state()?
        .primary
        .launch(opts.id, spec, serialization)
        .map_err(core_err)?;
    Ok(pipes
        .into_iter()
        .map(|p| p.map(IntoRawFd::into_raw_fd))
        .collect())
}

/// The pid of a launched worker, waiting for the fork if needed (without
/// the state lock); undefined when the launch failed (a `spawnFailed`
/// event says why). Throws `ERR_NATIVE_CLUSTER_TIMEOUT` if the I/O thread
/// has not forked it within 30 s.
#[napi]
pub fn pid(id: u32) -> Result<Option<i32>, String> {
    let s = state()?;
    s.primary
        .pid(id, std::time::Duration::from_secs(30))
        .map_err(core_err)
}

/// Queues a complete frame for the I/O thread; with `fd`, a copy of that
/// descriptor travels with it (the caller keeps its own). The bytes are
/// copied here, so the Buffer needs no reference kept. `callback`: a
/// `written` event counts it once the frame is written. Returns the
/// frame's length in bytes, which `written` events report back once
/// written (JavaScript's count of unwritten bytes).
#[napi]
pub fn send(
    id: u32,
    frame: BufferSlice,
    fd: Option<i32>,
    callback: Option<bool>,
) -> Result<f64, String> {
    queue_frame(id, frame.to_vec(), fd, callback.unwrap_or(false))
}

/// [`send`] for a JSON frame given as text, which spares JavaScript a
/// Buffer allocation per message.
#[napi]
pub fn send_text(id: u32, frame: String, callback: Option<bool>) -> Result<f64, String> {
    queue_frame(id, frame.into_bytes(), None, callback.unwrap_or(false))
}

fn queue_frame(id: u32, frame: Vec<u8>, fd: Option<i32>, callback: bool) -> Result<f64, String> {
    let fd = match fd {
        Some(fd) => Some(
            crate::core::io::sys::dup_cloexec(fd)
                .map_err(|e| core_err(CoreError::io(format!("cannot send descriptor {fd}"), e)))?,
        ),
        None => None,
    };
    let len = frame.len() as f64;
    state()?
        .primary
        .command(Command::Send {
            id,
            frame,
            fd,
            callback,
        })
        .map_err(core_err)?;
    Ok(len)
}

#[napi]
pub fn disconnect(id: u32) -> Result<(), String> {
    state()?
        .primary
        .command(Command::Protocol(Input::Disconnect { id }))
        .map_err(core_err)
}

/// Whether the worker gets new connections (of the servers whose
/// connections the primary accepts).
#[napi]
pub fn gate(id: u32, open: bool) -> Result<(), String> {
    state()?
        .primary
        .command(Command::Protocol(Input::Gate { id, open }))
        .map_err(core_err)
}

/// Sockets a service manager passed (socket activation, descriptors by
/// number): servers bound where one of them is use a copy of it.
#[napi]
pub fn activate(fds: Vec<i32>) -> Result<(), String> {
    state()?
        .primary
        .command(Command::Activate { fds })
        .map_err(core_err)
}

/// The user id of the peer of a connected Unix socket (`SO_PEERCRED`).
#[napi]
pub fn peer_uid(fd: i32) -> Result<u32, String> {
    crate::core::io::sockets::peer_uid(fd)
        .map_err(|e| core_err(CoreError::io("getsockopt(SO_PEERCRED)", e)))
}

/// `PR_SET_PDEATHSIG`: this process gets `signal` when its parent dies.
/// Returns false when the parent (`expected_parent`, `process.ppid` as
/// JavaScript saw it) is already gone.
#[napi]
pub fn parent_death_signal(signal: i32, expected_parent: i32) -> Result<bool, String> {
    crate::core::io::sys::parent_death_signal(signal, expected_parent)
        .map_err(|e| core_err(CoreError::io("prctl(PR_SET_PDEATHSIG)", e)))
}

#[napi]
pub fn close_channel(id: u32) -> Result<(), String> {
    state()?
        .primary
        .command(Command::Protocol(Input::CloseChannel { id }))
        .map_err(core_err)
}

/// Signals worker `id`; throws with the errno's code (`ESRCH` once the
/// worker is gone).
#[napi]
pub fn kill(id: u32, signal: i32) -> Result<(), String> {
    state()?.primary.kill(id, signal).map_err(core_err)
}

/// Called on process exit: lets the I/O thread write what is queued, so a
/// `send()` right before `process.exit()` is delivered, as with Node.
#[napi]
pub fn flush(timeout_ms: u32) -> Result<(), String> {
    state()?
        .primary
        .flush(std::time::Duration::from_millis(timeout_ms.into()))
        .map_err(core_err)
}

/// Answers a `listen` event: `fd` is the listening socket (copied here; the
/// caller closes its own), or `fd` < 0 and `errno` is Node's negative errno.
#[napi]
pub fn listened(bind: u32, fd: i32, errno: i32) -> Result<(), String> {
    let result = if fd >= 0 {
        crate::core::io::sys::dup_cloexec(fd)
            .map_err(|e| -(e.raw_os_error().unwrap_or(libc::EBADF) as i64))
    } else {
        Err(errno.into())
    };
    state()?
        .primary
        .command(Command::Listened { bind, result })
        .map_err(core_err)
}

/// Closes a descriptor JavaScript received but could not use.
#[napi]
pub fn close_fd(fd: i32) {
    if fd >= 0 {
        // SAFETY: JavaScript passes a descriptor it owns and will not use again.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
}
