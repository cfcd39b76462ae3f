//! TLS to the broker (`amqps://`, `[amqp.tls]`): the real `warren-echo` worker and `warren`
//! CLI against a private node with a TLS listener, with certificates made here by rcgen.
//!
//! What is proved: with the right CA a worker becomes ready and a request over TLS gets
//! its result (the broker counts the connections as TLS); with another CA the CLI fails
//! with exit code 2 and an error naming the certificate problem; with
//! `amqp.tls.required` a plain URL is refused at start-up by the CLI and the worker,
//! before any connection; and a client certificate is presented and accepted by a node
//! that demands one, while the same node turns away a client without it.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::PathBuf;
use std::process::ExitStatus;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use warren_e2e::broker_node::{NodeOptions, PrivateNode, free_port};
use warren_e2e::{CLI_TIMEOUT, WarrenCommand, attribute, parse_envelope};

const ECHO: &str = "dev.warren.echo.v1";
const ECHO_REPLIED: &str = "dev.warren.echo.replied.v1";

/// Exit code 2 of the CLI: usage, configuration or connection errors.
const EXIT_CONNECTION: i32 = 2;

/// A certificate authority of the test: its certificate, and an issuer to sign with.
struct TestAuthority {
    certificate_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestAuthority {
    fn new(name: &str) -> TestAuthority {
        let key = KeyPair::generate().expect("a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params);
        let certificate = params.self_signed(&key).expect("a self-signed CA");
        TestAuthority {
            certificate_pem: certificate.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `names` (host names or IP addresses) with `usage`, and its key,
    /// both PEM.
    fn issue(
        &self,
        common_name: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> (String, String) {
        let key = KeyPair::generate().expect("a key");
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("certificate parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        set_validity(&mut params);
        let certificate = params
            .signed_by(&key, &self.issuer)
            .expect("a signed certificate");
        (certificate.pem(), key.serialize_pem())
    }
}

fn set_validity(params: &mut CertificateParams) {
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2100, 1, 1);
}

/// The PEM files of one test in a folder of their own, readable by the `rabbitmq` user
/// that runs the node; removed when dropped.
struct CertificateFolder {
    path: PathBuf,
}

impl CertificateFolder {
    /// A CA, the broker's certificate for 127.0.0.1 and localhost, a client certificate
    /// of the same CA, and a second CA that signed nothing here.
    fn new() -> CertificateFolder {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("warren-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).expect("a certificate folder");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("a folder the broker can enter");
        let folder = CertificateFolder { path };

        let authority = TestAuthority::new("warren test CA");
        let (server_pem, server_key) = authority.issue(
            "localhost",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_pem, client_key) = authority.issue(
            "warren test client",
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let other_authority = TestAuthority::new("another CA");
        for (name, text) in [
            ("ca.pem", authority.certificate_pem.as_str()),
            ("server.pem", &server_pem),
            ("server.key", &server_key),
            ("client.pem", &client_pem),
            ("client.key", &client_key),
            ("other-ca.pem", &other_authority.certificate_pem),
        ] {
            let file = folder.file(name);
            std::fs::write(&file, text).expect("a PEM file");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))
                .expect("a file the broker can read");
        }
        folder
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// `WARREN_AMQP__TLS__<KEY>` for the file `name` of this folder.
    fn setting(&self, key: &'static str, name: &str) -> (&'static str, String) {
        (key, self.file(name).display().to_string())
    }
}

impl Drop for CertificateFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A private node with a TLS listener on 127.0.0.1 that checks a client certificate when
/// one is presented and, with `demand_client_certificate`, refuses a client without one.
struct TlsNode {
    node: PrivateNode,
    tls_port: u16,
}

impl TlsNode {
    async fn start(certificates: &CertificateFolder, demand_client_certificate: bool) -> TlsNode {
        let tls_port = free_port(&[]);
        let path = |name: &str| certificates.file(name).display().to_string();
        let node = PrivateNode::start(
            NodeOptions::new()
                .config_line(format!("listeners.ssl.1 = 127.0.0.1:{tls_port}"))
                .config_line(format!("ssl_options.cacertfile = {}", path("ca.pem")))
                .config_line(format!("ssl_options.certfile = {}", path("server.pem")))
                .config_line(format!("ssl_options.keyfile = {}", path("server.key")))
                .config_line("ssl_options.verify = verify_peer")
                .config_line(format!(
                    "ssl_options.fail_if_no_peer_cert = {demand_client_certificate}"
                )),
        )
        .await;
        // The TLS listener starts with the AMQP one the node has just served on; its
        // port is checked all the same, so a refusal below is never a listener not up.
        let listening = node
            .rabbitmqctl(&["eval", "rabbit_networking:active_listeners()."])
            .await;
        assert!(
            listening.contains("amqp/ssl") && listening.contains(&tls_port.to_string()),
            "the node has no TLS listener on {tls_port}: {listening}\n{}",
            node.log_tail(40)
        );
        TlsNode { node, tls_port }
    }

    fn amqps_url(&self) -> String {
        format!("amqps://guest:guest@127.0.0.1:{}/%2f", self.tls_port)
    }

    /// The `ssl` flag of every client connection the node has.
    async fn connections_over_tls(&self) -> Vec<String> {
        self.node
            .rabbitmqctl(&[
                "list_connections",
                "name",
                "ssl",
                "--no-table-headers",
                "-q",
            ])
            .await
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// What one `warren` run printed and how it ended.
struct CliRun {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

async fn warren(url: &str, args: &[&str], env: &[(&str, String)]) -> CliRun {
    let mut command = WarrenCommand::new("warren", url).args(args);
    for (name, value) in env {
        command = command.env(name, value);
    }
    let mut process = command.spawn();
    let status = process.wait(CLI_TIMEOUT).await;
    eprintln!("$ warren {} -> {status}", args.join(" "));
    CliRun {
        status,
        stdout: process.stdout(),
        stderr: process.stderr(),
    }
}

fn echo_worker(url: &str, env: &[(&str, String)]) -> WarrenCommand {
    let mut command = WarrenCommand::new("warren-echo", url);
    for (name, value) in env {
        command = command.env(name, value);
    }
    command
}

fn assert_echoed(run: &CliRun, expected: &serde_json::Value) {
    assert_eq!(
        run.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    let lines: Vec<&str> = run.stdout.lines().filter(|line| !line.is_empty()).collect();
    assert_eq!(lines.len(), 1, "one request, one outcome: {lines:?}");
    let outcome = parse_envelope(lines[0].as_bytes());
    assert_eq!(attribute(&outcome, "type"), Some(ECHO_REPLIED), "{outcome}");
    assert_eq!(&outcome["data"], expected, "{outcome}");
}

fn assert_refused_for_a_certificate(run: &CliRun) {
    assert_eq!(
        run.status.code(),
        Some(EXIT_CONNECTION),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stderr
            .contains("TLS with the broker failed, a certificate problem"),
        "the error names the TLS certificate problem: {}",
        run.stderr
    );
    assert!(run.stdout.trim().is_empty(), "no outcome: {}", run.stdout);
    assert!(!run.stderr.contains("guest:guest"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_over_tls_with_the_right_ca_and_a_wrong_ca_refused() {
    let certificates = CertificateFolder::new();
    let node = TlsNode::start(&certificates, false).await;
    let url = node.amqps_url();
    let right_ca = [certificates.setting("WARREN_AMQP__TLS__CA_FILE", "ca.pem")];

    let mut worker = echo_worker(&url, &right_ca).start().await;
    let run = warren(&url, &["request", ECHO, r#"{"over":"tls"}"#], &right_ca).await;
    assert_echoed(&run, &serde_json::json!({"over": "tls"}));
    let connections = node.connections_over_tls().await;
    assert!(
        !connections.is_empty() && connections.iter().all(|line| line.ends_with("true")),
        "every connection to the node is TLS: {connections:?}"
    );

    let wrong_ca = [certificates.setting("WARREN_AMQP__TLS__CA_FILE", "other-ca.pem")];
    let run = warren(
        &url,
        &["request", ECHO, "{}", "--timeout", "10s"],
        &wrong_ca,
    )
    .await;
    assert_refused_for_a_certificate(&run);
    assert!(
        run.stderr.contains("UnknownIssuer"),
        "the broker's certificate is from an issuer not trusted: {}",
        run.stderr
    );

    // The system's roots alone do not know the test's CA either.
    let run = warren(&url, &["request", ECHO, "{}", "--timeout", "10s"], &[]).await;
    assert_refused_for_a_certificate(&run);

    let status = worker.stop().await;
    assert!(status.success(), "the worker stops cleanly: {status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_required_refuses_a_plain_url_before_connecting() {
    // Something listens where the plain URL points, and counts who connects.
    let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).expect("a port");
    listener.set_nonblocking(true).expect("non-blocking");
    let port = listener.local_addr().expect("an address").port();
    let plain_url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    let required = [("WARREN_AMQP__TLS__REQUIRED", "true".to_owned())];

    let run = warren(
        &plain_url,
        &["request", ECHO, "{}", "--timeout", "10s"],
        &required,
    )
    .await;
    assert_eq!(
        run.status.code(),
        Some(EXIT_CONNECTION),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stderr.contains("amqp.tls.required") && run.stderr.contains("amqps://"),
        "the error names the setting: {}",
        run.stderr
    );
    assert!(!run.stderr.contains("guest:guest"), "{}", run.stderr);

    let mut worker = echo_worker(&plain_url, &required).spawn();
    let status = worker.wait(CLI_TIMEOUT).await;
    assert!(!status.success(), "the worker refuses to start: {status}");
    let stderr = worker.stderr();
    assert!(stderr.contains("amqp.tls.required"), "{stderr}");
    assert!(!stderr.contains("guest:guest"), "{stderr}");

    match listener.accept() {
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("nothing may connect to the plain URL, got {other:?}"),
    }

    // An amqps:// URL passes the check (and then finds no TLS broker there).
    let run = warren(
        &format!("amqps://guest:guest@127.0.0.1:{port}/%2f"),
        &["request", ECHO, "{}", "--timeout", "2s"],
        &required,
    )
    .await;
    assert!(
        !run.stderr.contains("amqp.tls.required"),
        "an amqps:// URL is allowed: {}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_certificate_is_presented_and_accepted() {
    let certificates = CertificateFolder::new();
    let node = TlsNode::start(&certificates, true).await;
    let url = node.amqps_url();
    let with_identity = [
        certificates.setting("WARREN_AMQP__TLS__CA_FILE", "ca.pem"),
        certificates.setting("WARREN_AMQP__TLS__CLIENT_CERT_FILE", "client.pem"),
        certificates.setting("WARREN_AMQP__TLS__CLIENT_KEY_FILE", "client.key"),
    ];

    let mut worker = echo_worker(&url, &with_identity).start().await;
    let run = warren(
        &url,
        &["request", ECHO, r#"{"who":"client"}"#],
        &with_identity,
    )
    .await;
    assert_echoed(&run, &serde_json::json!({"who": "client"}));
    let key_text = std::fs::read_to_string(certificates.file("client.key")).expect("the key");
    let key_body = key_text.lines().nth(1).expect("a line of the key");
    for output in [worker.stderr(), run.stderr.clone()] {
        assert!(!output.contains(key_body), "no key content is logged");
    }

    let without_identity = [certificates.setting("WARREN_AMQP__TLS__CA_FILE", "ca.pem")];
    let run = warren(
        &url,
        &["request", ECHO, "{}", "--timeout", "10s"],
        &without_identity,
    )
    .await;
    assert_refused_for_a_certificate(&run);

    let status = worker.stop().await;
    assert!(status.success(), "the worker stops cleanly: {status}");
}

/// Not a test of TLS itself: a client key file without a certificate file is a
/// configuration error naming the missing setting, found before any connection.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_key_without_its_certificate_is_refused_at_start_up() {
    let certificates = CertificateFolder::new();
    let only_key = [certificates.setting("WARREN_AMQP__TLS__CLIENT_KEY_FILE", "client.key")];
    let run = warren(
        "amqps://guest:guest@127.0.0.1:1/%2f",
        &["request", ECHO, "{}", "--timeout", "5s"],
        &only_key,
    )
    .await;
    assert_eq!(run.status.code(), Some(EXIT_CONNECTION), "{}", run.stderr);
    assert!(
        run.stderr.contains("amqp.tls.client_cert_file"),
        "{}",
        run.stderr
    );
}
