//! JavaScript's side of the express wake-up ([`crate::core::io::express`]):
//! a libuv poll handle on Node's event loop watches the epoll set of worker
//! channels. When a worker writes, its callback waits the few microseconds
//! the I/O thread needs for the batch and calls JavaScript's event callback
//! with it, as the thread-safe function would have one wake-up later.
//!
//! libuv is Node's own: its functions are looked up in the process (Node
//! exports them to addons). If one is missing, or anything here fails, the
//! express path stays off and the thread-safe function delivers every batch.

use super::{taken, to_raw, RawEvent};
use crate::core::io::express::WAIT_AT_MOST;
use crate::core::io::Flow;
use crate::core::protocol::event::Event;
use napi::bindgen_prelude::{Env, ToNapiValue};
use napi::sys;
use std::cell::OnceCell;
use std::ffi::{c_int, c_void, CStr};
use std::os::fd::OwnedFd;
use std::ptr::null_mut;

type PollCb = unsafe extern "C" fn(*mut c_void, c_int, c_int);
type HookCb = unsafe extern "C" fn(*mut c_void);
type HandleSize = unsafe extern "C" fn(c_int) -> usize;
type PollInit = unsafe extern "C" fn(*mut c_void, *mut c_void, c_int) -> c_int;
type PollStart = unsafe extern "C" fn(*mut c_void, c_int, PollCb) -> c_int;
type HookInit = unsafe extern "C" fn(*mut c_void, *mut c_void) -> c_int;
type HookStart = unsafe extern "C" fn(*mut c_void, HookCb) -> c_int;
type Unref = unsafe extern "C" fn(*mut c_void);

/// libuv's handle types `UV_CHECK`, `UV_POLL`, `UV_PREPARE`, and its
/// `UV_READABLE` event.
const UV_CHECK: c_int = 2;
const UV_POLL: c_int = 8;
const UV_PREPARE: c_int = 9;
const UV_READABLE: c_int = 1;

/// libuv's functions this needs.
struct Uv {
    handle_size: HandleSize,
    poll_init: PollInit,
    poll_start: PollStart,
    prepare_init: HookInit,
    prepare_start: HookStart,
    check_init: HookInit,
    check_start: HookStart,
    unref: Unref,
}

impl Uv {
    fn find() -> Option<Uv> {
        macro_rules! find {
            ($name:literal, $ty:ty) => {{
                let p = symbol($name)?;
                // SAFETY: the symbol is libuv's, whose signature `$ty`
                // spells.
                unsafe { std::mem::transmute::<*mut c_void, $ty>(p) }
            }};
        }
        Some(Uv {
            handle_size: find!(c"uv_handle_size", HandleSize),
            poll_init: find!(c"uv_poll_init", PollInit),
            poll_start: find!(c"uv_poll_start", PollStart),
            prepare_init: find!(c"uv_prepare_init", HookInit),
            prepare_start: find!(c"uv_prepare_start", HookStart),
            check_init: find!(c"uv_check_init", HookInit),
            check_start: find!(c"uv_check_start", HookStart),
            unref: find!(c"uv_unref", Unref),
        })
    }

    /// Zeroed memory for a handle of `kind`. The handles live as long as
    /// the process (one of each, never closed), so it is leaked on purpose.
    fn handle(&self, kind: c_int) -> *mut c_void {
        // SAFETY: `uv_handle_size` only reads its argument.
        let size = unsafe { (self.handle_size)(kind) };
        Box::leak(vec![0u64; size.div_ceil(8)].into_boxed_slice())
            .as_mut_ptr()
            .cast::<c_void>()
    }
}

/// Everything the callback needs, on the JavaScript thread.
struct Js {
    env: sys::napi_env,
    callback: sys::napi_ref,
    context: sys::napi_async_context,
    flow: Flow,
    /// Where a batch goes if it cannot be delivered here.
    fallback: Box<dyn Fn(Vec<Event<OwnedFd>>)>,
}

thread_local! {
    static JS: OnceCell<Js> = const { OnceCell::new() };
}

/// Looks up a libuv function in the running process.
fn symbol(name: &CStr) -> Option<*mut c_void> {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only reads.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!p.is_null()).then_some(p)
}

fn check(status: sys::napi_status) -> Option<()> {
    (status == sys::Status::napi_ok).then_some(())
}

/// Starts watching `flow`'s express set on `env`'s event loop; `callback`
/// is JavaScript's event callback. Returns whether the express path is on.
/// Not with a single CPU: the two threads could never meet, and each one
/// would spin out its wait for the other.
pub fn install(
    env: sys::napi_env,
    callback: sys::napi_value,
    flow: Flow,
    fallback: Box<dyn Fn(Vec<Event<OwnedFd>>)>,
) -> bool {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    cpus > 1 && install_inner(env, callback, flow, fallback).is_some()
}

fn install_inner(
    env: sys::napi_env,
    callback: sys::napi_value,
    flow: Flow,
    fallback: Box<dyn Fn(Vec<Event<OwnedFd>>)>,
) -> Option<()> {
    let fd = flow.express().fd()?;
    let uv = Uv::find()?;
    let mut callback_ref = null_mut();
    let mut resource = null_mut();
    let mut resource_ref = null_mut();
    let mut name = null_mut();
    let mut context = null_mut();
    let mut uv_loop = null_mut();
    // SAFETY: called on the JavaScript thread with its env, as these
    // N-API calls require; every out pointer is a local.
    unsafe {
        check(sys::napi_create_reference(
            env,
            callback,
            1,
            &mut callback_ref,
        ))?;
        check(sys::napi_create_object(env, &mut resource))?;
        // Kept alive as long as the async context that names it.
        check(sys::napi_create_reference(
            env,
            resource,
            1,
            &mut resource_ref,
        ))?;
        let label = c"native-cluster:events";
        check(sys::napi_create_string_utf8(
            env,
            label.as_ptr(),
            label.count_bytes() as isize,
            &mut name,
        ))?;
        check(sys::napi_async_init(env, resource, name, &mut context))?;
        check(sys::napi_get_uv_event_loop(env, &mut uv_loop))?;
    }
    let installed = JS.with(|cell| {
        cell.set(Js {
            env,
            callback: callback_ref,
            context,
            flow,
            fallback,
        })
        .is_ok()
    });
    if !installed {
        return None;
    }
    let (poll, prepare, check) = (
        uv.handle(UV_POLL),
        uv.handle(UV_PREPARE),
        uv.handle(UV_CHECK),
    );
    let uv_loop = uv_loop.cast::<c_void>();
    // SAFETY: each handle is zeroed memory of the size libuv asked for,
    // `uv_loop` is this thread's loop, `fd` stays open for the process's
    // life; the handles are un-ref'd so they never keep the process alive.
    // The hooks start only once the set is watched: a loop marked idle that
    // never looks at the set would make the I/O thread wait for it in vain.
    unsafe {
        if (uv.poll_init)(uv_loop, poll, fd) != 0
            || (uv.prepare_init)(uv_loop, prepare) != 0
            || (uv.check_init)(uv_loop, check) != 0
        {
            return None;
        }
        (uv.unref)(poll);
        (uv.unref)(prepare);
        (uv.unref)(check);
        if (uv.poll_start)(poll, UV_READABLE, on_woken) != 0 {
            return None;
        }
        if (uv.check_start)(check, after_poll) != 0 || (uv.prepare_start)(prepare, before_poll) != 0
        {
            return None;
        }
    }
    Some(())
}

/// libuv's prepare hook: the loop is about to wait for events.
unsafe extern "C" fn before_poll(_handle: *mut c_void) {
    idle(true);
}

/// libuv's check hook: the loop has handled this round's events.
unsafe extern "C" fn after_poll(_handle: *mut c_void) {
    idle(false);
}

fn idle(on: bool) {
    JS.with(|cell| {
        if let Some(js) = cell.get() {
            js.flow.express().set_idle(on);
        }
    });
}

/// libuv's callback: a worker channel in the set woke.
unsafe extern "C" fn on_woken(_handle: *mut c_void, status: c_int, _events: c_int) {
    JS.with(|cell| {
        let Some(js) = cell.get() else {
            return;
        };
        let express = js.flow.express();
        if !express.woken() || status < 0 || js.flow.batch_out() {
            // A batch already on its way comes through the thread-safe
            // function; the I/O thread holds the next until it is taken.
            return;
        }
        let batch = express.wait(WAIT_AT_MOST);
        // Busy (with this batch, or the rest of the loop's turn) until the
        // loop's next turn.
        express.set_idle(false);
        if let Some(batch) = batch {
            deliver(js, batch);
        }
    });
}

/// Calls JavaScript's event callback with `batch`, as the thread-safe
/// function does: in a callback scope, so microtasks and `nextTick`s run
/// after it, and an exception it throws is an uncaught exception.
fn deliver(js: &Js, batch: Vec<Event<OwnedFd>>) {
    let env = js.env;
    let mut scope = null_mut();
    // SAFETY: on the JavaScript thread, with its env.
    if unsafe { sys::napi_open_handle_scope(env, &mut scope) } != sys::Status::napi_ok {
        return (js.fallback)(batch);
    }
    taken(&js.flow, &batch);
    let napi_env = Env::from_raw(env);
    let events: Vec<RawEvent> = batch.into_iter().map(|e| to_raw(&napi_env, e)).collect();
    // SAFETY: on the JavaScript thread inside the handle scope opened above;
    // every out pointer is a local; the scope is closed last.
    unsafe {
        let mut func = null_mut();
        let mut recv = null_mut();
        let mut result = null_mut();
        let ok = <Vec<RawEvent> as ToNapiValue>::to_napi_value(env, events)
            .ok()
            .filter(|_| {
                sys::napi_get_reference_value(env, js.callback, &mut func) == sys::Status::napi_ok
                    // `napi_make_callback` wants an object for `this`.
                    && sys::napi_get_global(env, &mut recv) == sys::Status::napi_ok
            });
        if let Some(arg) = ok {
            let status = sys::napi_make_callback(env, js.context, recv, func, 1, &arg, &mut result);
            if status == sys::Status::napi_pending_exception {
                let mut err = null_mut();
                if sys::napi_get_and_clear_last_exception(env, &mut err) == sys::Status::napi_ok {
                    sys::napi_fatal_exception(env, err);
                }
            }
        }
        sys::napi_close_handle_scope(env, scope);
    }
}
