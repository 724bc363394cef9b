//! Criterion benches of the core's hot paths: splitting the IPC byte stream
//! into frames (both framings), V8's wire subset and JSON for a typical
//! internal message (and the byte matcher that spares the `newconn` reply
//! the parse), the round-robin handoff path (picking a worker and
//! encoding the `newconn` NODE_HANDLE envelope), and the protocol state
//! machine's whole share of one round-robin connection, driven in memory.
//!
//! `cargo bench` runs them; `cargo test --benches` runs each once.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use native_cluster::core::codec::framing::{self, FrameDecoder, Serialization};
use native_cluster::core::codec::value::Value;
use native_cluster::core::codec::{hot, json, wire};
use native_cluster::core::protocol::balance::round_robin::RoundRobin;
use native_cluster::core::protocol::fd::FdId;
use native_cluster::core::protocol::{Input, Protocol};
use std::hint::black_box;
use std::time::Duration;

#[path = "support/in_memory.rs"]
mod in_memory;
use in_memory::drive;

const BOTH: [Serialization; 2] = [Serialization::Json, Serialization::Advanced];

/// What a Node 20+ worker sends when its server calls `listen(8000)`.
fn query_server() -> Value {
    Value::object([
        ("cmd", Value::str("NODE_CLUSTER")),
        ("act", Value::str("queryServer")),
        ("index", Value::Number(0.0)),
        ("data", Value::Null),
        ("address", Value::str("127.0.0.1")),
        ("port", Value::Number(8000.0)),
        ("addressType", Value::Number(4.0)),
        ("fd", Value::Number(-1.0)),
        ("flags", Value::Number(0.0)),
        ("backlog", Value::Number(511.0)),
        ("seq", Value::Number(17.0)),
    ])
}

/// The primary's `newconn` message wrapped in its NODE_HANDLE envelope.
fn newconn_envelope(seq: u64) -> Value {
    Value::object([
        ("cmd", Value::str("NODE_HANDLE")),
        ("type", Value::str("net.Native")),
        (
            "msg",
            Value::object([
                ("cmd", Value::str("NODE_CLUSTER")),
                ("act", Value::str("newconn")),
                ("key", Value::str("127.0.0.1:8000:4:-1")),
                ("seq", Value::Number(seq as f64)),
            ]),
        ),
    ])
}

/// The worker's reply to a `newconn`.
fn newconn_ack(seq: u64) -> Value {
    Value::object([
        ("cmd", Value::str("NODE_CLUSTER")),
        ("ack", Value::Number(seq as f64)),
        ("accepted", Value::Bool(true)),
        ("seq", Value::Number(seq as f64 + 1.0)),
    ])
}

/// A user message of `len` bytes of string data (opaque to the core).
fn big_user_message(len: usize) -> Value {
    Value::object([("d", Value::String("x".repeat(len)))])
}

fn stream_of(ser: Serialization, msg: &Value, count: usize) -> Vec<u8> {
    let frame = framing::encode_value(ser, msg);
    let mut out = Vec::with_capacity(frame.len() * count);
    for _ in 0..count {
        out.extend_from_slice(&frame);
    }
    out
}

/// Feeds `stream` in reads of at most `chunk` bytes and drains every frame.
fn split(ser: Serialization, stream: &[u8], chunk: usize) -> usize {
    let mut dec = FrameDecoder::new(ser);
    let mut frames = 0;
    for part in stream.chunks(chunk) {
        dec.push(part);
        while let Ok(Some(frame)) = dec.next_frame() {
            black_box(&frame);
            frames += 1;
        }
    }
    frames
}

fn frame_parsing(c: &mut Criterion) {
    let mut g = c.benchmark_group("framing");
    for ser in BOTH {
        // Many small frames per read, as a busy channel delivers them.
        let small = stream_of(ser, &newconn_ack(42), 1000);
        g.throughput(Throughput::Elements(1000));
        g.bench_function(
            format!("{}/1000 small frames, 64 KiB reads", ser.as_str()),
            |b| b.iter(|| assert_eq!(split(ser, black_box(&small), 64 * 1024), 1000)),
        );
        // One large frame arriving in socket-sized reads.
        let large = stream_of(ser, &big_user_message(1 << 20), 1);
        g.throughput(Throughput::Bytes(large.len() as u64));
        g.bench_function(format!("{}/1 MiB frame, 64 KiB reads", ser.as_str()), |b| {
            b.iter(|| assert_eq!(split(ser, black_box(&large), 64 * 1024), 1))
        });
        // 64 KiB user messages, the size of the Node-level IPC bench.
        let mid = stream_of(ser, &big_user_message(64 * 1024), 16);
        g.throughput(Throughput::Bytes(mid.len() as u64));
        g.bench_function(
            format!("{}/16 x 64 KiB frames, 64 KiB reads", ser.as_str()),
            |b| b.iter(|| assert_eq!(split(ser, black_box(&mid), 64 * 1024), 16)),
        );
        // A user frame is recognised as such without a full parse.
        let user = framing::encode_value(ser, &big_user_message(64 * 1024));
        g.throughput(Throughput::Bytes(user.len() as u64));
        g.bench_function(
            format!("{}/may_be_internal 64 KiB user frame", ser.as_str()),
            |b| b.iter(|| framing::may_be_internal(ser, black_box(&user))),
        );
    }
    g.finish();
}

fn message_codecs(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    let msg = query_server();
    let v8_bytes = wire::encode(&msg);
    let json_bytes = json::to_vec(&msg);
    assert_eq!(wire::decode(&v8_bytes).as_ref(), Ok(&msg));
    assert_eq!(json::parse(&json_bytes).as_ref(), Ok(&msg));
    g.throughput(Throughput::Elements(1));
    g.bench_function("v8/decode queryServer", |b| {
        b.iter(|| wire::decode(black_box(&v8_bytes)))
    });
    g.bench_function("v8/encode queryServer", |b| {
        b.iter(|| wire::encode(black_box(&msg)))
    });
    g.bench_function("json/parse queryServer", |b| {
        b.iter(|| json::parse(black_box(&json_bytes)))
    });
    g.bench_function("json/write queryServer", |b| {
        b.iter(|| json::to_vec(black_box(&msg)))
    });
    let ack = newconn_ack(42);
    for ser in BOTH {
        let payload = framing::encode_value(ser, &ack);
        let payload = match ser {
            Serialization::Json => payload[..payload.len() - 1].to_vec(),
            Serialization::Advanced => payload[4..].to_vec(),
        };
        g.bench_function(format!("{}/decode_value newconn ack", ser.as_str()), |b| {
            b.iter(|| framing::decode_value(ser, black_box(&payload)))
        });
        // What the protocol does with it instead, in the shape Node writes.
        assert!(hot::recognise(ser, &payload).is_some());
        g.bench_function(
            format!("{}/hot::recognise newconn ack", ser.as_str()),
            |b| b.iter(|| hot::recognise(ser, black_box(&payload))),
        );
    }
    g.finish();
}

fn handoff(c: &mut Criterion) {
    let mut g = c.benchmark_group("handoff");
    g.throughput(Throughput::Elements(1));
    // Steady state of SCHED_RR: a connection arrives, goes to the idle
    // worker, the worker answers and becomes idle again.
    g.bench_function("rr/distribute+handoff, 2 workers", |b| {
        let mut rr: RoundRobin<u64> = RoundRobin::default();
        for w in 1..=2 {
            rr.add(w);
            rr.handoff(w);
        }
        let mut n = 0u64;
        b.iter(|| {
            n += 1;
            let (w, conn) = rr.distribute(black_box(n)).expect("an idle worker");
            black_box(conn);
            black_box(rr.handoff(w));
        })
    });
    // Overload: every worker busy, connections queue, each answer takes the
    // next one.
    g.bench_function("rr/queued handoff, 16 workers", |b| {
        b.iter_batched(
            || {
                let mut rr: RoundRobin<u64> = RoundRobin::default();
                for w in 1..=16 {
                    rr.add(w);
                }
                for n in 0..256 {
                    rr.distribute(n);
                }
                rr
            },
            |mut rr| {
                let mut got = 0;
                for w in (1..=16).cycle().take(256) {
                    got += usize::from(rr.handoff(w).is_some());
                }
                assert_eq!(got, 256);
                rr
            },
            BatchSize::SmallInput,
        )
    });
    for ser in BOTH {
        let mut seq = 0u64;
        g.bench_function(format!("{}/encode newconn envelope", ser.as_str()), |b| {
            b.iter(|| {
                seq += 1;
                framing::encode_value(ser, &newconn_envelope(black_box(seq)))
            })
        });
    }
    g.finish();
}

fn protocol(c: &mut Criterion) {
    let mut g = c.benchmark_group("protocol");
    g.throughput(Throughput::Elements(1));
    // The state machine's whole share of one SCHED_RR connection: accepted,
    // handed off as `newconn`, the worker's ACK and `accepted` reply
    // parsed, the primary's copy released.
    g.bench_function("rr/accept, newconn, ack and reply, 1 worker", |b| {
        let mut p = Protocol::new();
        p.handle(Input::Adopted {
            id: 1,
            serialization: Serialization::Json,
        });
        p.handle(Input::Received {
            id: 1,
            bytes: in_memory::QUERY,
            fds: Vec::new(),
        });
        drive(&mut p);
        // seq 0 answered the query; each newconn takes the next.
        let mut n = 0u64;
        let mut reply = Vec::with_capacity(128);
        b.iter(|| {
            n += 1;
            p.handle(Input::Accepted {
                listener: FdId(0),
                conn: FdId(n),
                peer: None,
            });
            drive(&mut p);
            in_memory::accept_reply(n, &mut reply);
            p.handle(Input::Received {
                id: 1,
                bytes: &reply,
                fds: Vec::new(),
            });
            assert_eq!(drive(&mut p), 1, "the primary's copy is released");
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    // Short windows: the whole suite stays near a minute on a 2-core box.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = frame_parsing, message_codecs, handoff, protocol
}
criterion_main!(benches);
