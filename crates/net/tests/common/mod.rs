//! What a test needs from the machine (root, a program, a file): `husk_test_support::system`.
//! Without it a test skips with a note, unless `HUSK_REQUIRE_SYSTEM=1` (scripts/test.sh), where
//! it fails.
#![allow(unused_imports)]

pub use husk_test_support::system::*;
