'use strict';
// NODE_APP_INSTANCE: each worker's slot, 0..N-1, as PM2 numbers its
// instances so that an app can run one-off jobs in slot 0 only. A fork
// takes the lowest slot no live worker holds, so a worker forked when
// another exited gets its slot; a reload's replacement is given its
// predecessor's explicitly (both run for a while). An env given to fork()
// with NODE_APP_INSTANCE set keeps it.

const slots = new Map(); // worker id -> slot
const forks = new Map(); // slot -> workers forked into it

function assign(id, env) {
  const given = env == null ? undefined : env.NODE_APP_INSTANCE;
  let slot;
  if (given !== undefined && /^\d+$/.test(String(given))) {
    slot = Number(given);
  } else {
    const taken = new Set(slots.values());
    slot = 0;
    while (taken.has(slot)) slot++;
  }
  slots.set(id, slot);
  forks.set(slot, (forks.get(slot) || 0) + 1);
  return slot;
}

// How many times the slot got a new worker after its first: crash
// restarts, replacements (reload, the watchdog, --max-memory). A reload's
// replacement that was never ready, and was discarded, is withdrawn.
function restarts(slot) {
  return Math.max(0, (forks.get(slot) || 0) - 1);
}

function withdraw(slot) {
  const n = forks.get(slot) || 0;
  if (n > 0) forks.set(slot, n - 1);
}

function release(id) {
  slots.delete(id);
}

function of(id) {
  return slots.get(id);
}

module.exports = { assign, release, of, restarts, withdraw };
