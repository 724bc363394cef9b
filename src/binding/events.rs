//! Events as JavaScript receives them: each [`Event`] becomes one plain
//! object, `{ kind, id, ... }`, built straight from the core's type (no
//! intermediate shape). `kind` and the other fields, by event:
//! `online`; `listening` (`info`: JSON); `messages` (`data`, `json`,
//! `lengths` for V8 payloads); `message` (`data`, `fd`, `handleType`);
//! `internal` (`data`); `exitedAfterDisconnect`; `written` (`count` callbacks, `bytes`);
//! `disconnect`; `exit` (`code` or `signal`); `error`, `warning` and
//! `spawnFailed` (`errorCode`, `message`); `listen` (`id` is the bind,
//! `info` the listen options as JSON). Message bytes are copied into
//! JavaScript Buffers: memory V8 accounts for (an external buffer would
//! keep the I/O thread's allocation alive, unseen by the collector, until
//! its finaliser ran).

use crate::core::io::errno_name;
use crate::core::protocol::event::{Descriptor, Event, ExitStatus};
use napi::bindgen_prelude::*;
use std::os::fd::IntoRawFd;

pub struct JsEvent(pub Event);

impl TypeName for JsEvent {
    fn type_name() -> &'static str {
        "Event"
    }

    fn value_type() -> ValueType {
        ValueType::Object
    }
}

impl ToNapiValue for JsEvent {
    unsafe fn to_napi_value(raw: sys::napi_env, val: Self) -> Result<sys::napi_value> {
        let env = Env::from_raw(raw);
        let mut o = Object::new(&env)?;
        let bytes = |data: &[u8]| BufferSlice::copy_from(&env, data)?.into_buffer(&env);
        let (kind, id) = match val.0 {
            Event::Online { id } => ("online", id),
            Event::Listening { id, info } => {
                o.set("info", info)?;
                ("listening", id)
            }
            Event::Messages {
                id,
                json,
                data,
                lengths,
            } => {
                o.set("data", bytes(&data)?)?;
                o.set("json", json)?;
                if !json {
                    o.set("lengths", lengths)?;
                }
                ("messages", id)
            }
            Event::Message {
                id,
                payload,
                fd,
                handle_type,
            } => {
                o.set("data", bytes(&payload)?)?;
                // From here on JavaScript owns the descriptor.
                if let Some(Descriptor::Owned(fd)) = fd {
                    o.set("fd", fd.into_raw_fd())?;
                }
                if let Some(t) = handle_type {
                    o.set("handleType", t)?;
                }
                ("message", id)
            }
            Event::Internal { id, payload } => {
                o.set("data", bytes(&payload)?)?;
                ("internal", id)
            }
            Event::ExitedAfterDisconnect { id } => ("exitedAfterDisconnect", id),
            Event::Written {
                id,
                callbacks,
                bytes,
            } => {
                o.set("count", callbacks)?;
                o.set("bytes", bytes as f64)?;
                ("written", id)
            }
            Event::Disconnect { id } => ("disconnect", id),
            Event::Exit { id, status } => {
                match status {
                    ExitStatus::Code(c) => o.set("code", c)?,
                    ExitStatus::Signal(s) => o.set("signal", s)?,
                }
                ("exit", id)
            }
            Event::Error { id, code, message } => {
                o.set("errorCode", code)?;
                o.set("message", message)?;
                ("error", id)
            }
            Event::SpawnFailed { id, errno, message } => {
                o.set(
                    "errorCode",
                    errno_name(errno).unwrap_or("ERR_NATIVE_CLUSTER_SPAWN"),
                )?;
                o.set("message", message)?;
                ("spawnFailed", id)
            }
            Event::Warning { id, code, message } => {
                o.set("errorCode", code)?;
                o.set("message", message)?;
                ("warning", id)
            }
            Event::Listen { bind, options } => {
                o.set("info", options)?;
                ("listen", bind)
            }
        };
        o.set("kind", kind)?;
        o.set("id", id)?;
        Object::to_napi_value(raw, o)
    }
}
