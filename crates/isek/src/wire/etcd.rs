//! The etcd entry format of ISEK: `{"node_info": {...}, "signature": ...}`.
