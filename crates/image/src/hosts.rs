//! placeholder: hosts (being written)
