//! The protocol driven in memory, without processes or descriptors: a
//! simulated driver ([`Sim`]) plays the kernel and scripted workers speak
//! Node's cluster protocol to it. Every descriptor token the simulation
//! hands in must come back exactly once (closed or given to JavaScript).

use super::*;
use crate::core::codec::framing::{self, FrameDecoder};
use crate::core::codec::json;
use crate::core::codec::value::Value;
use crate::core::protocol::event::Descriptor;
use std::collections::{BTreeSet, HashMap};

/// One frame a worker received, with the descriptor that came with it.
#[derive(Debug)]
struct Received {
    value: Value,
    fd: Option<FdId>,
}

#[derive(Default)]
struct Wire {
    decoder: Option<FrameDecoder>,
    /// Descriptors written with a frame's first byte, by stream offset.
    fds: Vec<(usize, FdId)>,
    written: usize,
    consumed: usize,
    frames: Vec<Received>,
}

/// A driver in memory: owns the tokens, records what the protocol asks.
struct Sim {
    p: Protocol,
    next_fd: u64,
    /// Tokens the protocol holds.
    live: BTreeSet<FdId>,
    events: Vec<Event>,
    opens: Vec<(u32, OpenSpec)>,
    /// Timers asked for: (timer, after_ms).
    timers: Vec<(u64, u64)>,
    accepting: BTreeSet<FdId>,
    closed_channels: Vec<u32>,
    wires: HashMap<u32, Wire>,
    /// Largest write the simulated sockets take at once.
    chunk: usize,
    /// Writes wait until [`Sim::flush`] (a full socket).
    hold_writes: bool,
    pending_transmits: BTreeSet<u32>,
    /// Workers whose reading the protocol paused.
    paused: BTreeSet<u32>,
    /// Names the random sequence in failure messages.
    seed: u64,
}

impl Sim {
    fn new() -> Sim {
        Sim {
            p: Protocol::new(),
            next_fd: 100,
            live: BTreeSet::new(),
            events: Vec::new(),
            opens: Vec::new(),
            timers: Vec::new(),
            accepting: BTreeSet::new(),
            closed_channels: Vec::new(),
            wires: HashMap::new(),
            chunk: usize::MAX,
            hold_writes: false,
            pending_transmits: BTreeSet::new(),
            paused: BTreeSet::new(),
            seed: 0,
        }
    }

    fn with_policy(policy: Policy, key_with_index: bool) -> Sim {
        let mut sim = Sim::new();
        sim.input(Input::Configure {
            policy,
            key_with_index,
            listen_grace_ms: 0,
        });
        sim
    }

    /// Fires the oldest timer asked for.
    fn fire_timer(&mut self) {
        assert!(!self.timers.is_empty(), "no timer");
        let (timer, _) = self.timers.remove(0);
        self.input(Input::Timer { timer });
    }

    /// A new descriptor token, handed to the protocol by the next input.
    fn fd(&mut self) -> FdId {
        self.next_fd += 1;
        let id = FdId(self.next_fd);
        self.live.insert(id);
        id
    }

    fn input(&mut self, input: Input<'_>) {
        self.p.handle(input);
        self.drain();
    }

    fn drain(&mut self) {
        loop {
            self.outputs();
            if self.hold_writes || self.pending_transmits.is_empty() {
                break;
            }
            self.write_pending();
        }
        if let Err(e) = self.p.check_invariants() {
            panic!("seed {}: invariant broken: {e}", self.seed);
        }
    }

    /// Writes whatever is pending, even while writes are held.
    fn flush(&mut self) {
        let held = std::mem::replace(&mut self.hold_writes, false);
        self.drain();
        self.hold_writes = held;
    }

    fn outputs(&mut self) {
        while let Some(out) = self.p.poll_output() {
            match out {
                Output::Event(e) => {
                    if let Event::Message {
                        fd: Some(Descriptor::Token(fd)),
                        ..
                    } = &e
                    {
                        assert!(self.live.remove(fd), "{fd:?} given away but not held");
                    }
                    self.events.push(e);
                }
                Output::Transmit { id } => {
                    self.pending_transmits.insert(id);
                }
                Output::CloseChannel { id } => {
                    assert!(
                        !self.closed_channels.contains(&id),
                        "channel {id} closed twice"
                    );
                    self.closed_channels.push(id);
                }
                Output::PauseRead { id } => {
                    assert!(self.paused.insert(id), "worker {id} paused twice");
                }
                Output::ResumeRead { id } => {
                    assert!(self.paused.remove(&id), "worker {id} resumed unpaused");
                }
                Output::Open { bind, spec } => self.opens.push((bind, spec)),
                Output::Timer { timer, after_ms } => self.timers.push((timer, after_ms)),
                Output::CancelTimer { timer } => {
                    let at = self.timers.iter().position(|&(t, _)| t == timer);
                    let at = at.unwrap_or_else(|| {
                        panic!("timer {timer} cancelled twice or never asked for")
                    });
                    self.timers.remove(at);
                }
                Output::Accept { listener, .. } => {
                    assert!(
                        self.live.contains(&listener),
                        "accept on unknown {listener:?}"
                    );
                    self.accepting.insert(listener);
                }
                Output::StopAccept { listener } => {
                    self.accepting.remove(&listener);
                }
                Output::Close { fd } => {
                    assert!(self.live.remove(&fd), "{fd:?} released twice or never held");
                    self.accepting.remove(&fd);
                }
            }
        }
    }

    /// Writes every worker's pending frames, `chunk` bytes at a time.
    fn write_pending(&mut self) {
        while let Some(id) = self.pending_transmits.pop_first() {
            self.p.transmitting(id);
            let ser = self.p.workers.get(&id).map(|w| w.ser);
            while let Some((bytes, fd)) = self.p.transmit(id) {
                let n = bytes.len().min(self.chunk);
                let chunk = bytes[..n].to_vec();
                self.record(id, ser, &chunk, fd);
                self.p.written(id, n);
            }
        }
    }

    /// What a worker's end of the channel reads.
    fn record(&mut self, id: u32, ser: Option<Serialization>, chunk: &[u8], fd: Option<FdId>) {
        let ser = ser.unwrap_or(Serialization::Json);
        let wire = self.wires.entry(id).or_default();
        if let Some(fd) = fd {
            wire.fds.push((wire.written, fd));
        }
        wire.written += chunk.len();
        let dec = wire.decoder.get_or_insert_with(|| FrameDecoder::new(ser));
        dec.push(chunk);
        while let Ok(Some(payload)) = dec.next_frame() {
            let start = wire.consumed;
            let header = if ser == Serialization::Advanced { 4 } else { 1 };
            wire.consumed += payload.len() + header;
            let fd = wire
                .fds
                .iter()
                .find(|(at, _)| *at == start)
                .map(|(_, f)| *f);
            let value = framing::decode_value(ser, &payload).unwrap_or(Value::Undefined);
            wire.frames.push(Received { value, fd });
        }
    }

    fn worker(&mut self, id: u32, serialization: Serialization) {
        self.input(Input::Adopted { id, serialization });
    }

    /// The worker writes `value` as a frame, with `fds` alongside.
    fn send(&mut self, id: u32, value: &Value, fds: Vec<FdId>) {
        let ser = self
            .p
            .workers
            .get(&id)
            .map_or(Serialization::Json, |w| w.ser);
        let bytes = framing::encode_value(ser, value);
        self.input(Input::Received {
            id,
            bytes: &bytes,
            fds,
        });
    }

    fn send_json(&mut self, id: u32, text: &str) {
        let value = json::parse(text.as_bytes()).expect("test JSON");
        self.send(id, &value, Vec::new());
    }

    /// Frames worker `id` received since the last call.
    fn frames(&mut self, id: u32) -> Vec<Received> {
        self.wires
            .get_mut(&id)
            .map(|w| std::mem::take(&mut w.frames))
            .unwrap_or_default()
    }

    fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Answers the oldest open request: a socket (its token) or an errno.
    fn answer_open(&mut self, ok: Result<Option<SockName>, i64>) -> (u32, OpenSpec, Option<FdId>) {
        assert!(!self.opens.is_empty(), "no open request");
        let (bind, spec) = self.opens.remove(0);
        let (result, fd) = match ok {
            Ok(sockname) => {
                let fd = self.fd();
                (Ok(Opened { fd, sockname }), Some(fd))
            }
            Err(errno) => (Err(errno), None),
        };
        self.input(Input::Opened { bind, result });
        (bind, spec, fd)
    }

    fn accept(&mut self, listener: FdId, peer: Option<IpAddr>) -> FdId {
        let conn = self.fd();
        self.input(Input::Accepted {
            listener,
            conn,
            peer,
        });
        conn
    }

    fn exit(&mut self, id: u32) {
        self.input(Input::Exited {
            id,
            status: ExitStatus::Code(0),
        });
    }
}

fn loopback(port: u16) -> Option<SockName> {
    Some(SockName {
        address: "127.0.0.1".into(),
        ipv6: false,
        port,
    })
}

fn query(seq: u32, port: i64, index: u32) -> String {
    format!(
        r#"{{"cmd":"NODE_CLUSTER","act":"queryServer","seq":{seq},"address":"127.0.0.1","port":{port},"addressType":4,"fd":-1,"flags":0,"backlog":511,"index":{index},"data":null}}"#
    )
}

fn get<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter()
        .fold(v, |v, k| v.get(k).unwrap_or(&Value::Undefined))
}

fn num(v: &Value, path: &[&str]) -> Option<f64> {
    get(v, path).as_f64()
}

fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(v, path).as_str()
}

/// A round-robin server on port 8000 that `workers` joined, listening
/// through JavaScript; returns the listener token.
fn rr_server(sim: &mut Sim, workers: &[u32]) -> FdId {
    for (i, &w) in workers.iter().enumerate() {
        sim.worker(w, Serialization::Json);
        sim.send_json(w, &query(i as u32 + 1, 8000, 0));
    }
    let (_, spec, listener) = sim.answer_open(Ok(loopback(8000)));
    assert!(matches!(spec, OpenSpec::Js { .. }), "{spec:?}");
    let listener = listener.expect("a socket");
    for &w in workers {
        let replies = sim.frames(w);
        assert_eq!(replies.len(), 1, "one queryServer reply for worker {w}");
        assert_eq!(get(&replies[0].value, &["errno"]), &Value::Null);
    }
    listener
}

/// A sticky server on port 8000 that `workers` joined (their replies
/// taken); returns the listener token.
fn sticky_server(sim: &mut Sim, workers: &[u32]) -> FdId {
    for &w in workers {
        sim.worker(w, Serialization::Json);
        sim.send_json(w, &query(1, 8000, 0));
    }
    let listener = sim.answer_open(Ok(loopback(8000))).2.expect("socket");
    for &w in workers {
        sim.frames(w);
    }
    listener
}

/// Which of `workers` was sent connection `conn`.
fn holder(sim: &Sim, conn: FdId, workers: &[u32]) -> u32 {
    workers
        .iter()
        .copied()
        .find(|w| {
            sim.wires
                .get(w)
                .is_some_and(|wire| wire.frames.iter().any(|f| f.fd == Some(conn)))
        })
        .expect("someone got it")
}

/// Worker `w` takes the next `newconn` it was sent and answers it.
fn answer_newconn(sim: &mut Sim, w: u32, accepted: bool) -> FdId {
    let frames = sim.frames(w);
    let newconn = frames
        .iter()
        .find(|f| text(&f.value, &["msg", "act"]) == Some("newconn"))
        .unwrap_or_else(|| panic!("worker {w} got no newconn: {frames:?}"));
    let fd = newconn.fd.expect("newconn carries the connection");
    let seq = num(&newconn.value, &["msg", "seq"]).expect("seq");
    reply_newconn(sim, w, seq, accepted);
    fd
}

/// Worker `w` answers every `newconn` it was sent since the last look;
/// returns how many.
fn answer_newconns(sim: &mut Sim, w: u32, accepted: bool) -> usize {
    let seqs: Vec<f64> = sim
        .frames(w)
        .iter()
        .filter(|f| text(&f.value, &["msg", "act"]) == Some("newconn"))
        .filter_map(|f| num(&f.value, &["msg", "seq"]))
        .collect();
    for &seq in &seqs {
        reply_newconn(sim, w, seq, accepted);
    }
    seqs.len()
}

/// What Node's worker writes for a `newconn`: the handle's ACK, then its
/// answer.
fn reply_newconn(sim: &mut Sim, w: u32, seq: f64, accepted: bool) {
    sim.send_json(w, r#"{"cmd":"NODE_HANDLE_ACK"}"#);
    sim.send_json(
        w,
        &format!(r#"{{"cmd":"NODE_CLUSTER","ack":{seq},"accepted":{accepted},"seq":99}}"#),
    );
}

#[test]
fn online_and_listening_reach_javascript() {
    let mut sim = Sim::new();
    sim.worker(1, Serialization::Json);
    sim.send_json(1, r#"{"cmd":"NODE_CLUSTER","act":"online","seq":0}"#);
    sim.send_json(
        1,
        r#"{"cmd":"NODE_CLUSTER","act":"listening","seq":1,"address":"::","port":80,"addressType":6,"fd":-1}"#,
    );
    let events = sim.take_events();
    assert!(matches!(events[0], Event::Online { id: 1 }));
    match &events[1] {
        Event::Listening { id: 1, info } => assert_eq!(
            info,
            r#"{"addressType":6,"address":"::","port":80,"fd":-1}"#
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn round_robin_listens_through_javascript_then_hands_off_connections() {
    let mut sim = Sim::new();
    sim.worker(1, Serialization::Json);
    sim.send_json(1, &query(7, 8000, 0));
    assert!(
        sim.frames(1).is_empty(),
        "no reply before the socket exists"
    );
    match &sim.opens[0].1 {
        OpenSpec::Js { options } => assert_eq!(
            options,
            r#"{"port":8000,"host":"127.0.0.1","ipv6Only":false,"backlog":511}"#
        ),
        other => panic!("{other:?}"),
    }
    let (_, _, listener) = sim.answer_open(Ok(loopback(8000)));
    let listener = listener.expect("socket");
    assert!(sim.accepting.contains(&listener));
    let reply = &sim.frames(1)[0].value;
    assert_eq!(num(reply, &["ack"]), Some(7.0));
    assert_eq!(text(reply, &["key"]), Some("127.0.0.1:8000:4:-1:0"));
    assert_eq!(text(reply, &["sockname", "family"]), Some("IPv4"));
    assert_eq!(num(reply, &["sockname", "port"]), Some(8000.0));
    let conn = sim.accept(listener, None);
    let sent = answer_newconn(&mut sim, 1, true);
    assert_eq!(sent, conn);
    assert!(
        !sim.live.contains(&conn),
        "the primary's copy closes once the worker has it"
    );
}

#[test]
fn round_robin_alternates_and_a_refusal_goes_to_the_other_worker() {
    let mut sim = Sim::new();
    let listener = rr_server(&mut sim, &[1, 2]);
    let a = sim.accept(listener, None);
    let b = sim.accept(listener, None);
    assert_eq!(answer_newconn(&mut sim, 1, true), a);
    // Worker 2 refuses (at maxConnections): b goes back to worker 1.
    assert_eq!(answer_newconn(&mut sim, 2, false), b);
    assert_eq!(answer_newconn(&mut sim, 1, true), b);
    assert!(!sim.live.contains(&a) && !sim.live.contains(&b));
}

#[test]
fn connections_wait_while_every_worker_has_one_in_flight() {
    let mut sim = Sim::new();
    let listener = rr_server(&mut sim, &[1]);
    let a = sim.accept(listener, None);
    let b = sim.accept(listener, None);
    assert_eq!(sim.p.footprint().in_flight, 1);
    assert_eq!(answer_newconn(&mut sim, 1, true), a);
    assert_eq!(answer_newconn(&mut sim, 1, true), b);
}

#[test]
fn a_connection_a_dying_worker_never_answered_goes_to_the_next_worker() {
    // 0: before the newconn is written; 1: written, not acknowledged;
    // 2: handle acknowledged, no reply; 3: half of the frame written;
    // 4: answered `accepted` (then it was the dead worker's: closed).
    for step in 0..5 {
        let mut sim = Sim::new();
        let listener = rr_server(&mut sim, &[1, 2]);
        // Worker 2 is busy with a connection of its own, so the next one
        // goes to worker 1.
        let first = sim.accept(listener, None);
        let _ = sim.accept(listener, None);
        assert_eq!(answer_newconn(&mut sim, 1, true), first);
        if step == 0 {
            sim.hold_writes = true;
        }
        if step == 3 {
            sim.chunk = 20;
            sim.hold_writes = true;
        }
        let conn = sim.accept(listener, None);
        if step == 3 {
            // One chunk only: the socket is then full.
            let id = *sim.pending_transmits.first().expect("a write");
            sim.p.transmitting(id);
            let n = sim.p.transmit(id).map(|(b, _)| b.len().min(20));
            sim.p.written(id, n.expect("bytes"));
        }
        if step == 2 {
            sim.send_json(1, r#"{"cmd":"NODE_HANDLE_ACK"}"#);
        }
        if step == 4 {
            assert_eq!(answer_newconn(&mut sim, 1, true), conn);
        }
        sim.input(Input::ChannelClosed { id: 1 });
        sim.exit(1);
        sim.hold_writes = false;
        sim.chunk = usize::MAX;
        sim.flush();
        // Worker 2 answers its own, then gets the dead worker's.
        let frames = sim.frames(2);
        sim.wires.get_mut(&2).expect("wire").frames = frames;
        let _own = answer_newconn(&mut sim, 2, true);
        if step == 4 {
            assert!(
                !sim.live.contains(&conn),
                "answered: the primary's copy closed"
            );
            assert_eq!(sim.p.rerouted(), 0);
        } else {
            assert_eq!(
                answer_newconn(&mut sim, 2, true),
                conn,
                "step {step}: rerouted to worker 2"
            );
            assert_eq!(sim.p.rerouted(), 1, "step {step}");
        }
        assert!(
            sim.live.iter().all(|fd| *fd == listener),
            "step {step}: {:?}",
            sim.live
        );
        assert_eq!(sim.p.footprint().workers, 1);
    }
}

#[test]
fn a_disconnecting_worker_keeps_its_connection_until_it_answers() {
    let mut sim = Sim::new();
    let listener = rr_server(&mut sim, &[1, 2]);
    let a = sim.accept(listener, None);
    sim.input(Input::Disconnect { id: 1 });
    // Its newconn is still its to answer: it refuses (its server closed).
    assert_eq!(answer_newconn(&mut sim, 1, false), a);
    assert_eq!(answer_newconn(&mut sim, 2, true), a);
}

#[test]
fn with_a_listen_grace_a_server_outlives_its_last_worker_for_the_next_one() {
    let mut sim = Sim::new();
    sim.input(Input::Configure {
        policy: Policy::RoundRobin,
        key_with_index: true,
        listen_grace_ms: 3000,
    });
    let listener = rr_server(&mut sim, &[1]);
    let handed = sim.accept(listener, None);
    let queued = sim.accept(listener, None);
    sim.exit(1);
    assert!(
        !sim.accepting.contains(&listener),
        "not accepted on meanwhile"
    );
    assert!(sim.live.contains(&listener), "but still listening");
    assert!(sim.live.contains(&handed) && sim.live.contains(&queued));
    assert_eq!(sim.timers.len(), 1);
    assert_eq!(sim.timers[0].1, 3000);
    // The replacement joins the same server and gets both, in order.
    sim.worker(2, Serialization::Json);
    sim.send_json(2, &query(1, 8000, 0));
    assert!(sim.opens.is_empty(), "no new socket");
    assert!(sim.accepting.contains(&listener), "accepting again");
    let frames = sim.frames(2);
    assert_eq!(get(&frames[0].value, &["errno"]), &Value::Null);
    // The queued connection follows the reply at once.
    sim.wires.get_mut(&2).expect("wire").frames = frames.into_iter().skip(1).collect();
    assert_eq!(answer_newconn(&mut sim, 2, true), handed);
    assert_eq!(answer_newconn(&mut sim, 2, true), queued);
    // The grace's timer is cancelled: it never fires.
    assert!(sim.timers.is_empty(), "{:?}", sim.timers);
    assert!(sim.p.timers.is_empty());
    // A timer that crossed its cancellation changes nothing.
    sim.input(Input::Timer { timer: 0 });
    assert!(sim.live.contains(&listener));
    assert!(sim.accepting.contains(&listener));
}

#[test]
fn a_listen_grace_with_no_replacement_closes_the_server_when_it_ends() {
    let mut sim = Sim::new();
    sim.input(Input::Configure {
        policy: Policy::Sticky,
        key_with_index: true,
        listen_grace_ms: 500,
    });
    let listener = rr_server(&mut sim, &[1]);
    let queued = sim.accept(listener, Some("10.1.1.1".parse().expect("ip")));
    sim.exit(1);
    assert!(sim.live.contains(&queued));
    sim.fire_timer();
    assert!(sim.live.is_empty(), "{:?}", sim.live);
    assert_eq!(sim.p.footprint(), Footprint::default());
}

#[test]
fn a_worker_that_asked_to_leave_closes_its_server_at_once_despite_a_grace() {
    let mut sim = Sim::new();
    sim.input(Input::Configure {
        policy: Policy::RoundRobin,
        key_with_index: true,
        listen_grace_ms: 500,
    });
    let listener = rr_server(&mut sim, &[1]);
    sim.send_json(
        1,
        r#"{"cmd":"NODE_CLUSTER","act":"exitedAfterDisconnect","seq":4}"#,
    );
    sim.exit(1);
    assert!(sim.timers.is_empty());
    assert!(!sim.live.contains(&listener));
}

#[test]
fn a_nonsense_query_is_refused_with_einval_and_binds_nothing() {
    for bad in [
        r#""port":"x","addressType":4"#,
        r#""port":8000,"addressType":99"#,
        r#""port":70000,"addressType":4"#,
        r#""port":1.5,"addressType":4"#,
        r#""port":80,"addressType":4,"fd":"3""#,
        r#""port":80,"addressType":4,"address":{}"#,
    ] {
        let mut sim = Sim::new();
        sim.worker(1, Serialization::Json);
        sim.send_json(
            1,
            &format!(r#"{{"cmd":"NODE_CLUSTER","act":"queryServer","seq":5,{bad},"index":0}}"#),
        );
        assert!(sim.opens.is_empty(), "{bad}: nothing opened");
        let reply = &sim.frames(1)[0].value;
        assert_eq!(num(reply, &["errno"]), Some(-22.0), "{bad}");
        assert_eq!(num(reply, &["ack"]), Some(5.0));
        assert!(
            matches!(
                &sim.take_events()[..],
                [Event::Error {
                    code: "ERR_CLUSTER_BAD_MESSAGE",
                    ..
                }]
            ),
            "{bad}"
        );
    }
}

#[test]
fn send_callbacks_and_javascript_bytes_are_reported_once_written() {
    let mut sim = Sim::new();
    sim.worker(1, Serialization::Json);
    sim.hold_writes = true;
    for callback in [true, false, true] {
        sim.input(Input::Send {
            id: 1,
            frame: b"\"0123456789\"\n".to_vec(),
            fd: None,
            callback,
        });
    }
    assert!(sim.take_events().is_empty(), "nothing written yet");
    sim.p.transmitting(1);
    let n = sim.p.transmit(1).map(|(b, _)| b.len()).expect("bytes");
    assert_eq!(n, 39, "merged into one write");
    sim.p.written(1, 20);
    sim.drain();
    assert!(
        sim.take_events().is_empty(),
        "half a frame completes nothing"
    );
    sim.p.written(1, 19);
    sim.drain();
    assert!(matches!(
        &sim.take_events()[..],
        [Event::Written {
            id: 1,
            callbacks: 2,
            bytes: 39
        }]
    ));
    // Queued when the channel closes: the callback still runs.
    sim.input(Input::Send {
        id: 1,
        frame: b"1\n".to_vec(),
        fd: None,
        callback: true,
    });
    sim.input(Input::ChannelClosed { id: 1 });
    assert!(matches!(
        &sim.take_events()[..],
        [
            Event::Written {
                id: 1,
                callbacks: 1,
                bytes: 2
            },
            Event::Disconnect { id: 1 }
        ]
    ));
    // Sent after the close: reported at once, callback and bytes.
    sim.input(Input::Send {
        id: 1,
        frame: b"2\n".to_vec(),
        fd: None,
        callback: false,
    });
    assert!(matches!(
        &sim.take_events()[..],
        [Event::Written {
            id: 1,
            callbacks: 0,
            bytes: 2
        }]
    ));
}

/// Without callbacks, written bytes are reported once enough gathered,
/// and nothing is lost: every byte sent is reported exactly once.
#[test]
fn written_bytes_without_callbacks_are_reported_in_chunks() {
    let mut sim = Sim::new();
    sim.worker(1, Serialization::Json);
    let frame = vec![b'1'; 999]
        .into_iter()
        .chain([b'\n'])
        .collect::<Vec<u8>>();
    let sends = 100;
    let mut reported = 0;
    let mut reports = 0;
    for _ in 0..sends {
        sim.input(Input::Send {
            id: 1,
            frame: frame.clone(),
            fd: None,
            callback: false,
        });
        for e in sim.take_events() {
            if let Event::Written {
                callbacks: 0,
                bytes,
                ..
            } = e
            {
                assert!(bytes >= event::REPORT_WRITTEN);
                reported += bytes;
                reports += 1;
            }
        }
    }
    assert_eq!(reports, sends * 1000 / event::REPORT_WRITTEN);
    // The rest goes with the next callback.
    sim.input(Input::Send {
        id: 1,
        frame: frame.clone(),
        fd: None,
        callback: true,
    });
    for e in sim.take_events() {
        if let Event::Written { bytes, .. } = e {
            reported += bytes;
        }
    }
    assert_eq!(reported, (sends + 1) * 1000);
}

/// Reading pauses once more than the bound of a worker's data waits for
/// JavaScript, and resumes only when JavaScript has taken enough of it;
/// what JavaScript reports taking is what the events weigh.
#[test]
fn reading_pauses_above_the_backlog_and_resumes_once_delivered() {
    use crate::core::protocol::backlog::{PAUSE_ABOVE, RESUME_BELOW};
    let mut sim = Sim::new();
    sim.worker(1, Serialization::Json);
    sim.worker(2, Serialization::Json);
    let line = [vec![b'7'; 1023], vec![b'\n']].concat();
    let mut weight = 0;
    while !sim.paused.contains(&1) {
        sim.input(Input::Received {
            id: 1,
            bytes: &line,
            fds: Vec::new(),
        });
        for e in sim.take_events() {
            weight += e.data_len();
        }
    }
    assert_eq!(weight, PAUSE_ABOVE + 1024 - PAUSE_ABOVE % 1024);
    assert!(!sim.paused.contains(&2), "only the flooding worker");
    // More arrives (bytes already read): no second pause.
    sim.input(Input::Received {
        id: 1,
        bytes: &line,
        fds: Vec::new(),
    });
    weight += sim.take_events().iter().map(Event::data_len).sum::<usize>();
    sim.input(Input::Delivered {
        id: 1,
        bytes: weight - RESUME_BELOW,
    });
    assert!(sim.paused.contains(&1), "still at the resume mark");
    sim.input(Input::Delivered { id: 1, bytes: 1 });
    assert!(!sim.paused.contains(&1), "resumed below the mark");
    // A worker gone with data on its way: forgotten, nothing resumes.
    sim.input(Input::Exited {
        id: 1,
        status: ExitStatus::Code(0),
    });
    sim.take_events();
    sim.input(Input::Delivered {
        id: 1,
        bytes: RESUME_BELOW,
    });
    assert!(sim.paused.is_empty());
}

#[test]
fn the_last_worker_leaving_closes_the_server_and_its_queue() {
    let mut sim = Sim::new();
    let listener = rr_server(&mut sim, &[1]);
    let a = sim.accept(listener, None);
    let queued = sim.accept(listener, None);
    sim.send_json(
        1,
        r#"{"cmd":"NODE_CLUSTER","act":"close","key":"127.0.0.1:8000:4:-1:0","seq":5}"#,
    );
    assert!(!sim.accepting.contains(&listener));
    assert!(!sim.live.contains(&listener), "listener closed");
    assert!(!sim.live.contains(&queued), "queued connection closed");
    // The one in flight is the worker's to answer; it is closed when the
    // worker goes.
    assert!(sim.live.contains(&a));
    sim.exit(1);
    assert!(sim.live.is_empty(), "{:?}", sim.live);
}

#[test]
fn a_failed_listen_is_the_workers_errno_and_the_key_is_forgotten() {
    let mut sim = Sim::new();
    sim.worker(1, Serialization::Json);
    sim.worker(2, Serialization::Json);
    sim.send_json(1, &query(1, 8000, 0));
    sim.send_json(2, &query(1, 8000, 0));
    sim.answer_open(Err(-98));
    for w in [1, 2] {
        let reply = &sim.frames(w)[0];
        assert_eq!(num(&reply.value, &["errno"]), Some(-98.0));
        assert!(reply.fd.is_none());
    }
    sim.send_json(1, &query(2, 8000, 0));
    assert_eq!(sim.opens.len(), 1, "a new query opens again");
}

#[test]
fn a_worker_that_leaves_while_its_socket_opens_is_not_answered() {
    let mut sim = Sim::new();
    sim.worker(1, Serialization::Json);
    sim.send_json(1, &query(1, 8000, 0));
    sim.exit(1);
    let (_, _, fd) = sim.answer_open(Ok(loopback(8000)));
    assert!(!sim.live.contains(&fd.expect("socket")), "closed at once");
    assert_eq!(sim.p.footprint().servers, 0);
}

#[test]
fn shared_servers_bind_once_and_send_the_same_socket_to_every_worker() {
    let mut sim = Sim::with_policy(Policy::Shared, true);
    sim.worker(1, Serialization::Json);
    sim.worker(2, Serialization::Json);
    sim.send_json(1, &query(1, 8000, 0));
    let (_, spec, fd) = sim.answer_open(Ok(loopback(8000)));
    assert_eq!(
        spec,
        OpenSpec::Tcp {
            address: Some("127.0.0.1".into()),
            port: 8000,
            ipv6_only: false,
            reuse_port: false,
            listen: None,
        }
    );
    sim.send_json(2, &query(1, 8000, 0));
    assert!(sim.opens.is_empty());
    for w in [1, 2] {
        let reply = &sim.frames(w)[0];
        assert_eq!(text(&reply.value, &["cmd"]), Some("NODE_HANDLE"));
        assert_eq!(text(&reply.value, &["type"]), Some("net.Native"));
        assert_eq!(num(&reply.value, &["msg", "errno"]), Some(0.0));
        assert_eq!(reply.fd, fd);
        sim.send_json(w, r#"{"cmd":"NODE_HANDLE_ACK"}"#);
    }
    sim.exit(1);
    assert!(
        sim.live.contains(&fd.expect("socket")),
        "worker 2 still shares it"
    );
    sim.exit(2);
    assert!(sim.live.is_empty());
}

#[test]
fn udp_is_always_a_shared_bound_socket() {
    let mut sim = Sim::new();
    sim.worker(1, Serialization::Json);
    sim.send_json(
        1,
        r#"{"cmd":"NODE_CLUSTER","act":"queryServer","seq":3,"address":"::1","port":5000,"addressType":"udp6","fd":-1,"flags":4,"index":0}"#,
    );
    let (_, spec, fd) = sim.answer_open(Ok(None));
    assert_eq!(
        spec,
        OpenSpec::Udp {
            address: Some("::1".into()),
            port: 5000,
            ipv6: true,
            flags: 4,
        }
    );
    let reply = &sim.frames(1)[0];
    assert_eq!(text(&reply.value, &["type"]), Some("dgram.Native"));
    assert_eq!(reply.fd, fd);
}

#[test]
fn unix_socket_servers_are_bound_here_and_accepted_on_without_sockname() {
    let mut sim = Sim::new();
    sim.worker(1, Serialization::Json);
    sim.send_json(
        1,
        r#"{"cmd":"NODE_CLUSTER","act":"queryServer","seq":1,"address":"/tmp/s.sock","port":-1,"addressType":-1,"fd":-1,"backlog":64,"readableAll":true,"index":0}"#,
    );
    let (_, spec, fd) = sim.answer_open(Ok(None));
    assert_eq!(
        spec,
        OpenSpec::Pipe {
            path: "/tmp/s.sock".into(),
            listen: Some(64),
            readable_all: true,
            writable_all: false,
        }
    );
    let reply = &sim.frames(1)[0].value;
    assert_eq!(get(reply, &["sockname"]), &Value::Undefined);
    assert!(sim.accepting.contains(&fd.expect("socket")));
}

#[test]
fn node_20_keys_carry_the_listen_index_and_node_22_keys_only_for_port_0() {
    for (with_index, port, key) in [
        (true, 8000, "127.0.0.1:8000:4:-1:3"),
        (false, 8000, "127.0.0.1:8000:4:-1"),
        (false, 0, "127.0.0.1:0:4:-1:3"),
    ] {
        let mut sim = Sim::with_policy(Policy::RoundRobin, with_index);
        sim.worker(1, Serialization::Json);
        sim.send_json(1, &query(1, port, 3));
        sim.answer_open(Ok(loopback(8000)));
        assert_eq!(text(&sim.frames(1)[0].value, &["key"]), Some(key));
    }
}

#[test]
fn node_22_relisten_on_a_held_key_replaces_the_server_once_it_listens() {
    let mut sim = Sim::with_policy(Policy::RoundRobin, false);
    let old = rr_server(&mut sim, &[1]);
    sim.send_json(1, &query(9, 8000, 1));
    let (_, _, new) = sim.answer_open(Ok(loopback(8000)));
    let new = new.expect("socket");
    assert!(sim.accepting.contains(&new));
    assert!(
        !sim.accepting.contains(&old),
        "the replaced server is not accepted on"
    );
    assert!(
        sim.live.contains(&old),
        "its socket stays while the worker holds it"
    );
    sim.exit(1);
    assert!(sim.live.is_empty());
}

#[test]
fn advanced_serialization_queries_get_advanced_replies() {
    let mut sim = Sim::new();
    sim.worker(1, Serialization::Advanced);
    let q = json::parse(query(4, 8000, 0).as_bytes()).expect("json");
    sim.send(1, &q, Vec::new());
    let listener = sim.answer_open(Ok(loopback(8000))).2.expect("socket");
    assert_eq!(num(&sim.frames(1)[0].value, &["ack"]), Some(4.0));
    let conn = sim.accept(listener, None);
    let frames = sim.frames(1);
    assert_eq!(text(&frames[0].value, &["msg", "act"]), Some("newconn"));
    assert_eq!(frames[0].fd, Some(conn));
}

#[test]
fn reuseport_gives_each_worker_its_own_socket_and_serves_a_leavers_queue() {
    let mut sim = Sim::with_policy(Policy::ReusePort, true);
    for w in [1, 2] {
        sim.worker(w, Serialization::Json);
        sim.send_json(w, &query(1, 0, 0));
    }
    // One socket at a time: the first picks the port the second joins.
    assert_eq!(sim.opens.len(), 1);
    let (_, _, first) = sim.answer_open(Ok(loopback(41000)));
    match &sim.opens[0].1 {
        OpenSpec::Tcp {
            port, reuse_port, ..
        } => assert_eq!((*port, *reuse_port), (41000, true)),
        other => panic!("{other:?}"),
    }
    let (_, _, second) = sim.answer_open(Ok(loopback(41000)));
    assert_eq!(sim.frames(1)[0].fd, first);
    assert_eq!(sim.frames(2)[0].fd, second);
    for w in [1, 2] {
        sim.send_json(w, r#"{"cmd":"NODE_HANDLE_ACK"}"#);
    }
    // Worker 1 leaves: its socket stays, accepted on by the primary.
    sim.exit(1);
    let vacant = first.expect("socket");
    assert!(sim.accepting.contains(&vacant));
    let conn = sim.accept(vacant, None);
    assert_eq!(answer_newconn(&mut sim, 2, true), conn);
    // A new worker takes the vacant socket over: no new socket.
    sim.worker(3, Serialization::Json);
    sim.send_json(3, &query(1, 0, 0));
    assert!(sim.opens.is_empty());
    assert!(!sim.accepting.contains(&vacant));
    assert_eq!(sim.frames(3)[0].fd, Some(vacant));
}

#[test]
fn counters_follow_connections_and_messages() {
    let mut sim = Sim::new();
    let listener = rr_server(&mut sim, &[1, 2]);
    for _ in 0..3 {
        sim.accept(listener, None);
    }
    answer_newconn(&mut sim, 1, true);
    // Worker 2 refuses its first: it goes back to worker 1, still in flight.
    answer_newconn(&mut sim, 2, false);
    sim.send_json(1, r#"{"hello":1}"#);
    sim.send_json(1, r#"{"hello":2}"#);
    sim.input(Input::Send {
        id: 2,
        frame: b"{\"to\":2}\n".to_vec(),
        fd: None,
        callback: false,
    });
    let c = sim.p.counters();
    assert_eq!(c.iter().map(|w| w.id).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!((c[0].counters.connections, c[0].in_flight), (1, 1));
    assert_eq!((c[1].counters.connections, c[1].in_flight), (0, 1));
    assert_eq!(c[0].counters.messages_in, 2);
    assert_eq!(c[1].counters.messages_out, 1);
}

#[test]
fn a_gated_worker_gets_no_new_connection_until_opened() {
    let mut sim = Sim::new();
    let listener = rr_server(&mut sim, &[1, 2]);
    sim.input(Input::Gate { id: 1, open: false });
    let a = sim.accept(listener, None);
    let b = sim.accept(listener, None);
    assert_eq!(answer_newconn(&mut sim, 2, true), a);
    assert_eq!(answer_newconn(&mut sim, 2, true), b);
    assert!(sim.frames(1).is_empty(), "nothing for the gated worker");
    // Worker 2 busy with c; d waits, and goes to worker 1 once it opens.
    let c = sim.accept(listener, None);
    let d = sim.accept(listener, None);
    sim.input(Input::Gate { id: 1, open: true });
    assert_eq!(answer_newconn(&mut sim, 1, true), d);
    assert_eq!(answer_newconn(&mut sim, 2, true), c);
}

#[test]
fn only_the_worker_a_connection_went_to_can_answer_it() {
    let mut sim = Sim::new();
    let listener = rr_server(&mut sim, &[1, 2]);
    sim.accept(listener, None);
    let frames = sim.frames(1);
    let newconn = frames
        .iter()
        .find(|f| text(&f.value, &["msg", "act"]) == Some("newconn"))
        .expect("worker 1 got the connection");
    let seq = num(&newconn.value, &["msg", "seq"]).expect("seq");
    // Worker 2 names worker 1's connection (refusing it): nothing happens.
    sim.send_json(
        2,
        &format!(r#"{{"cmd":"NODE_CLUSTER","ack":{seq},"accepted":false,"seq":5}}"#),
    );
    assert_eq!(sim.p.footprint().in_flight, 1);
    assert!(sim.frames(2).is_empty(), "nothing re-routed to worker 2");
    // Worker 1's own answer settles it.
    sim.send_json(1, r#"{"cmd":"NODE_HANDLE_ACK"}"#);
    sim.send_json(
        1,
        &format!(r#"{{"cmd":"NODE_CLUSTER","ack":{seq},"accepted":true,"seq":5}}"#),
    );
    assert_eq!(sim.p.footprint().in_flight, 0);
}

#[test]
fn a_connection_in_flight_to_a_worker_being_gated_stays_its_own() {
    let mut sim = Sim::new();
    let listener = rr_server(&mut sim, &[1, 2]);
    let a = sim.accept(listener, None);
    sim.input(Input::Gate { id: 1, open: false });
    // Worker 1 still answers it; the next connections skip it.
    assert_eq!(answer_newconn(&mut sim, 1, true), a);
    let b = sim.accept(listener, None);
    let c = sim.accept(listener, None);
    assert_eq!(answer_newconn(&mut sim, 2, true), b);
    assert!(sim.frames(1).is_empty());
    assert_eq!(answer_newconn(&mut sim, 2, true), c);
}

#[test]
fn a_worker_gated_before_it_listens_is_not_handed_off_to() {
    let mut sim = Sim::new();
    sim.worker(1, Serialization::Json);
    sim.worker(2, Serialization::Json);
    sim.input(Input::Gate { id: 2, open: false });
    sim.send_json(1, &query(1, 8000, 0));
    sim.send_json(2, &query(1, 8000, 0));
    let listener = sim.answer_open(Ok(loopback(8000))).2.expect("socket");
    sim.frames(1);
    sim.frames(2);
    let a = sim.accept(listener, None);
    let b = sim.accept(listener, None);
    assert!(sim.frames(2).is_empty(), "gated from the start");
    // b waited for worker 1; the opened worker 2 takes it at once.
    sim.input(Input::Gate { id: 2, open: true });
    assert_eq!(answer_newconn(&mut sim, 2, true), b);
    assert_eq!(answer_newconn(&mut sim, 1, true), a);
}

#[test]
fn a_gated_sticky_worker_hands_its_waiting_clients_to_another() {
    let mut sim = Sim::with_policy(Policy::Sticky, true);
    let listener = sticky_server(&mut sim, &[1, 2]);
    let client: IpAddr = "10.0.0.7".parse().expect("ip");
    let first = sim.accept(listener, Some(client));
    let second = sim.accept(listener, Some(client));
    let owner = holder(&sim, first, &[1, 2]);
    sim.input(Input::Gate {
        id: owner,
        open: false,
    });
    assert_eq!(answer_newconn(&mut sim, 3 - owner, true), second);
    assert_eq!(answer_newconn(&mut sim, owner, true), first);
}

#[test]
fn sticky_sends_one_client_to_one_worker() {
    let mut sim = Sim::with_policy(Policy::Sticky, true);
    let listener = sticky_server(&mut sim, &[1, 2, 3]);
    let client: IpAddr = "10.0.0.7".parse().expect("ip");
    let mut owners = BTreeSet::new();
    for _ in 0..5 {
        let conn = sim.accept(listener, Some(client));
        let owner = holder(&sim, conn, &[1, 2, 3]);
        assert_eq!(answer_newconn(&mut sim, owner, true), conn);
        owners.insert(owner);
    }
    assert_eq!(owners.len(), 1, "{owners:?}");
}

#[test]
fn a_handle_from_javascript_gates_later_frames_until_acknowledged() {
    let mut sim = Sim::new();
    sim.worker(1, Serialization::Json);
    let fd = sim.fd();
    sim.input(Input::Send {
        id: 1,
        frame: b"{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Socket\",\"msg\":{\"a\":1}}\n".to_vec(),
        fd: Some(fd),
        callback: false,
    });
    sim.input(Input::Send {
        id: 1,
        frame: b"\"after\"\n".to_vec(),
        fd: None,
        callback: false,
    });
    let frames = sim.frames(1);
    assert_eq!(frames.len(), 1, "the plain frame waits for the ACK");
    assert_eq!(frames[0].fd, Some(fd));
    // A NACK retransmits; three more NACKs give up with a warning.
    sim.send_json(1, r#"{"cmd":"NODE_HANDLE_NACK"}"#);
    assert_eq!(sim.frames(1)[0].fd, Some(fd));
    for _ in 0..3 {
        sim.send_json(1, r#"{"cmd":"NODE_HANDLE_NACK"}"#);
    }
    let events = sim.take_events();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Warning {
            code: "SentHandleNotReceivedWarning",
            ..
        }
    )));
    assert!(!sim.live.contains(&fd));
    let frames = sim.frames(1);
    assert_eq!(frames.last().map(|f| &f.value), Some(&Value::from("after")));
}

#[test]
fn a_handle_from_a_worker_is_acknowledged_and_given_to_javascript() {
    let mut sim = Sim::new();
    sim.worker(1, Serialization::Json);
    let envelope =
        json::parse(br#"{"cmd":"NODE_HANDLE","type":"net.Socket","msg":{"x":1}}"#).expect("json");
    let fd = sim.fd();
    sim.send(1, &envelope, vec![fd]);
    assert_eq!(
        text(&sim.frames(1)[0].value, &["cmd"]),
        Some("NODE_HANDLE_ACK")
    );
    match &sim.take_events()[0] {
        Event::Message {
            fd: Some(Descriptor::Token(got)),
            handle_type,
            ..
        } => {
            assert_eq!(*got, fd);
            assert_eq!(handle_type.as_deref(), Some("net.Socket"));
        }
        other => panic!("{other:?}"),
    }
    // Without its descriptor: NACK, so that the worker sends it again.
    sim.send(1, &envelope, Vec::new());
    assert_eq!(
        text(&sim.frames(1)[0].value, &["cmd"]),
        Some("NODE_HANDLE_NACK")
    );
}

#[test]
fn exited_after_disconnect_is_acknowledged_and_its_queries_are_ignored() {
    let mut sim = Sim::new();
    sim.worker(1, Serialization::Json);
    sim.send_json(
        1,
        r#"{"cmd":"NODE_CLUSTER","act":"exitedAfterDisconnect","seq":12}"#,
    );
    assert_eq!(num(&sim.frames(1)[0].value, &["ack"]), Some(12.0));
    assert!(matches!(
        sim.take_events()[0],
        Event::ExitedAfterDisconnect { id: 1 }
    ));
    sim.send_json(1, &query(13, 8000, 0));
    assert!(sim.opens.is_empty() && sim.frames(1).is_empty());
}

#[test]
fn disconnect_and_close_channel_from_javascript() {
    let mut sim = Sim::new();
    sim.worker(1, Serialization::Json);
    sim.input(Input::Disconnect { id: 1 });
    assert_eq!(text(&sim.frames(1)[0].value, &["act"]), Some("disconnect"));
    // With a handle awaiting its ACK the channel stays open until the ACK.
    let fd = sim.fd();
    sim.input(Input::Send {
        id: 1,
        frame: b"{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{}}\n".to_vec(),
        fd: Some(fd),
        callback: false,
    });
    sim.input(Input::CloseChannel { id: 1 });
    assert!(sim.closed_channels.is_empty());
    sim.send_json(1, r#"{"cmd":"NODE_HANDLE_ACK"}"#);
    assert_eq!(sim.closed_channels, vec![1]);
    assert!(matches!(
        sim.take_events().last(),
        Some(Event::Disconnect { id: 1 })
    ));
    sim.exit(1);
    assert!(sim.live.is_empty());
    assert_eq!(sim.p.footprint(), Footprint::default());
}

#[test]
fn bad_input_is_reported_and_the_other_worker_is_untouched() {
    let mut sim = Sim::new();
    let listener = rr_server(&mut sim, &[1, 2]);
    sim.send_json(1, r#"{"cmd":"NODE_CLUSTER","act":"noSuchAct","seq":1}"#);
    sim.input(Input::Received {
        id: 1,
        bytes: b"{\"cmd\":\"NODE_CLUSTER\",oops}\n",
        fds: Vec::new(),
    });
    let stray = sim.fd();
    sim.input(Input::Received {
        id: 1,
        bytes: b"\"plain\"\n",
        fds: vec![stray],
    });
    let codes: Vec<&str> = sim
        .take_events()
        .iter()
        .filter_map(|e| match e {
            Event::Error { code, .. } => Some(*code),
            _ => None,
        })
        .collect();
    assert_eq!(
        codes,
        [
            "ERR_CLUSTER_UNKNOWN_ACT",
            "ERR_CLUSTER_BAD_MESSAGE",
            "ERR_CLUSTER_STRAY_HANDLE"
        ]
    );
    assert!(!sim.live.contains(&stray), "a stray descriptor is closed");
    // An endless length prefix ends that channel only.
    sim.input(Input::Received {
        id: 1,
        bytes: &[b'x'; 64],
        fds: Vec::new(),
    });
    let a = sim.accept(listener, None);
    let b = sim.accept(listener, None);
    let got: BTreeSet<FdId> = [answer_newconn(&mut sim, 2, true)].into();
    assert!(got.contains(&a) || got.contains(&b));
}

#[test]
fn user_messages_of_one_worker_are_batched() {
    let mut sim = Sim::new();
    sim.worker(1, Serialization::Json);
    sim.input(Input::Received {
        id: 1,
        bytes: b"{\"a\":1}\n2\n",
        fds: Vec::new(),
    });
    match &sim.take_events()[..] {
        [Event::Messages { data, lengths, .. }] => {
            assert_eq!(data, b"{\"a\":1}\n2");
            assert!(lengths.is_empty());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_server_stops_accepting_while_its_queue_is_full_and_resumes_at_half() {
    let mut sim = Sim::new();
    let listener = rr_server(&mut sim, &[1]);
    // One in flight to the worker, the rest queued.
    for _ in 0..=servers::MAX_QUEUED {
        sim.accept(listener, None);
    }
    assert!(
        !sim.accepting.contains(&listener),
        "the backlog holds the rest"
    );
    for _ in 0..servers::MAX_QUEUED / 2 - 1 {
        answer_newconn(&mut sim, 1, true);
        assert!(!sim.accepting.contains(&listener));
    }
    answer_newconn(&mut sim, 1, true);
    assert!(sim.accepting.contains(&listener), "accepting again at half");
}

/// xorshift64*: a reproducible stream without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            None
        } else {
            items.get(self.below(items.len() as u64) as usize)
        }
    }
}

/// One random step of a worker's (or JavaScript's, or the kernel's) life.
fn random_step(sim: &mut Sim, rng: &mut Rng, workers: &mut Vec<u32>, next_id: &mut u32) {
    let policies = [
        Policy::RoundRobin,
        Policy::Shared,
        Policy::ReusePort,
        Policy::Sticky,
    ];
    let alive: Vec<u32> = workers.clone();
    let w = rng.pick(&alive).copied();
    let seq = rng.below(50);
    match rng.below(20) {
        0 if workers.len() < 4 => {
            *next_id += 1;
            let ser = if rng.below(2) == 0 {
                Serialization::Json
            } else {
                Serialization::Advanced
            };
            sim.worker(*next_id, ser);
            workers.push(*next_id);
        }
        1 if w.is_some() && rng.below(2) == 0 => {
            if let Some(id) = w {
                sim.input(Input::Gate {
                    id,
                    open: rng.below(2) == 0,
                });
            }
        }
        1 => {
            let policy = policies[rng.below(4) as usize];
            sim.input(Input::Configure {
                policy,
                key_with_index: rng.below(2) == 0,
                listen_grace_ms: [0, 100][rng.below(2) as usize],
            });
        }
        2..=4 => {
            if let Some(w) = w {
                let port = [0, 8000, 8001, -1][rng.below(4) as usize];
                let kind = rng.below(4);
                let q = match kind {
                    0 => format!(
                        r#"{{"cmd":"NODE_CLUSTER","act":"queryServer","seq":{seq},"address":"127.0.0.1","port":{port},"addressType":"udp4","fd":-1,"flags":0,"index":{}}}"#,
                        rng.below(2)
                    ),
                    1 if port == -1 => format!(
                        r#"{{"cmd":"NODE_CLUSTER","act":"queryServer","seq":{seq},"address":"/tmp/x.sock","port":-1,"addressType":-1,"fd":-1,"index":0}}"#
                    ),
                    _ => query(seq as u32, port.max(0), rng.below(2) as u32),
                };
                sim.send_json(w, &q);
            }
        }
        5 => {
            if let Some((bind, _)) = sim.opens.first() {
                let _ = bind;
                let ok = if rng.below(4) == 0 {
                    Err(-98)
                } else {
                    Ok(loopback(40000 + rng.below(10) as u16))
                };
                sim.answer_open(ok);
            }
        }
        6..=8 => {
            let listeners: Vec<FdId> = sim.accepting.iter().copied().collect();
            if let Some(&l) = rng.pick(&listeners) {
                let peer: IpAddr = format!("10.0.0.{}", rng.below(4)).parse().expect("ip");
                sim.accept(l, Some(peer));
            }
        }
        9..=10 => {
            // Answer a newconn (or an unknown seq), accepting or refusing.
            if let Some(w) = w {
                let frames = sim.frames(w);
                let mut acked = false;
                for f in frames {
                    if text(&f.value, &["cmd"]) == Some("NODE_HANDLE") {
                        sim.send_json(w, r#"{"cmd":"NODE_HANDLE_ACK"}"#);
                        acked = true;
                    }
                    if let Some(s) = num(&f.value, &["msg", "seq"]) {
                        if text(&f.value, &["msg", "act"]) == Some("newconn") {
                            let accepted = rng.below(4) != 0;
                            sim.send_json(
                                w,
                                &format!(
                                    r#"{{"cmd":"NODE_CLUSTER","ack":{s},"accepted":{accepted},"seq":1}}"#
                                ),
                            );
                        }
                    }
                }
                if !acked && rng.below(3) == 0 {
                    let cmd = if rng.below(2) == 0 {
                        "NODE_HANDLE_ACK"
                    } else {
                        "NODE_HANDLE_NACK"
                    };
                    sim.send_json(w, &format!(r#"{{"cmd":"{cmd}"}}"#));
                }
            }
        }
        11 => {
            if let Some(w) = w {
                let act = ["online", "listening", "close", "exitedAfterDisconnect"]
                    [rng.below(4) as usize];
                sim.send_json(
                    w,
                    &format!(
                        r#"{{"cmd":"NODE_CLUSTER","act":"{act}","seq":{seq},"key":"127.0.0.1:8000:4:-1:0"}}"#
                    ),
                );
            }
        }
        12 => {
            if let Some(w) = w {
                let fds = if rng.below(3) == 0 {
                    vec![sim.fd()]
                } else {
                    Vec::new()
                };
                let garbage: &[&[u8]] = &[
                    b"{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Socket\",\"msg\":{}}\n",
                    b"\"hello\"\n",
                    b"{\"cmd\":\"NODE_CLUSTER\",",
                    b"not json\n",
                    b"\x00\x00\x00\x05\xff\x0f",
                    b"{\"cmd\":\"NODE_CLUSTER\",\"act\":\"newconn\",\"ack\":3}\n",
                ];
                let bytes = garbage[rng.below(garbage.len() as u64) as usize];
                sim.input(Input::Received { id: w, bytes, fds });
            }
        }
        13 => {
            if let Some(w) = w {
                let fd = (rng.below(2) == 0).then(|| sim.fd());
                let frame = if fd.is_some() {
                    b"{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{}}\n".to_vec()
                } else {
                    b"\"x\"\n".to_vec()
                };
                // Sometimes to a worker that is already gone.
                let id = if rng.below(5) == 0 { 999 } else { w };
                sim.input(Input::Send {
                    id,
                    frame,
                    fd,
                    callback: rng.below(2) == 0,
                });
            }
        }
        14 => {
            if let Some(w) = w {
                sim.input(Input::Disconnect { id: w });
            }
        }
        15 => {
            if let Some(w) = w {
                sim.input(Input::CloseChannel { id: w });
            }
        }
        16 => {
            if let Some(w) = w {
                sim.input(Input::ChannelClosed { id: w });
            }
        }
        17 => {
            if let Some(w) = w {
                sim.exit(w);
                workers.retain(|x| *x != w);
            }
        }
        18 if !sim.timers.is_empty() && rng.below(2) == 0 => sim.fire_timer(),
        18 => {
            sim.hold_writes = rng.below(2) == 0;
            sim.chunk = [usize::MAX, 7, 64][rng.below(3) as usize];
        }
        _ => sim.flush(),
    }
}

#[test]
fn random_input_sequences_keep_every_invariant() {
    // PROTOCOL_SEEDS=n runs more sequences than the default.
    let seeds = std::env::var("PROTOCOL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300u64);
    for seed in 1..=seeds {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut sim = Sim::new();
        sim.seed = seed;
        let mut workers = Vec::new();
        let mut next_id = 0;
        for _ in 0..400 {
            random_step(&mut sim, &mut rng, &mut workers, &mut next_id);
            let f = sim.p.footprint();
            assert!(f.workers <= 4, "seed {seed}: {f:?}");
            // One newconn in flight per worker and server (checked
            // exactly by `check_invariants`); servers may have closed
            // since, so bound by the keys the sequences use.
            assert!(f.in_flight <= 4 * 16, "seed {seed}: {f:?}");
            assert!(f.held_fds <= 16, "seed {seed}: {f:?}");
        }
        // Everything ends: every socket answered, every worker gone.
        sim.hold_writes = false;
        sim.chunk = usize::MAX;
        while !sim.opens.is_empty() {
            sim.answer_open(Ok(loopback(40000)));
        }
        for w in workers {
            sim.exit(w);
        }
        // Listen graces run out.
        while !sim.timers.is_empty() {
            sim.fire_timer();
        }
        sim.flush();
        assert!(
            sim.live.is_empty(),
            "seed {seed}: descriptors never released: {:?}",
            sim.live
        );
        let left: Vec<String> = sim
            .p
            .servers
            .by_key
            .iter()
            .chain(sim.p.servers.orphans.iter().map(|(k, e)| (k, e)))
            .map(|(k, e)| match &e.server {
                servers::Server::Accepting(_) => format!("{k} accepting"),
                servers::Server::Shared(s) => format!("{k} shared {:?}", s.workers),
                servers::Server::Opening(o) => format!("{k} opening {:?}", o.waiters),
                servers::Server::ReusePort(r) => {
                    format!(
                        "{k} reuseport opening {:?} waiting {:?}",
                        r.opening, r.waiting
                    )
                }
            })
            .collect();
        assert_eq!(
            sim.p.footprint(),
            Footprint::default(),
            "seed {seed}: {left:?}, {} orphans",
            sim.p.servers.orphans.len()
        );
    }
}

/// Property-based fuzzing of the protocol (proptest): random step
/// sequences, and raw byte chunks (real frames cut, mutated and mixed with
/// noise, descriptors alongside) from 1-3 workers between exits, accepts
/// and opens. `Sim` checks release-once and the invariants after every
/// input; every sequence must end with nothing held.
mod fuzz_props {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::{any, prop, Just, Strategy};
    use proptest::{prop_oneof, proptest};

    use crate::core::codec::fuzz::config;

    /// Everything ends: every open answered, every worker gone, every
    /// timer fired; then nothing may be held.
    fn finish(sim: &mut Sim, workers: &[u32]) -> Result<(), String> {
        sim.hold_writes = false;
        sim.chunk = usize::MAX;
        while !sim.opens.is_empty() {
            sim.answer_open(Ok(loopback(40000)));
        }
        for &w in workers {
            sim.exit(w);
        }
        while !sim.timers.is_empty() {
            sim.fire_timer();
        }
        sim.flush();
        if !sim.live.is_empty() {
            return Err(format!("descriptors never released: {:?}", sim.live));
        }
        let f = sim.p.footprint();
        if f != Footprint::default() {
            return Err(format!("left behind: {f:?}"));
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(config(256))]

        /// `random_step` driven by proptest: one seed per step, so a
        /// failure shrinks to the few steps that matter.
        #[test]
        fn fuzz_protocol_random_steps(seeds in vec(any::<u64>(), 0..300)) {
            let mut sim = Sim::new();
            let mut workers = Vec::new();
            let mut next_id = 0;
            for s in seeds {
                let mut rng = Rng(s.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
                random_step(&mut sim, &mut rng, &mut workers, &mut next_id);
                let f = sim.p.footprint();
                assert!(f.workers <= 4 && f.held_fds <= 16, "{f:?}");
            }
            finish(&mut sim, &workers).map_err(proptest::test_runner::TestCaseError::fail)?;
        }
    }

    /// Messages real workers send (as JSON text; framed for either
    /// serialization).
    const CORPUS: &[&str] = &[
        r#"{"cmd":"NODE_CLUSTER","act":"online","seq":0}"#,
        r#"{"cmd":"NODE_CLUSTER","act":"queryServer","seq":1,"address":"127.0.0.1","port":8000,"addressType":4,"fd":-1,"flags":0,"backlog":511,"index":0,"data":null}"#,
        r#"{"cmd":"NODE_CLUSTER","act":"queryServer","seq":2,"address":"127.0.0.1","port":0,"addressType":4,"fd":-1,"flags":0,"backlog":511,"index":1,"data":null}"#,
        r#"{"cmd":"NODE_CLUSTER","act":"queryServer","seq":3,"address":"127.0.0.1","port":8001,"addressType":"udp4","fd":-1,"flags":0,"index":0}"#,
        r#"{"cmd":"NODE_CLUSTER","act":"queryServer","seq":4,"address":"/tmp/x.sock","port":-1,"addressType":-1,"fd":-1,"index":0}"#,
        r#"{"cmd":"NODE_CLUSTER","act":"listening","seq":5,"address":"127.0.0.1","port":8000,"addressType":4,"fd":-1}"#,
        r#"{"cmd":"NODE_CLUSTER","act":"close","seq":6,"key":"127.0.0.1:8000:4:-1:0"}"#,
        r#"{"cmd":"NODE_CLUSTER","act":"close","seq":7,"key":"127.0.0.1:8000:4:-1"}"#,
        r#"{"cmd":"NODE_CLUSTER","act":"exitedAfterDisconnect","seq":8}"#,
        r#"{"cmd":"NODE_HANDLE_ACK"}"#,
        r#"{"cmd":"NODE_HANDLE_NACK"}"#,
        r#"{"cmd":"NODE_CLUSTER","ack":0,"accepted":true,"seq":9}"#,
        r#"{"cmd":"NODE_CLUSTER","ack":1,"accepted":true,"seq":10}"#,
        r#"{"cmd":"NODE_CLUSTER","ack":2,"accepted":false,"seq":11}"#,
        r#"{"cmd":"NODE_CLUSTER","ack":3,"accepted":true,"seq":12}"#,
        r#"{"cmd":"NODE_HANDLE","type":"net.Socket","msg":{"cmd":"hi"}}"#,
        r#"{"cmd":"NODE_HANDLE","type":"net.Native","msg":{"cmd":"NODE_CLUSTER","act":"x"}}"#,
        r#"{"cmd":"NODE_SOCKET_ALL_CLOSED","key":"k"}"#,
        r#""hello""#,
        r#"{"a":[1,2,{"b":null}]}"#,
        r#"[1,"x"]"#,
        r#"{"cmd":"NODE_CLUSTER","act":"noSuchAct","seq":13}"#,
    ];

    const NOISE: &[&[u8]] = &[
        b"\n",
        b"\0\0\0",
        b"\0\0\0\x02\xff\x0f",
        b"\xff\xff\xff\xff",
        b"{\"cmd\":\"NODE_",
    ];

    #[derive(Debug, Clone)]
    enum Piece {
        /// A corpus message, framed for the worker's serialization.
        Frame(usize),
        /// Part of one.
        Cut(usize, u16, u16),
        /// One with bytes replaced.
        Flip(usize, Vec<(u16, u8)>),
        Raw(Vec<u8>),
    }

    #[derive(Debug, Clone)]
    enum Step {
        /// Worker `w` (by position among the live ones) writes these
        /// pieces, read in chunks split at `cuts`, with `fds` descriptors
        /// arriving with chunk `fd_chunk`.
        Bytes {
            w: usize,
            pieces: Vec<Piece>,
            cuts: Vec<u16>,
            fds: usize,
            fd_chunk: usize,
        },
        /// The worker answers what it was sent: ACKs handles, accepts or
        /// refuses newconns.
        Reply {
            w: usize,
            accept: bool,
        },
        Accept {
            pick: usize,
            peer: u8,
        },
        AnswerOpen {
            fail: bool,
            port: u16,
        },
        Exit {
            w: usize,
        },
        ChannelClosed {
            w: usize,
        },
        Spawn {
            advanced: bool,
        },
        Timer,
        Writes {
            hold: bool,
            chunk: usize,
        },
        Configure {
            policy: usize,
            with_index: bool,
            grace: bool,
        },
    }

    fn piece() -> impl Strategy<Value = Piece> {
        let n = CORPUS.len();
        // Queries and newconn answers move the protocol along: favour them.
        let frame = prop_oneof![
            3 => 1usize..5,
            2 => 11usize..15,
            4 => 0..n,
        ];
        prop_oneof![
            12 => frame.prop_map(Piece::Frame),
            1 => (0..n, any::<u16>(), any::<u16>()).prop_map(|(i, a, b)| Piece::Cut(i, a, b)),
            1 => (0..n, vec((any::<u16>(), any::<u8>()), 1..4)).prop_map(|(i, f)| Piece::Flip(i, f)),
            1 => vec(any::<u8>(), 0..24).prop_map(Piece::Raw),
            1 => prop::sample::select(NOISE).prop_map(|b| Piece::Raw(b.to_vec())),
        ]
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            8 => (
                any::<usize>(),
                vec(piece(), 1..5),
                vec(any::<u16>(), 0..4),
                prop_oneof![6 => Just(0usize), 1 => 1usize..3],
                any::<usize>(),
            )
                .prop_map(|(w, pieces, cuts, fds, fd_chunk)| Step::Bytes { w, pieces, cuts, fds, fd_chunk }),
            5 => (any::<usize>(), any::<bool>()).prop_map(|(w, accept)| Step::Reply { w, accept }),
            6 => (any::<usize>(), 0u8..4).prop_map(|(pick, peer)| Step::Accept { pick, peer }),
            3 => (any::<bool>(), 0u16..3).prop_map(|(fail, port)| Step::AnswerOpen { fail, port }),
            1 => any::<usize>().prop_map(|w| Step::Exit { w }),
            1 => any::<usize>().prop_map(|w| Step::ChannelClosed { w }),
            2 => any::<bool>().prop_map(|advanced| Step::Spawn { advanced }),
            1 => Just(Step::Timer),
            1 => (any::<bool>(), 0usize..3).prop_map(|(hold, chunk)| Step::Writes { hold, chunk }),
            1 => (0usize..4, any::<bool>(), any::<bool>())
                .prop_map(|(policy, with_index, grace)| Step::Configure { policy, with_index, grace }),
        ]
    }

    fn render(ser: Serialization, pieces: &[Piece]) -> Vec<u8> {
        let frame = |i: usize| {
            let v = json::parse(CORPUS[i].as_bytes()).expect("corpus JSON");
            framing::encode_value(ser, &v)
        };
        let mut out = Vec::new();
        for p in pieces {
            match p {
                Piece::Frame(i) => out.extend(frame(*i)),
                Piece::Cut(i, a, b) => {
                    let f = frame(*i);
                    let (a, b) = (usize::from(*a) % f.len(), usize::from(*b) % f.len());
                    out.extend_from_slice(&f[a.min(b)..a.max(b)]);
                }
                Piece::Flip(i, flips) => {
                    let mut f = frame(*i);
                    for &(at, b) in flips {
                        let at = usize::from(at) % f.len();
                        f[at] = b;
                    }
                    out.extend(f);
                }
                Piece::Raw(bytes) => out.extend_from_slice(bytes),
            }
        }
        out
    }

    /// A JSON batch is the worker's user messages, one per line: no length
    /// list (JavaScript splits at newlines), and no line the core should
    /// have acted on itself (an internal message).
    fn check_batch(data: &[u8], lengths: &[u32]) -> Result<(), String> {
        if !lengths.is_empty() {
            return Err(format!("JSON batch with lengths {lengths:?}"));
        }
        for line in data.split(|&b| b == b'\n') {
            let internal = framing::may_be_internal(Serialization::Json, line)
                && framing::decode_value(Serialization::Json, line).is_ok_and(|v| v.is_internal());
            if internal {
                return Err(format!(
                    "internal message {} in a batch",
                    String::from_utf8_lossy(line)
                ));
            }
        }
        Ok(())
    }

    fn run(sers: &[bool], steps: &[Step]) -> Result<(), String> {
        let mut sim = Sim::new();
        let ser = |advanced: bool| {
            if advanced {
                Serialization::Advanced
            } else {
                Serialization::Json
            }
        };
        let mut live: Vec<u32> = Vec::new();
        let mut next_id = 0;
        for &advanced in sers {
            next_id += 1;
            sim.worker(next_id, ser(advanced));
            live.push(next_id);
        }
        let mut fed = 0usize;
        for step in steps {
            match step {
                Step::Bytes {
                    w,
                    pieces,
                    cuts,
                    fds,
                    fd_chunk,
                } => {
                    let Some(&id) = live.get(w % live.len().max(1)) else {
                        continue;
                    };
                    let s = sim
                        .p
                        .workers
                        .get(&id)
                        .map_or(Serialization::Json, |w| w.ser);
                    let bytes = render(s, pieces);
                    fed += bytes.len();
                    let mut at: Vec<usize> = cuts
                        .iter()
                        .map(|&c| usize::from(c) % (bytes.len() + 1))
                        .collect();
                    at.push(0);
                    at.push(bytes.len());
                    at.sort_unstable();
                    at.dedup();
                    let chunks: Vec<&[u8]> = at.windows(2).map(|p| &bytes[p[0]..p[1]]).collect();
                    let with_fds = fd_chunk % chunks.len().max(1);
                    for (i, chunk) in chunks.iter().enumerate() {
                        let tokens = if i == with_fds {
                            (0..*fds).map(|_| sim.fd()).collect()
                        } else {
                            Vec::new()
                        };
                        sim.input(Input::Received {
                            id,
                            bytes: chunk,
                            fds: tokens,
                        });
                    }
                    if chunks.is_empty() && *fds > 0 {
                        let tokens = (0..*fds).map(|_| sim.fd()).collect();
                        sim.input(Input::Received {
                            id,
                            bytes: &[],
                            fds: tokens,
                        });
                    }
                }
                Step::Reply { w, accept } => {
                    let Some(&id) = live.get(w % live.len().max(1)) else {
                        continue;
                    };
                    for f in sim.frames(id) {
                        if text(&f.value, &["cmd"]) == Some("NODE_HANDLE") {
                            sim.send_json(id, r#"{"cmd":"NODE_HANDLE_ACK"}"#);
                        }
                        if text(&f.value, &["msg", "act"]) == Some("newconn") {
                            if let Some(s) = num(&f.value, &["msg", "seq"]) {
                                sim.send_json(
                                    id,
                                    &format!(
                                        r#"{{"cmd":"NODE_CLUSTER","ack":{s},"accepted":{accept},"seq":1}}"#
                                    ),
                                );
                            }
                        }
                    }
                }
                Step::Accept { pick, peer } => {
                    let listeners: Vec<FdId> = sim.accepting.iter().copied().collect();
                    if let Some(&l) = listeners.get(pick % listeners.len().max(1)) {
                        let peer: IpAddr = format!("10.0.0.{peer}").parse().expect("ip");
                        sim.accept(l, Some(peer));
                    }
                }
                Step::AnswerOpen { fail, port } => {
                    if !sim.opens.is_empty() {
                        let ok = if *fail {
                            Err(-98)
                        } else {
                            Ok(loopback(40000 + port))
                        };
                        sim.answer_open(ok);
                    }
                }
                Step::Exit { w } => {
                    if let Some(&id) = live.get(w % live.len().max(1)) {
                        sim.exit(id);
                        live.retain(|&x| x != id);
                    }
                }
                Step::ChannelClosed { w } => {
                    if let Some(&id) = live.get(w % live.len().max(1)) {
                        sim.input(Input::ChannelClosed { id });
                    }
                }
                Step::Spawn { advanced } => {
                    // A worker whose channel is gone (say after an
                    // unreadable frame) exits to make room.
                    let dead: Vec<u32> = live
                        .iter()
                        .copied()
                        .filter(|id| sim.p.workers.get(id).is_none_or(|w| !w.open))
                        .collect();
                    for id in dead {
                        sim.exit(id);
                        live.retain(|&x| x != id);
                    }
                    if live.len() < 3 {
                        next_id += 1;
                        sim.worker(next_id, ser(*advanced));
                        live.push(next_id);
                    }
                }
                Step::Timer => {
                    if !sim.timers.is_empty() {
                        sim.fire_timer();
                    }
                }
                Step::Writes { hold, chunk } => {
                    sim.hold_writes = *hold;
                    sim.chunk = [usize::MAX, 7, 64][*chunk];
                    if !*hold {
                        sim.flush();
                    }
                }
                Step::Configure {
                    policy,
                    with_index,
                    grace,
                } => {
                    let policy = [
                        Policy::RoundRobin,
                        Policy::Shared,
                        Policy::ReusePort,
                        Policy::Sticky,
                    ][*policy];
                    sim.input(Input::Configure {
                        policy,
                        key_with_index: *with_index,
                        listen_grace_ms: if *grace { 100 } else { 0 },
                    });
                }
            }
            let f = sim.p.footprint();
            if f.buffered_bytes > fed || f.workers > 3 {
                return Err(format!("{f:?} after {fed} bytes"));
            }
            for e in sim.take_events() {
                if let Event::Messages {
                    json: true,
                    data,
                    lengths,
                    ..
                } = &e
                {
                    check_batch(data, lengths)?;
                }
            }
        }
        finish(&mut sim, &live)
    }

    proptest! {
        #![proptest_config(config(256))]

        /// Raw byte chunks from 1-3 workers: real frames whole, cut,
        /// mutated and mixed with noise, descriptors alongside, between
        /// exits, accepts, opens and timers.
        #[test]
        fn fuzz_protocol_byte_chunks(
            sers in vec(any::<bool>(), 1..=3),
            steps in vec(step(), 0..80),
        ) {
            run(&sers, &steps).map_err(proptest::test_runner::TestCaseError::fail)?;
        }
    }
}

/// Regression (fixed: the replacing server keeps the vacated sockets).
/// Found by `fuzz_protocol_byte_chunks`, minimized. Reuseport with Node 22
/// keys: worker 3 and worker 2 each get a socket (101, 102) for
/// 127.0.0.1:8000; worker 2 exits, so the primary accepts on its vacated
/// socket 102; worker 3 listens again on the same key, which opens a new
/// server that replaces the old one (orphaned, still holding 102).
/// - The bind fails (EADDRINUSE): the new server is forgotten, but 102 is
///   still in `servers.listeners` under the key, no server is registered
///   under it (`check_invariants` fails) and 102 is still accepted on.
/// - The bind succeeds: 102 still maps to the key, now the new server's,
///   which does not own it, and is still accepted on.
///
/// Either way every connection the kernel queues on 102 is accepted and
/// closed at once (`on_accepted`: not `ours`). Expected: invariants hold,
/// and 102 is either no longer accepted on or its connections are served.
#[test]
fn fuzz_finding_reuseport_relisten_strands_a_vacated_socket() {
    // Fixed: the replacing server keeps the vacated sockets of the one it
    // replaces, so the relisten takes worker 2's socket over (no new bind)
    // and nothing is left accepted on for a server that is gone.
    let mut sim = Sim::with_policy(Policy::ReusePort, false);
    sim.worker(2, Serialization::Json);
    sim.worker(3, Serialization::Json);
    sim.send_json(3, &query(1, 8000, 0));
    sim.answer_open(Ok(loopback(8000)));
    sim.send_json(2, &query(1, 8000, 0));
    let (_, _, vacated) = sim.answer_open(Ok(loopback(8000)));
    let vacated = vacated.expect("worker 2's socket");
    for w in [2, 3] {
        sim.frames(w);
        sim.send_json(w, r#"{"cmd":"NODE_HANDLE_ACK"}"#);
    }
    sim.exit(2);
    assert!(sim.accepting.contains(&vacated));
    // Node 22: listening again on a held key replaces the server.
    sim.send_json(3, &query(2, 8000, 0));
    assert!(sim.opens.is_empty(), "the vacated socket is taken over");
    assert_eq!(sim.frames(3)[0].fd, Some(vacated));
    assert!(!sim.accepting.contains(&vacated), "served by its new owner");
    sim.exit(3);
    assert!(sim.live.is_empty(), "{:?}", sim.live);
}

/// Regression (fixed: the invariant allows one in flight per server, and a
/// replaced server shares its key with its replacement; see also
/// [`fuzz_finding_a_dropped_orphans_handoff_beside_its_replacements`]).
/// Found by both protocol properties (long run), minimized. Sticky, Node 22
/// keys: workers 4 and 5 share 127.0.0.1:8000; two connections from one
/// client: the first in flight to worker 4, the second queued behind it;
/// worker 5 listens again on the same key, so a new server replaces the
/// old one (orphaned with its in-flight connection and its queue) under the
/// same key; worker 4 exits. Its unanswered connection is rerouted to
/// worker 5 and the orphan's queued one is sent to worker 5 too: two
/// newconns of 127.0.0.1:8000:4:-1 in flight to one worker.
/// Expected: `check_invariants` holds (one at a time per worker and key).
/// Got, before the fix: "worker 5 has two newconns of 127.0.0.1:8000:4:-1
/// in flight".
#[test]
fn fuzz_finding_sticky_orphan_and_replacement_double_a_workers_newconns() {
    let mut sim = Sim::with_policy(Policy::Sticky, false);
    sim.worker(4, Serialization::Json);
    sim.worker(5, Serialization::Json);
    sim.send_json(4, &query(1, 8000, 0));
    sim.send_json(5, &query(1, 8000, 0));
    let listener = sim.answer_open(Ok(loopback(8000))).2.expect("socket");
    // A client sticky to worker 4.
    let client = Some("10.0.0.0".parse().expect("ip"));
    sim.accept(listener, client);
    sim.accept(listener, client);
    let to: Vec<u32> = sim
        .p
        .workers
        .iter()
        .flat_map(|(id, w)| w.handoffs.iter().map(move |_| *id))
        .collect();
    assert_eq!(to, [4], "the first in flight to worker 4, the second waits");
    // Node 22: listening again on a held key replaces the server.
    sim.send_json(5, &query(2, 8000, 1));
    sim.answer_open(Ok(loopback(8000)));
    // Sim::exit would panic inside drain; drive it by hand.
    sim.p.handle(Input::Exited {
        id: 4,
        status: ExitStatus::Code(0),
    });
    sim.outputs();
    let in_flight: Vec<(u32, String)> = sim
        .p
        .workers
        .iter()
        .flat_map(|(id, w)| w.handoffs.iter().map(move |c| (*id, c.key.to_string())))
        .collect();
    assert_eq!(sim.p.check_invariants(), Ok(()), "in flight: {in_flight:?}");
}

/// Regression (fixed: a server replaced while in its grace closes).
/// Found by `fuzz_protocol_random_steps` (long run), minimized. Listen
/// grace on, Node 22 keys: workers 1 and 2 share 127.0.0.1:8001 (S1);
/// worker 2 listens again (S2 replaces S1) and so does worker 1 (S3
/// opening); worker 2 exits, so S2, now without workers, starts its grace;
/// S3 opens and replaces S2, which becomes an orphan still in its grace.
/// `end_grace` only looks under `by_key`, where S3 now is, so S2 is never
/// ended. Expected: after every worker exits and every timer fires, nothing
/// is held. Got: S2's listening socket (FdId(102)) is never released and
/// `footprint().servers == 1`.
#[test]
fn fuzz_finding_a_server_replaced_during_its_grace_is_never_closed() {
    let mut sim = Sim::new();
    sim.input(Input::Configure {
        policy: Policy::RoundRobin,
        key_with_index: false,
        listen_grace_ms: 100,
    });
    sim.worker(1, Serialization::Json);
    sim.worker(2, Serialization::Json);
    sim.send_json(2, &query(1, 8001, 1));
    sim.send_json(1, &query(1, 8001, 2));
    sim.answer_open(Ok(loopback(8001)));
    sim.send_json(2, &query(2, 8001, 0));
    sim.send_json(1, &query(2, 8001, 0));
    let (_, _, s2) = sim.answer_open(Ok(loopback(8001)));
    sim.exit(2);
    sim.answer_open(Ok(loopback(8001)));
    sim.exit(1);
    while !sim.timers.is_empty() {
        sim.fire_timer();
    }
    sim.flush();
    assert!(
        sim.live.is_empty(),
        "never released: {:?} (S2 was {s2:?}); {:?}",
        sim.live,
        sim.p.footprint()
    );
    assert_eq!(sim.p.footprint(), Footprint::default());
}

/// Regression (fixed: a connection in flight names the server that handed
/// it out, and the invariant is one per worker and server, whatever their
/// keys). Found by `fuzz_protocol_random_steps` (a 3,000,000-case run),
/// minimized. Sticky, Node 22 keys: worker 2 listens on 127.0.0.1:8001
/// (S1); one client's first connection is in flight to it, its second
/// queued behind; worker 4 joins S1, then listens again, so S2 replaces
/// S1 (orphaned with worker 4 still in it). Worker 2 exits: S1 re-homes
/// the queued connection to worker 4 and the unanswered one is rerouted
/// to S2, which hands it to worker 4: one of each server, both legitimate.
/// Worker 4 disconnects; S1, left without workers, is dropped.
/// Expected: `check_invariants` holds. Got, before the fix: "worker 4 has
/// two newconns of 127.0.0.1:8001:4:-1 in flight" (the rule was per key,
/// with an exception only while a replaced server was still registered).
#[test]
fn fuzz_finding_a_dropped_orphans_handoff_beside_its_replacements() {
    let mut sim = Sim::with_policy(Policy::Sticky, false);
    sim.worker(2, Serialization::Json);
    sim.worker(4, Serialization::Json);
    sim.send_json(2, &query(1, 8001, 0));
    let listener = sim.answer_open(Ok(loopback(8001))).2.expect("socket");
    let client = Some("10.0.0.1".parse().expect("ip"));
    sim.accept(listener, client);
    sim.accept(listener, client);
    sim.send_json(4, &query(1, 8001, 0));
    sim.send_json(4, &query(2, 8001, 0));
    sim.answer_open(Ok(loopback(8001)));
    assert_eq!(sim.p.servers.orphans.len(), 1, "S1 replaced");
    sim.exit(2);
    let to_4: Vec<u32> = sim.p.workers[&4]
        .handoffs
        .iter()
        .map(|c| c.server)
        .collect();
    assert_eq!(to_4.len(), 2, "one of each server: {to_4:?}");
    assert_ne!(to_4[0], to_4[1]);
    sim.input(Input::Disconnect { id: 4 });
    assert!(sim.p.servers.orphans.is_empty(), "S1 dropped");
    // Worker 4 refuses both while disconnecting (the second comes once it
    // acknowledges the first handle); nobody is left to take them.
    let mut refused = 0;
    while let n @ 1.. = answer_newconns(&mut sim, 4, false) {
        refused += n;
    }
    assert_eq!(refused, 2);
    sim.exit(4);
    assert!(sim.live.is_empty(), "{:?}", sim.live);
    assert_eq!(sim.p.footprint(), Footprint::default());
}
