//! Engine.IO codec micro-benchmarks: decoding a WebSocket text packet and
//! polling payloads, encoding payloads.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use engineio::packet::{Frame, Packet, Str, decode_payload, encode_payload};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let message =
        Str::from(r#"42["chat:message",{"conversation":"c1","text":"hello, world","seq":1234}]"#);
    let mut group = c.benchmark_group("engineio");
    group.throughput(Throughput::Bytes(message.len() as u64));
    group.bench_function("decode_text_message", |b| {
        b.iter(|| Packet::decode_text(black_box(message.clone())))
    });

    let frames: Vec<Frame> = (0..32)
        .map(|i| {
            if i % 8 == 7 {
                Frame::binary(Bytes::from(vec![i as u8; 256]))
            } else {
                Frame::message(&format!(
                    r#"2["event",{{"n":{i},"text":"some payload text"}}]"#
                ))
            }
        })
        .collect();
    let payload = encode_payload(&frames);
    group.throughput(Throughput::Bytes(payload.len() as u64));
    group.bench_function("encode_payload_32_frames", |b| {
        b.iter(|| encode_payload(black_box(&frames)))
    });
    group.bench_function("decode_payload_32_packets", |b| {
        b.iter(|| decode_payload(black_box(payload.clone())))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
