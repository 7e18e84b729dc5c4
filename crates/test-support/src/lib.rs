//! husk-test-support: placeholder (being written)
