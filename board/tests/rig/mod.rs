//! Test rig: an OpenIPMI `ipmi_sim` BMC on loopback loaded with an SR2500-like sensor set.
//!
//! Ports are picked by binding port 0 first; each rig has its own state directory, wiped
//! at start, and the simulator is killed by PID when the rig is dropped.

// A test harness: any set-up failure should stop the test right there.
#![allow(dead_code, clippy::unwrap_used, clippy::type_complexity)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tandem_board::ipmi::lan::{LanConfig, LanSession};
use tandem_board::ipmi::sdr::{RecordBuilder, SensorType};

pub const USER: &str = "admin";
pub const PASSWORD: &str = "tandem-secret";

/// One simulated sensor of the rig.
#[derive(Debug, Clone)]
pub struct RigSensor {
    pub number: u8,
    pub name: &'static str,
    pub sdr: Vec<u8>,
    pub sensor_type: u8,
    pub reading_type: u8,
    /// Threshold sensors: raw value and (mask, UNR, UCR, UNC, LNR, LCR, LNC).
    pub value: u8,
    pub thresholds: Option<(&'static str, [u8; 6])>,
    /// Discrete sensors: bits set at start.
    pub bits: &'static [u8],
}

fn full(number: u8, ty: SensorType, unit: u8, name: &'static str) -> RecordBuilder {
    RecordBuilder::full(number, ty, unit, name)
}

/// The SR2500-like sensor set: watchdog, temperatures, fans, voltages, two PSUs.
pub fn sr2500_sensors() -> Vec<RigSensor> {
    let t = |number, name, sdr: Vec<u8>, value, th: Option<(&'static str, [u8; 6])>| RigSensor {
        number,
        name,
        sdr,
        sensor_type: 0,
        reading_type: 0x01,
        value,
        thresholds: th,
        bits: &[],
    };
    let mut v = vec![
        RigSensor {
            number: 0,
            name: "Watchdog",
            sdr: RecordBuilder::compact(0, SensorType::WATCHDOG, 0x6F, "Watchdog").build(),
            sensor_type: 0x23,
            reading_type: 0x6F,
            value: 0,
            thresholds: None,
            bits: &[],
        },
        {
            let mut s = t(
                0x30,
                "Baseboard Temp",
                full(0x30, SensorType::TEMPERATURE, 1, "Baseboard Temp")
                    .thresholds([80, 75, 70, 0, 5, 10], 0x3F)
                    .build(),
                38,
                Some(("111111", [80, 75, 70, 0, 5, 10])),
            );
            s.sensor_type = 0x01;
            s
        },
        {
            let mut s = t(
                0x32,
                "Front Panel Temp",
                full(0x32, SensorType::TEMPERATURE, 1, "Front Panel Temp")
                    .thresholds([50, 45, 40, 0, 5, 10], 0x3F)
                    .build(),
                35,
                Some(("111111", [50, 45, 40, 0, 5, 10])),
            );
            s.sensor_type = 0x01;
            s
        },
        {
            // Signed (two's complement) reading, as some inlet sensors report.
            let mut s = t(
                0x34,
                "Inlet Delta",
                full(0x34, SensorType::TEMPERATURE, 1, "Inlet Delta")
                    .format(2)
                    .build(),
                0xF6,
                None,
            );
            s.sensor_type = 0x01;
            s
        },
    ];
    for (i, (num, name)) in [
        (0x50u8, "Sys Fan 1"),
        (0x51, "Sys Fan 2"),
        (0x52, "Sys Fan 3"),
        (0x53, "Sys Fan 4"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut s = t(
            num,
            name,
            full(num, SensorType::FAN, 18, name)
                .factors(57, 0, 0, 0)
                .thresholds([0, 0, 0, 0, 12, 16], 0x03)
                .build(),
            90 + u8::try_from(i).unwrap() * 3,
            Some(("000011", [0, 0, 0, 0, 12, 16])),
        );
        s.sensor_type = 0x04;
        v.push(s);
    }
    let volts: [(u8, &'static str, i16, i16, i8, i8, u8, [u8; 6]); 4] = [
        (
            0x10,
            "BB +12.0V",
            63,
            0,
            0,
            -3,
            190,
            [0, 209, 204, 0, 172, 177],
        ),
        (
            0x11,
            "BB +5.0V",
            27,
            0,
            0,
            -3,
            185,
            [0, 204, 199, 0, 166, 171],
        ),
        (
            0x12,
            "BB +3.3V",
            18,
            0,
            0,
            -3,
            183,
            [0, 202, 197, 0, 164, 169],
        ),
        // Offset with exponent: (10 * raw + 25 * 10^1) * 10^-3.
        (0x13, "BB Vbat", 10, 25, 1, -3, 40, [0, 80, 70, 0, 20, 25]),
    ];
    for (num, name, m, b, bexp, rexp, raw, th) in volts {
        let mut s = t(
            num,
            name,
            full(num, SensorType::VOLTAGE, 4, name)
                .factors(m, b, bexp, rexp)
                .thresholds(th, 0x1B)
                .build(),
            raw,
            Some(("011011", th)),
        );
        s.sensor_type = 0x02;
        v.push(s);
    }
    {
        // Square-root linearisation (an airflow-style sensor).
        let mut s = t(
            0x60,
            "Airflow",
            full(0x60, SensorType(0x0B), 0, "Airflow")
                .linearization(10)
                .build(),
            144,
            None,
        );
        s.sensor_type = 0x0B;
        v.push(s);
    }
    for (num, name) in [(0x70u8, "PS1 Status"), (0x71, "PS2 Status")] {
        v.push(RigSensor {
            number: num,
            name,
            sdr: RecordBuilder::compact(num, SensorType::POWER_SUPPLY, 0x6F, name)
                .entity(0x0A, num - 0x6F)
                .build(),
            sensor_type: 0x08,
            reading_type: 0x6F,
            value: 0,
            thresholds: None,
            bits: &[0],
        });
    }
    v
}

/// Fails the test with one line naming the Debian package to install.
pub fn require_tool(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{tool} not found: install the Debian package {package} (apt-get install -y --no-install-recommends {package})"
    );
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `ipmi_sim`.
#[derive(Debug)]
pub struct Rig {
    child: Child,
    dir: PathBuf,
    pub lan: SocketAddr,
    pub console: SocketAddr,
    pub sensors: Vec<RigSensor>,
    pub kcs: Option<SocketAddr>,
    /// One long-lived console connection: ipmi_sim dies of SIGPIPE when a console client
    /// goes away while it writes to it.
    console_stream: std::sync::Mutex<TcpStream>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Rig {
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// With `kcs`, ipmi_sim also serves the VM serial protocol that QEMU's
    /// `ipmi-bmc-extern` speaks, on [`Rig::kcs`].
    pub fn start_with(kcs: bool) -> Self {
        require_tool("ipmi_sim", "openipmi");
        let sensors = sr2500_sensors();
        let dir = std::env::temp_dir().join(format!(
            "tandem-board-rig-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("state")).unwrap();
        let lan_port = free_udp_port();
        let chassis = dir.join("chassis.sh");
        let console_port = free_tcp_port();
        let kcs_port = kcs.then(free_tcp_port);
        let kcs_line = kcs_port.map_or_else(String::new, |p| {
            format!("serial kcs 127.0.0.1 {p} codec VM\n")
        });
        let conf = format!(
            "name \"tandem\"\n\
             set_working_mc 0x20\n\
             startlan 1\n\
             addr 127.0.0.1 {lan_port}\n\
             priv_limit admin\n\
             allowed_auths_callback none md2 md5 straight\n\
             allowed_auths_user none md2 md5 straight\n\
             allowed_auths_operator none md2 md5 straight\n\
             allowed_auths_admin none md2 md5 straight\n\
             guid a123456789abcdefa123456789abcdef\n\
             endlan\n\
             {kcs_line}\
             chassis_control \"{}\"\n\
             console 127.0.0.1 {console_port}\n\
             user 2 true \"{USER}\" \"{PASSWORD}\" admin 10 none md2 md5 straight\n",
            chassis.display()
        );
        std::fs::write(dir.join("lan.conf"), conf).unwrap();
        // The chassis "hardware": ipmi_sim runs this for power and identify requests.
        let script = format!(
            "#!/bin/sh\n\
             echo \"$@\" >> '{d}/chassis.log'\n\
             if [ \"$1\" = set ] && [ \"$2\" = power ]; then echo \"$3\" > '{d}/power'; fi\n\
             if [ \"$1\" = get ]; then shift; for p in \"$@\"; do\n\
               case $p in power) echo \"power:$(cat '{d}/power')\";; *) echo \"$p:0\";; esac; done; fi\n\
             exit 0\n",
            d = dir.display()
        );
        std::fs::write(&chassis, script).unwrap();
        std::fs::write(dir.join("power"), "1\n").unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&chassis, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let mut emu = String::from(
            "mc_setbmc 0x20\n\
             mc_add 0x20 0 no-device-sdrs 0x01 0x00 0x50 0x9f 0x000157 0x0028\n\
             sel_enable 0x20 1000 0x0a\n",
        );
        // Records first: a sensor takes its event masks from its SDR when added.
        for s in &sensors {
            emu.push_str("main_sdr_add 0x20");
            for b in &s.sdr {
                emu.push_str(&format!(" 0x{b:02x}"));
            }
            emu.push('\n');
        }
        for s in &sensors {
            emu.push_str(&format!(
                "sensor_add 0x20 0 {} 0x{:02x} 0x{:02x}\n",
                s.number, s.sensor_type, s.reading_type
            ));
            if let Some((mask, th)) = s.thresholds {
                emu.push_str(&format!(
                    "sensor_set_threshold 0x20 0 {} settable {mask} {} {} {} {} {} {}\n",
                    s.number, th[0], th[1], th[2], th[3], th[4], th[5]
                ));
            }
            if s.reading_type == 0x01 {
                emu.push_str(&format!(
                    "sensor_set_value 0x20 0 {} {} 0\n",
                    s.number, s.value
                ));
            }
            for bit in s.bits {
                emu.push_str(&format!("sensor_set_bit 0x20 0 {} {bit} 1 0\n", s.number));
            }
        }
        emu.push_str("mc_enable 0x20\n");
        std::fs::write(dir.join("sr2500.emu"), emu).unwrap();
        let console = SocketAddr::from(([127, 0, 0, 1], console_port));
        let (child, stream) = spawn(&dir, console);
        Rig {
            child,
            dir,
            lan: SocketAddr::from(([127, 0, 0, 1], lan_port)),
            console,
            sensors,
            kcs: kcs_port.map(|p| SocketAddr::from(([127, 0, 0, 1], p))),
            console_stream: std::sync::Mutex::new(stream),
        }
    }

    /// What the chassis program was asked, one line per call.
    pub fn chassis_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("chassis.log")).unwrap_or_default()
    }

    pub fn lan_config(&self) -> LanConfig {
        LanConfig::new(self.lan, USER, PASSWORD)
    }

    pub fn session(&self) -> LanSession {
        LanSession::open(self.lan_config()).expect("rmcp+ session with ipmi_sim")
    }

    /// Runs ipmitool against the rig; returns stdout.
    pub fn ipmitool(&self, args: &[&str]) -> String {
        require_tool("ipmitool", "ipmitool");
        let port = self.lan.port().to_string();
        let out = Command::new("timeout")
            .arg("30")
            .arg("ipmitool")
            .args([
                "-I",
                "lanplus",
                "-H",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                USER,
                "-P",
                PASSWORD,
                "-C",
                "3",
            ])
            .args(args)
            .output()
            .expect("running ipmitool");
        assert!(
            out.status.success(),
            "ipmitool {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Sends commands to ipmi_sim's console and waits until each was processed (its
    /// prompt came back). Fails on any "**" error line.
    pub fn console(&self, commands: &[String]) {
        let mut s = self.console_stream.lock().unwrap();
        // Drop whatever the console printed before (banner, earlier prompts).
        let mut buf = [0u8; 1024];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        for c in commands {
            s.write_all(c.as_bytes()).unwrap();
            s.write_all(b"\n").unwrap();
        }
        let mut all = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        // One prompt after each command.
        while all.windows(2).filter(|w| w == b"> ").count() < commands.len() {
            assert!(
                Instant::now() < deadline,
                "ipmi_sim console did not answer: {:?}",
                String::from_utf8_lossy(&all)
            );
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
        }
        let text = String::from_utf8_lossy(&all);
        assert!(!text.contains("**"), "ipmi_sim console said: {text}");
    }
}

/// Starts ipmi_sim in `dir` (state wiped) and waits until its console answers.
fn spawn(dir: &Path, console: SocketAddr) -> (Child, TcpStream) {
    let _ = std::fs::remove_dir_all(dir.join("state"));
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let child = Command::new("ipmi_sim")
        .arg("-c")
        .arg(dir.join("lan.conf"))
        .arg("-f")
        .arg(dir.join("sr2500.emu"))
        .arg("-s")
        .arg(dir.join("state"))
        .arg("-n")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("ipmi_sim.log")).unwrap())
        .spawn()
        .expect("starting ipmi_sim");
    // Ready when the console accepts connections (it binds after the LAN channel).
    let deadline = Instant::now() + Duration::from_secs(10);
    let stream = loop {
        match TcpStream::connect_timeout(&console, Duration::from_millis(200)) {
            Ok(s) => break s,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "ipmi_sim did not start within 10 s: {e}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    (child, stream)
}

impl Rig {
    /// Kills ipmi_sim and starts it again on the same ports, with fresh state: what a
    /// BMC reset looks like from outside (every session is gone).
    pub fn restart(&mut self) {
        // Close our console end first so that the TIME_WAIT lands on our side: ipmi_sim
        // sets SO_REUSEADDR only after bind and could not listen on its port again.
        let _ = self
            .console_stream
            .lock()
            .unwrap()
            .shutdown(std::net::Shutdown::Both);
        std::thread::sleep(Duration::from_millis(100));
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, stream) = spawn(&self.dir, self.console);
        self.child = child;
        *self.console_stream.lock().unwrap() = stream;
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::env::var_os("TANDEM_KEEP_RIG").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
