//! Socket.IO codec micro-benchmarks: decoding events (plain and binary) and
//! encoding an event for a broadcast.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use socketio::packet::{Args, Decoder, Encoded};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("socketio");

    let event =
        r#"2/chat,17["message",{"conversation":"c1","text":"hello, world","client_id":"a1b2c3"}]"#;
    group.throughput(Throughput::Bytes(event.len() as u64));
    group.bench_function("decode_event_with_ack", |b| {
        let mut decoder = Decoder::new(10);
        b.iter(|| decoder.text(black_box(event)))
    });

    let header = r#"51-["upload",{"name":"a.png"},{"_placeholder":true,"num":0}]"#;
    let attachment = Bytes::from(vec![7u8; 4096]);
    group.throughput(Throughput::Bytes((header.len() + attachment.len()) as u64));
    group.bench_function("decode_binary_event", |b| {
        let mut decoder = Decoder::new(10);
        b.iter(|| {
            let _ = decoder.text(black_box(header));
            decoder.binary(black_box(attachment.clone()))
        })
    });

    let args = Args::one(
        &serde_json::json!({"room": "conv:42", "text": "x".repeat(100), "ts": 1_700_000_000_000u64}),
    );
    group.throughput(Throughput::Bytes(args.raw().len() as u64));
    group.bench_function("encode_event_100b", |b| {
        b.iter(|| {
            Encoded::event(
                black_box("/chat"),
                black_box("message"),
                black_box(&args),
                None,
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
