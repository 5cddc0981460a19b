//! `MemoryRegistry` against the Registry conformance suite.

use isek::MemoryRegistry;

/// The in-process registry passes every conformance check, expiry included.
#[tokio::test]
async fn memory_registry_conforms() {
    isek_testkit::conformance::check_registry(|ttl| async move { MemoryRegistry::new(ttl) }).await;
}
