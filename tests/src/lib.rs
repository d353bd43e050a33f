//! Shared helpers of the end-to-end suites: connection settings of the dev services and unique names per test.
