//! The entries child processes of this binary run (see `taxiway_tests::child` and `taxiway_tests::api_child`).

/// Not a test: `child::spawn` re-executes this binary on it, with the settings of a projector
/// in the environment; without them it does nothing.
#[test]
#[ignore = "the entry of a projector child process (taxiway_tests::child::spawn)"]
fn projector_entry() {
    taxiway_tests::child::entry().unwrap();
}

/// Not a test: `node_child::spawn` re-executes this binary on it, with a `taxiway` command line
/// in the environment; without it it does nothing.
#[test]
#[ignore = "the entry of a taxiway child process (taxiway_tests::node_child::spawn)"]
fn node_entry() {
    taxiway_tests::node_child::entry().unwrap();
}

/// Not a test: `api_child::spawn` re-executes this binary on it, with the settings of an API
/// replica in the environment; without them it does nothing.
#[test]
#[ignore = "the entry of an API child process (taxiway_tests::api_child::spawn)"]
fn api_entry() {
    taxiway_tests::api_child::entry().unwrap();
}
