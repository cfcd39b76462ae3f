//! The plan: what the broker should hold for a fleet, as a pure function of the
//! workers' manifests, the originators' names, the retry delays and the user-name
//! prefix.

use std::collections::BTreeSet;
use std::time::Duration;

use warren_messages::catalogue::{self, Kind};
use warren_runtime::topology::{
    self, COMMANDS_EXCHANGE, DEAD_LETTER_EXCHANGE, EVENTS_EXCHANGE, REPLIES_EXCHANGE,
    RETRIES_EXCHANGE, WorkerQueues,
};

/// A worker's manifest as its binary prints it (`warren-<name> --manifest`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct WorkerManifest {
    /// The worker's name.
    pub name: String,
    /// Command types it consumes.
    pub commands: Vec<String>,
    /// Event types it consumes.
    pub events: Vec<String>,
    /// Types it publishes.
    pub produces: Vec<String>,
}

impl WorkerManifest {
    /// Reads the one line of JSON a worker binary prints for `--manifest`.
    pub fn from_json(text: &str) -> Result<WorkerManifest, String> {
        let manifest: WorkerManifest =
            serde_json::from_str(text.trim()).map_err(|error| error.to_string())?;
        topology::check_worker_name(&manifest.name)?;
        Ok(manifest)
    }
}

/// A user's permission regexes in one vhost (RabbitMQ matches each against a resource
/// name; the default exchange is `amq.default`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    /// Declaring (non-passive) and deleting queues and exchanges.
    pub configure: String,
    /// Publishing to exchanges; binding a queue (write on the queue).
    pub write: String,
    /// Consuming from queues; binding from an exchange (read on the exchange).
    pub read: String,
}

/// One user of the fleet (a worker's or an originator's) and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerAccess {
    /// Whose user it is: the worker's name, or `originator-<name>` for an originator.
    /// Its password file is named after it.
    pub owner: String,
    /// Its broker user, `<prefix><owner>`.
    pub user: String,
    /// Its permissions in the fleet's vhost.
    pub permissions: Permissions,
}

/// Everything the broker should hold for a fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetPlan {
    /// Exchange names.
    pub exchanges: BTreeSet<String>,
    /// Queue names.
    pub queues: BTreeSet<String>,
    /// Bindings, `(exchange, queue, routing key)`.
    pub bindings: BTreeSet<(String, String, String)>,
    /// One user per worker, in the manifests' order, then one per originator.
    pub users: Vec<WorkerAccess>,
}

/// The regex of a worker's own queues: its work queue, its dead-letter queue and its
/// delay queues (worker names are lowercase letters, digits and `-`: nothing to escape).
fn own_queues(worker: &str) -> String {
    format!(r"warren\.{worker}(\.dlq|\.retry\.[0-9]+ms)?")
}

/// `name` as a literal inside a regex.
fn literal(name: &str) -> String {
    name.replace('.', r"\.")
}

/// One anchored alternation of `parts`.
fn any_of(parts: &[String]) -> String {
    format!("^({})$", parts.join("|"))
}

/// The permissions of `manifest`'s worker.
///
/// - configure: its own queues (declared at start), nothing else. The shared exchanges
///   exist already; the runtime declares them passively when refused.
/// - write: its own queues (binding them, declaring a queue whose dead letters go to an
///   exchange needs write on that exchange), `warren.replies` (outcomes), `warren.events`
///   (events, and `request.failed` announcements, which any worker may make),
///   `warren.dlx` (dead-letter copies), `warren.retries` (delay queues),
///   `warren.commands` only when it produces a command. Never `amq.default`.
/// - read: its own queues (consuming; declaring a queue with a dead-letter exchange),
///   the exchanges its queues are bound to: `warren.retries`, `warren.dlx`,
///   `warren.commands` when it consumes commands, `warren.events` when it consumes
///   events.
///
/// # Errors
/// A produced type the catalogue does not know.
pub fn plan_worker(manifest: &WorkerManifest, user_prefix: &str) -> Result<WorkerAccess, String> {
    let own = own_queues(&manifest.name);
    let mut produces_commands = false;
    for message_type in &manifest.produces {
        match catalogue::lookup(message_type).map(|entry| entry.kind) {
            Some(Kind::Command) => produces_commands = true,
            Some(Kind::Event | Kind::Outcome) => {}
            None => {
                return Err(format!(
                    "{} produces {message_type}, which the catalogue does not know",
                    manifest.name
                ));
            }
        }
    }
    let mut write = vec![
        own.clone(),
        literal(REPLIES_EXCHANGE),
        literal(EVENTS_EXCHANGE),
        literal(DEAD_LETTER_EXCHANGE),
        literal(RETRIES_EXCHANGE),
    ];
    if produces_commands {
        write.push(literal(COMMANDS_EXCHANGE));
    }
    let mut read = vec![
        own.clone(),
        literal(RETRIES_EXCHANGE),
        literal(DEAD_LETTER_EXCHANGE),
    ];
    if !manifest.commands.is_empty() {
        read.push(literal(COMMANDS_EXCHANGE));
    }
    if !manifest.events.is_empty() {
        read.push(literal(EVENTS_EXCHANGE));
    }
    Ok(WorkerAccess {
        owner: manifest.name.clone(),
        user: format!("{user_prefix}{}", manifest.name),
        permissions: Permissions {
            configure: format!("^{own}$"),
            write: any_of(&write),
            read: any_of(&read),
        },
    })
}

/// The permissions of the originator `name` (docs/security.md, "Guarded replies").
///
/// - configure: its own reply queues (`warren.reply.<name>.<uuid>` and
///   `warren.reply.resend.<name>.<uuid>`), nothing else;
/// - write: `warren.commands` (sending requests) and its own reply queues (binding them);
///   never `warren.replies`, `warren.retries`, `warren.events` or `amq.default`, so
///   nothing it publishes can reach a reply queue or pass for a retry;
/// - read: its own reply queues (consuming them) and `warren.replies` (binding them).
///   Not `warren.commands` or `warren.events`: it cannot bind a tap to read others'
///   requests.
///
/// # Errors
/// A name that is not a worker-style name, or `resend` (which would read as the re-send
/// marker of a reply queue name).
pub fn plan_originator(name: &str, user_prefix: &str) -> Result<WorkerAccess, String> {
    topology::check_originator_name(name)?;
    let own = format!(r"warren\.reply\.(resend\.)?{name}\.[0-9a-f-]+");
    Ok(WorkerAccess {
        owner: format!("originator-{name}"),
        user: format!("{user_prefix}originator-{name}"),
        permissions: Permissions {
            configure: format!("^{own}$"),
            write: any_of(&[literal(COMMANDS_EXCHANGE), own.clone()]),
            read: any_of(&[literal(REPLIES_EXCHANGE), own]),
        },
    })
}

/// The plan of a fleet: the shared exchanges, every worker's queues and bindings (with
/// the delay queues of `retry_delays`), every worker's user and every originator's.
///
/// # Errors
/// A manifest the catalogue disagrees with, two manifests of one name, a bad
/// originator name, or two users of one name.
pub fn plan_fleet(
    manifests: &[WorkerManifest],
    originators: &[String],
    retry_delays: &[Duration],
    user_prefix: &str,
) -> Result<FleetPlan, String> {
    let mut plan = FleetPlan {
        exchanges: topology::SHARED_EXCHANGES
            .iter()
            .map(|(name, _kind)| (*name).to_owned())
            .collect(),
        queues: BTreeSet::new(),
        bindings: BTreeSet::new(),
        users: Vec::new(),
    };
    let mut names = BTreeSet::new();
    for manifest in manifests {
        if !names.insert(manifest.name.as_str()) {
            return Err(format!("two manifests name the worker {}", manifest.name));
        }
        let commands: Vec<&str> = manifest.commands.iter().map(String::as_str).collect();
        let events: Vec<&str> = manifest.events.iter().map(String::as_str).collect();
        let queues = WorkerQueues {
            name: &manifest.name,
            commands: &commands,
            events: &events,
        };
        plan.queues
            .insert(topology::work_queue_name(&manifest.name));
        plan.queues
            .insert(topology::dead_letter_queue_name(&manifest.name));
        for delay in retry_delays {
            plan.queues
                .insert(topology::retry_queue_name(&manifest.name, *delay));
        }
        for (exchange, queue, routing_key) in topology::worker_bindings(&queues, retry_delays) {
            plan.bindings
                .insert((exchange.to_owned(), queue, routing_key));
        }
        plan.users.push(plan_worker(manifest, user_prefix)?);
    }
    for name in originators {
        plan.users.push(plan_originator(name, user_prefix)?);
    }
    let mut users = BTreeSet::new();
    if let Some(twice) = plan.users.iter().find(|access| !users.insert(&access.user)) {
        return Err(format!("two users would be named {}", twice.user));
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(
        name: &str,
        commands: &[&str],
        events: &[&str],
        produces: &[&str],
    ) -> WorkerManifest {
        let owned = |types: &[&str]| types.iter().map(|t| (*t).to_owned()).collect();
        WorkerManifest {
            name: name.to_owned(),
            commands: owned(commands),
            events: owned(events),
            produces: owned(produces),
        }
    }

    /// Whether `pattern` matches `name` (the broker uses Erlang's `re`, PCRE; these
    /// patterns mean the same in the regex crate).
    fn matches(pattern: &str, name: &str) -> bool {
        regex::Regex::new(pattern)
            .expect("a valid regex")
            .is_match(name)
    }

    #[test]
    fn echo_may_touch_its_own_queues_and_never_the_default_exchange() {
        let echo = manifest(
            "echo",
            &["dev.warren.echo.v1"],
            &[],
            &["dev.warren.echo.replied.v1"],
        );
        let access = plan_worker(&echo, "warren-").expect("planned");
        assert_eq!(access.user, "warren-echo");
        assert_eq!(
            access.permissions,
            Permissions {
                configure: r"^warren\.echo(\.dlq|\.retry\.[0-9]+ms)?$".to_owned(),
                write: r"^(warren\.echo(\.dlq|\.retry\.[0-9]+ms)?|warren\.replies|warren\.events|warren\.dlx|warren\.retries)$".to_owned(),
                read: r"^(warren\.echo(\.dlq|\.retry\.[0-9]+ms)?|warren\.retries|warren\.dlx|warren\.commands)$".to_owned(),
            }
        );
        let permissions = &access.permissions;
        for own in ["warren.echo", "warren.echo.dlq", "warren.echo.retry.1000ms"] {
            assert!(matches(&permissions.configure, own), "{own}");
            assert!(matches(&permissions.read, own), "{own}");
        }
        for foreign in [
            "amq.default",
            "warren.tally",
            "warren.echo2",
            "warren.echo.retry.xms",
            "warren.commands",
            "warren.reply.x",
        ] {
            assert!(!matches(&permissions.configure, foreign), "{foreign}");
            assert!(!matches(&permissions.write, foreign), "{foreign}");
        }
        for foreign in [
            "warren.tally",
            "warren.tally.dlq",
            "warren.events",
            "amq.default",
        ] {
            assert!(!matches(&permissions.read, foreign), "{foreign}");
        }
    }

    #[test]
    fn commands_and_events_follow_the_manifest() {
        let inventory = manifest(
            "inventory",
            &["dev.warren.inventory.reserve.v1"],
            &["dev.warren.request.failed.v1"],
            &["dev.warren.payments.charge.v1", "dev.warren.progress.v1"],
        );
        let access = plan_worker(&inventory, "p-").expect("planned");
        assert_eq!(access.user, "p-inventory");
        assert!(matches(&access.permissions.write, "warren.commands"));
        assert!(matches(&access.permissions.read, "warren.events"));
        assert!(matches(&access.permissions.read, "warren.commands"));
        let echo = manifest(
            "echo",
            &["dev.warren.echo.v1"],
            &[],
            &["dev.warren.echo.replied.v1"],
        );
        let echo = plan_worker(&echo, "warren-").expect("planned");
        assert!(!matches(&echo.permissions.write, "warren.commands"));
        assert!(!matches(&echo.permissions.read, "warren.events"));
    }

    #[test]
    fn an_originator_sends_commands_and_reads_its_own_replies_only() {
        let access = plan_originator("alice", "warren-").expect("planned");
        assert_eq!(access.user, "warren-originator-alice");
        assert_eq!(access.owner, "originator-alice");
        let permissions = &access.permissions;
        let own = [
            "warren.reply.alice.5f0c2a4e-8f0b-4a7e-9d51-0b6f5c9a1e22",
            "warren.reply.resend.alice.5f0c2a4e-8f0b-4a7e-9d51-0b6f5c9a1e22",
        ];
        for queue in own {
            assert!(matches(&permissions.configure, queue), "{queue}");
            assert!(matches(&permissions.write, queue), "{queue}");
            assert!(matches(&permissions.read, queue), "{queue}");
        }
        assert!(matches(&permissions.write, "warren.commands"));
        assert!(matches(&permissions.read, "warren.replies"));
        let others = [
            "warren.reply.bob.5f0c2a4e-8f0b-4a7e-9d51-0b6f5c9a1e22",
            "warren.reply.5f0c2a4e-8f0b-4a7e-9d51-0b6f5c9a1e22",
            "warren.reply.alice.x.y",
            "warren.reply.alice2.5f0c2a4e",
        ];
        for name in others
            .iter()
            .chain(&["warren.tally", "warren.tally.dlq", "amq.default"])
        {
            assert!(!matches(&permissions.configure, name), "{name}");
            assert!(!matches(&permissions.write, name), "{name}");
            assert!(!matches(&permissions.read, name), "{name}");
        }
        for exchange in [
            "warren.replies",
            "warren.retries",
            "warren.events",
            "warren.dlx",
        ] {
            assert!(!matches(&permissions.write, exchange), "{exchange}");
            assert!(!matches(&permissions.configure, exchange), "{exchange}");
        }
        for exchange in [
            "warren.commands",
            "warren.events",
            "warren.retries",
            "warren.dlx",
        ] {
            assert!(!matches(&permissions.read, exchange), "{exchange}");
        }
        assert!(plan_originator("resend", "warren-").is_err());
        assert!(plan_originator("Bob", "warren-").is_err());
    }

    #[test]
    fn a_user_name_is_never_planned_twice() {
        let worker = manifest("originator-alice", &[], &[], &[]);
        let plan = plan_fleet(&[worker], &["alice".to_owned()], &[], "warren-");
        assert_eq!(
            plan.expect_err("refused"),
            "two users would be named warren-originator-alice"
        );
        let plan =
            plan_fleet(&[], &["alice".to_owned(), "bob".to_owned()], &[], "p-").expect("planned");
        let users: Vec<&str> = plan
            .users
            .iter()
            .map(|access| access.user.as_str())
            .collect();
        assert_eq!(users, ["p-originator-alice", "p-originator-bob"]);
    }

    #[test]
    fn unknown_produced_types_and_duplicates_are_refused() {
        let odd = manifest("odd", &[], &[], &["dev.example.nothing.v1"]);
        assert!(plan_worker(&odd, "warren-").is_err());
        let echo = manifest(
            "echo",
            &["dev.warren.echo.v1"],
            &[],
            &["dev.warren.echo.replied.v1"],
        );
        assert!(plan_fleet(&[echo.clone(), echo], &[], &[], "warren-").is_err());
    }

    #[test]
    fn the_fleet_plan_names_every_queue_and_binding() {
        let echo = manifest(
            "echo",
            &["dev.warren.echo.v1"],
            &[],
            &["dev.warren.echo.replied.v1"],
        );
        let plan =
            plan_fleet(&[echo], &[], &[Duration::from_millis(500)], "warren-").expect("planned");
        assert_eq!(plan.exchanges.len(), 5);
        assert_eq!(
            plan.queues.iter().map(String::as_str).collect::<Vec<_>>(),
            ["warren.echo", "warren.echo.dlq", "warren.echo.retry.500ms"]
        );
        let binding = |e: &str, q: &str, k: &str| (e.to_owned(), q.to_owned(), k.to_owned());
        assert_eq!(
            plan.bindings,
            BTreeSet::from([
                binding("warren.dlx", "warren.echo.dlq", "echo"),
                binding(
                    "warren.retries",
                    "warren.echo.retry.500ms",
                    "warren.echo.retry.500ms"
                ),
                binding("warren.retries", "warren.echo", "warren.echo"),
                binding("warren.commands", "warren.echo", "dev.warren.echo.v1"),
            ])
        );
    }

    #[test]
    fn a_manifest_is_read_from_the_binary_s_json() {
        let text = r#"{"name":"echo","commands":["dev.warren.echo.v1"],"events":[],"produces":["dev.warren.echo.replied.v1"]}"#;
        assert_eq!(
            WorkerManifest::from_json(text),
            Ok(manifest(
                "echo",
                &["dev.warren.echo.v1"],
                &[],
                &["dev.warren.echo.replied.v1"]
            ))
        );
        assert!(
            WorkerManifest::from_json(r#"{"name":"Bad","commands":[],"events":[],"produces":[]}"#)
                .is_err()
        );
        assert!(WorkerManifest::from_json("not json").is_err());
    }
}
