//! Which workers the primary hands new connections to. JavaScript closes a
//! worker's gate while it drains before a reload retires it, until it says
//! it is ready (`waitReady`), and while its heartbeat is late; connections
//! then go to the other workers, or wait for one, instead of reaching a
//! worker that would not serve them soon. Only servers whose connections
//! the primary accepts can honour it: a worker accepting from a socket of
//! its own takes what the kernel gives it.

use crate::core::protocol::servers::{Key, Server};
use crate::core::protocol::Protocol;

impl Protocol {
    /// Whether worker `id` is closed to new connections.
    pub(crate) fn gated(&self, id: u32) -> bool {
        self.workers.get(&id).is_some_and(|w| w.gated)
    }

    /// Opens or closes worker `id`'s gate. Closing takes it out of every
    /// idle list (and re-homes a sticky worker's queued clients); a
    /// connection already handed to it stays its own. Opening hands it its
    /// next connection at once where it is idle.
    pub(crate) fn set_gate(&mut self, id: u32, open: bool) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        // Already so.
        if w.gated != open {
            return;
        }
        w.gated = !open;
        let mut sends = Vec::new();
        let mut members = Vec::new();
        for (key, entry) in self.servers.by_key.iter_mut() {
            let member = match &mut entry.server {
                Server::Accepting(s) if s.balancer.contains(id) => {
                    for (w, c) in s.balancer.gate(id, !open) {
                        sends.push((key.clone(), entry.serial, w, c));
                    }
                    true
                }
                Server::ReusePort(s) if s.balancer.contains(id) => {
                    if !open {
                        s.balancer.gate(id);
                    }
                    true
                }
                _ => false,
            };
            if member {
                members.push(key.clone());
            }
        }
        for (key, serial, w, c) in sends {
            self.send_newconn(&Key::from(key.as_str()), serial, w, c);
        }
        if open {
            for key in members {
                self.handoff(&Key::from(key.as_str()), id);
            }
        }
    }
}
