#![allow(dead_code)]
//! What the RabbitMQ sink's test files share: an exchange of a test's own.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, ExchangeKind};

/// Declares a unique durable topic exchange `test.x.<u>` and, if `bind`, an exclusive
/// queue bound to it with `#`; returns the exchange's name and the queue's (empty without
/// one).
pub async fn declare(ch: &Channel, bind: bool) -> (String, String) {
    let exchange = format!("test.x.{}", relay_testkit::unique());
    ch.exchange_declare(
        &exchange,
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    if !bind {
        return (exchange, String::new());
    }
    let q = ch
        .queue_declare(
            "",
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let queue = q.name().as_str().to_owned();
    ch.queue_bind(
        &queue,
        &exchange,
        "#",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    (exchange, queue)
}
