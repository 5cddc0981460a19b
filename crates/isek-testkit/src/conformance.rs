//! The Registry conformance suite: the same checks against every backend.
