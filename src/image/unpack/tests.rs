//! Tests for layer unpacking (being written).
