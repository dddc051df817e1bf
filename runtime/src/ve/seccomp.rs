//! The seccomp filter of every VE, written into its OCI configuration (crun loads
//! it with libseccomp just before the VE's first program runs).
//!
//! Same intent as the OCI/Docker default profile, written as a deny-list: everything
//! is allowed except what lets a container's root reach the node's kernel or other
//! tenants — loading kernel code (modules, kexec, BPF), mounting, swapping,
//! rebooting, the kernel keyring, handles that open files by inode outside the VE's
//! tree, performance counters, userfaultfd, clock and time changes, namespace changes
//! (`setns`, and `unshare`/`clone` of a new user namespace, which would give an
//! unprivileged process a full capability set of its own) and io_uring (whose
//! operations bypass this filter). Each is answered `EPERM`, as without the
//! capability, so programs see the usual "operation not permitted". `clone3` answers
//! `ENOSYS`: its flags sit in memory a filter cannot read, and C libraries fall back
//! to `clone`, whose flags it can.
//!
//! `ptrace` and `process_vm_readv`/`writev` stay allowed (kernels since 4.8 check the
//! filter again after a tracer changes a system call); a VE has no `CAP_SYS_PTRACE`,
//! so it traces only its own processes.

use serde_json::{Value, json};

/// `EPERM`.
const EPERM: u32 = 1;
/// `ENOSYS`.
const ENOSYS: u32 = 38;
/// `CLONE_NEWUSER`.
const CLONE_NEWUSER: u64 = 0x1000_0000;

/// System calls a VE may not make (`EPERM`).
pub const DENIED: &[&str] = &[
    // Kernel code.
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "query_module",
    "get_kernel_syms",
    "kexec_load",
    "kexec_file_load",
    "bpf",
    "uselib",
    // Mounts and the root.
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    // The machine.
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "nfsservctl",
    "_sysctl",
    "sysfs",
    "ustat",
    "iopl",
    "ioperm",
    "vm86",
    "vm86old",
    "lookup_dcookie",
    // Time.
    "settimeofday",
    "stime",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    // The kernel keyring.
    "add_key",
    "request_key",
    "keyctl",
    // Files by handle, outside the VE's tree.
    "open_by_handle_at",
    "name_to_handle_at",
    // Observation of the node.
    "perf_event_open",
    "kcmp",
    "userfaultfd",
    // NUMA placement of the node's memory.
    "mbind",
    "set_mempolicy",
    "move_pages",
    // Namespaces.
    "setns",
    // io_uring's operations are not seen by this filter.
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
];

/// The `linux.seccomp` object of a VE's OCI configuration.
#[must_use]
pub fn profile() -> Value {
    let new_user_ns = json!([{
        "index": 0,
        "value": CLONE_NEWUSER,
        "valueTwo": CLONE_NEWUSER,
        "op": "SCMP_CMP_MASKED_EQ"
    }]);
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            { "names": DENIED, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM },
            { "names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM, "args": new_user_ns },
            { "names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM, "args": new_user_ns },
            { "names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS }
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dangerous_calls_are_denied_with_eperm() {
        let p = profile();
        assert_eq!(p["defaultAction"], "SCMP_ACT_ALLOW");
        let deny = &p["syscalls"][0];
        assert_eq!(deny["errnoRet"], 1);
        for name in [
            "kexec_load",
            "init_module",
            "finit_module",
            "delete_module",
            "mount",
            "umount2",
            "reboot",
            "swapon",
            "swapoff",
            "open_by_handle_at",
            "bpf",
            "perf_event_open",
            "keyctl",
            "add_key",
            "request_key",
            "userfaultfd",
        ] {
            assert!(
                deny["names"].as_array().unwrap().iter().any(|n| n == name),
                "{name} not denied"
            );
        }
        let mut sorted = DENIED.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), DENIED.len(), "a name is listed twice");
    }
}
