//! The entry a child process of this binary runs (see `taxiway_tests::child`).

/// Not a test: `child::spawn` re-executes this binary on it, with the settings of a projector
/// in the environment; without them it does nothing.
#[test]
#[ignore = "the entry of a projector child process (taxiway_tests::child::spawn)"]
fn projector_entry() {
    taxiway_tests::child::entry().unwrap();
}
