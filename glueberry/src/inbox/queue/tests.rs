use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone, PartialEq, Eq)]
struct M {
    peer: u8,
    stream: &'static str,
    seq: u32,
}

impl Item for M {
    type Peer = u8;
    fn peer(&self) -> &u8 {
        &self.peer
    }
    fn stream(&self) -> &str {
        self.stream
    }
}

fn m(peer: u8, stream: &'static str, seq: u32) -> M {
    M { peer, stream, seq }
}

#[test]
fn a_backlog_does_not_delay_another_peer() {
    let mut l = Lanes::default();
    for seq in 0..1000 {
        l.push(Priority::Normal, m(0, "sync", seq));
    }
    assert_eq!(l.pop(DEFAULT).unwrap().seq, 0);
    // A peer with nothing waiting goes before the backlog.
    l.push(Priority::Normal, m(1, "sync", 0));
    assert_eq!(l.pop(DEFAULT).unwrap().peer, 1);
    assert_eq!(l.pop(DEFAULT).unwrap().peer, 0);
    // Two backlogs take turns.
    l.push(Priority::Normal, m(1, "sync", 1));
    l.push(Priority::Normal, m(1, "sync", 2));
    let order: Vec<u8> = (0..4).map(|_| l.pop(DEFAULT).unwrap().peer).collect();
    assert_eq!(order, [1, 0, 1, 0]);
}

#[test]
fn a_sparse_peer_goes_before_fifty_backlogs() {
    let mut l = Lanes::default();
    for seq in 0..100 {
        for p in 1..=50 {
            l.push(Priority::Normal, m(p, "data", seq));
        }
    }
    // Every flooder has been served: all are backlogs now.
    for _ in 0..100 {
        l.pop(DEFAULT);
    }
    // The quiet peer's message is taken first or second, never after one of each backlog.
    for seq in 0..20 {
        l.push(Priority::Normal, m(0, "data", seq));
        let first = l.pop(DEFAULT).unwrap();
        if first.peer != 0 {
            assert_eq!(l.pop(DEFAULT).unwrap(), m(0, "data", seq));
        }
        l.pop(DEFAULT);
    }
}

#[test]
fn peers_that_keep_one_message_waiting_do_not_starve_a_backlog() {
    let mut l = Lanes::default();
    for seq in 0..1000 {
        l.push(Priority::Normal, m(0, "sync", seq));
    }
    // Ten peers each send their next message as soon as the last one is taken.
    for p in 1..=10 {
        l.push(Priority::Normal, m(p, "votes", 0));
    }
    let mut backlog = 0;
    for _ in 0..200 {
        let got = l.pop(DEFAULT).unwrap();
        if got.peer == 0 {
            backlog += 1;
        } else {
            l.push(Priority::Normal, m(got.peer, "votes", got.seq + 1));
        }
    }
    assert_eq!(backlog, 100);
}

#[test]
fn classes_share_by_weight() {
    let mut l = Lanes::default();
    for seq in 0..100 {
        l.push(Priority::High, m(0, "votes", seq));
        l.push(Priority::Normal, m(0, "blocks", seq));
        l.push(Priority::Low, m(0, "sync", seq));
    }
    let mut by = HashMap::new();
    for _ in 0..110 {
        *by.entry(l.pop(DEFAULT).unwrap().stream).or_insert(0) += 1;
    }
    assert_eq!(by["votes"], 80);
    assert_eq!(by["blocks"], 20);
    assert_eq!(by["sync"], 10);
}

#[test]
fn a_vote_waits_behind_at_most_the_lower_classes_share() {
    let mut l = Lanes::default();
    for seq in 0..100 {
        l.push(Priority::Normal, m(0, "blocks", seq));
    }
    // Votes keep coming one by one: each is taken first, or after one round's blocks.
    for seq in 0..50 {
        l.push(Priority::High, m(1, "votes", seq));
        let mut waited = 0;
        while l.pop(DEFAULT).unwrap().stream != "votes" {
            waited += 1;
        }
        assert!(waited <= WEIGHTS[1] as usize, "{waited}");
    }
}

#[test]
fn a_route_takes_the_waiting_messages_of_its_stream_along() {
    let mut l = Lanes::default();
    l.push(Priority::High, m(0, "handshake", 0));
    l.push(Priority::Normal, m(0, "data", 0));
    l.push(Priority::High, m(0, "handshake", 1));
    let lane = l.route(&Arc::from("handshake"));
    assert_eq!(l.len(DEFAULT), 1);
    assert_eq!(l.len(lane), 2);
    l.push(Priority::High, m(1, "handshake", 0));
    assert_eq!(l.pop(lane).unwrap(), m(0, "handshake", 0));
    assert_eq!(l.pop(DEFAULT).unwrap(), m(0, "data", 0));
    assert_eq!(l.pop(DEFAULT), None);
    l.unroute("handshake");
    assert_eq!(l.len(DEFAULT), 2);
    let mut back = vec![l.pop(DEFAULT).unwrap(), l.pop(DEFAULT).unwrap()];
    back.sort_by_key(|m| m.peer);
    assert_eq!(back, vec![m(0, "handshake", 1), m(1, "handshake", 0)]);
}

const STREAMS: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum Op {
    Push(u8, usize),
    Pop(bool),
    Route(usize),
    Unroute(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..5u8, 0..3usize).prop_map(|(p, s)| Op::Push(p, s)),
        3 => any::<bool>().prop_map(Op::Pop),
        1 => (0..3usize).prop_map(Op::Route),
        1 => (0..3usize).prop_map(Op::Unroute),
    ]
}

fn class_of(stream: &str) -> Priority {
    match stream {
        "a" => Priority::High,
        "b" => Priority::Normal,
        _ => Priority::Low,
    }
}

proptest! {
    /// Every message comes out once, each (peer, stream) in order, through whichever lane its
    /// stream has when it is taken; and a message waits behind at most one message of each
    /// other peer of its class, plus what the other classes' weights allow.
    #[test]
    fn order_is_kept_and_nobody_waits_behind_a_backlog(ops in proptest::collection::vec(op(), 1..400)) {
        let mut l: Lanes<M> = Lanes::default();
        let mut next: HashMap<(u8, &str), u32> = HashMap::new();
        let mut taken: HashMap<(u8, &str), u32> = HashMap::new();
        // For the message at the front of each (peer, class) queue of the default lane: pops
        // of its lane since it reached the front, and the bound on them.
        let mut pushed = 0u32;
        let mut popped = 0u32;
        for op in ops {
            match op {
                Op::Push(p, s) => {
                    let stream = STREAMS[s];
                    let seq = next.entry((p, stream)).or_insert(0);
                    l.push(class_of(stream), m(p, stream, *seq));
                    *seq += 1;
                    pushed += 1;
                }
                Op::Pop(routed) => {
                    let lane = if routed {
                        match STREAMS.iter().find_map(|s| l.route_of(s)) {
                            Some(lane) => lane,
                            None => DEFAULT,
                        }
                    } else {
                        DEFAULT
                    };
                    let before = l.len(lane);
                    if let Some(msg) = l.pop(lane) {
                        prop_assert_eq!(l.len(lane), before - 1);
                        let want = taken.entry((msg.peer, msg.stream)).or_insert(0);
                        prop_assert_eq!(msg.seq, *want, "order of {:?}", (msg.peer, msg.stream));
                        *want += 1;
                        popped += 1;
                    } else {
                        prop_assert_eq!(before, 0);
                    }
                }
                Op::Route(s) => {
                    l.route(&Arc::from(STREAMS[s]));
                }
                Op::Unroute(s) => l.unroute(STREAMS[s]),
            }
        }
        // Everything left comes out too.
        let lanes: Vec<LaneId> = std::iter::once(DEFAULT)
            .chain(STREAMS.iter().filter_map(|s| l.route_of(s)))
            .collect();
        for lane in lanes {
            while let Some(msg) = l.pop(lane) {
                let want = taken.entry((msg.peer, msg.stream)).or_insert(0);
                prop_assert_eq!(msg.seq, *want);
                *want += 1;
                popped += 1;
            }
        }
        prop_assert_eq!(pushed, popped);
    }

    /// A message that reaches the front of its peer's queue is taken within one message per
    /// other peer of its class, plus one round of the other classes' weights.
    #[test]
    fn wait_is_bounded_by_peers_not_backlogs(
        backlogs in proptest::collection::vec((0..6u8, 0..3usize, 1..50u32), 1..20),
        victim_class in 0..3usize,
    ) {
        let mut l: Lanes<M> = Lanes::default();
        for (p, s, n) in backlogs {
            for seq in 0..n {
                l.push(class_of(STREAMS[s]), m(p + 1, STREAMS[s], seq));
            }
        }
        // Take a few first, so that the round is somewhere in the middle.
        for _ in 0..7 {
            l.pop(DEFAULT);
        }
        let stream = STREAMS[victim_class];
        let peers_in_class = l.lanes[&DEFAULT].classes[victim_class].peers() as u32;
        l.push(class_of(stream), m(0, stream, 0));
        let others: u32 = WEIGHTS.iter().sum::<u32>() - WEIGHTS[victim_class];
        // Each peer ahead in the ring once, each of the other classes' credits once per round.
        let in_class = 2 * peers_in_class + 1;
        let bound = in_class + others * (in_class / WEIGHTS[victim_class] + 1) + others;
        let mut waited = 0;
        loop {
            let msg = l.pop(DEFAULT).unwrap();
            if msg.peer == 0 {
                break;
            }
            waited += 1;
        }
        prop_assert!(waited <= bound, "waited {} > {}", waited, bound);
    }
}
