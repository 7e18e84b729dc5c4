//! placeholder: unpack (being written)
