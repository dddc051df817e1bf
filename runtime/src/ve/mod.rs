//! Virtual environments (VEs): per-VE files in the vz format ([`conf`]) and their
//! translation to OCI runtime bundles with cgroup v2 limits ([`oci`]) for crun; the
//! backup of the OS template cache ([`backup`]).

pub mod backup;
pub mod conf;
pub mod manager;
pub mod net;
pub mod oci;
