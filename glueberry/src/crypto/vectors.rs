//! Every vector of `testdata/glueberry-v1.json`, made by running Go Glueberry's own code.

use serde_json::Value;

use super::*;
use crate::wire::{DecodeError, MAX_FRAME_LEN, codec};

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/glueberry-v1.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn h(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

fn seed(v: &Value) -> [u8; 32] {
    h(v).try_into().unwrap()
}

#[test]
fn identity_keys() {
    let v = vectors();
    for name in ["A", "B"] {
        let k = &v["keys"][name];
        let local = LocalKey::from_ed25519_seed(&seed(&k["ed25519_seed"]));
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed(&k["ed25519_seed"]));
        assert_eq!(
            signing.verifying_key().to_bytes().to_vec(),
            h(&k["ed25519_pub"])
        );
        assert_eq!(
            local.x25519_secret_bytes().to_vec(),
            h(&k["x25519_priv"]),
            "{name}"
        );
        assert_eq!(
            local.x25519_public().to_vec(),
            h(&k["x25519_pub"]),
            "{name}"
        );
        assert_eq!(
            x25519_public_from_ed25519(&h(&k["ed25519_pub"]))
                .unwrap()
                .to_vec(),
            h(&k["x25519_pub"]),
            "{name}: Edwards to Montgomery"
        );
    }
}

#[test]
fn shared_secret_and_stream_key() {
    let v = vectors();
    let a = LocalKey::from_ed25519_seed(&seed(&v["keys"]["A"]["ed25519_seed"]));
    let b = LocalKey::from_ed25519_seed(&seed(&v["keys"]["B"]["ed25519_seed"]));
    let a_pub = h(&v["keys"]["A"]["ed25519_pub"]);
    let b_pub = h(&v["keys"]["B"]["ed25519_pub"]);
    assert_eq!(
        a.shared_secret(&b_pub).unwrap().to_vec(),
        h(&v["ecdh"]["x25519_shared_AB"])
    );
    assert_eq!(
        b.shared_secret(&a_pub).unwrap().to_vec(),
        h(&v["ecdh"]["x25519_shared_BA"])
    );
    assert_eq!(
        a.stream_key(&b_pub).unwrap().to_vec(),
        h(&v["ecdh"]["shared_key_from_A"])
    );
    assert_eq!(
        b.stream_key(&a_pub).unwrap().to_vec(),
        h(&v["ecdh"]["shared_key_from_B"])
    );
    assert_eq!(h(&v["ecdh"]["hkdf_info"]), HKDF_INFO);
}

#[test]
fn aead_bodies_and_frames() {
    let v = vectors();
    for (name, case) in v["aead"].as_object().unwrap() {
        if !case.is_object() {
            continue;
        }
        let key: [u8; 32] = h(&case["key"]).try_into().unwrap();
        let cipher = Cipher::new(&key);
        let nonce_bytes: [u8; 12] = h(&case["nonce"]).try_into().unwrap();
        let mut buf = h(&case["plaintext"]);
        let tag = cipher.seal_with_nonce(nonce(nonce_bytes), &mut buf);
        assert_eq!(buf, h(&case["ciphertext"]), "{name}");
        assert_eq!(tag.to_vec(), h(&case["tag"]), "{name}");

        let body = h(&case["body"]);
        assert_eq!(body.len() as u64, case["body_len"].as_u64().unwrap());
        let mut frame = Vec::new();
        codec::put_header(body.len(), &mut frame);
        frame.extend_from_slice(&body);
        assert_eq!(frame, h(&case["frame"]), "{name}: frame");

        let mut opened = body.clone();
        let range = cipher.open_in_place(&mut opened).unwrap();
        assert_eq!(
            opened[range].to_vec(),
            h(&case["plaintext"]),
            "{name}: open"
        );

        let mut tampered = body.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(cipher.open_in_place(&mut tampered), Err(OpenError::BadTag));
        assert_eq!(
            cipher.open_in_place(&mut body[..27].to_vec()),
            Err(OpenError::TooShort(27))
        );
    }
}

#[test]
fn random_nonce_roundtrip() {
    let cipher = Cipher::new(&[7; 32]);
    let mut a = [0u8; NONCE_LEN + 5];
    a[NONCE_LEN..].copy_from_slice(b"hello");
    let tag = cipher.seal_in_place(&mut a);
    let mut b = a.to_vec();
    b.extend_from_slice(&tag);
    let r = cipher.open_in_place(&mut b).unwrap();
    assert_eq!(&b[r], b"hello");
    let mut c = [0u8; NONCE_LEN + 5];
    c[NONCE_LEN..].copy_from_slice(b"hello");
    cipher.seal_in_place(&mut c);
    assert_ne!(a[..NONCE_LEN], c[..NONCE_LEN], "nonces are random");
}

/// Nonces come from a pool refilled from the OS: across several refills none repeats and none
/// is the wiped (zero) pattern.
#[test]
fn nonces_never_repeat_across_pool_refills() {
    let cipher = Cipher::new(&[7; 32]);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..2000 {
        let mut body = [0u8; NONCE_LEN + 1];
        cipher.seal_in_place(&mut body);
        let nonce: [u8; NONCE_LEN] = body[..NONCE_LEN].try_into().unwrap();
        assert_ne!(nonce, [0; NONCE_LEN]);
        assert!(seen.insert(nonce), "a nonce repeated");
    }
}

#[test]
fn frames() {
    let v = vectors();
    for case in v["frames"].as_array().unwrap() {
        let body = h(&case["body"]);
        let mut frame = Vec::new();
        codec::put_header(body.len(), &mut frame);
        frame.extend_from_slice(&body);
        assert_eq!(frame, h(&case["frame"]), "{}", case["name"]);
        assert_eq!(
            codec::wire_len(body.len()) as u64,
            case["frame_len"].as_u64().unwrap()
        );
        let (msgs, err) = codec::decode_all(&frame, MAX_FRAME_LEN);
        assert!(err.is_none());
        assert_eq!(msgs, vec![bytes::Bytes::from(body)]);
    }
}

#[test]
fn prefixes() {
    let v = vectors();
    for case in v["prefixes"].as_array().unwrap() {
        let body_len = case["body_len"].as_u64().unwrap() as usize;
        if case.get("writer_error").is_some() {
            assert!(
                codec::outer_len(body_len) > MAX_FRAME_LEN,
                "{body_len} must be refused"
            );
            continue;
        }
        let mut prefix = Vec::new();
        codec::put_header(body_len, &mut prefix);
        assert_eq!(prefix, h(&case["prefix"]), "body_len {body_len}");
        assert_eq!(
            codec::wire_len(body_len) as u64,
            case["frame_len"].as_u64().unwrap()
        );
        assert!(codec::outer_len(body_len) <= MAX_FRAME_LEN);
    }
}

#[test]
fn decode_outcomes() {
    let v = vectors();
    for case in v["decode"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (msgs, err) = codec::decode_all(&h(&case["stream"]), MAX_FRAME_LEN);
        let want: Vec<Vec<u8>> = case["messages"].as_array().unwrap().iter().map(h).collect();
        let got: Vec<Vec<u8>> = msgs.iter().map(|m| m.to_vec()).collect();
        assert_eq!(got, want, "{name}: messages");
        assert_eq!(err.is_some(), !case["error"].is_null(), "{name}: {err:?}");
        let expected_kind = match name {
            "empty_outer_frame" | "good_then_garbage" => Some("empty"),
            "truncated_body" => Some("truncated"),
            "inner_longer_than_frame" | "inner_huge_length" => Some("inner"),
            "outer_over_64MiB" | "outer_max_uint64" => Some("too_large"),
            "varint_10th_byte_2" | "varint_10th_byte_continuation" => Some("overflow"),
            _ => None,
        };
        let kind = err.as_ref().map(|e| match e {
            DecodeError::EmptyFrame => "empty",
            DecodeError::Truncated => "truncated",
            DecodeError::InnerOverrun => "inner",
            DecodeError::FrameTooLarge { .. } => "too_large",
            DecodeError::VarintOverflow => "overflow",
            DecodeError::Io(_) => "io",
        });
        assert_eq!(kind, expected_kind, "{name}");
    }
}

#[test]
fn pubkey_edge_cases() {
    let v = vectors();
    let a = LocalKey::from_ed25519_seed(&seed(&v["keys"]["A"]["ed25519_seed"]));
    for case in v["pubkey_edge_cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let key = h(&case["ed25519_pub"]);
        let converted = x25519_public_from_ed25519(&key);
        match &case["x25519_pub"] {
            Value::Null => assert!(converted.is_err(), "{name}"),
            x => assert_eq!(converted.unwrap().to_vec(), h(x), "{name}"),
        }
        if case["convert_error"].is_string() {
            let want = if key.len() != 32 {
                KeyError::WrongLength(key.len())
            } else {
                KeyError::NotACurvePoint
            };
            assert_eq!(x25519_public_from_ed25519(&key), Err(want), "{name}");
        }
        let derived = a.stream_key(&key);
        match &case["shared_key_with_A"] {
            Value::Null => assert!(derived.is_err(), "{name}"),
            k => assert_eq!(derived.clone().unwrap().to_vec(), h(k), "{name}"),
        }
        if case["derive_error"]
            .as_str()
            .is_some_and(|e| e.contains("low order"))
        {
            assert_eq!(derived, Err(KeyError::LowOrder), "{name}");
        }
    }
}
