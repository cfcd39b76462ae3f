//! `compose.yaml` runs the whole fleet: every worker of the workspace (each folder
//! `workers/<name>/`, binary `warren-<name>`) has a service `<name>` built with
//! `WORKER=<name>`, and the broker has a healthcheck the workers wait for.

use warren_e2e::repository::{repository_root, worker_names};
use yaml_rust2::{Yaml, YamlLoader};

/// `compose.yaml`, parsed.
fn compose_document() -> Yaml {
    let compose_path = repository_root().join("compose.yaml");
    let text = std::fs::read_to_string(&compose_path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", compose_path.display()));
    let mut documents = YamlLoader::load_from_str(&text).expect("compose.yaml is valid YAML");
    assert_eq!(documents.len(), 1, "compose.yaml holds one YAML document");
    documents.remove(0)
}

/// A build argument of a service, in either of compose's forms: a map
/// (`WORKER: echo`) or a list (`- WORKER=echo`).
fn build_argument(service: &Yaml, argument_name: &str) -> Option<String> {
    let arguments = &service["build"]["args"];
    if let Some(value) = arguments[argument_name].as_str() {
        return Some(value.to_owned());
    }
    arguments.as_vec()?.iter().find_map(|item| {
        let (name, value) = item.as_str()?.split_once('=')?;
        (name == argument_name).then(|| value.to_owned())
    })
}

#[test]
fn the_workspace_has_workers() {
    assert!(
        !worker_names().is_empty(),
        "no worker crate found under workers/"
    );
}

#[test]
fn every_worker_has_a_service_that_builds_it_and_waits_for_the_broker() {
    let compose = compose_document();
    let services = &compose["services"];
    assert!(
        services.as_hash().is_some(),
        "compose.yaml has no services map"
    );
    for worker_name in worker_names() {
        let service = &services[worker_name.as_str()];
        assert!(
            !service.is_badvalue(),
            "compose.yaml has no service `{worker_name}` for workers/{worker_name} \
             (binary warren-{worker_name})",
        );
        assert_eq!(
            build_argument(service, "WORKER").as_deref(),
            Some(worker_name.as_str()),
            "service `{worker_name}` must build with the build arg WORKER={worker_name}",
        );
        assert_eq!(
            service["depends_on"]["rabbitmq"]["condition"].as_str(),
            Some("service_healthy"),
            "service `{worker_name}` must wait for a healthy rabbitmq",
        );
    }
}

#[test]
fn the_broker_has_a_healthcheck() {
    let compose = compose_document();
    let healthcheck_test = &compose["services"]["rabbitmq"]["healthcheck"]["test"];
    // Compose accepts the command as one string or as a list.
    let command_text = match healthcheck_test {
        Yaml::String(command) => command.clone(),
        Yaml::Array(words) => words
            .iter()
            .filter_map(Yaml::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        other => panic!("the rabbitmq service has no healthcheck test: {other:?}"),
    };
    assert!(
        command_text.contains("rabbitmq-diagnostics"),
        "the rabbitmq healthcheck should run rabbitmq-diagnostics, not `{command_text}`",
    );
}
