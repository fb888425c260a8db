//! `normalize` + `Envelope::to_json` against the floor of one generic JSON round trip
//! (`serde_json::from_slice::<Value>` + `serde_json::to_vec`) of the same bytes.
//!
//! Two data sets: every fixture as it is (pretty-printed), and a synthetic compact mix
//! weighted like real traffic (mostly posts and likes, some follows and DMs, a few others).
//! After criterion's runs, an interleaved measurement prints events/s for both sides and the
//! ratio of their times (target: relay ≤ 1.5 × floor).
//!
//! Run: `cargo bench -p relay-envelope --bench normalize -- --warm-up-time 1 --measurement-time 3`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use criterion::{Criterion, Throughput};
use relay_envelope::{normalize, Context, IngressKind};
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures");

fn ctx() -> Context {
    Context {
        ingress: IngressKind::Webhook,
        source: "/x/account-activity/webhook/bench".to_owned(),
        received_at: Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap(),
        formats: relay_envelope::Formats::ALL,
    }
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(PathBuf::from(FIXTURES).join(name)).unwrap()
}

fn all_fixtures() -> Vec<Vec<u8>> {
    let list: BTreeMap<String, Value> =
        serde_json::from_slice(&read("expected-types.json")).unwrap();
    list.keys().map(|n| read(n)).collect()
}

fn compact(body: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::from_slice::<Value>(body).unwrap()).unwrap()
}

/// 1000 compact deliveries: per 100, 30 single posts of the five kinds, 5 long-form posts,
/// 2 batches of three posts, 34 likes (4 of them XAA), 8 follows/unfollows, 7 DMs and 14
/// others (typing, read, delete, block, mute, XAA post/profile update, stream post).
fn mix() -> Vec<Vec<u8>> {
    let weights: &[(&str, usize)] = &[
        ("aaa/tweet_create.post.json", 10),
        ("aaa/tweet_create.reply.json", 8),
        ("aaa/tweet_create.mention.json", 6),
        ("aaa/tweet_create.repost.json", 4),
        ("aaa/tweet_create.quote.json", 2),
        ("aaa/tweet_create.longform.json", 5),
        ("aaa/tweet_create.batch3.json", 2),
        ("aaa/favorite.json", 30),
        ("xaa/like.create.json", 4),
        ("aaa/follow.json", 6),
        ("aaa/unfollow.json", 2),
        ("aaa/direct_message.received.json", 4),
        ("aaa/direct_message.sent.json", 3),
        ("aaa/direct_message.typing.json", 2),
        ("aaa/direct_message.read.json", 2),
        ("aaa/tweet_delete.json", 2),
        ("aaa/block.json", 2),
        ("aaa/mute.json", 2),
        ("xaa/post.create.json", 2),
        ("xaa/profile.update.bio.json", 1),
        ("stream/tweet_create.json", 1),
    ];
    let total: usize = weights.iter().map(|w| w.1).sum();
    assert_eq!(total, 100, "weights per 100 deliveries");
    let mut out = Vec::new();
    for _ in 0..10 {
        for (name, n) in weights {
            let body = compact(&read(name));
            for _ in 0..*n {
                out.push(body.clone());
            }
        }
    }
    // Interleave kinds as real traffic does.
    let n = out.len();
    let mut mixed = Vec::with_capacity(n);
    for i in 0..n {
        mixed.push(out[(i * 37) % n].clone());
    }
    mixed
}

fn events_in(bodies: &[Vec<u8>]) -> u64 {
    let c = ctx();
    bodies
        .iter()
        .map(|b| normalize(b, &c).unwrap().len() as u64)
        .sum()
}

fn relay(bodies: &[Vec<u8>], c: &Context) {
    for b in bodies {
        if let Ok(envs) = normalize(black_box(b), c) {
            for e in envs {
                black_box(e.to_json());
            }
        }
    }
}

fn floor(bodies: &[Vec<u8>]) {
    for b in bodies {
        if let Ok(v) = serde_json::from_slice::<Value>(black_box(b)) {
            black_box(serde_json::to_vec(&v).unwrap_or_default());
        }
    }
}

fn sets() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    vec![("fixtures", all_fixtures()), ("mix", mix())]
}

fn bench(c: &mut Criterion) {
    let cx = ctx();
    for (name, bodies) in sets() {
        let mut g = c.benchmark_group(format!("normalize/{name}"));
        g.throughput(Throughput::Elements(events_in(&bodies)));
        g.bench_function("relay: normalize + to_json", |b| {
            b.iter(|| relay(&bodies, &cx))
        });
        g.bench_function("floor: from_slice::<Value> + to_vec", |b| {
            b.iter(|| floor(&bodies))
        });
        g.finish();
    }
}

/// Interleaved rounds of both sides; prints events/s (median) and the median time ratio.
fn ratio_report() {
    let cx = ctx();
    println!("\nratio (interleaved rounds of ~0.3 s each side, median of 7):");
    for (name, bodies) in sets() {
        let events = events_in(&bodies) as f64;
        let bytes: usize = bodies.iter().map(Vec::len).sum();
        let time = |f: &dyn Fn()| {
            let start = Instant::now();
            let mut reps = 0u32;
            while start.elapsed() < Duration::from_millis(300) {
                f();
                reps += 1;
            }
            start.elapsed().as_secs_f64() / f64::from(reps)
        };
        let mut relay_t = Vec::new();
        let mut floor_t = Vec::new();
        let mut ratios = Vec::new();
        for _ in 0..7 {
            let r = time(&|| relay(&bodies, &cx));
            let f = time(&|| floor(&bodies));
            relay_t.push(r);
            floor_t.push(f);
            ratios.push(r / f);
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (r, f, q) = (
            median(&mut relay_t),
            median(&mut floor_t),
            median(&mut ratios),
        );
        println!(
            "  {name:9} {:>5} deliveries {:>6} events {:>8} bytes | relay {:>10.0} events/s | floor {:>10.0} events/s | relay/floor time ratio {q:.2}",
            bodies.len(),
            events,
            bytes,
            events / r,
            events / f,
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    // `cargo test --benches` / `--list` run in test mode: skip the timed report.
    if !args.iter().any(|a| a == "--test" || a == "--list") {
        ratio_report();
    }
}
