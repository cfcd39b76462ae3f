//! The fleet's broker. When the broker URL is the built-in one (127.0.0.1:5672) and
//! nothing answers there, `warren up` starts a RabbitMQ node of the fleet's own on that
//! address (data and logs in `<run folder>/broker/`), so every other `warren` command
//! works with its defaults, and stops it with the fleet. Any other URL is only reported
//! when nothing answers: the workers keep trying to connect, as they do when a broker
//! goes away.
//!
//! Only the `warren up` holding the run folder's lock starts a node (or adopts one that
//! a killed `warren up` of the folder left running), so two never start the same node.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use warren_ops::local_broker::{LocalNode, NodeSpec, broker_address, is_default_url, tcp_answers};
use warren_runtime::config::redact_url;

use super::UpError;
use super::events::human_duration;
use super::lock::RunFolder;
use super::output::{LineSender, write_line};

/// How long a TCP connection to the broker may take before it counts as not answering.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// What `warren up` may do about the broker.
#[derive(Debug, Clone, Copy)]
pub struct BrokerOptions {
    /// This `warren up` holds the run folder's lock.
    pub holds_run_folder: bool,
    /// `--no-local-broker`.
    pub no_local_broker: bool,
}

/// The broker the fleet uses.
#[derive(Debug)]
pub enum FleetBroker {
    /// Whatever the URL names (maybe nothing yet): not `warren up`'s to stop.
    External,
    /// A node of the fleet's own, stopped with the fleet.
    Own(Box<LocalNode>),
}

/// Decides on the fleet's broker for `amqp_url`, starting or adopting its own node when
/// that is the thing to do, and says so on `messages`. `cancel` abandons a node's start
/// (the node is stopped).
pub async fn prepare(
    amqp_url: &str,
    options: BrokerOptions,
    run_folder: &RunFolder,
    messages: &LineSender,
    cancel: &CancellationToken,
) -> Result<FleetBroker, UpError> {
    let default_url = is_default_url(amqp_url);
    let may_start = default_url && options.holds_run_folder && !options.no_local_broker;
    let spec = NodeSpec::for_fleet(run_folder.broker_folder());
    if may_start
        && let Some(node) = LocalNode::adopt(spec.clone(), cancel)
            .await
            .map_err(UpError::local_broker)?
    {
        let pid = node
            .os_pid()
            .map_or_else(String::new, |pid| format!(", pid {pid}"));
        say(
            messages,
            format!(
                "using the broker node a killed warren up of this fleet left running ({}{pid}, \
                 on 127.0.0.1:{}); it stops with the fleet",
                node.name(),
                node.spec().amqp_port(),
            ),
        )
        .await;
        return Ok(FleetBroker::Own(Box::new(node)));
    }
    let Ok((host, port)) = broker_address(amqp_url) else {
        // The settings were validated: the workers will say what is wrong with it.
        return Ok(FleetBroker::External);
    };
    let not_answering = match tcp_answers(&host, port, PROBE_TIMEOUT).await {
        Ok(()) => return Ok(FleetBroker::External),
        Err(error) => error,
    };
    if !may_start {
        let why_not = if !default_url {
            "warren up starts a broker of its own only for the built-in URL, \
             amqp://guest:***@127.0.0.1:5672/%2f"
        } else if options.no_local_broker {
            "not starting one: --no-local-broker"
        } else {
            "not starting one: another warren up holds this run folder"
        };
        say(
            messages,
            format!(
                "no broker answers at {} ({not_answering}); the workers will keep trying to \
                 connect ({why_not})",
                redact_url(amqp_url),
            ),
        )
        .await;
        return Ok(FleetBroker::External);
    }
    let node = LocalNode::start(spec, cancel)
        .await
        .map_err(UpError::local_broker)?;
    let boot_time = node.boot_time().map_or_else(String::new, |boot_time| {
        format!(", ready in {}", human_duration(boot_time))
    });
    say(
        messages,
        format!(
            "started a broker on 127.0.0.1:{port} (nothing answered there): RabbitMQ node {}, \
             data and logs in {}{boot_time}; it stops with the fleet (--no-local-broker turns \
             this off)",
            node.name(),
            folder_for_display(run_folder.broker_folder_for_display()),
        ),
    )
    .await;
    Ok(FleetBroker::Own(Box::new(node)))
}

impl FleetBroker {
    /// Stops the fleet's own node, if it has one, and says how that went. Returns whether
    /// nothing was left running.
    pub async fn stop(self, messages: &LineSender) -> bool {
        let FleetBroker::Own(node) = self else {
            return true;
        };
        let name = node.name().to_owned();
        say(messages, format!("stopping the broker node {name}")).await;
        match node.stop().await {
            Ok(took) => {
                say(
                    messages,
                    format!("stopped the broker node {name} in {}", human_duration(took)),
                )
                .await;
                true
            }
            Err(error) => {
                say(
                    messages,
                    format!("could not stop the broker node {name}: {error}"),
                )
                .await;
                false
            }
        }
    }
}

/// A folder as printed: with a trailing `/`, so it reads as one.
fn folder_for_display(folder: PathBuf) -> String {
    format!("{}/", folder.display())
}

/// Prints one line of `warren up`'s own.
async fn say(messages: &LineSender, message: String) {
    write_line(messages, format!("warren up: {message}\n")).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::up::output::OUTPUT_LINE_CAPACITY;

    /// A run folder of the test's own, removed when dropped.
    struct ScratchRunFolder(RunFolder, PathBuf);

    impl ScratchRunFolder {
        fn new() -> ScratchRunFolder {
            let path = std::env::temp_dir().join(format!("warren-run-{}", uuid::Uuid::new_v4()));
            ScratchRunFolder(RunFolder::at(&path).expect("a run folder"), path)
        }
    }

    impl Drop for ScratchRunFolder {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }

    /// A port on 127.0.0.1 that nothing listens on.
    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    }

    async fn prepare_with(url: &str, options: BrokerOptions) -> (FleetBroker, Vec<String>) {
        let run_folder = ScratchRunFolder::new();
        let (sender, mut receiver) = tokio::sync::mpsc::channel(OUTPUT_LINE_CAPACITY);
        let broker = prepare(
            url,
            options,
            &run_folder.0,
            &sender,
            &CancellationToken::new(),
        )
        .await
        .expect("prepared");
        drop(sender);
        let mut lines = Vec::new();
        while let Some(line) = receiver.recv().await {
            lines.push(line);
        }
        (broker, lines)
    }

    #[tokio::test]
    async fn another_url_that_does_not_answer_is_reported_never_started() {
        let url = format!("amqp://user:secret@127.0.0.1:{}/%2f", closed_port());
        let options = BrokerOptions {
            holds_run_folder: true,
            no_local_broker: false,
        };
        let (broker, lines) = prepare_with(&url, options).await;
        assert!(matches!(broker, FleetBroker::External));
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("warren up: no broker answers at amqp://user:***@127.0.0.1:"),
            "{lines:?}"
        );
        assert!(!lines[0].contains("secret"), "{lines:?}");
        assert!(lines[0].contains("only for the built-in URL"), "{lines:?}");
    }

    #[tokio::test]
    async fn a_broker_that_answers_is_used_without_a_word() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
        let options = BrokerOptions {
            holds_run_folder: true,
            no_local_broker: false,
        };
        let (broker, lines) = prepare_with(&url, options).await;
        assert!(matches!(broker, FleetBroker::External));
        assert!(lines.is_empty(), "{lines:?}");
    }

    #[test]
    fn the_built_in_url_is_the_one_a_local_node_serves() {
        let settings = warren_runtime::Settings::load_from(
            [(
                "WARREN_CONFIG_DIR".to_owned(),
                "/nonexistent/warren/config".to_owned(),
            )],
            &warren_runtime::Overrides::default(),
        )
        .expect("the built-in settings");
        assert!(is_default_url(&settings.amqp.url), "{}", settings.amqp.url);
    }
}
