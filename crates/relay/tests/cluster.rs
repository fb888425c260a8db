//! The fleet's dedup and leases (`[cluster]`) against both real stores: Redis
//! (`RELAY_TEST_REDIS_URL`, default `redis://127.0.0.1:6379/0`) and NATS JetStream
//! key-value (`RELAY_TEST_NATS_URL`, default `nats://127.0.0.1:4222`): two members' claims
//! on the same ids, a member that dies between its two steps, a failed append's release, a
//! store that cannot be reached, and a lease taken, lost and taken over.

use std::sync::Arc;
use std::time::Duration;

use activity_relay::cluster::{
    connect, ClusterConfig, ClusterMetrics, FleetDedup, OnStoreError, Verdict,
};
use prometheus::Registry;

fn redis_url() -> String {
    std::env::var("RELAY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

fn nats_url() -> String {
    std::env::var("RELAY_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// Both stores, each test run on each.
fn stores() -> [String; 2] {
    [redis_url(), nats_url()]
}

async fn member(
    store: &str,
    name: &str,
    namespace: &str,
    f: impl FnOnce(&mut ClusterConfig),
) -> (FleetDedup, Registry) {
    let mut cfg = ClusterConfig {
        store: store.to_string(),
        member: name.to_string(),
        namespace: namespace.to_string(),
        ..ClusterConfig::default()
    };
    f(&mut cfg);
    cfg.validate().unwrap();
    let registry = Registry::new();
    let metrics = ClusterMetrics::register(&registry).unwrap();
    let store = connect(&cfg, Duration::from_secs(3600)).await.unwrap();
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
    for store in stores() {
        let ns = format!("test-{}", relay_testkit::unique());
        one_member_takes_an_id_the_other_waits_and_finds_it_committed_on(&store, &ns).await;
        relay_testkit::delete_fleet_buckets(&store, &ns).await;
    }
}

async fn one_member_takes_an_id_the_other_waits_and_finds_it_committed_on(store: &str, ns: &str) {
    let (a, _) = member(store, "a", ns, |_| {}).await;
    let (b, rb) = member(store, "b", ns, |_| {}).await;
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
    for store in stores() {
        let ns = format!("test-{}", relay_testkit::unique());
        a_released_or_expired_claim_lets_the_next_delivery_through_on(&store, &ns).await;
        relay_testkit::delete_fleet_buckets(&store, &ns).await;
    }
}

async fn a_released_or_expired_claim_lets_the_next_delivery_through_on(store: &str, ns: &str) {
    let short = |c: &mut ClusterConfig| {
        c.pending_ttl = Duration::from_millis(600);
        c.timeout = Duration::from_millis(500);
    };
    let (a, _) = member(store, "a", ns, short).await;
    let (b, _) = member(store, "b", ns, |_| {}).await;
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
    for scheme in ["redis", "nats"] {
        let url = match scheme {
            "redis" => format!("redis://{dead}/0"),
            _ => format!("nats://{dead}"),
        };
        let down = |c: &mut ClusterConfig| {
            c.store = url.clone();
            c.timeout = Duration::from_millis(300);
        };
        let ns = format!("test-{}", relay_testkit::unique());
        let (accept, r) = member(&url, "a", &ns, down).await;
        let got = accept.claim(&ids(3, "x")).await.unwrap();
        assert_eq!(got, vec![Verdict::Unverified; 3], "{scheme}");
        assert_eq!(
            metric(&r, "activity_relay_cluster_unverified_total", "store_error"),
            3,
            "{scheme}"
        );
        let (refuse, _) = member(&url, "b", &ns, |c| {
            down(c);
            c.on_store_error = OnStoreError::Refuse;
        })
        .await;
        let err = refuse.claim(&ids(1, "y")).await.unwrap_err();
        assert!(err.to_string().contains("unreachable"), "{scheme}: {err}");
    }
}

/// One lease, two members: taken by one, refused to the other; renewed while held; once
/// its holder stops renewing, it expires and the other takes it with a higher epoch, and
/// the first can no longer renew (it must stop the job); resigned, it is free at once. A
/// position moves forward only. A note is read by the other member until it expires.
#[tokio::test]
async fn a_lease_is_held_by_one_member_and_taken_over_with_a_higher_epoch() {
    for store in stores() {
        let ns = format!("test-{}", relay_testkit::unique());
        let cfg = |member: &str| ClusterConfig {
            store: store.clone(),
            member: member.to_string(),
            namespace: ns.clone(),
            ..ClusterConfig::default()
        };
        let window = Duration::from_secs(60);
        let a = connect(&cfg("a"), window).await.unwrap();
        let b = connect(&cfg("b"), window).await.unwrap();
        let (lease, epoch) = (format!("{{{ns}:job}}:lease"), format!("{{{ns}:job}}:epoch"));
        // Long enough that no machine stall lets it lapse between two steps that expect
        // it held.
        let ttl = Duration::from_secs(2);
        let first = a.acquire(&lease, &epoch, ttl).await.unwrap();
        let Some(first) = first else {
            panic!("{store}: a could not take a free lease")
        };
        assert_eq!(
            b.acquire(&lease, &epoch, ttl).await.unwrap(),
            None,
            "{store}"
        );
        assert!(a.renew(&lease, first, ttl).await.unwrap(), "{store}");
        assert!(!b.renew(&lease, first, ttl).await.unwrap(), "{store}");
        // a stops renewing: the lease runs out, b takes it.
        tokio::time::sleep(ttl + Duration::from_millis(300)).await;
        let second = b.acquire(&lease, &epoch, ttl).await.unwrap();
        assert!(
            matches!(second, Some(e) if e > first),
            "{store}: {second:?} after {first}"
        );
        assert!(!a.renew(&lease, first, ttl).await.unwrap(), "{store}");
        // a's stale resignation leaves b's lease alone; b's own frees it.
        a.resign(&lease, first).await.unwrap();
        assert_eq!(
            a.acquire(&lease, &epoch, ttl).await.unwrap(),
            None,
            "{store}"
        );
        b.resign(&lease, second.unwrap()).await.unwrap();
        assert!(
            a.acquire(&lease, &epoch, ttl).await.unwrap().is_some(),
            "{store}"
        );

        // A note one member leaves (a replay job's end) is read by the other, until it
        // expires.
        let note = format!("{ns}:replay-job:42");
        assert_eq!(b.get_note(&note).await.unwrap(), None, "{store}");
        a.put_note(&note, "Complete", ttl).await.unwrap();
        assert_eq!(
            b.get_note(&note).await.unwrap().as_deref(),
            Some("Complete"),
            "{store}"
        );
        tokio::time::sleep(ttl + Duration::from_millis(300)).await;
        assert_eq!(b.get_note(&note).await.unwrap(), None, "{store}");

        let pos = format!("{ns}:position:job");
        assert_eq!(a.position(&pos).await.unwrap(), None, "{store}");
        a.advance(&pos, 2_000).await.unwrap();
        b.advance(&pos, 1_000).await.unwrap();
        assert_eq!(b.position(&pos).await.unwrap(), Some(2_000), "{store}");
        relay_testkit::delete_fleet_buckets(&store, &ns).await;
    }
}
