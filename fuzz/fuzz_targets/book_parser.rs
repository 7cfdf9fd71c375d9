//! The address-book parser (Go Glueberry's JSON file, which another process or a disk fault may
//! have written): never panics, and what it reads, written back and read again, is the same.

#![no_main]

use glueberry::unstable::book::{parse, write};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((peers, _)) = parse(data) {
        let bytes = write(peers.values());
        let (again, _) = parse(&bytes).expect("reads what it wrote");
        assert_eq!(again, peers);
    }
});
