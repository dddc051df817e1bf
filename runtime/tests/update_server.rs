//! The update server as a node asks it: a real HTTPS server on loopback (Python's
//! `http.server` behind TLS, with HTTP basic authentication) serving the list
//! `cargo xtask bundle` writes; `tandem update check` and `update status` through
//! clusterd's control service. A newer version is offered; a wrong password, a server
//! certificate of another CA, a missing list and a list that is not one are each
//! refused in words.

#![allow(
    clippy::unwrap_used,
    reason = "test harness: a failed unwrap is a failed test"
)]

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tandem_runtime::update::server::Server;

mod served;

const USER: &str = "cluster";
const PASSWORD: &str = "s3cret-updates";

/// The server: serves `dir` over HTTPS with the certificate `cert`/`key` to the
/// account `USER:PASSWORD`; stopped when dropped.
struct HttpsServer {
    child: Child,
    port: u16,
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SERVE: &str = r#"
import base64, http.server, os, ssl, sys
os.chdir(sys.argv[1])
expected = "Basic " + base64.b64encode(sys.argv[2].encode()).decode()
class H(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="updates"')
            self.end_headers()
            return
        super().do_GET()
    def log_message(self, *args):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[3], sys.argv[4])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

fn serve(dir: &Path, cert: &Path, key: &Path) -> HttpsServer {
    let mut child = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(SERVE)
        .arg(dir)
        .arg(format!("{USER}:{PASSWORD}"))
        .arg(cert)
        .arg(key)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 is missing (it comes with python3-aiosmtpd)");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().expect("the server's port");
    HttpsServer { child, port }
}

/// A CA and a certificate for 127.0.0.1 it signed: (CA PEM, leaf PEM, leaf key PEM).
fn pki() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "vendor update CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

struct Rig {
    dir: tempfile::TempDir,
    server: HttpsServer,
    ca: String,
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("site");
        std::fs::create_dir_all(site.join("tandem")).unwrap();
        let bundle = site.join("tandem/tandem-9.1.0+abc.raucb");
        std::fs::write(&bundle, vec![7u8; 4096]).unwrap();
        tandem_image::bundle::write_index(
            &bundle,
            "9.1.0+abc",
            "# Changes\n\n## 9.1.0\n\n- faster failover\n\n## 0.1.0\n\n- first\n",
        )
        .unwrap();
        // A bundle damaged after its list was written (a broken mirror).
        std::fs::create_dir_all(site.join("tandem-damaged")).unwrap();
        let damaged = site.join("tandem-damaged/tandem-9.2.0.raucb");
        std::fs::write(&damaged, vec![7u8; 4096]).unwrap();
        tandem_image::bundle::write_index(&damaged, "9.2.0", "").unwrap();
        std::fs::write(&damaged, vec![8u8; 4096]).unwrap();
        std::fs::create_dir_all(site.join("tandem-bad")).unwrap();
        std::fs::write(
            site.join("tandem-bad/index.json"),
            b"<html>maintenance</html>",
        )
        .unwrap();
        let (ca, cert, key) = pki();
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&cert_path, cert).unwrap();
        std::fs::write(&key_path, key).unwrap();
        let server = serve(&site, &cert_path, &key_path);
        Rig { dir, server, ca }
    }

    fn updates(&self, path: &str, password: &str) -> tandem_config::schema::UpdatesConfig {
        tandem_config::schema::UpdatesConfig {
            url: format!("https://127.0.0.1:{}/{path}", self.server.port)
                .parse()
                .unwrap(),
            user: USER.parse().unwrap(),
            password: password.parse().unwrap(),
            trial_deadline: None,
            ca_certificate: Some(self.ca.clone()),
        }
    }
}

#[test]
fn the_newest_version_on_the_server_is_offered_and_each_failure_says_what_is_wrong() {
    let rig = Rig::new();
    let good = rig.updates("tandem", PASSWORD);
    let offer = Server::new(&good).check("0.1.0+zzz").unwrap().unwrap();
    assert_eq!(offer.version, "9.1.0+abc");
    assert_eq!(offer.file, "tandem-9.1.0+abc.raucb");
    assert_eq!(offer.size, 4096);
    assert_eq!(offer.changes, "- faster failover");
    assert_eq!(Server::new(&good).check("9.1.0+abc").unwrap(), None);

    let e = Server::new(&rig.updates("tandem", "wrong"))
        .check("0.1.0")
        .unwrap_err()
        .0;
    assert!(
        e.contains("refused the account \"cluster\" (HTTP 401): check updates.user"),
        "{e}"
    );
    assert!(!e.contains("wrong"), "the password is not echoed: {e}");

    let mut public = good.clone();
    public.ca_certificate = None;
    let e = Server::new(&public).check("0.1.0").unwrap_err().0;
    assert!(e.contains("cannot be reached"), "{e}");
    assert!(e.to_lowercase().contains("certificate"), "{e}");

    let e = Server::new(&rig.updates("nothing-here", PASSWORD))
        .check("0.1.0")
        .unwrap_err()
        .0;
    assert!(
        e.contains("has nothing at") && e.contains("index.json (HTTP 404): check updates.url"),
        "{e}"
    );

    let e = Server::new(&rig.updates("tandem-bad", PASSWORD))
        .check("0.1.0")
        .unwrap_err()
        .0;
    assert!(e.contains("is not a list of bundles"), "{e}");
}

/// clusterd's control service of a node running `version` with the committed
/// configuration `cfg`, on a socket in `dir`; returns the socket.
fn clusterd(dir: &Path, cfg: &tandem_config::ApplianceConfig, version: &str) -> PathBuf {
    use tandem_runtime::admin::{Admin, activation::Engine};
    use tandem_runtime::control::{ClusterLink, Service};

    let store = dir.join("store");
    std::fs::create_dir_all(&store).unwrap();
    let s = tandem_config::Store::open(&store).unwrap();
    s.stage(cfg).unwrap();
    s.commit().unwrap();
    let engine = Engine::Sim {
        delay: Duration::from_millis(10),
        fail: false,
    };
    let mut admin = Admin::new(store, tandem_config::NodeId::Node1, engine);
    let version_file = dir.join("tandem-version");
    std::fs::write(&version_file, format!("{version}\n")).unwrap();
    let state_dir = dir.join("state");
    std::fs::create_dir_all(&state_dir).unwrap();
    admin.update = tandem_runtime::admin::update::UpdateJob::new(tandem_runtime::update::Updater {
        rauc: tandem_runtime::update::rauc::Rauc::default(),
        state_dir,
        version_file,
    });
    admin.update.download_dir = dir.join("downloads");
    let service = Arc::new(Service::new(admin, Some(ClusterLink::ended("node1"))));
    let sock = dir.join("control.sock");
    served::serve(service, &sock);
    sock
}

fn tandem(sock: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("--control")
        .arg(sock)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn tandem_update_check_asks_the_server_through_clusterd_and_status_shows_the_offer() {
    let rig = Rig::new();
    let (mut cfg, _) =
        tandem_config::init::new_cluster(&tandem_config::init::InitOptions::default()).unwrap();

    // The example server of `tandem config init`: nothing is asked.
    let node = rig.dir.path().join("example");
    std::fs::create_dir_all(&node).unwrap();
    let sock = clusterd(&node, &cfg, "0.1.0+abc");
    let (ok, out) = tandem(&sock, &["update", "check"]);
    assert!(!ok);
    assert!(out.contains("no update server is configured"), "{out}");

    cfg.updates = rig.updates("tandem", PASSWORD);
    let node = rig.dir.path().join("configured");
    std::fs::create_dir_all(&node).unwrap();
    let sock = clusterd(&node, &cfg, "0.1.0+abc");
    let (ok, out) = tandem(&sock, &["update", "check"]);
    eprintln!("tandem update check:\n{out}");
    assert!(ok, "{out}");
    assert!(
        out.contains("offers 9.1.0+abc (tandem-9.1.0+abc.raucb"),
        "{out}"
    );
    assert!(out.contains("- faster failover"), "{out}");
    let (_, out) = tandem(&sock, &["update", "status"]);
    assert!(out.contains("offers 9.1.0+abc"), "{out}");

    // The server goes away: the check fails in words, the last offer stays shown.
    drop(rig.server);
    let (ok, out) = tandem(&sock, &["update", "check"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("last check failed") && out.contains("cannot be reached"),
        "{out}"
    );
    assert!(out.contains("offers 9.1.0+abc"), "{out}");
}

#[test]
fn the_offered_bundle_is_downloaded_whole_and_a_damaged_one_is_not_kept() {
    let rig = Rig::new();
    let server = Server::new(&rig.updates("tandem", PASSWORD));
    let offer = server.check("0.1.0").unwrap().unwrap();
    let dir = rig.dir.path().join("downloads");
    let mut seen = Vec::new();
    let path = server
        .download(&offer, &dir, &mut |p| seen.push(p))
        .unwrap();
    assert_eq!(path, dir.join("tandem-9.1.0+abc.raucb"));
    assert_eq!(std::fs::read(&path).unwrap(), vec![7u8; 4096]);
    assert_eq!(seen.last(), Some(&100));

    let server = Server::new(&rig.updates("tandem-damaged", PASSWORD));
    let offer = server.check("0.1.0").unwrap().unwrap();
    let dir = rig.dir.path().join("damaged");
    let e = server.download(&offer, &dir, &mut |_| {}).unwrap_err().0;
    assert!(
        e.contains("arrived damaged") && e.contains("not kept"),
        "{e}"
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "nothing left");
}

#[test]
fn tandem_update_download_fetches_the_offer_and_a_bundle_the_engine_refuses_is_not_kept() {
    let rig = Rig::new();
    let (mut cfg, _) =
        tandem_config::init::new_cluster(&tandem_config::init::InitOptions::default()).unwrap();
    cfg.updates = rig.updates("tandem", PASSWORD);
    let node = rig.dir.path().join("node");
    std::fs::create_dir_all(&node).unwrap();
    let sock = clusterd(&node, &cfg, "0.1.0+abc");

    // Nothing offered yet: nothing to download.
    let (ok, out) = tandem(&sock, &["update", "download"]);
    assert!(!ok);
    assert!(
        out.contains("offered nothing newer at its last check"),
        "{out}"
    );

    let (ok, out) = tandem(&sock, &["update", "check"]);
    assert!(ok, "{out}");
    // The file is a stand-in, not a signed bundle: it arrives whole, then the
    // update engine refuses it and it is not kept.
    let (ok, out) = tandem(&sock, &["update", "download"]);
    eprintln!("tandem update download:\n{out}");
    assert!(!ok, "{out}");
    assert!(
        out.contains("is refused") || out.contains("not installed"),
        "{out}"
    );
    let kept: Vec<_> = std::fs::read_dir(node.join("downloads"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(kept.is_empty(), "{kept:?}");
    let (_, out) = tandem(&sock, &["update", "status"]);
    assert!(out.contains("offers 9.1.0+abc"), "{out}");
    // The console's one click has nothing to start with.
    let reply = tandem_api::Client::connect(&sock)
        .unwrap()
        .call(&tandem_api::Request::UpdateRollingDownloaded)
        .unwrap();
    assert!(
        format!("{reply:?}").contains("no bundle is downloaded on this node"),
        "{reply:?}"
    );
}
