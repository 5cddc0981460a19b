//! A real etcd server for tests, on free loopback ports, stopped on drop.
