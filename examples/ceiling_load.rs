//! The load generator of the primary's ceiling bench (`bench/ceiling.mjs`):
//! connections to `127.0.0.1:PORT` as fast as the primary hands them off.
//! Each connection is opened, then waited on until the server side closes
//! it — which happens only once the primary has handed it to a worker, the
//! worker has acknowledged it and both have closed their copies — and then
//! closed. A fixed number of connections is outstanding at a time (closed
//! loop, below the listen backlog, so no SYN is ever dropped).
//!
//! It also samples the CPU time of the processes named with `--pids` over
//! exactly the measured window (from `/proc/<pid>/stat`), and prints one
//! line: `{"connections":…,"seconds":…,"errors":…,"user_s":[…],"sys_s":[…]}`
//! (user and system CPU seconds of each process, in `--pids` order).
//!
//! ```text
//! ceiling_load PORT SECONDS [--threads N] [--concurrency N] [--pids PID,PID…]
//! ```
//!
//! Build: `cargo build --release --example ceiling_load`.

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

struct Options {
    addr: SocketAddr,
    seconds: f64,
    threads: usize,
    concurrency: usize,
    pids: Vec<i32>,
}

fn parse() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: ceiling_load PORT SECONDS [--threads N] [--concurrency N] [--pids PID,...]";
    let port: u16 = args.next().and_then(|a| a.parse().ok()).ok_or(usage)?;
    let seconds: f64 = args.next().and_then(|a| a.parse().ok()).ok_or(usage)?;
    let mut o = Options {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        seconds,
        threads: 1,
        concurrency: 64,
        pids: Vec::new(),
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(usage)?;
        match flag.as_str() {
            "--threads" => o.threads = value.parse().map_err(|_| usage)?,
            "--concurrency" => o.concurrency = value.parse().map_err(|_| usage)?,
            "--pids" => {
                o.pids = value
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().map_err(|_| usage))
                    .collect::<Result<_, _>>()?
            }
            _ => return Err(usage.into()),
        }
    }
    if o.threads == 0 || o.concurrency < o.threads || !o.seconds.is_finite() || o.seconds <= 0.0 {
        return Err(usage.into());
    }
    Ok(o)
}

/// utime and stime of process `pid`, all threads, in clock ticks.
fn cpu_ticks(pid: i32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may itself hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut f = rest.split(' ').skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some((utime, stime))
}

#[derive(Default)]
struct Tally {
    connections: AtomicU64,
    errors: AtomicU64,
}

/// One connection: open, wait for the server's close, close.
async fn one(addr: SocketAddr) -> io::Result<()> {
    let stream = TcpStream::connect(addr).await?;
    let mut buf = [0u8; 64];
    loop {
        stream.readable().await?;
        match stream.try_read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// `n` connections outstanding until `deadline`; only those completed by
/// then count.
fn drive(addr: SocketAddr, n: usize, deadline: Instant, tally: Arc<Tally>) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async move {
        let mut tasks = Vec::with_capacity(n);
        for _ in 0..n {
            let tally = tally.clone();
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let r = one(addr).await;
                    if Instant::now() > deadline {
                        break;
                    }
                    match r {
                        Ok(()) => tally.connections.fetch_add(1, Ordering::Relaxed),
                        Err(_) => tally.errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
            }));
        }
        for t in tasks {
            // A task only ends by panicking (then it counts nothing more).
            let _ = t.await;
        }
    });
    Ok(())
}

fn main() -> ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let tally = Arc::new(Tally::default());
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(o.seconds);
    let cpu0: Vec<Option<(u64, u64)>> = o.pids.iter().map(|&p| cpu_ticks(p)).collect();
    for i in 0..o.threads {
        // The outstanding connections, spread over the threads.
        let n = o.concurrency / o.threads + usize::from(i < o.concurrency % o.threads);
        let tally = tally.clone();
        let addr = o.addr;
        std::thread::spawn(move || {
            if let Err(e) = drive(addr, n, deadline, tally.clone()) {
                eprintln!("ceiling_load: {e}");
                tally.errors.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
    let cpu1: Vec<Option<(u64, u64)>> = o.pids.iter().map(|&p| cpu_ticks(p)).collect();
    let seconds = start.elapsed().as_secs_f64();
    let hz = rustix::param::clock_ticks_per_second() as f64;
    // Seconds of user and of system time per process, over the window.
    let spent = |part: fn((u64, u64)) -> u64| -> String {
        let each: Vec<String> = cpu0
            .iter()
            .zip(&cpu1)
            .map(|(a, b)| match (a, b) {
                (Some(a), Some(b)) => format!("{}", part(*b).saturating_sub(part(*a)) as f64 / hz),
                _ => "null".into(),
            })
            .collect();
        each.join(",")
    };
    println!(
        "{{\"connections\":{},\"seconds\":{seconds},\"errors\":{},\"user_s\":[{}],\"sys_s\":[{}]}}",
        tally.connections.load(Ordering::Relaxed),
        tally.errors.load(Ordering::Relaxed),
        spent(|t| t.0),
        spent(|t| t.1),
    );
    // Connections still outstanding are not waited for (they are past the
    // window): exiting closes them.
    ExitCode::SUCCESS
}
