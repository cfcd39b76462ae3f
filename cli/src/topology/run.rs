//! Discovering the fleet's manifests and running the plan.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use warren_ops::access::{self, Rabbitmqctl, WorkerManifest};
use warren_runtime::Settings;

use super::args::{PlanArgs, TopologyAction, TopologyArgs};
use crate::common::EXIT_FAULT;
use crate::up::discovery::{directory_of_current_executable, find_workers};

/// How long a worker binary may take to print its manifest.
const MANIFEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `warren topology`.
pub async fn run(settings: &Settings, args: TopologyArgs) -> anyhow::Result<ExitCode> {
    let (apply, plan_args) = match args.action {
        TopologyAction::Apply(plan_args) => (true, plan_args),
        TopologyAction::Diff(plan_args) => (false, plan_args),
    };
    let PlanArgs {
        vhost,
        password_dir,
        user_prefix,
        originators,
    } = plan_args;
    let mut settings = settings.clone();
    let vhost = match vhost {
        Some(vhost) => {
            settings.amqp.url = access::url_with_vhost(&settings.amqp.url, &vhost)?;
            vhost
        }
        None => access::vhost_of(&settings.amqp.url)?,
    };
    let manifests = fleet_manifests(&directory_of_current_executable()?).await?;
    let plan = access::plan_fleet(
        &manifests,
        &originators,
        &settings.retry.delays(),
        &user_prefix,
    )
    .map_err(anyhow::Error::msg)?;
    let rabbitmqctl = Rabbitmqctl::default();
    if !apply {
        let changes = access::changes(&rabbitmqctl, &vhost, &plan).await?;
        for change in &changes {
            println!("{change}");
        }
        if changes.is_empty() {
            println!("vhost {vhost}: nothing to change");
            return Ok(ExitCode::SUCCESS);
        }
        return Ok(ExitCode::from(EXIT_FAULT));
    }
    let password_dir =
        password_dir.unwrap_or_else(|| crate::common::run_folder().join("credentials"));
    let report = access::apply(
        &settings,
        &rabbitmqctl,
        &vhost,
        &manifests,
        &plan,
        &password_dir,
    )
    .await?;
    for change in &report.changes {
        println!("{change}");
    }
    for file in &report.password_files {
        println!("wrote {}", file.display());
    }
    println!(
        "vhost {vhost}: {} change(s) applied for {} worker(s) and {} originator(s)",
        report.changes.len(),
        manifests.len(),
        originators.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Every worker binary's manifest, by asking each binary (`--manifest`).
async fn fleet_manifests(binary_directory: &Path) -> anyhow::Result<Vec<WorkerManifest>> {
    let mut manifests = Vec::new();
    for worker in find_workers(binary_directory)? {
        let binary = worker.binary_path.display().to_string();
        let output = tokio::time::timeout(
            MANIFEST_TIMEOUT,
            tokio::process::Command::new(&worker.binary_path)
                .arg("--manifest")
                .kill_on_drop(true)
                .output(),
        )
        .await
        .with_context(|| format!("{binary} --manifest took longer than {MANIFEST_TIMEOUT:?}"))?
        .with_context(|| format!("cannot run {binary} --manifest"))?;
        if !output.status.success() {
            bail!(
                "{binary} --manifest failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let manifest = WorkerManifest::from_json(&String::from_utf8_lossy(&output.stdout))
            .map_err(|error| anyhow::anyhow!("{binary} --manifest: {error}"))?;
        if manifest.name != worker.worker_name {
            bail!(
                "{binary} describes itself as {:?}; a worker binary is named after its worker",
                manifest.name
            );
        }
        manifests.push(manifest);
    }
    Ok(manifests)
}
