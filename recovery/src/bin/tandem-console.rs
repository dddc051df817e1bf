//! The console screen on one terminal (the node's display or its serial
//! port): the node name in large letters, its state, and how to reach it.
//! It redraws when the network link changes.

use std::fs::File;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use tandem_recovery::banner;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone())
}

fn link(nic: &str) -> String {
    let state =
        std::fs::read_to_string(format!("/sys/class/net/{nic}/operstate")).unwrap_or_default();
    match state.trim() {
        "up" => format!("{nic}: link up"),
        "" => format!("{nic}: not present"),
        other => format!("{nic}: link {other} - is the cable plugged in?"),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(tty), Some(node)) = (arg(&args, "--tty"), arg(&args, "--node")) else {
        eprintln!(
            "usage: tandem-console --tty DEV --node NAME [--state S --address URL --fingerprint FP --nic IF]"
        );
        return ExitCode::from(2);
    };
    let state = arg(&args, "--state").unwrap_or_else(|| "unknown".into());
    let address = arg(&args, "--address").unwrap_or_default();
    let fingerprint = arg(&args, "--fingerprint").unwrap_or_default();
    let nic = arg(&args, "--nic").unwrap_or_default();
    let Ok(mut out) = File::options().write(true).open(&tty) else {
        eprintln!("tandem-console: cannot open {tty}");
        return ExitCode::from(1);
    };
    let mut shown = String::new();
    loop {
        let link = link(&nic);
        if link != shown {
            let mut screen = String::from("\x1b[2J\x1b[H\r\n");
            for l in banner::render(&node) {
                screen.push_str(&format!("    {l}\r\n"));
            }
            screen.push_str(&format!(
                "\r\n    Node:      {node}\r\n    State:     {state}\r\n"
            ));
            if state == "recovery" {
                screen.push_str(&format!(
                    "    Recovery:  {address}  (laptop 192.168.100.100/24, red cable, first network port)\r\n\
                     \x20   Login:     admin / factory password\r\n"
                ));
            }
            screen.push_str(&format!("    Network:   {link}\r\n"));
            screen.push_str(&format!(
                "    HTTPS certificate SHA-256:\r\n      {fingerprint}\r\n"
            ));
            if out.write_all(screen.as_bytes()).is_err() {
                return ExitCode::from(1);
            }
            shown = link;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}
