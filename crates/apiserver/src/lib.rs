//! capstan-apiserver.
