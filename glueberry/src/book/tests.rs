use std::collections::BTreeMap;

use libp2p::identity::ed25519;
use proptest::prelude::*;
use time::OffsetDateTime;

use super::format::parse;
use super::*;

fn peer(n: u8) -> PeerId {
    let key = ed25519::SecretKey::try_from_bytes([n; 32]).unwrap();
    PeerId::from_public_key(&ed25519::Keypair::from(key).public().into())
}

/// A Go-format file written by hand from the specification.
fn go_file(p: PeerId) -> String {
    format!(
        r#"{{
  "version": 1,
  "peers": {{
    "{p}": {{
      "peer_id": "{p}",
      "public_key": "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
      "metadata": {{
        "name": "peer"
      }},
      "last_seen": "0001-01-01T00:00:00Z",
      "blacklisted": false,
      "created_at": "2026-01-29T14:01:41.123456789+02:00",
      "updated_at": "2026-01-29T14:01:42.5+02:00",
      "multiaddrs": [
        "/ip4/127.0.0.1/tcp/9001",
        "not a multiaddr"
      ]
    }}
  }}
}}"#
    )
}

#[test]
fn reads_a_go_file() {
    let p = peer(1);
    let (peers, skipped) = parse(go_file(p).as_bytes()).unwrap();
    let e = &peers[&p];
    assert_eq!(e.public_key.unwrap()[..4], [0xd7, 0x5a, 0x98, 0x01]);
    assert_eq!(e.metadata["name"], "peer");
    assert_eq!(e.last_seen, None);
    assert!(!e.blacklisted);
    assert_eq!(e.created_at.nanosecond(), 123_456_789);
    assert_eq!(e.created_at.offset().whole_hours(), 2);
    assert_eq!(
        e.addrs,
        vec!["/ip4/127.0.0.1/tcp/9001".parse::<Multiaddr>().unwrap()]
    );
    assert_eq!(
        e.raw_addrs.len(),
        2,
        "an address that does not parse is kept"
    );
    assert_eq!(
        skipped,
        vec![Skipped {
            peer: p,
            addr: "not a multiaddr".into()
        }]
    );
}

#[test]
fn writes_what_go_reads_and_round_trips() {
    let p = peer(1);
    let (peers, _) = parse(go_file(p).as_bytes()).unwrap();
    let book = Book::from_entries(peers);
    let bytes = book.to_bytes();
    let text = String::from_utf8(bytes.clone()).unwrap();
    // Go's layout: 2-space indent, fields in Go's order, zero time for "never".
    let order = [
        "\"peer_id\"",
        "\"public_key\"",
        "\"metadata\"",
        "\"last_seen\"",
        "\"blacklisted\"",
        "\"created_at\"",
        "\"updated_at\"",
        "\"multiaddrs\"",
    ];
    let at: Vec<usize> = order.iter().map(|f| text.find(f).unwrap()).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert!(text.starts_with("{\n  \"version\": 1,\n  \"peers\": {\n"));
    assert!(text.contains("\"last_seen\": \"0001-01-01T00:00:00Z\""));
    assert!(text.contains("\"created_at\": \"2026-01-29T14:01:41.123456789+02:00\""));
    let (again, _) = parse(&bytes).unwrap();
    assert_eq!(Book::from_entries(again), book);
}

#[test]
fn empty_fields_are_left_out() {
    let mut book = Book::default();
    book.add(peer(2), vec![], None, OffsetDateTime::UNIX_EPOCH);
    let text = String::from_utf8(book.to_bytes()).unwrap();
    assert!(
        !text.contains("public_key") && !text.contains("metadata"),
        "{text}"
    );
    assert_eq!(Book::from_entries(parse(text.as_bytes()).unwrap().0), book);
}

#[test]
fn book_operations() {
    let now = OffsetDateTime::now_utc();
    let mut book = Book::default();
    let (a, b) = (peer(1), peer(2));
    book.add(
        a,
        vec!["/ip4/1.2.3.4/tcp/1".parse().unwrap()],
        Some(BTreeMap::from([("k".into(), "v".into())])),
        now,
    );
    book.add(a, vec![], None, now);
    assert!(book.get(&a).unwrap().addrs.is_empty());
    assert_eq!(
        book.get(&a).unwrap().metadata["k"],
        "v",
        "metadata kept when not given"
    );
    book.set_blacklisted(b, false, now);
    assert!(
        book.get(&b).is_none(),
        "unblacklisting an unknown peer adds nothing"
    );
    book.set_blacklisted(b, true, now);
    assert!(book.get(&b).unwrap().blacklisted);
    assert!(book.set_public_key(&a, [7; 32], now));
    assert!(!book.set_public_key(&a, [7; 32], now));
    assert!(book.touch(&a, now));
    assert!(!book.touch(&peer(3), now));
    assert!(book.remove(&a));
    assert!(!book.remove(&a));
    assert_eq!(book.len(), 1);
}

#[test]
fn bad_content_is_refused_with_a_reason() {
    let p = peer(1);
    for (bytes, want_corrupt) in [
        ("{", true),
        ("[]", true),
        (r#"{"version": "one"}"#, true),
        (
            r#"{"peers": {"not-a-peer-id": {"peer_id": "not-a-peer-id"}}}"#,
            true,
        ),
        (
            &*go_file(p).replace("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", "!!"),
            true,
        ),
        (
            &*go_file(p).replace("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", "AAAA"),
            true,
        ),
        (
            &*go_file(p).replace("2026-01-29T14:01:41.123456789+02:00", "yesterday"),
            true,
        ),
        (r#"{"version": 2, "peers": {}}"#, false),
    ] {
        match parse(bytes.as_bytes()) {
            Err(ParseError::Corrupt(_)) => assert!(want_corrupt, "{bytes}"),
            Err(ParseError::UnsupportedVersion(2)) => assert!(!want_corrupt),
            other => panic!("{bytes}: {other:?}"),
        }
    }
    assert!(parse(b"").unwrap().0.is_empty());
    assert!(parse(b" \n").unwrap().0.is_empty());
}

#[test]
fn store_persists_atomically_and_locks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/book.json");
    let (store, mut book, _, recovered) = Store::open(&path).unwrap();
    assert!(book.is_empty() && recovered.is_none());
    book.add(
        peer(1),
        vec!["/ip4/1.2.3.4/tcp/1".parse().unwrap()],
        None,
        OffsetDateTime::now_utc(),
    );
    store.save(&book.to_bytes()).unwrap();
    assert!(!path.with_file_name("book.json.tmp").exists());
    // A second opener, in this process or another, is refused while the first holds it.
    assert!(matches!(Store::open(&path), Err(BookError::Locked(_))));
    let lock = path.with_file_name("book.json.lock");
    assert!(lock.exists());
    drop(store);
    assert!(!lock.exists(), "a clean close leaves no lock file");
    let (_store, again, _, _) = Store::open(&path).unwrap();
    assert_eq!(again, book);
}

#[test]
fn corrupt_files_are_kept_aside_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("book.json");
    for round in 0..2 {
        std::fs::write(&path, format!("garbage {round}")).unwrap();
        let (_store, book, _, recovered) = Store::open(&path).unwrap();
        assert!(book.is_empty());
        let r = recovered.expect("recovered");
        let want = if round == 0 {
            "book.json.bak"
        } else {
            "book.json.bak.1"
        };
        assert_eq!(r.backup.file_name().unwrap(), want);
        assert_eq!(
            std::fs::read_to_string(&r.backup).unwrap(),
            format!("garbage {round}")
        );
    }
}

#[test]
fn unknown_versions_and_huge_files_are_errors_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("book.json");
    std::fs::write(&path, r#"{"version": 7, "peers": {}}"#).unwrap();
    assert!(matches!(
        Store::open(&path),
        Err(BookError::Unsupported { .. })
    ));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        r#"{"version": 7, "peers": {}}"#
    );
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(store::MAX_FILE_SIZE + 1).unwrap();
    assert!(matches!(
        Store::open(&path),
        Err(BookError::TooLarge { .. })
    ));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn arbitrary_edits_of_a_good_file_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = go_file(peer(1)).into_bytes();
        for (i, b) in edits {
            let at = i.index(bytes.len());
            bytes[at] = b;
        }
        let _ = parse(&bytes);
    }
}

#[test]
fn timed_bans_are_kept_in_the_file_beside_go_s_fields() {
    let (p, q) = (peer(1), peer(2));
    let until = OffsetDateTime::parse(
        "2030-01-01T00:00:00Z",
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let mut book = Book::from_entries(parse(go_file(p).as_bytes()).unwrap().0);
    book.ban(q, until);
    book.ban(q, until - time::Duration::hours(1)); // a shorter one does not shorten it
    let bytes = book.to_bytes();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.contains("\"bans\""), "{text}");
    // Go's reader ignores the field; ours reads the bans back, and the peers as before.
    let (peers, _) = parse(&bytes).unwrap();
    assert_eq!(peers.len(), 1);
    let bans = super::format::parse_bans(&bytes);
    assert_eq!(bans.get(&q), Some(&until));
    assert!(super::format::parse_bans(go_file(p).as_bytes()).is_empty());
    // A ban that does not parse is dropped, not the file.
    let bad = text.replace(&q.to_string(), "not-a-peer");
    assert!(super::format::parse_bans(bad.as_bytes()).is_empty());
    assert!(book.unban(&q));
    assert!(!book.to_bytes().windows(6).any(|w| w == b"\"bans\""));
    // A bans field of another shape costs the bans, not the book.
    let odd = text
        .replacen("\"bans\": {", "\"bans\": [{", 1)
        .replacen("\n  }\n}", "\n  }]\n}", 1);
    assert!(parse(odd.as_bytes()).is_ok(), "{odd}");
    assert!(super::format::parse_bans(odd.as_bytes()).is_empty());
}
