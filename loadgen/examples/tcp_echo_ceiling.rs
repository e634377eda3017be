//! The machine's ceiling for the `echo` scenario: plain TCP round trips over
//! loopback with no protocol at all, server and clients in this process.
//!
//! A tokio echo server (multi-thread runtime, one worker per core) and N
//! clients (one current-thread runtime per core, like `loadgen`), each with
//! one 100-byte message in flight, sending the next as soon as the echo is
//! back. No WebSocket framing, no JSON, no Socket.IO: whatever this reaches
//! bounds what any Socket.IO server can answer here with the generator
//! sharing the cores.
//!
//!   cargo run --release -p loadgen --example tcp_echo_ceiling -- [CONNS] [SECS]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MESSAGE: usize = 100;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let conns: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(8);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());

    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()?;
    let listener = server.block_on(TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    server.spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });

    let round_trips = Arc::new(AtomicU64::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let mut threads = Vec::new();
    for core in 0..cores {
        let share = conns / cores + usize::from(core < conns % cores);
        let round_trips = round_trips.clone();
        let running = running.clone();
        threads.push(std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("client runtime");
            runtime.block_on(async move {
                let mut tasks = Vec::new();
                for _ in 0..share {
                    let round_trips = round_trips.clone();
                    let running = running.clone();
                    tasks.push(tokio::spawn(async move {
                        let mut stream = TcpStream::connect(addr).await?;
                        stream.set_nodelay(true)?;
                        let message = [b'x'; MESSAGE];
                        let mut echo = [0u8; MESSAGE];
                        while running.load(Ordering::Relaxed) {
                            stream.write_all(&message).await?;
                            stream.read_exact(&mut echo).await?;
                            round_trips.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok::<_, std::io::Error>(())
                    }));
                }
                for task in tasks {
                    let _ = task.await;
                }
            });
        }));
    }

    // Skip the first second (connections opening), then measure.
    std::thread::sleep(Duration::from_secs(1));
    let start = (Instant::now(), round_trips.load(Ordering::Relaxed));
    std::thread::sleep(Duration::from_secs(secs));
    let done = round_trips.load(Ordering::Relaxed) - start.1;
    let rate = done as f64 / start.0.elapsed().as_secs_f64();
    running.store(false, Ordering::Relaxed);
    for thread in threads {
        let _ = thread.join();
    }
    println!(
        "{{\"scenario\":\"tcp_echo_ceiling\",\"connections\":{conns},\"cores\":{cores},\
         \"message_bytes\":{MESSAGE},\"round_trips_per_sec\":{rate:.0}}}"
    );
    drop(server);
    Ok(())
}
