//! `EtcdRegistry`: nodes registered straight into etcd, in the original ISEK entry format.
