#![deny(missing_docs)]
//! glueberry
pub mod crypto;
pub mod wire;
