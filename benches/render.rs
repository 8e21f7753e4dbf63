//! Rendering cost: one event as a Block Kit message, a 50-event digest, and a summary of
//! 10,000 events as the forwarder makes it (from the events it read).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use vslack::relay::event::Event;
use vslack::relay::message::{render_batch, render_summary, Format};

const CONSOLE: &str = "https://cloud.vast.ai";
const TYPES: [&str; 4] = [
    "low_credit",
    "instance_stopped",
    "machine_offline",
    "webhook_test",
];

fn event(i: usize) -> Event {
    Event {
        event_id: format!("{:032x}", i as u128 * 0x9e37_79b9_7f4a_7c15),
        notif_type: TYPES[i % TYPES.len()].to_owned(),
        subject: Some(format!("Notification {i} <& details>")),
        message: Some("Your instance changed state; see the console for details. ".repeat(8)),
        user_id: Some(42),
        timestamp: Some(1_772_490_000.0 + i as f64),
        received_at: 1_772_490_000 + i as i64,
        context: None,
        alert: None,
        heartbeat: false,
        legs: Default::default(),
    }
}

fn bench_render(c: &mut Criterion) {
    let one = vec![event(0)];
    c.bench_function("render_batch/blocks/1", |b| {
        b.iter(|| render_batch(black_box(&one), Format::Blocks, CONSOLE))
    });

    let fifty: Vec<Event> = (0..50).map(event).collect();
    c.bench_function("render_batch/blocks/digest50", |b| {
        b.iter(|| render_batch(black_box(&fifty), Format::Blocks, CONSOLE))
    });

    let many: Vec<Event> = (0..10_000).map(event).collect();
    c.bench_function("render_summary/blocks/10000", |b| {
        b.iter(|| {
            let events: Vec<&Event> = black_box(&many).iter().collect();
            render_summary(&events, (1, 10_000), Format::Blocks, CONSOLE)
        })
    });
}

criterion_group!(benches, bench_render);
criterion_main!(benches);
