//! `MemoryRegistry` against the Registry conformance suite.

use isek::MemoryRegistry;

/// The in-process registry passes every conformance check, expiry included.
#[tokio::test]
async fn memory_registry_conforms() {
    isek_testkit::conformance::check_registry(
        isek_testkit::conformance::Deadlines::Reported,
        |ttl| async move { MemoryRegistry::new(ttl) },
    )
    .await;
}
