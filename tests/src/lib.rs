//! Shared harness of kiln's end-to-end tests.
