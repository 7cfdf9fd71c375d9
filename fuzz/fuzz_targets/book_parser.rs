//! The address-book parser (Go Glueberry's JSON file, which another process or a disk fault may
//! have written): never panics, and what it reads (peers and timed bans), written back and read
//! again, is the same.

#![no_main]

use glueberry::unstable::book::{parse, parse_bans, write_with_bans};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bans = parse_bans(data);
    if let Ok((peers, _)) = parse(data) {
        let bytes = write_with_bans(peers.values(), &bans);
        let (again, _) = parse(&bytes).expect("reads what it wrote");
        assert_eq!(again, peers);
        assert_eq!(parse_bans(&bytes), bans);
    }
});
