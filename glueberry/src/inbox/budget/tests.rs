use proptest::prelude::*;

use super::*;

const KIB: usize = 1024;

fn limits() -> Limits {
    Limits {
        peer: 128 * KIB,
        stranger: 8 * KIB,
        strangers: 16 * KIB,
        total: 128 * KIB,
        floor: 4 * KIB,
        messages: 16,
        finish_stranger: 0,
        finish_peer: 0,
    }
}

#[test]
fn a_quiet_peer_gets_in_while_others_hold_the_total() {
    let mut b = Budgets::new(limits());
    for p in 0..3 {
        b.set_kind(&p, Kind::Trusted);
    }
    // Two flooders fill what bulk streams may take of the total (three quarters: 96 KiB).
    assert_eq!(b.charge_up_to(&0, 48 * KIB, false), Ok(48 * KIB));
    assert_eq!(b.charge_up_to(&1, 64 * KIB, false), Ok(48 * KIB));
    assert_eq!(b.charge_up_to(&1, 1, false), Err(Blocked::Shared));
    assert_eq!(b.charge_up_to(&0, 1, false), Err(Blocked::Shared));
    // The quiet peer still gets its floor.
    assert_eq!(b.charge_up_to(&2, 64 * KIB, false), Ok(4 * KIB));
    assert_eq!(b.charge_up_to(&2, 1, false), Err(Blocked::Shared));
    // And urgent streams the whole total.
    assert_eq!(b.charge_exact(&2, 8 * KIB, true), Ok(()));
    // A release lets the others in again.
    b.release(&0, 48 * KIB, 0);
    assert_eq!(b.charge_exact(&1, 40 * KIB, false), Err(Blocked::Shared));
    assert_eq!(b.charge_exact(&0, 36 * KIB, false), Ok(()));
    assert_eq!(
        b.marks().held,
        48 * KIB + 48 * KIB + 4 * KIB + 8 * KIB - 48 * KIB + 36 * KIB
    );
}

#[test]
fn a_bulk_stream_leaves_room_for_the_urgent_ones_of_its_peer() {
    let mut b = Budgets::new(limits());
    b.set_kind(&0, Kind::Trusted);
    assert_eq!(b.charge_up_to(&0, 1 << 20, false), Ok(96 * KIB));
    // Its own limit and the total's bulk share are both spent: any release may help.
    assert_eq!(b.charge_exact(&0, 1, false), Err(Blocked::Shared));
    assert_eq!(b.charge_exact(&0, 32 * KIB, true), Ok(()));
    assert_eq!(b.charge_exact(&0, 1, true), Err(Blocked::Shared));
    // With room in the total, only its own releases help.
    let mut b = Budgets::new(Limits {
        total: 1 << 20,
        ..limits()
    });
    b.set_kind(&0, Kind::Trusted);
    assert_eq!(b.charge_up_to(&0, 1 << 20, false), Ok(96 * KIB));
    assert_eq!(b.charge_exact(&0, 1, false), Err(Blocked::Peer));
}

#[test]
fn strangers_share_a_small_budget() {
    let mut b = Budgets::new(limits());
    assert_eq!(b.charge_up_to(&0, 1 << 20, true), Ok(8 * KIB));
    assert_eq!(b.charge_up_to(&1, 1 << 20, true), Ok(8 * KIB));
    assert_eq!(b.charge_up_to(&2, 1, true), Err(Blocked::Shared));
    // Finishing the handshake moves a peer out of the strangers' share.
    b.set_kind(&0, Kind::Trusted);
    assert_eq!(b.charge_up_to(&2, 1 << 20, true), Ok(8 * KIB));
    assert_eq!(b.marks().strangers_peak, 16 * KIB);
    assert_eq!(b.marks().stranger_peak, 8 * KIB);
}

#[test]
fn messages_are_counted_apart_from_bytes() {
    let mut b = Budgets::new(limits());
    b.set_kind(&0, Kind::Trusted);
    assert_eq!(b.charge_messages(&0, 64, 100, false), Ok(16));
    assert_eq!(b.charge_messages(&0, 1, 100, false), Err(Blocked::Peer));
    b.release(&0, 300, 3);
    assert_eq!(b.charge_messages(&0, 64, 100, false), Ok(3));
}

#[test]
fn a_stranger_that_holds_nothing_is_forgotten() {
    let mut b = Budgets::new(limits());
    b.charge_exact(&0, 10, true).unwrap();
    b.release(&0, 10, 0);
    assert!(b.peers.is_empty());
    b.set_kind(&1, Kind::Trusted);
    b.set_kind(&1, Kind::Stranger);
    assert!(b.peers.is_empty());
}

#[test]
fn a_handshaked_peer_that_leaves_keeps_its_budget_until_drained() {
    let mut b = Budgets::new(limits());
    b.set_kind(&0, Kind::Trusted);
    b.charge_exact(&0, 64 * KIB, true).unwrap();
    b.set_kind(&0, Kind::Stranger);
    // Not moved into the strangers' share.
    assert_eq!(b.marks().strangers_held, 0);
    assert_eq!(b.charge_up_to(&1, 1 << 20, true), Ok(8 * KIB));
    b.release(&0, 64 * KIB, 0);
    assert!(!b.peers.contains_key(&0));
    // Back as a stranger.
    assert_eq!(b.charge_up_to(&0, 1 << 20, true), Ok(8 * KIB));
}

#[test]
fn unlimited_charges_always_fit() {
    let mut b = Budgets::new(limits());
    b.set_unlimited();
    assert_eq!(b.charge_exact(&0, 1 << 30, false), Ok(()));
    assert!(b.over(&0));
}

#[derive(Debug, Clone)]
enum Op {
    Exact(u8, usize, bool),
    UpTo(u8, usize, bool),
    Messages(u8, usize, bool),
    Release(u8, usize),
    Trust(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..4u8, 1..20_000usize, any::<bool>()).prop_map(|(p, n, u)| Op::Exact(p, n, u)),
        (0..4u8, 1..20_000usize, any::<bool>()).prop_map(|(p, n, u)| Op::UpTo(p, n, u)),
        (0..4u8, 1..8usize, any::<bool>()).prop_map(|(p, n, u)| Op::Messages(p, n, u)),
        (0..4u8, 0..40_000usize).prop_map(|(p, n)| Op::Release(p, n)),
        (0..4u8).prop_map(Op::Trust),
    ]
}

proptest! {
    /// No charge ever takes a peer past its limit, the strangers past theirs or the node past
    /// its total, and the totals are the sums of the accounts.
    #[test]
    fn no_charge_passes_a_limit(ops in proptest::collection::vec(op(), 1..200)) {
        let l = limits();
        let mut b = Budgets::new(l);
        // What each peer holds in bytes and messages, by our own count.
        let mut mine = [(0usize, 0usize); 4];
        for op in ops {
            let charged = match op {
                Op::Exact(p, n, u) => b.charge_exact(&p, n, u).ok().map(|()| (p, n, 0)),
                Op::UpTo(p, n, u) => b.charge_up_to(&p, n, u).ok().map(|k| {
                    assert!(k <= n);
                    (p, k, 0)
                }),
                Op::Messages(p, n, u) => b.charge_messages(&p, n, 100, u).ok().map(|k| (p, k * 100, k)),
                Op::Release(p, n) => {
                    let (held, msgs) = &mut mine[p as usize];
                    let n = n.min(*held);
                    let m = (*msgs).min(n / 100);
                    b.release(&p, n, m);
                    *held -= n;
                    *msgs -= m;
                    None
                }
                Op::Trust(p) => {
                    b.set_kind(&p, Kind::Trusted);
                    None
                }
            };
            if let Some((p, n, m)) = charged {
                mine[p as usize].0 += n;
                mine[p as usize].1 += m;
                let a = b.account(&p);
                let own = match a.kind { Kind::Stranger => l.stranger, Kind::Trusted => l.peer };
                prop_assert!(a.held <= own);
                prop_assert!(a.messages <= l.messages);
                prop_assert!(b.marks().held <= l.total);
                if a.kind == Kind::Stranger {
                    prop_assert!(b.marks().strangers_held <= l.strangers);
                }
            }
            let sum: usize = mine.iter().map(|(h, _)| h).sum();
            prop_assert_eq!(b.marks().held, sum);
            for p in 0..4u8 {
                prop_assert_eq!(b.held(&p), mine[p as usize].0);
            }
        }
    }
}
