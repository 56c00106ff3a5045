//! End-to-end tests for wharf (see e2e/).
