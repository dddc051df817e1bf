//! Kernel modules of the node: the lock file's list plus its dependencies,
//! resolved from the kernel package's own `modules.dep`, then indexed again
//! with `depmod` for the subset so that the node's coldplug finds them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::process::Command;

use crate::ImageError;
use crate::cpio::Tree;
use crate::host::run;
use crate::lock::KernelLock;

/// Module name as the kernel spells it (`-` and `_` are the same).
pub fn normalise(name: &str) -> String {
    name.replace('-', "_")
}

/// Parses `modules.dep` into path → dependency paths.
pub fn parse_dep(text: &str) -> BTreeMap<String, Vec<String>> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, deps)| {
            (
                m.trim().to_owned(),
                deps.split_whitespace().map(str::to_owned).collect(),
            )
        })
        .collect()
}

/// Module name of a `modules.dep` path (`kernel/fs/ext4/ext4.ko` → `ext4`).
pub fn name_of(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    normalise(stem)
}

/// The paths of `wanted` and everything they depend on; unknown names are
/// returned as errors (a typo in the lock file must not go unnoticed).
pub fn closure(
    dep: &BTreeMap<String, Vec<String>>,
    wanted: &[String],
    builtin: &BTreeSet<String>,
) -> Result<BTreeSet<String>, String> {
    let by_name: BTreeMap<String, &String> = dep.keys().map(|p| (name_of(p), p)).collect();
    let mut out = BTreeSet::new();
    let mut todo = Vec::new();
    for w in wanted {
        let n = normalise(w);
        match by_name.get(&n) {
            Some(p) => todo.push((*p).clone()),
            None if builtin.contains(&n) => {}
            None => return Err(w.clone()),
        }
    }
    while let Some(p) = todo.pop() {
        if out.insert(p.clone())
            && let Some(ds) = dep.get(&p)
        {
            todo.extend(ds.iter().cloned());
        }
    }
    Ok(out)
}

pub(crate) fn add_modules(
    tree: &mut Tree,
    kernel_root: &Path,
    kernel: &KernelLock,
    work: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<(), ImageError> {
    let rel = &kernel.release;
    let moddir = kernel_root.join("lib/modules").join(rel);
    let dep_file = moddir.join("modules.dep");
    if !dep_file.exists() {
        run(Command::new("depmod").arg("-b").arg(kernel_root).arg(rel))?;
    }
    let dep = parse_dep(
        &fs::read_to_string(&dep_file).map_err(|source| ImageError::Io {
            path: dep_file.clone(),
            source,
        })?,
    );
    let builtin_file = moddir.join("modules.builtin");
    let builtin: BTreeSet<String> = fs::read_to_string(&builtin_file)
        .unwrap_or_default()
        .lines()
        .map(name_of)
        .collect();
    let set = closure(&dep, &kernel.modules, &builtin).map_err(|m| {
        ImageError::Missing(format!(
            "kernel module {m} (image/packages.lock) is not in {}",
            kernel.package
        ))
    })?;
    log(&format!(
        "kernel modules: {} asked for, {} with dependencies",
        kernel.modules.len(),
        set.len()
    ));

    // Stage the subset and let depmod index it.
    let stage = work.join("modules");
    let sdir = stage.join("lib/modules").join(rel);
    for p in &set {
        let dst = sdir.join(p);
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent).map_err(|source| ImageError::Io {
                path: parent.to_owned(),
                source,
            })?;
        }
        let src = moddir.join(p);
        fs::copy(&src, &dst).map_err(|source| ImageError::Io { path: src, source })?;
    }
    for f in [
        "modules.order",
        "modules.builtin",
        "modules.builtin.modinfo",
    ] {
        let src = moddir.join(f);
        fs::copy(&src, sdir.join(f)).map_err(|source| ImageError::Io { path: src, source })?;
    }
    run(Command::new("depmod").arg("-b").arg(&stage).arg(rel))?;
    let mut files: Vec<_> = Vec::new();
    collect(&sdir, &mut files)?;
    files.sort();
    for f in files {
        let r = f
            .strip_prefix(&stage)
            .unwrap_or(&f)
            .to_string_lossy()
            .into_owned();
        let data = fs::read(&f).map_err(|source| ImageError::Io {
            path: f.clone(),
            source,
        })?;
        tree.file(&r, data, 0o644);
    }
    Ok(())
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<(), ImageError> {
    for e in fs::read_dir(dir).map_err(|source| ImageError::Io {
        path: dir.to_owned(),
        source,
    })? {
        let p = e
            .map_err(|source| ImageError::Io {
                path: dir.to_owned(),
                source,
            })?
            .path();
        if p.is_dir() {
            collect(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closure_follows_dependencies_and_refuses_unknown_names() {
        let dep = parse_dep(
            "kernel/fs/ext4/ext4.ko: kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko\n\
             kernel/fs/mbcache.ko:\nkernel/fs/jbd2/jbd2.ko:\n\
             kernel/drivers/net/e1000e/e1000e.ko:\n",
        );
        let builtin = BTreeSet::from(["af_packet".to_owned()]);
        let got = closure(&dep, &["ext4".into(), "af-packet".into()], &builtin).unwrap();
        assert_eq!(got.len(), 3);
        assert!(got.contains("kernel/fs/jbd2/jbd2.ko"));
        assert_eq!(
            closure(&dep, &["e1000".into()], &builtin).unwrap_err(),
            "e1000"
        );
        assert_eq!(
            name_of("kernel/drivers/usb/storage/usb-storage.ko"),
            "usb_storage"
        );
    }
}
