//! capstan-controllers.
