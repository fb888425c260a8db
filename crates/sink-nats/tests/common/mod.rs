#![allow(dead_code)]
//! What the NATS sink's test files share: a stream of a test's own, and a reader of it.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};
use futures::StreamExt;

/// Creates a unique stream `T_<u>` capturing `t<u>.>` (memory storage); returns the
/// subject prefix `t<u>` and the stream's name.
pub async fn create_stream(js: &jetstream::Context) -> (String, String) {
    let u = relay_testkit::unique();
    let prefix = format!("t{u}");
    let name = format!("T_{u}");
    js.create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![format!("{prefix}.>")],
        storage: stream::StorageType::Memory,
        max_age: Duration::from_secs(600),
        ..Default::default()
    })
    .await
    .unwrap();
    (prefix, name)
}

/// Reads `n` messages of `stream` with a fresh consumer from its start. Bounded: gives up
/// after a few empty batches (the caller's count assertions then fail).
pub async fn consume(
    js: &jetstream::Context,
    stream: &str,
    n: usize,
) -> Vec<async_nats::jetstream::Message> {
    let s = js.get_stream(stream).await.unwrap();
    let consumer = s
        .create_consumer(pull::Config {
            ack_policy: jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out = Vec::with_capacity(n);
    let mut empty = 0;
    while out.len() < n && empty < 3 {
        let mut batch = consumer
            .batch()
            .max_messages(n - out.len())
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .unwrap();
        let before = out.len();
        while let Some(m) = batch.next().await {
            out.push(m.unwrap());
        }
        if out.len() == before {
            empty += 1;
        }
    }
    out
}
