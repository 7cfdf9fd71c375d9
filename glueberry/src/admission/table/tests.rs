use proptest::prelude::*;

use super::*;

fn id(n: usize) -> ConnectionId {
    ConnectionId::new_unchecked(n)
}

fn ip(n: u8) -> Option<IpAddr> {
    Some(IpAddr::from([10, 0, 0, n]))
}

fn limits() -> Limits {
    Limits {
        per_ip: Some(2),
        strangers: Some(3),
        total: 10,
        inbound: None,
    }
}

#[test]
fn per_ip_counts_pending_and_strangers_until_trusted_or_closed() {
    let mut t = Table::new(limits());
    let (p1, p2) = (PeerId::random(), PeerId::random());
    assert_eq!(t.pending_inbound(id(1), ip(1)), Ok(()));
    assert_eq!(t.pending_inbound(id(2), ip(1)), Ok(()));
    assert_eq!(t.pending_inbound(id(3), ip(1)), Err(Cause::PerIp));
    // Another address is not affected.
    assert_eq!(t.pending_inbound(id(4), ip(2)), Ok(()));
    t.failed(id(4));
    // A stranger keeps its IP's place; a trusted peer gives it back.
    assert_eq!(t.established(id(1), p1, true), Ok(Admit::Yes));
    assert_eq!(t.pending_inbound(id(3), ip(1)), Err(Cause::PerIp));
    t.trust(p1);
    assert_eq!(t.pending_inbound(id(3), ip(1)), Ok(()));
    // A failed handshake gives its place back.
    t.failed(id(3));
    t.trust(p2);
    assert_eq!(t.established(id(2), p2, true), Ok(Admit::Yes));
    assert_eq!(t.counts(), (0, 0, 2, 2));
    t.closed(id(1));
    t.closed(id(2));
    assert_eq!(t.counts(), (0, 0, 0, 0));
}

#[test]
fn the_oldest_stranger_makes_room_and_trusted_peers_are_never_refused() {
    let mut t = Table::new(Limits {
        per_ip: None,
        strangers: Some(3),
        total: 5,
        inbound: None,
    });
    let strangers: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
    for (n, p) in strangers.iter().enumerate().take(3) {
        assert_eq!(t.established(id(n), *p, true), Ok(Admit::Yes));
    }
    // A fourth stranger: the oldest goes.
    assert_eq!(
        t.established(id(3), strangers[3], true),
        Ok(Admit::Evicting(strangers[0], id(0)))
    );
    // Evicted, still closing: it counts towards the total but is not evicted twice.
    let book = PeerId::random();
    t.trust(book);
    assert_eq!(t.established(id(10), book, true), Ok(Admit::Yes));
    // Total reached (5): strangers are refused, our dials and trusted peers are not.
    assert_eq!(
        t.established(id(11), PeerId::random(), true),
        Err(Cause::Total)
    );
    assert_eq!(
        t.established(id(12), PeerId::random(), false),
        Ok(Admit::Yes)
    );
    assert_eq!(t.established(id(13), book, true), Ok(Admit::Yes));
    t.closed(id(0));
    assert_eq!(t.counts(), (0, 3, 6, 5));
}

#[test]
fn strangers_doing_the_handshake_go_after_those_that_never_spoke() {
    let mut t = Table::new(Limits {
        per_ip: None,
        strangers: Some(2),
        total: 100,
        inbound: None,
    });
    let (good, idle) = (PeerId::random(), PeerId::random());
    assert_eq!(t.established(id(1), good, true), Ok(Admit::Yes));
    t.progressed(&good);
    assert_eq!(t.established(id(2), idle, true), Ok(Admit::Yes));
    // A flood of idle strangers evicts each other, never the one doing the handshake.
    let mut last = (idle, id(2));
    for n in 3..50 {
        let p = PeerId::random();
        assert_eq!(
            t.established(id(n), p, true),
            Ok(Admit::Evicting(last.0, last.1))
        );
        t.closed(last.1);
        last = (p, id(n));
    }
    // With only active strangers left, the oldest active one goes.
    t.progressed(&last.0);
    let p = PeerId::random();
    assert_eq!(
        t.established(id(99), p, true),
        Ok(Admit::Evicting(good, id(1)))
    );
}

#[test]
fn a_stranger_that_finishes_the_handshake_leaves_the_stranger_budget() {
    let mut t = Table::new(limits());
    let p = PeerId::random();
    assert_eq!(t.established(id(1), p, true), Ok(Admit::Yes));
    assert_eq!(t.counts().1, 1);
    t.trust(p);
    assert_eq!(t.counts().1, 0);
    t.distrust(&p);
    // Its connection keeps its place; a new one is a stranger's.
    assert_eq!(t.established(id(2), p, true), Ok(Admit::Yes));
    assert_eq!(t.counts().1, 1);
}

#[test]
fn the_inbound_limit_refuses_strangers_only() {
    let mut t = Table::new(Limits {
        per_ip: None,
        strangers: None,
        total: 100,
        inbound: Some(1),
    });
    let book = PeerId::random();
    t.trust(book);
    assert_eq!(t.established(id(1), PeerId::random(), true), Ok(Admit::Yes));
    assert_eq!(
        t.established(id(2), PeerId::random(), true),
        Err(Cause::Inbound)
    );
    assert_eq!(t.established(id(3), book, true), Ok(Admit::Yes));
}

proptest! {
    /// Whatever happens, the counts never exceed their limits where the table enforces them,
    /// and closing every connection brings every count back to zero.
    #[test]
    fn counts_stay_bounded_and_return_to_zero(
        ops in proptest::collection::vec((0u8..6, 0usize..24, 0u8..4, 0usize..6), 1..300)
    ) {
        let lim = limits();
        let mut t = Table::new(lim);
        let peers: Vec<PeerId> = (0..6).map(|_| PeerId::random()).collect();
        let mut seen = HashSet::new();
        for (op, c, a, p) in ops {
            let c = id(c);
            match op {
                0 => if seen.insert(c) { let _ = t.pending_inbound(c, ip(a)); },
                1 => if seen.insert(c) || t.conns.get(&c).is_some_and(|x| x.stage == Stage::Pending) {
                    match t.established(c, peers[p], a != 0) {
                        Ok(Admit::Evicting(_, old)) => { t.closed(old); }
                        Ok(Admit::Yes) | Err(_) => {}
                    }
                },
                2 => t.closed(c),
                3 => t.failed(c),
                4 => t.trust(peers[p]),
                5 if a == 0 => t.progressed(&peers[p]),
                _ => t.distrust(&peers[p]),
            }
            let (_, strangers, established, _) = t.counts();
            prop_assert!(strangers <= lim.strangers.unwrap());
            prop_assert!(t.per_ip.values().all(|n| *n <= lim.per_ip.unwrap()));
            prop_assert!(established <= lim.total + 24);
        }
        let ids: Vec<ConnectionId> = t.conns.keys().copied().collect();
        for c in ids {
            t.closed(c);
        }
        prop_assert_eq!(t.counts(), (0, 0, 0, 0));
    }
}
