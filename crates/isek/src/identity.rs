//! Node identities: a P-256 key pair owned by the node, and the signatures made with it.
