//! The VE commands operators know from OpenVZ/Virtuozzo (R6.3): the system image links
//! `vzctl` and `vzlist` to this program, and each is translated here into the `tandem
//! ve …` command that does the same, so that there is one way to change a VE (starts
//! and stops go through clusterd as `tandem ve` does).
//!
//! `vzctl start|stop [--fast]|restart|enter|exec|exec2|destroy ID`,
//! `vzctl set ID OPTION… --save` and `vzlist [-a] [-H] [-j] [ID…]`. Anything else is
//! refused with what to use instead.

use std::net::Ipv4Addr;

/// The names this program answers to besides `tandem`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vz {
    /// `vzctl`.
    Ctl,
    /// `vzlist`.
    List,
}

impl Vz {
    /// The name the program was started as (`argv[0]`'s last component), if it is one
    /// of these.
    #[must_use]
    pub fn invoked_as(argv0: &str) -> Option<Vz> {
        match argv0.rsplit('/').next() {
            Some("vzctl") => Some(Vz::Ctl),
            Some("vzlist") => Some(Vz::List),
            _ => None,
        }
    }
}

/// `vzctl set` options and the VE file keys they set.
const SET_KEYS: &[(&str, &str)] = &[
    ("--onboot", "ONBOOT"),
    ("--hostname", "HOSTNAME"),
    ("--searchdomain", "SEARCHDOMAIN"),
    ("--cpuunits", "CPUUNITS"),
    ("--cpulimit", "CPULIMIT"),
    ("--cpus", "CPUS"),
    ("--numproc", "NUMPROC"),
    ("--numfile", "NUMFILE"),
    ("--physpages", "PHYSPAGES"),
    ("--swappages", "SWAPPAGES"),
    ("--privvmpages", "PRIVVMPAGES"),
    ("--vmguarpages", "VMGUARPAGES"),
    ("--oomguarpages", "OOMGUARPAGES"),
    ("--diskspace", "DISKSPACE"),
    ("--diskinodes", "DISKINODES"),
];

const USAGE: &str = "usage: vzctl start|stop [--fast]|restart|enter|destroy ID\n       vzctl exec|exec2 ID COMMAND…\n       vzctl set ID OPTION VALUE… --save\n       vzlist [-a] [-H] [-j] [ID…]";

/// The `tandem` arguments (without the program name) for `vz` called with `args`.
/// `addresses` gives a VE's current addresses (for `--ipadd` and `--ipdel`, which
/// change the list rather than replace it).
///
/// # Errors
/// What is not understood or not offered, with what to use instead.
pub fn translate(
    vz: Vz,
    args: &[String],
    addresses: &dyn Fn(u32) -> Result<Vec<Ipv4Addr>, String>,
) -> Result<Vec<String>, String> {
    match vz {
        Vz::List => list(args),
        Vz::Ctl => ctl(args, addresses),
    }
}

fn list(args: &[String]) -> Result<Vec<String>, String> {
    let mut out = vec!["ve".to_owned(), "list".to_owned()];
    let (mut all, mut header, mut json) = (false, true, false);
    let mut ids = Vec::new();
    for a in args {
        match a.as_str() {
            "-a" | "--all" => all = true,
            "-H" | "--no-header" => header = false,
            "-j" | "--json" => json = true,
            s if !s.starts_with('-') => ids.push(id(s)?),
            s => {
                return Err(format!(
                    "vzlist: option {s} is not offered (only -a, -H, -j and VE numbers)"
                ));
            }
        }
    }
    // vzlist without -a lists the running VEs; naming VEs lists them as they are.
    if !all && ids.is_empty() {
        out.push("--running".to_owned());
    }
    if !header {
        out.push("--no-header".to_owned());
    }
    if json {
        out.push("--json".to_owned());
    }
    for i in ids {
        out.push("--id".to_owned());
        out.push(i.to_string());
    }
    Ok(out)
}

fn id(s: &str) -> Result<u32, String> {
    s.parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{s:?} is not a VE number"))
}

fn ctl(
    args: &[String],
    addresses: &dyn Fn(u32) -> Result<Vec<Ipv4Addr>, String>,
) -> Result<Vec<String>, String> {
    let (Some(cmd), Some(ve)) = (args.first(), args.get(1)) else {
        return Err(USAGE.to_owned());
    };
    let n = id(ve)?;
    let rest = &args[2..];
    let ve = |what: &str| vec!["ve".to_owned(), what.to_owned(), n.to_string()];
    let none = |out: Vec<String>| {
        if let Some(extra) = rest.first() {
            Err(format!("vzctl {cmd}: unexpected {extra:?}\n{USAGE}"))
        } else {
            Ok(out)
        }
    };
    match cmd.as_str() {
        "start" | "restart" | "enter" | "destroy" => none(ve(cmd)),
        "stop" => match rest {
            [] => Ok(ve("stop")),
            [f] if f == "--fast" => {
                let mut out = ve("stop");
                out.extend(["--grace".to_owned(), "0".to_owned()]);
                Ok(out)
            }
            _ => Err(format!("vzctl stop: only --fast is offered\n{USAGE}")),
        },
        "exec" | "exec2" => {
            if rest.is_empty() {
                return Err(format!("vzctl {cmd}: no command given\n{USAGE}"));
            }
            // As vzctl: the words are one command line for the VE's shell.
            let mut out = ve("exec");
            out.extend([
                "--".to_owned(),
                "/bin/sh".to_owned(),
                "-c".to_owned(),
                rest.join(" "),
            ]);
            Ok(out)
        }
        "set" => set(n, rest, addresses),
        "status" => Err(format!("vzctl status: use `vzlist -a {n}`")),
        "create" => Err(format!(
            "vzctl create: use `tandem ve create {n} --template NAME --hostname NAME --ip ADDRESS` (or the VEs page)"
        )),
        other => Err(format!("vzctl {other} is not offered\n{USAGE}")),
    }
}

fn set(
    n: u32,
    rest: &[String],
    addresses: &dyn Fn(u32) -> Result<Vec<Ipv4Addr>, String>,
) -> Result<Vec<String>, String> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut save = false;
    let mut nameservers: Vec<String> = Vec::new();
    let mut add: Vec<Ipv4Addr> = Vec::new();
    let mut del: Vec<Option<Ipv4Addr>> = Vec::new();
    let mut it = rest.iter();
    while let Some(opt) = it.next() {
        if opt == "--save" {
            save = true;
            continue;
        }
        let Some(value) = it.next() else {
            return Err(format!("vzctl set: {opt} needs a value"));
        };
        let address = || {
            value
                .parse::<Ipv4Addr>()
                .map_err(|_| format!("vzctl set: {opt} {value:?} is not an IPv4 address"))
        };
        match opt.as_str() {
            "--ipadd" => add.push(address()?),
            "--ipdel" if value == "all" => del.push(None),
            "--ipdel" => del.push(Some(address()?)),
            "--nameserver" => nameservers.push(address()?.to_string()),
            "--userpasswd" => {
                return Err(format!(
                    "vzctl set --userpasswd: use `tandem ve passwd {n} USER` (asks for the password without echo)"
                ));
            }
            o => match SET_KEYS.iter().find(|(k, _)| *k == o) {
                Some((_, key)) => pairs.push(((*key).to_owned(), value.clone())),
                None => {
                    return Err(format!(
                        "vzctl set: option {o} is not offered; offered: --ipadd, --ipdel, --nameserver, {}",
                        SET_KEYS
                            .iter()
                            .map(|(k, _)| *k)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            },
        }
    }
    if !save {
        return Err(
            "vzctl set without --save: tandem changes the VE's file only (a running VE takes the change when it starts again); add --save"
                .to_owned(),
        );
    }
    if !nameservers.is_empty() {
        pairs.push(("NAMESERVER".to_owned(), nameservers.join(" ")));
    }
    if !add.is_empty() || !del.is_empty() {
        let mut list = addresses(n)?;
        for d in del {
            match d {
                None => list.clear(),
                Some(a) => list.retain(|x| *x != a),
            }
        }
        for a in add {
            if !list.contains(&a) {
                list.push(a);
            }
        }
        pairs.push((
            "IP_ADDRESS".to_owned(),
            list.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" "),
        ));
    }
    if pairs.is_empty() {
        return Err("vzctl set: nothing to set".to_owned());
    }
    let mut out = vec!["ve".to_owned(), "set".to_owned(), n.to_string()];
    out.extend(pairs.into_iter().map(|(k, v)| format!("{k}={v}")));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(vz: Vz, line: &str) -> Result<String, String> {
        let args: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        let current = |n: u32| {
            if n == 101 {
                Ok(vec![
                    "192.0.2.50".parse().expect("an address"),
                    "192.0.2.51".parse().expect("an address"),
                ])
            } else {
                Err(format!("VE {n} does not exist"))
            }
        };
        translate(vz, &args, &current).map(|v| v.join(" "))
    }

    #[test]
    fn the_program_name_decides() {
        assert_eq!(Vz::invoked_as("/usr/sbin/vzctl"), Some(Vz::Ctl));
        assert_eq!(Vz::invoked_as("vzlist"), Some(Vz::List));
        assert_eq!(Vz::invoked_as("/usr/bin/tandem"), None);
    }

    #[test]
    fn vzlist_lists_running_ves_unless_asked_for_all() {
        assert_eq!(t(Vz::List, ""), Ok("ve list --running".into()));
        assert_eq!(t(Vz::List, "-a"), Ok("ve list".into()));
        assert_eq!(
            t(Vz::List, "-a -H -j"),
            Ok("ve list --no-header --json".into())
        );
        assert_eq!(t(Vz::List, "101"), Ok("ve list --id 101".into()));
        assert!(t(Vz::List, "-o ctid").unwrap_err().contains("-o"));
        assert!(t(Vz::List, "x1").unwrap_err().contains("not a VE number"));
    }

    #[test]
    fn vzctl_commands_become_tandem_ve_commands() {
        assert_eq!(t(Vz::Ctl, "start 101"), Ok("ve start 101".into()));
        assert_eq!(t(Vz::Ctl, "stop 101"), Ok("ve stop 101".into()));
        assert_eq!(
            t(Vz::Ctl, "stop 101 --fast"),
            Ok("ve stop 101 --grace 0".into())
        );
        assert_eq!(t(Vz::Ctl, "restart 101"), Ok("ve restart 101".into()));
        assert_eq!(t(Vz::Ctl, "enter 101"), Ok("ve enter 101".into()));
        assert_eq!(
            t(Vz::Ctl, "exec 101 ps ax"),
            Ok("ve exec 101 -- /bin/sh -c ps ax".into())
        );
        assert_eq!(t(Vz::Ctl, "destroy 101"), Ok("ve destroy 101".into()));
    }

    #[test]
    fn vzctl_set_needs_save_and_maps_options_to_ve_file_keys() {
        assert_eq!(
            t(
                Vz::Ctl,
                "set 101 --onboot yes --hostname web2 --numproc 512 --nameserver 192.0.2.53 --nameserver 192.0.2.54 --save"
            ),
            Ok(
                "ve set 101 ONBOOT=yes HOSTNAME=web2 NUMPROC=512 NAMESERVER=192.0.2.53 192.0.2.54"
                    .into()
            )
        );
        assert_eq!(
            t(
                Vz::Ctl,
                "set 101 --ipadd 192.0.2.52 --ipdel 192.0.2.50 --save"
            ),
            Ok("ve set 101 IP_ADDRESS=192.0.2.51 192.0.2.52".into())
        );
        assert_eq!(
            t(Vz::Ctl, "set 101 --ipdel all --ipadd 192.0.2.9 --save"),
            Ok("ve set 101 IP_ADDRESS=192.0.2.9".into())
        );
        assert!(
            t(Vz::Ctl, "set 101 --hostname a")
                .unwrap_err()
                .contains("add --save")
        );
        assert!(
            t(Vz::Ctl, "set 102 --ipadd 192.0.2.9 --save")
                .unwrap_err()
                .contains("VE 102 does not exist")
        );
        assert!(
            t(Vz::Ctl, "set 101 --ipadd 300.1.1.1 --save")
                .unwrap_err()
                .contains("not an IPv4 address")
        );
        assert!(
            t(Vz::Ctl, "set 101 --features nfs:on --save")
                .unwrap_err()
                .contains("--features is not offered")
        );
        assert!(
            t(Vz::Ctl, "set 101 --userpasswd root:x --save")
                .unwrap_err()
                .contains("tandem ve passwd 101")
        );
    }

    #[test]
    fn what_is_not_offered_says_what_to_use() {
        assert!(t(Vz::Ctl, "").unwrap_err().starts_with("usage: vzctl"));
        assert!(
            t(Vz::Ctl, "status 101")
                .unwrap_err()
                .contains("vzlist -a 101")
        );
        assert!(t(Vz::Ctl, "mount 101").unwrap_err().contains("not offered"));
        assert!(
            t(Vz::Ctl, "start 101 now")
                .unwrap_err()
                .contains("unexpected")
        );
        assert!(
            t(Vz::Ctl, "start abc")
                .unwrap_err()
                .contains("not a VE number")
        );
    }
}
