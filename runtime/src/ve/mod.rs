//! Virtual environments (VEs): per-VE files in the vz format ([`conf`]) and their
//! translation to OCI runtime bundles with cgroup v2 limits ([`oci`]) for crun; the
//! backup of the OS template cache ([`backup`]); backups of VEs ([`snapshot`], in the
//! format of [`archive`], the VE held still by [`freeze`]), their restore ([`restore`])
//! and their copy off the pair ([`copyoff`]).

pub mod archive;
pub mod backup;
pub mod conf;
pub mod copyoff;
pub mod freeze;
pub mod manager;
pub mod net;
pub mod oci;
pub mod restore;
pub mod snapshot;
