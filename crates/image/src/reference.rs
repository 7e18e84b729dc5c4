//! placeholder: reference (being written)
