//! Two nodes from the install image, the way an operator sets up a cluster:
//! boot the DVD, type `node1` / `node2`, let the installer write the disk; on
//! the recovery network (a laptop on the red cable) log in to each node's web
//! console, upload the cluster configuration archive with its passphrase and
//! activate: node1 "fetch data from the other node" (it waits, and says to
//! continue on the other node), node2 "destroy all data" (typing the cluster
//! name). Both then move to their configured addresses on the LAN, form the
//! cluster, and the management console installs VE 101 (following its
//! progress page), backs up the template cache, shows and moves the roles; a
//! power loss of the active node makes the other take over.
//!
//! These tests need the image and root; `cargo xtask test` runs them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use tandem_tests::web::{
    answers, http_get, login, post_form, progress_until, role, text_of, upload_and_activate,
};
use tandem_tests::{
    Firmware, Scratch, Vm, figure, https, image_dir, raw_disk, rig_archive, rig_config,
    two_node_lan,
};

const MIN: Duration = Duration::from_secs(60);

/// The management password of the test's configuration (for logins in
/// threads of the LAN namespace).
static ADMIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn passwords_admin() -> String {
    ADMIN.get().cloned().unwrap_or_default()
}

/// VE 101's web server (plain HTTP on its address).
fn ve_http(path: &str, limit: Duration) -> String {
    http_get("192.0.2.50:80", path, limit)
}

#[test]
#[ignore = "needs the install image, QEMU and root: run `cargo xtask test`"]
fn two_installed_nodes_activate_from_the_web_console_and_fail_over() {
    let dir = Scratch::new("cluster-");
    // One LAN namespace: the laptop on the red cable (192.168.100.100) and,
    // after activation, the company LAN with its router and ping node
    // (192.0.2.1), both on one bridge with the nodes' first ports.
    let lan = two_node_lan(&["192.168.100.100/24"]);
    let (mut cfg, passwords) = rig_config("rig-cluster");
    cfg.replication.resync_rate = "400M".parse().unwrap();
    let passphrase = "red cable passphrase";
    let archive = rig_archive(&cfg, Some(passphrase));

    // Install both nodes from the DVD, at the same time.
    let ports = [
        42_000 + (std::process::id() % 5_000) * 2,
        42_001 + (std::process::id() % 5_000) * 2,
    ];
    let iso = image_dir().join("tandem-install.iso");
    let mut vms: Vec<Vm> = (0..2)
        .map(|i| {
            let sub = dir.0.join(format!("node{}", i + 1));
            std::fs::create_dir_all(&sub).unwrap();
            let disk = sub.join("disk.img");
            // The smallest disk the installer takes: a 1 GiB data area.
            raw_disk(&disk, 2400 << 20);
            let args: Vec<String> = [
                "-drive".to_owned(),
                format!(
                    "file={},if=none,id=d0,format=raw,cache=unsafe",
                    disk.display()
                ),
                "-device".to_owned(),
                "virtio-blk-pci,drive=d0,bootindex=1".to_owned(),
                "-drive".to_owned(),
                format!(
                    "file={},if=none,id=cd,media=cdrom,readonly=on",
                    iso.display()
                ),
                "-device".to_owned(),
                "ide-cd,drive=cd,bootindex=2".to_owned(),
                // First port: the SR2500's NIC on the LAN bridge.
                "-netdev".to_owned(),
                format!("tap,id=lan,ifname=tap{i},script=no,downscript=no"),
                "-device".to_owned(),
                format!("e1000e,netdev=lan,mac=52:54:00:00:1a:0{}", i + 1),
                // Second port: the crossover cable.
                "-netdev".to_owned(),
                format!(
                    "dgram,id=xo,local.type=inet,local.host=127.0.0.1,local.port={},remote.type=inet,remote.host=127.0.0.1,remote.port={}",
                    ports[i],
                    ports[1 - i]
                ),
                "-device".to_owned(),
                format!("e1000e,netdev=xo,mac=52:54:00:00:1b:0{}", i + 1),
            ]
            .to_vec();
            Vm::start(&sub, Firmware::Bios, Some(&lan), &args)
        })
        .collect();
    let t0 = Instant::now();
    for (i, vm) in vms.iter_mut().enumerate() {
        vm.wait_for(0, "Type node1 or node2", MIN);
        vm.type_line(&format!("node{}", i + 1));
    }
    for (i, vm) in vms.iter_mut().enumerate() {
        let at = vm.wait_for(
            0,
            &format!("Installation of node{} complete", i + 1),
            4 * MIN,
        );
        vm.wait_for(at, "State:     recovery", 3 * MIN);
    }
    figure(&format!(
        "two nodes installed from the DVD and in recovery mode {:.0} s after the prompts were answered",
        t0.elapsed().as_secs_f64()
    ));

    // On the red cable: node1 fetches; it waits for the other node and says so.
    let (n1, n2) = ("192.168.100.101:443", "192.168.100.102:443");
    let archive2 = archive.clone();
    lan.run(move || {
        answers(n1, 2 * MIN);
        answers(n2, 2 * MIN);
        let p1 = upload_and_activate(n1, &archive2, passphrase, "fetch", "");
        let waiting = progress_until(
            n1,
            &p1,
            "continue activation on the other node or check the crossover cable",
            3 * MIN,
        );
        assert!(waiting.contains("http-equiv=\"refresh\""), "{waiting}");
        // node2 destroys: typing the cluster name is the confirmation.
        let t = Instant::now();
        let p2 = upload_and_activate(n2, &archive2, passphrase, "destroy", "rig-cluster");
        let done2 = progress_until(n2, &p2, "Activation finished", 5 * MIN);
        assert!(done2.contains("https://192.0.2.12/"), "{done2}");
        let done1 = progress_until(n1, &p1, "Activation finished", 10 * MIN);
        assert!(done1.contains("https://192.0.2.11/"), "{done1}");
        figure(&format!(
            "activation from the web consoles: destroy on node2, full copy of its 1 GiB data area to node1: {:.0} s",
            t.elapsed().as_secs_f64()
        ));
    });

    // Both leave the recovery network for their configured addresses and
    // form the cluster; the management console shows the roles.
    let admin = passwords.admin.clone();
    ADMIN.set(passwords.admin.clone()).unwrap();
    let (a1, a2) = ("192.0.2.11:443", "192.0.2.12:443");
    let (s1, s2) = lan.run(move || {
        answers(a1, 2 * MIN);
        answers(a2, 2 * MIN);
        assert!(
            https(n1, "GET", "/login", None, None).is_err(),
            "the recovery address is gone once the node is configured"
        );
        (login(a1, &admin), login(a2, &admin))
    });
    let roles = |s1: &str, s2: &str| {
        let (s1, s2) = (s1.to_owned(), s2.to_owned());
        lan.run(move || (role(a1, &s1), role(a2, &s2)))
    };
    let start = Instant::now();
    let active = loop {
        match roles(&s1, &s2) {
            (Some(r1), Some(r2)) if r1 == "active" && r2 == "passive" => break 1,
            (Some(r1), Some(r2)) if r1 == "passive" && r2 == "active" => break 2,
            (Some(r1), Some(r2)) => {
                assert!(!(r1 == "active" && r2 == "active"), "two active nodes")
            }
            _ => {}
        }
        assert!(
            start.elapsed() < 3 * MIN,
            "no cluster formed: {:?}",
            roles(&s1, &s2)
        );
        std::thread::sleep(Duration::from_secs(1));
    };

    // VE 101 installed from the VEs page of the active node: the built-in
    // template, the configured name and address; the installation runs in the
    // background and its progress page reloads itself until it is done. Its
    // web server answers on the LAN and keeps what it is sent on the
    // replicated data area.
    let (act, act_s, pas, pas_s) = if active == 1 {
        (a1, s1.clone(), a2, s2.clone())
    } else {
        (a2, s2.clone(), a1, s1.clone())
    };
    let session = act_s.clone();
    let t = Instant::now();
    lan.run(move || {
        let r = post_form(
            act,
            &session,
            "/ves",
            Some("install-ve101"),
            "/ves/install",
            "template=tandem-minimal&confirm=yes",
        );
        assert_eq!(r.status, 303, "{}", text_of(&r.body));
        let progress = r.header("location").unwrap();
        assert_eq!(progress, "/ves/install/progress");
        let start = Instant::now();
        let done = loop {
            let p = https(act, "GET", &progress, Some(&session), None).unwrap();
            assert_eq!(p.status, 200, "{}", text_of(&p.body));
            if !p.body.contains("http-equiv=\"refresh\"") {
                break p;
            }
            assert!(
                p.body
                    .contains("VE 101 is being installed from tandem-minimal"),
                "{}",
                text_of(&p.body)
            );
            assert!(
                start.elapsed() < 5 * MIN,
                "the installation did not end:\n{}",
                text_of(&p.body)
            );
            std::thread::sleep(Duration::from_secs(1));
        };
        assert!(
            done.body
                .contains("VE 101 was installed from tandem-minimal"),
            "{}",
            text_of(&done.body)
        );
        assert_eq!(ve_http("/", MIN), "tandem VE\n");
        assert_eq!(ve_http("/cgi-bin/append?installed", MIN), "ok\n");
    });
    figure(&format!(
        "VE 101 from the built-in template through the web console's progress page: {:.0} s",
        t.elapsed().as_secs_f64()
    ));

    // The template cache backup from the Maintenance page: the passive node
    // says where the data area is; the active one backs up what
    // /vz/template holds (on a fresh data area only the built-in template,
    // which has no file) and says so.
    let (session, pas_session) = (act_s.clone(), pas_s.clone());
    lan.run(move || {
        let r = post_form(
            pas,
            &pas_session,
            "/maintenance",
            Some("backup-templates"),
            "/maintenance/backup-templates",
            "",
        );
        assert_eq!(r.status, 409, "{}", text_of(&r.body));
        assert!(
            r.body.contains("The data area /vz is on the other node"),
            "{}",
            text_of(&r.body)
        );
        let r = post_form(
            act,
            &session,
            "/maintenance",
            None,
            "/maintenance/backup-templates",
            "",
        );
        assert_eq!(r.status, 200, "{}", text_of(&r.body));
        assert!(
            r.body.contains(
                "There are no OS templates in /vz/template: nothing was backed up. The built-in template tandem-minimal needs no backup."
            ),
            "{}",
            text_of(&r.body)
        );
    });

    // A settings change on one node's Notification page reaches the other node:
    // the other node commits it first, then this one, and both put it in effect.
    let (session, pas_session) = (act_s.clone(), pas_s.clone());
    lan.run(move || {
        let page = https(act, "GET", "/notification", Some(&session), None).unwrap();
        assert_eq!(page.status, 200, "{}", page.body);
        let marker = "name=\"revision\" value=\"";
        let at = page.body.find(marker).expect("the revision field") + marker.len();
        let rev: u64 = page.body[at..].split('"').next().unwrap().parse().unwrap();
        let form = format!(
            // Recipients need a relay (direct delivery is not built).
            "csrf={}&revision={rev}&addresses=ops%40example.com&relay_host=192.0.2.1%3A2525",
            page.csrf()
        );
        let r = https(act, "POST", "/notification", Some(&session), Some(&form)).unwrap();
        assert_eq!(r.status, 200, "{}", text_of(&r.body));
        assert!(
            r.body.contains(&format!(
                "Saved on both nodes as configuration revision {} (changed: notification)",
                rev + 1
            )),
            "{}",
            text_of(&r.body)
        );
        // The Home page shows the other node's kernel, asked over the crossover link.
        let home = https(act, "GET", "/home", Some(&session), None).unwrap();
        let kernel = text_of(&home.body);
        assert!(
            kernel.matches("6.1.").count() >= 2 && !kernel.contains("not known"),
            "{kernel}"
        );
        // VE 101's root password, set inside the VE on the active node; the passive
        // node sends the operator there.
        let new_pw = "new=ve101+root+2&confirm=ve101+root+2";
        let r = post_form(
            act,
            &session,
            "/passwords",
            None,
            "/passwords/ve101",
            new_pw,
        );
        assert_eq!(r.status, 200, "{}", text_of(&r.body));
        assert!(
            r.body.contains("The root password of VE 101 is set."),
            "{}",
            text_of(&r.body)
        );
        let r = post_form(
            pas,
            &pas_session,
            "/passwords",
            None,
            "/passwords/ve101",
            new_pw,
        );
        assert_eq!(r.status, 409, "{}", text_of(&r.body));
        assert!(
            r.body.contains("VE 101 runs on the other node"),
            "{}",
            text_of(&r.body)
        );
        let other = https(pas, "GET", "/notification", Some(&pas_session), None).unwrap();
        assert!(
            other.body.contains(">ops@example.com</textarea>")
                && other
                    .body
                    .contains(&format!("name=\"revision\" value=\"{}\"", rev + 1)),
            "{}",
            text_of(&other.body)
        );
    });

    // Switchover from the Maintenance page of the active node.
    lan.run(move || {
        let m = https(act, "GET", "/maintenance", Some(&act_s), None).unwrap();
        assert_eq!(m.status, 200, "{}", m.body);
        let form = format!("csrf={}&confirm=yes", m.csrf());
        let r = https(
            act,
            "POST",
            "/maintenance/switchover",
            Some(&act_s),
            Some(&form),
        )
        .unwrap();
        assert!(r.status < 400, "{}", r.body);
        let start = Instant::now();
        while role(pas, &pas_s).as_deref() != Some("active") {
            assert!(
                start.elapsed() < 2 * MIN,
                "the switchover did not reach {pas}"
            );
            std::thread::sleep(Duration::from_secs(1));
        }
        let st = https(pas, "GET", "/status", Some(&pas_s), None).unwrap();
        assert!(st.body.contains("Primary/Secondary"), "{}", st.body);
        assert_eq!(ve_http("/cgi-bin/read", 2 * MIN), "installed\n");
        assert_eq!(ve_http("/cgi-bin/append?after-switchover", MIN), "ok\n");
    });

    // Restart of the (new) active node from its Maintenance page: it releases
    // the services on the way down, the other node takes them over, and it
    // comes back from its disk as a member, passive.
    let (restarted, restarted_vm, other, other_s) = if active == 1 {
        (a2, 1, a1, s1.clone())
    } else {
        (a1, 0, a2, s2.clone())
    };
    let restarted_s = if active == 1 { s2.clone() } else { s1.clone() };
    let console_at = vms[restarted_vm].text().len();
    let t = Instant::now();
    let back_s = lan.run(move || {
        let r = post_form(
            restarted,
            &restarted_s,
            "/maintenance",
            Some("reboot"),
            "/maintenance/power",
            "action=reboot&confirm=yes",
        );
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.contains("is restarting now"), "{}", r.body);
        let start = Instant::now();
        while role(other, &other_s).as_deref() != Some("active") {
            assert!(
                start.elapsed() < 2 * MIN,
                "{other} did not take over from the restarting node"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        let took = start.elapsed().as_secs_f64();
        // The restarted node's console answers again, in cluster mode.
        std::thread::sleep(Duration::from_secs(5));
        answers(restarted, 4 * MIN);
        let s = login(restarted, &passwords_admin());
        let start = Instant::now();
        // Passive, and its copy caught up with what was written meanwhile.
        loop {
            let page = https(restarted, "GET", "/status", Some(&s), None)
                .map(|r| text_of(&r.body))
                .unwrap_or_default();
            if page.contains("role of this node passive")
                && page.contains("Connected Secondary/Primary UpToDate/UpToDate")
            {
                break;
            }
            assert!(
                start.elapsed() < 2 * MIN,
                "{restarted} did not come back passive and up to date:\n{page}"
            );
            std::thread::sleep(Duration::from_secs(1));
        }
        assert_eq!(
            ve_http("/cgi-bin/read", 2 * MIN),
            "installed\nafter-switchover\n"
        );
        assert_eq!(ve_http("/cgi-bin/append?after-restart", MIN), "ok\n");
        (s, took)
    });
    let (restarted_s, took) = back_s;
    let text = vms[restarted_vm].text();
    assert!(
        text[console_at..].contains("tandem: restarting"),
        "the node's console shows no orderly restart:\n{}",
        &text[console_at..]
    );
    figure(&format!(
        "installed nodes: restart of the active node from its Maintenance page -> the other active {took:.1} s; restarted node back passive after {:.0} s",
        t.elapsed().as_secs_f64()
    ));

    // Power loss of the active node: the restarted one takes over.
    let (new_act_vm, survivor, survivor_s) = (1 - restarted_vm, restarted, restarted_s);
    let killed = Instant::now();
    vms[new_act_vm].power_loss();
    let took = lan.run(move || {
        while role(survivor, &survivor_s).as_deref() != Some("active") {
            if killed.elapsed() > 2 * MIN {
                let st = https(survivor, "GET", "/status", Some(&survivor_s), None)
                    .map(|r| text_of(&r.body))
                    .unwrap_or_else(|e| e.to_string());
                panic!("no takeover at {survivor}:\n{st}");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let took = killed.elapsed().as_secs_f64();
        let st = https(survivor, "GET", "/status", Some(&survivor_s), None).unwrap();
        assert!(st.body.contains("Primary/Unknown"), "{}", st.body);
        // Every write the VE acknowledged before the power loss is there.
        assert_eq!(
            ve_http("/cgi-bin/read", 2 * MIN),
            "installed\nafter-switchover\nafter-restart\n"
        );
        took
    });
    figure(&format!(
        "installed nodes: power loss of the active node -> the other active (seen on its Status page): {took:.1} s (deadtime 4 s, TCG)"
    ));
}
