//! The address book across processes: a writer killed at any point leaves the old or the new
//! complete book, and a second process cannot open a book another one holds.
//!
//! The other process is this test binary run again with an environment variable that makes
//! its ignored `child` test do the work.

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use glueberry::PeerId;
use glueberry::book::BookError;
use glueberry::identity::ed25519;
use glueberry::unstable::book::Store;

const CHILD_PATH: &str = "GLUEBERRY_BOOK_CHILD_PATH";
const CHILD_MODE: &str = "GLUEBERRY_BOOK_CHILD_MODE";

fn peer(i: usize) -> PeerId {
    let mut seed = [7u8; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    let key = ed25519::SecretKey::try_from_bytes(seed).unwrap();
    PeerId::from_public_key(&ed25519::Keypair::from(key).public().into())
}

fn addr(i: usize) -> glueberry::Multiaddr {
    format!(
        "/ip4/10.0.{}.{}/tcp/{}",
        i / 256 % 256,
        i % 256,
        1000 + i % 50000
    )
    .parse()
    .unwrap()
}

#[test]
#[ignore = "the child process of the tests below"]
fn child() {
    let (Ok(path), Ok(mode)) = (std::env::var(CHILD_PATH), std::env::var(CHILD_MODE)) else {
        return;
    };
    let (store, mut book, _, _) = Store::open(Path::new(&path)).unwrap();
    println!("locked");
    match mode.as_str() {
        // Adds peers one by one, saving after each, until killed.
        "write" => loop {
            let i = book.len();
            book.add(
                peer(i),
                vec![addr(i)],
                None,
                time::OffsetDateTime::now_utc(),
            );
            store.save(&book.to_bytes()).unwrap();
        },
        // Holds the book until killed.
        _ => loop {
            std::thread::sleep(Duration::from_secs(1));
        },
    }
}

fn spawn_child(path: &Path, mode: &str) -> std::process::Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_PATH, path)
        .env(CHILD_MODE, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the child holds the lock.
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("locked") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "child ended early");
    }
    child
}

#[test]
fn a_writer_killed_at_random_points_leaves_a_complete_book() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("book.json");
    let mut last = 0;
    for round in 0..15u64 {
        let child = spawn_child(&path, "write");
        let mut child = child;
        // Kill after a pseudo-random moment (the point is to land anywhere in a save).
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
        std::thread::sleep(Duration::from_micros(
            (nanos ^ round.wrapping_mul(7919)) % 30_000,
        ));
        child.kill().unwrap();
        child.wait().unwrap();
        let (_store, book, skipped, recovered) = Store::open(&path).unwrap();
        assert!(
            recovered.is_none(),
            "round {round}: the file is never corrupt"
        );
        assert!(skipped.is_empty());
        // The book is exactly the first n peers: some complete version, never a torn one.
        let n = book.len();
        assert!(
            n >= last,
            "round {round}: a save is never lost ({n} < {last})"
        );
        for i in 0..n {
            let e = book
                .get(&peer(i))
                .unwrap_or_else(|| panic!("round {round}: peer {i} of {n} missing"));
            assert_eq!(e.addrs, vec![addr(i)]);
        }
        last = n;
    }
    assert!(last > 0, "the writer made progress");
}

#[test]
fn a_second_process_cannot_open_a_held_book() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("book.json");
    let mut holder = spawn_child(&path, "hold");
    match Store::open(&path) {
        Err(BookError::Locked(p)) => assert_eq!(p, path),
        other => panic!("{other:?}"),
    }
    holder.kill().unwrap();
    holder.wait().unwrap();
    // The lock goes with the process.
    Store::open(&path).unwrap();
}

mod node {
    use std::collections::HashMap;

    use glueberry::{Config, Event, Node, State};
    use glueberry_tests::*;

    /// Opens the book. Another test of this binary spawns child processes; a child forked at
    /// the moment the node still held the book's lock holds it too until it execs (the lock
    /// belongs to the open file, which a fork shares): wait for that, as a restarted process
    /// would not have to.
    fn open_when_free(
        path: &std::path::Path,
    ) -> (
        glueberry::unstable::book::Store,
        glueberry::unstable::book::Book,
        Vec<glueberry::unstable::book::Skipped>,
        Option<glueberry::book::Recovered>,
    ) {
        for _ in 0..100 {
            match glueberry::unstable::book::Store::open(path) {
                Err(glueberry::book::BookError::Locked(_)) => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                r => return r.unwrap(),
            }
        }
        panic!("the book stays locked");
    }

    fn config_at(path: &std::path::Path, key: &glueberry::identity::ed25519::Keypair) -> Config {
        Config::new(key.clone(), path, vec![Transport::Tcp.listen_addr()])
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn last_seen_and_keys_are_flushed_while_running() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        let key = glueberry::identity::ed25519::Keypair::generate();
        let a = started(
            config_at(&path, &key).with_book_flush_interval(std::time::Duration::from_millis(50)),
        )
        .await;
        let b = started(config(Transport::Tcp)).await;
        connect(&a, &b).await;
        tokio::join!(
            handshake(&a, b.peer_id(), true, &["data"]),
            handshake(&b, a.peer_id(), false, &["data"])
        );
        // No shutdown: the periodic flush writes last_seen and b's key. Read the file as a Go
        // node would, until it shows them.
        let entry = within(async {
            loop {
                let bytes = std::fs::read(&path).unwrap();
                let (peers, _) = glueberry::unstable::book::parse(&bytes).unwrap();
                if let Some(e) = peers.get(&b.peer_id())
                    && e.last_seen.is_some()
                    && e.public_key.is_some()
                {
                    return e.clone();
                }
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert_eq!(entry.public_key, Some(b.public_key()));
        a.shutdown().await;
        b.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_book_survives_a_restart_and_drives_auto_connect() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        let key = glueberry::identity::ed25519::Keypair::generate();
        let b = started(config(Transport::Tcp)).await;
        let evil_key = glueberry::identity::ed25519::Keypair::generate();
        let evil = glueberry::PeerId::from_public_key(&evil_key.public().into());

        let a = started(config_at(&path, &key)).await;
        a.add_peer(
            b.peer_id(),
            b.listen_addrs(),
            HashMap::from([("role".into(), "validator".into())]),
        )
        .await
        .unwrap();
        a.blacklist_peer(evil).await.unwrap();
        // The handshake records b's public key in the book.
        connect(&a, &b).await;
        tokio::join!(
            handshake(&a, b.peer_id(), true, &["data"]),
            handshake(&b, a.peer_id(), false, &["data"])
        );
        a.shutdown().await;

        // What a Go node would read: the file as written.
        let (_, book, _, _) = open_when_free(&path);
        let e = book.get(&b.peer_id()).unwrap();
        assert_eq!(e.addrs, b.listen_addrs());
        assert_eq!(e.metadata["role"], "validator");
        assert_eq!(e.public_key, Some(b.public_key()));
        assert!(e.last_seen.is_some(), "last_seen is flushed on shutdown");
        assert!(book.get(&evil).unwrap().blacklisted);
        drop(book);

        // A restarted a connects to b by itself and still refuses the blacklisted peer.
        let a = Node::new(config_at(&path, &key)).unwrap();
        let mut ev = a.subscribe_events();
        a.start().await.unwrap();
        wait_state(&mut ev, b.peer_id(), State::Connected).await;
        let listed = a.list_peers().await.unwrap();
        assert_eq!(listed.len(), 2);
        assert!(matches!(
            a.connect(evil).await,
            Err(glueberry::Error::Blacklisted(_))
        ));
        // The blacklist holds at connection level after the restart: evil's dial is refused.
        let mut raw = RawPeer::dial_as(evil_key, a.listen_addrs()[0].clone());
        let refused = match raw.outcome().await {
            Err(_) => true,
            Ok(()) => raw.outcome().await.is_err(),
        };
        assert!(refused, "the blacklisted peer's connection is refused");
        assert_eq!(a.connection_state(&evil), State::Disconnected);
        assert!(matches!(
            a.add_peer(evil, vec![], HashMap::new()).await,
            Err(glueberry::Error::Blacklisted(_))
        ));
        a.remove_peer(b.peer_id()).await.unwrap();
        assert!(a.get_peer(b.peer_id()).await.unwrap().is_none());
        a.shutdown().await;
        b.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_corrupt_book_is_kept_aside_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        std::fs::write(&path, "{ not json").unwrap();
        let key = glueberry::identity::ed25519::Keypair::generate();
        let a = Node::new(config_at(&path, &key)).unwrap();
        let mut ev = a.subscribe_events();
        a.start().await.unwrap();
        match within(ev.recv()).await.unwrap() {
            Event::BookRecovered(r) => {
                assert_eq!(std::fs::read_to_string(&r.backup).unwrap(), "{ not json");
            }
            other => panic!("{other:?}"),
        }
        assert!(a.list_peers().await.unwrap().is_empty());
        // A second node on the same book is refused with a clear error.
        assert!(matches!(
            Node::new(config_at(&path, &key)),
            Err(glueberry::Error::AddressBook(e))
                if matches!(*e, glueberry::book::BookError::Locked(_))
        ));
        a.shutdown().await;
    }
}
