//! The fleet's dedup (`[cluster]`) against a real Redis (`RELAY_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379/0`): two members' claims on the same ids, a member that dies
//! between its two steps, a failed append's release, and a store that cannot be reached.

use std::sync::Arc;
use std::time::Duration;

use activity_relay::cluster::{
    connect, ClusterConfig, ClusterMetrics, FleetDedup, OnStoreError, Verdict,
};
use prometheus::Registry;

fn redis_url() -> String {
    std::env::var("RELAY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

async fn member(
    name: &str,
    namespace: &str,
    f: impl FnOnce(&mut ClusterConfig),
) -> (FleetDedup, Registry) {
    let mut cfg = ClusterConfig {
        store: redis_url(),
        member: name.to_string(),
        namespace: namespace.to_string(),
        ..ClusterConfig::default()
    };
    f(&mut cfg);
    cfg.validate().unwrap();
    let registry = Registry::new();
    let metrics = ClusterMetrics::register(&registry).unwrap();
    let store = connect(&cfg).await.unwrap();
    (
        FleetDedup::new(store, cfg, Duration::from_secs(3600), metrics),
        registry,
    )
}

fn ids(n: usize, tag: &str) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i}")).collect()
}

fn metric(r: &Registry, name: &str, label: &str) -> u64 {
    r.gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().to_vec())
        .filter(|m| m.get_label().iter().any(|l| l.value() == label))
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

#[tokio::test]
async fn one_member_takes_an_id_the_other_waits_and_finds_it_committed() {
    let ns = format!("test-{}", relay_testkit::unique());
    let (a, _) = member("a", &ns, |_| {}).await;
    let (b, rb) = member("b", &ns, |_| {}).await;
    let ids = ids(5, "ev");
    assert_eq!(a.claim(&ids).await.unwrap(), vec![Verdict::Ours; 5]);
    // b asks while a holds them pending: it waits; a commits meanwhile.
    let b = Arc::new(b);
    let waiting = tokio::spawn({
        let (b, ids) = (b.clone(), ids.clone());
        async move { b.claim(&ids).await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.commit(&ids).await;
    assert_eq!(waiting.await.unwrap(), vec![Verdict::Duplicate; 5]);
    assert_eq!(
        metric(&rb, "activity_relay_cluster_claims_total", "duplicate"),
        5
    );
    // And once committed, at once.
    assert_eq!(
        b.claim(&ids[..2]).await.unwrap(),
        vec![Verdict::Duplicate; 2]
    );
}

#[tokio::test]
async fn a_released_or_expired_claim_lets_the_next_delivery_through() {
    let ns = format!("test-{}", relay_testkit::unique());
    let short = |c: &mut ClusterConfig| {
        c.pending_ttl = Duration::from_millis(600);
        c.timeout = Duration::from_millis(500);
    };
    let (a, _) = member("a", &ns, short).await;
    let (b, _) = member("b", &ns, |_| {}).await;
    // A failed append releases: the other member takes the id at once.
    let one = ids(1, "released");
    assert_eq!(a.claim(&one).await.unwrap(), vec![Verdict::Ours]);
    a.release(&one).await;
    assert_eq!(b.claim(&one).await.unwrap(), vec![Verdict::Ours]);
    // A member that dies between its two steps: its claim expires, X's retry gets through
    // on the other member (a duplicate is possible, a loss is not).
    let two = ids(1, "orphan");
    assert_eq!(a.claim(&two).await.unwrap(), vec![Verdict::Ours]);
    drop(a);
    assert_eq!(b.claim(&two).await.unwrap(), vec![Verdict::Ours]);
}

#[tokio::test]
async fn an_unreachable_store_is_accepted_unverified_or_refused_as_configured() {
    // Nothing listens there (bound for a moment, then closed).
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let down = |c: &mut ClusterConfig| {
        c.store = format!("redis://{dead}/0");
        c.timeout = Duration::from_millis(300);
    };
    let ns = format!("test-{}", relay_testkit::unique());
    let (accept, r) = member("a", &ns, down).await;
    let got = accept.claim(&ids(3, "x")).await.unwrap();
    assert_eq!(got, vec![Verdict::Unverified; 3]);
    assert_eq!(
        metric(&r, "activity_relay_cluster_unverified_total", "store_error"),
        3
    );
    let (refuse, _) = member("b", &ns, |c| {
        down(c);
        c.on_store_error = OnStoreError::Refuse;
    })
    .await;
    let err = refuse.claim(&ids(1, "y")).await.unwrap_err();
    assert!(err.to_string().contains("unreachable"), "{err}");
}
