use super::*;

fn base() -> Config {
    Config::new(
        ed25519::Keypair::generate(),
        "/tmp/book.json",
        vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
    )
}

#[test]
fn defaults_are_go_defaults() {
    let c = base();
    assert_eq!(c.validate(), Ok(()));
    assert_eq!(c.handshake_timeout, Some(Duration::from_secs(30)));
    assert_eq!(c.reconnect_max_attempts, Some(10));
    assert_eq!(c.max_message_size, 1 << 20);
    assert_eq!((c.high_watermark, c.low_watermark), (1000, 100));
    assert_eq!(c.max_stream_name_length, Some(64));
    assert_eq!(c.reconnect_base_delay, Duration::from_secs(1));
    assert_eq!(c.reconnect_max_delay, Duration::from_secs(300));
    assert_eq!(c.failed_handshake_cooldown, Duration::from_secs(60));
    assert_eq!(c.event_buffer_size, 100);
    assert_eq!(c.message_buffer_size, 1000);
    assert_eq!((c.conn_low_watermark, c.conn_high_watermark), (100, 400));
    assert_eq!(c.dial_timeout, Duration::from_secs(30));
    assert_eq!(c.max_metadata_size, Some(4096));
    assert!(c.backpressure);
    assert!(!c.reconnect_learned_peers);
    assert_eq!(c.stats_max_age, Some(Duration::from_secs(24 * 3600)));
    assert_eq!(c.stats_cleanup_interval, Duration::from_secs(3600));
    assert_eq!(
        (c.ping_interval, c.ping_timeout),
        (Duration::from_secs(15), Duration::from_secs(20))
    );
    assert_eq!(c.max_inbound_per_ip, Some(16));
    assert_eq!(c.max_strangers, Some(64));
}

#[test]
fn validation_errors() {
    assert_eq!(
        Config::new(ed25519::Keypair::generate(), "", vec![]).validate(),
        Err(ConfigError::MissingAddressBookPath)
    );
    assert_eq!(
        Config::new(ed25519::Keypair::generate(), "x", vec![]).validate(),
        Err(ConfigError::MissingListenAddrs)
    );
    assert_eq!(
        base().with_max_connections_per_peer(Some(0)).validate(),
        Err(ConfigError::Zero("max_connections_per_peer"))
    );
    assert_eq!(
        base().with_low_watermark(1000).validate(),
        Err(ConfigError::Watermarks {
            what: "flow control",
            low: 1000,
            high: 1000
        })
    );
    assert!(matches!(
        base()
            .with_reconnect_max_delay(Duration::from_millis(1))
            .validate(),
        Err(ConfigError::ReconnectDelays { .. })
    ));
    assert_eq!(
        base().with_message_buffer_size(0).validate(),
        Err(ConfigError::Zero("message_buffer_size"))
    );
    // The largest messages need budgets that can hold them.
    let big = base().with_max_message_size(Config::MAX_MESSAGE_SIZE_LIMIT);
    assert!(matches!(
        big.clone().validate(),
        Err(ConfigError::BudgetTooSmall { what, .. }) if what.contains("peer_receive_budget")
    ));
    assert!(
        big.with_peer_receive_budget(128 << 20)
            .with_receive_budget(512 << 20)
            .validate()
            .is_ok()
    );
    assert_eq!(
        base().with_receive_budget(8 << 20).validate(),
        Err(ConfigError::BudgetTooSmall {
            what: "receive_budget",
            budget: 8 << 20,
            needed: 16 << 20
        })
    );
    assert!(
        base()
            .with_max_message_size(Config::MAX_MESSAGE_SIZE_LIMIT + 1)
            .validate()
            .is_err()
    );
    assert!(
        base()
            .with_handshake_timeout(None)
            .with_reconnect_max_attempts(None)
            .validate()
            .is_ok()
    );
}

#[test]
fn frame_limit_fits_the_largest_message() {
    let c = base().with_max_message_size(Config::MAX_MESSAGE_SIZE_LIMIT);
    assert!(c.max_frame_len() <= MAX_FRAME_LEN);
    assert_eq!(base().max_frame_len(), (1 << 20) + 28 + 3);
}

#[test]
fn the_built_in_handshake_and_persistent_peers_are_checked() {
    use crate::handshake;
    let hs = |hello: Vec<u8>, streams: Vec<&str>| {
        base().with_handshake(handshake::Config::new(hello, streams))
    };
    assert_eq!(hs(b"chain".to_vec(), vec!["votes"]).validate(), Ok(()));
    assert_eq!(
        hs(vec![0; 16 * 1024], vec!["votes"]).validate(),
        Err(ConfigError::HelloTooLarge {
            size: 16 * 1024,
            max: 16 * 1024 - 1
        })
    );
    assert_eq!(
        hs(vec![], vec![]).validate(),
        Err(ConfigError::NoHandshakeStreams)
    );
    assert!(matches!(
        hs(vec![], vec!["handshake"]).validate(),
        Err(ConfigError::HandshakeStream { .. })
    ));

    let c = base();
    let me = libp2p::PeerId::from_public_key(&c.keypair.public().into());
    let other = libp2p::PeerId::random();
    let addr: Multiaddr = "/ip4/10.0.0.1/tcp/9000".parse().unwrap();
    let ok = c.clone().with_persistent_peer(other, vec![addr.clone()]);
    assert_eq!(ok.validate(), Ok(()));
    for (peer, addrs, reason) in [
        (me, vec![addr.clone()], "it is this node"),
        (other, vec![], "no address to dial"),
        (
            other,
            vec![
                addr.clone()
                    .with(libp2p::multiaddr::Protocol::P2p(libp2p::PeerId::random())),
            ],
            "an address ends in /p2p/ of another peer",
        ),
    ] {
        assert_eq!(
            c.clone().with_persistent_peer(peer, addrs).validate(),
            Err(ConfigError::PersistentPeer { peer, reason })
        );
    }
    assert_eq!(
        c.with_persistent_max_delay(Duration::ZERO).validate(),
        Err(ConfigError::Zero("persistent_max_delay"))
    );
}

#[test]
fn the_scoring_model_is_checked() {
    use crate::scoring;
    let with = |s: scoring::Config| base().with_scoring(s).validate();
    assert_eq!(with(scoring::Config::default()), Ok(()));
    let d = scoring::Config::default;
    for bad in [
        scoring::Config {
            penalties: [1.0, -1.0, 1.0],
            ..d()
        },
        scoring::Config {
            penalties: [f64::NAN, 1.0, 1.0],
            ..d()
        },
        scoring::Config {
            half_life: Duration::ZERO,
            ..d()
        },
        scoring::Config {
            ban_duration: scoring::MAX_BAN + Duration::from_secs(1),
            ..d()
        },
        scoring::Config {
            disconnect_below: 0.0,
            ..d()
        },
        scoring::Config {
            ban_below: -10.0,
            ..d()
        },
    ] {
        assert!(
            matches!(with(bad.clone()), Err(ConfigError::Scoring(_))),
            "{bad:?}"
        );
    }
    assert!(
        base()
            .with_stream_quota("votes", crate::quota::Quota::messages(0))
            .validate()
            .is_err()
    );
    assert!(base().with_max_new_streams(Some(0)).validate().is_err());
}
