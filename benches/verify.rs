//! The relay's per-delivery CPU work before storage: signature check and parsing.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vslack::relay::event::Event;
use vslack::relay::verify::{sign, Key, Verifier};
use vslack::secret::Secret;

fn bench_verify(c: &mut Criterion) {
    let secret = Secret::new("8f1c2b7e0a5d4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a2918f7e6d5c4b3a");
    let ts = 1_772_490_000i64;
    let body = serde_json::json!({
        "event_id": "0123456789abcdef0123456789abcdef", "user_id": 123456, "notif_type": "low_credit",
        "subject": "Low credit balance",
        "message": "Your Vast.ai credit balance is $4.12, below your $5.00 alert threshold.",
        "timestamp": 1772490000.123
    })
    .to_string()
    .into_bytes();
    let sig = sign(&secret, ts, &body);
    let one = Verifier::new(vec![Key::new("current", &secret, None)], 300);
    let mut keys: Vec<Key> = (0..7)
        .map(|i| {
            Key::new(
                format!("other {i}"),
                &Secret::new(format!("other-{i}")),
                None,
            )
        })
        .collect();
    keys.push(Key::new("current", &secret, None));
    let eight = Verifier::new(keys, 300);
    let ts_s = ts.to_string();
    let mut g = c.benchmark_group("delivery");
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify (1 secret)", |b| {
        b.iter(|| {
            one.verify(
                Some(ts_s.as_bytes()),
                Some(sig.as_bytes()),
                black_box(&body),
                ts,
            )
            .unwrap()
        })
    });
    g.bench_function("verify (8 secrets)", |b| {
        b.iter(|| {
            eight
                .verify(
                    Some(ts_s.as_bytes()),
                    Some(sig.as_bytes()),
                    black_box(&body),
                    ts,
                )
                .unwrap()
        })
    });
    g.bench_function("parse", |b| {
        b.iter(|| Event::parse(black_box(&body), None, ts).unwrap())
    });
    g.bench_function("verify + parse", |b| {
        b.iter(|| {
            one.verify(
                Some(ts_s.as_bytes()),
                Some(sig.as_bytes()),
                black_box(&body),
                ts,
            )
            .unwrap();
            Event::parse(black_box(&body), None, ts).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench_verify);
criterion_main!(benches);
