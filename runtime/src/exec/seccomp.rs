//! The Linux backend's default seccomp profile.
//!
//! Docker's default profile allows a list of system calls and denies the
//! rest; the calls it leaves out are the ones that reach kernel
//! facilities a container must not use (modules, kexec, keyrings, mounts,
//! namespaces, clocks, swap, BPF, perf, other processes' memory). wharf
//! denies that set with `EPERM` and allows everything else, plus
//! `clone` with a namespace flag (`EPERM`) and `clone3` (`ENOSYS`, so
//! that libcs fall back to `clone`, whose flags a filter can read), as
//! Docker does. The filter is built with seccompiler (pure Rust, no
//! libseccomp) and installed by the container's init right before it
//! execs the process, after `no_new_privs`.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// System calls denied with `EPERM`.
const DENIED: &[libc::c_long] = &[
    libc::SYS_acct,
    libc::SYS_add_key,
    libc::SYS_bpf,
    libc::SYS_clock_adjtime,
    libc::SYS_clock_settime,
    libc::SYS_delete_module,
    libc::SYS_finit_module,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fsopen,
    libc::SYS_fspick,
    libc::SYS_get_mempolicy,
    libc::SYS_init_module,
    libc::SYS_kcmp,
    libc::SYS_kexec_file_load,
    libc::SYS_kexec_load,
    libc::SYS_keyctl,
    libc::SYS_lookup_dcookie,
    libc::SYS_mbind,
    libc::SYS_mount,
    libc::SYS_mount_setattr,
    libc::SYS_move_mount,
    libc::SYS_move_pages,
    libc::SYS_name_to_handle_at,
    libc::SYS_nfsservctl,
    libc::SYS_open_by_handle_at,
    libc::SYS_open_tree,
    libc::SYS_perf_event_open,
    libc::SYS_pivot_root,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_quotactl,
    libc::SYS_reboot,
    libc::SYS_request_key,
    libc::SYS_set_mempolicy,
    libc::SYS_setns,
    libc::SYS_settimeofday,
    libc::SYS_swapoff,
    libc::SYS_swapon,
    libc::SYS_umount2,
    libc::SYS_unshare,
    libc::SYS_userfaultfd,
];

/// Calls that exist only on x86_64 among the architectures wharf builds
/// for.
#[cfg(target_arch = "x86_64")]
const DENIED_X86_64: &[libc::c_long] = &[
    libc::SYS_ioperm,
    libc::SYS_iopl,
    libc::SYS__sysctl,
    libc::SYS_uselib,
    libc::SYS_ustat,
    libc::SYS_sysfs,
];
#[cfg(not(target_arch = "x86_64"))]
const DENIED_X86_64: &[libc::c_long] = &[];

/// `clone` flags that create namespaces.
const NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// The compiled default profile for this machine's architecture: two
/// filters, installed in order (the kernel applies the strictest answer).
pub(crate) fn default_profile() -> Result<Vec<BpfProgram>, String> {
    let err = |e: &dyn std::fmt::Display| format!("seccomp profile: {e}");
    let arch: seccompiler::TargetArch = std::env::consts::ARCH
        .try_into()
        .map_err(|e| format!("seccomp profile: {e:?}"))?;
    let mut denied: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &nr in DENIED.iter().chain(DENIED_X86_64) {
        denied.insert(nr, Vec::new());
    }
    // `clone` with any namespace flag: one rule per flag (rules are or-ed).
    let mut clone_rules = Vec::new();
    for bit in 0..64 {
        let flag = 1u64 << bit;
        if NAMESPACE_FLAGS & flag == 0 {
            continue;
        }
        let cond = SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(flag),
            flag,
        )
        .map_err(|e| err(&e))?;
        clone_rules.push(SeccompRule::new(vec![cond]).map_err(|e| err(&e))?);
    }
    denied.insert(libc::SYS_clone, clone_rules);
    let eperm = SeccompFilter::new(
        denied,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| err(&e))?;
    let enosys = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(|e| err(&e))?;
    Ok(vec![
        BpfProgram::try_from(eperm).map_err(|e| err(&e))?,
        BpfProgram::try_from(enosys).map_err(|e| err(&e))?,
    ])
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_profile_compiles_for_this_machine() {
        let programs = super::default_profile().unwrap();
        assert_eq!(programs.len(), 2);
        assert!(programs.iter().all(|p| !p.is_empty()));
    }
}
