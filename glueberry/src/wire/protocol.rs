//! Protocol IDs and stream names.

use libp2p::StreamProtocol;

/// The reserved name of the unencrypted handshake stream.
pub const HANDSHAKE: &str = "handshake";

/// The protocol ID of the handshake stream: `/glueberry/stream/handshake/1.0.0`.
pub const HANDSHAKE_PROTOCOL: StreamProtocol =
    StreamProtocol::new("/glueberry/stream/handshake/1.0.0");

/// The prefix of every Glueberry protocol ID.
pub const PREFIX: &str = "/glueberry/stream/";

/// The suffix of every Glueberry protocol ID.
pub const SUFFIX: &str = "/1.0.0";

/// The protocol ID of the stream named `name`: `/glueberry/stream/<name>/1.0.0`.
///
/// `name` must have passed [`validate_name`]; any other string gives an ID that no Glueberry
/// node registers.
pub fn protocol_id(name: &str) -> StreamProtocol {
    if name == HANDSHAKE {
        return HANDSHAKE_PROTOCOL;
    }
    StreamProtocol::try_from_owned(format!("{PREFIX}{name}{SUFFIX}"))
        .expect("the ID starts with '/'")
}

/// Why a stream name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("stream name is empty")]
    Empty,
    /// The name is longer than the configured maximum, in bytes.
    #[error("stream name is {len} bytes, the maximum is {max}")]
    TooLong {
        /// Length of the name in bytes.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The name holds a character other than a letter, a digit, `-` or `_`.
    #[error("stream name holds {0:?}; only letters, digits, '-' and '_' are allowed")]
    InvalidChar(char),
    /// `handshake` is reserved for the unencrypted handshake stream.
    #[error("\"handshake\" is reserved for the handshake stream")]
    Reserved,
}

/// Checks a stream name as Go Glueberry does: non-empty, at most `max_len` bytes (`None`: no
/// limit), every character a Unicode letter or digit, `-` or `_`.
///
/// This does not refuse [`HANDSHAKE`]; [`validate_encrypted_name`] does.
pub fn validate_name(name: &str, max_len: Option<usize>) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if let Some(max) = max_len
        && name.len() > max
    {
        return Err(NameError::TooLong {
            len: name.len(),
            max,
        });
    }
    if let Some(c) = name.chars().find(|c| !allowed(*c)) {
        return Err(NameError::InvalidChar(c));
    }
    Ok(())
}

/// Go's rule: `unicode.IsLetter` (general category L), `unicode.IsDigit` (Nd), `-` or `_`.
/// (Rust's `is_alphabetic` and `is_numeric` take more: letter numbers such as `Ⅻ`, other
/// numbers such as `²`, and combining marks.)
fn allowed(c: char) -> bool {
    use unicode_general_category::{GeneralCategory as G, get_general_category};
    c == '-'
        || c == '_'
        || matches!(
            get_general_category(c),
            G::UppercaseLetter
                | G::LowercaseLetter
                | G::TitlecaseLetter
                | G::ModifierLetter
                | G::OtherLetter
                | G::DecimalNumber
        )
}

/// [`validate_name`], and the name is not the reserved [`HANDSHAKE`].
pub fn validate_encrypted_name(name: &str, max_len: Option<usize>) -> Result<(), NameError> {
    if name == HANDSHAKE {
        return Err(NameError::Reserved);
    }
    validate_name(name, max_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_go() {
        assert_eq!(
            HANDSHAKE_PROTOCOL.as_ref(),
            "/glueberry/stream/handshake/1.0.0"
        );
        assert_eq!(protocol_id("chat").as_ref(), "/glueberry/stream/chat/1.0.0");
        assert_eq!(
            protocol_id("messages").as_ref(),
            "/glueberry/stream/messages/1.0.0"
        );
    }

    #[test]
    fn names() {
        assert_eq!(validate_name("a-b_C9", Some(64)), Ok(()));
        assert_eq!(validate_name("blöck", Some(64)), Ok(()));
        // Letters and decimal digits of any script, as Go's IsLetter / IsDigit.
        assert_eq!(validate_name("區塊٣", Some(64)), Ok(()));
        // Not letters or decimal digits to Go, though Rust's is_alphabetic / is_numeric
        // would take them.
        for c in ['²', 'Ⅻ', '½', '\u{093E}'] {
            assert_eq!(
                validate_name(&format!("a{c}"), Some(64)),
                Err(NameError::InvalidChar(c))
            );
        }
        assert_eq!(validate_name("", Some(64)), Err(NameError::Empty));
        assert_eq!(
            validate_name("a/b", Some(64)),
            Err(NameError::InvalidChar('/'))
        );
        assert_eq!(validate_name("a b", None), Err(NameError::InvalidChar(' ')));
        assert_eq!(
            validate_name(&"x".repeat(65), Some(64)),
            Err(NameError::TooLong { len: 65, max: 64 })
        );
        assert_eq!(validate_name(&"x".repeat(65), None), Ok(()));
        assert_eq!(
            validate_encrypted_name("handshake", Some(64)),
            Err(NameError::Reserved)
        );
    }
}
