//! `warren top` from start to end: one snapshot for `--once`, else the live view until
//! `q`, Ctrl-C or a signal.

use std::io::{IsTerminal as _, Write as _};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use crossterm::event::{Event, EventStream};
use futures_util::StreamExt as _;
use jiff::Timestamp;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use warren_ops::queue_stats::QueueStats;
use warren_runtime::{CLOSE_TIMEOUT, Settings};

use super::args::TopArgs;
use super::json::json;
use super::sampler::{read_queues, refresh_metrics, watch_broker, watch_metrics, worker_names};
use super::state::{BrokerReading, MetricsReading, MetricsState};
use super::targets::{run_folder, targets_folder};
use super::terminal::{Terminal, is_quit};
use super::view::{Frame, lines};

/// The name top's connection shows in the broker's tools.
const CONNECTION_NAME: &str = "warren-cli top";

/// The width of `--once`'s plain text.
const ONCE_WIDTH: usize = 80;

/// `warren top`: the live view, or with `--once` one snapshot on stdout.
pub async fn run(settings: &Settings, args: TopArgs) -> anyhow::Result<ExitCode> {
    let folder = targets_folder(&run_folder(args.run_dir.as_deref()));
    if args.once {
        return once(settings, &args, &folder).await;
    }
    if !std::io::stdout().is_terminal() {
        anyhow::bail!(
            "stdout is not a terminal: `warren top --once` prints one snapshot (with \
             --json, as JSON)"
        );
    }
    live(settings, &args, &folder).await
}

/// Scrapes, waits one interval, scrapes again and reads the queues, then prints the
/// frame. Says on stderr when the window starts.
async fn once(settings: &Settings, args: &TopArgs, folder: &Path) -> anyhow::Result<ExitCode> {
    let stop = warren_runtime::shutdown::on_signals();
    let mut state = MetricsState::default();
    let scrape_timeout = args.scrape_timeout();
    refresh_metrics(folder, &mut state, scrape_timeout).await;
    eprintln!(
        "warren: measuring for {:?} from {}",
        args.interval,
        folder.display()
    );
    tokio::select! {
        () = stop.cancelled() => return Ok(ExitCode::SUCCESS),
        () = tokio::time::sleep(args.interval) => {}
    }
    let metrics = refresh_metrics(folder, &mut state, scrape_timeout).await;
    let mut queues = QueueStats::new(settings, CONNECTION_NAME, args.timeout);
    let broker = read_queues(
        &mut queues,
        &worker_names(Some(&metrics)),
        &settings.amqp.url,
    )
    .await;
    queues.close().await;

    let broker_url = settings.amqp.redacted_url();
    let folder_shown = folder.display().to_string();
    let frame = Frame {
        at: metrics.at,
        interval: args.interval,
        broker_url: &broker_url,
        broker: &broker,
        targets_folder: &folder_shown,
        metrics: Some(&metrics),
    };
    let mut text = if args.json {
        json(&frame).to_string()
    } else {
        lines(&frame, ONCE_WIDTH, None).join("\n")
    };
    text.push('\n');
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // Whoever read stdout is gone (`warren top --once | head -1`).
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(error) => Err(error).context("cannot write to stdout"),
    }
}

/// The live view: the samplers in tasks of their own, the screen redrawn on each new
/// reading, key and resize, until `q`, Ctrl-C or a signal.
async fn live(settings: &Settings, args: &TopArgs, folder: &Path) -> anyhow::Result<ExitCode> {
    let signals = warren_runtime::shutdown::on_signals();
    let stop = CancellationToken::new();
    let (metrics_sender, metrics) = watch::channel(None);
    let (broker_sender, broker) = watch::channel(BrokerReading::Connecting);
    let metrics_task = tokio::spawn(watch_metrics(
        folder.to_path_buf(),
        args.interval,
        args.scrape_timeout(),
        metrics_sender,
        stop.clone(),
    ));
    let broker_task = tokio::spawn(watch_broker(
        QueueStats::new(settings, CONNECTION_NAME, args.timeout),
        settings.amqp.url.clone(),
        args.interval,
        metrics.clone(),
        broker_sender,
        stop.clone(),
    ));
    let mut tasks = Tasks {
        metrics: metrics_task,
        broker: broker_task,
    };
    let screen = Screen {
        broker_url: settings.amqp.redacted_url(),
        folder: folder.display().to_string(),
        interval: args.interval,
    };
    let shown = match Terminal::enter() {
        Ok(mut terminal) => {
            show(
                &mut terminal,
                &screen,
                metrics,
                broker,
                &signals,
                &mut tasks,
            )
            .await
            // The terminal is restored here, before anything is printed.
        }
        Err(error) => Err(error).context("cannot set up the terminal"),
    };
    stop.cancel();
    // The broker side closes its connection, bounded; neither task waits on anything
    // else once stopped.
    let _ = tokio::time::timeout(CLOSE_TIMEOUT * 2, async {
        // A handle already awaited in `show` must not be awaited again.
        for task in [&mut tasks.metrics, &mut tasks.broker] {
            if !task.is_finished() {
                let _ = task.await;
            }
        }
    })
    .await;
    shown.map(|()| ExitCode::SUCCESS)
}

/// What every frame of the live view shows the same.
struct Screen {
    broker_url: String,
    folder: String,
    interval: std::time::Duration,
}

/// The samplers' tasks.
struct Tasks {
    metrics: JoinHandle<()>,
    broker: JoinHandle<()>,
}

/// Draws the latest readings whenever one changes, a key is pressed or the terminal
/// resized, until a quit key, a signal, or a sampler's end (which only a panic makes).
async fn show(
    terminal: &mut Terminal,
    screen: &Screen,
    mut metrics: watch::Receiver<Option<MetricsReading>>,
    mut broker: watch::Receiver<BrokerReading>,
    signals: &CancellationToken,
    tasks: &mut Tasks,
) -> anyhow::Result<()> {
    let mut events = EventStream::new();
    loop {
        {
            let metrics_now = metrics.borrow_and_update();
            let broker_now = broker.borrow_and_update();
            let frame = Frame {
                at: metrics_now
                    .as_ref()
                    .map_or_else(Timestamp::now, |reading| reading.at),
                interval: screen.interval,
                broker_url: &screen.broker_url,
                broker: &broker_now,
                targets_folder: &screen.folder,
                metrics: metrics_now.as_ref(),
            };
            let (width, height) = Terminal::size();
            terminal
                .draw(&lines(&frame, width, Some(height)), width)
                .context("cannot draw on the terminal")?;
        }
        tokio::select! {
            () = signals.cancelled() => return Ok(()),
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) if is_quit(&key) => return Ok(()),
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error).context("cannot read the terminal"),
                None => return Ok(()),
            },
            changed = metrics.changed() => changed.context("the metrics reader stopped")?,
            changed = broker.changed() => changed.context("the broker reader stopped")?,
            ended = &mut tasks.metrics => anyhow::bail!("the metrics reader stopped: {ended:?}"),
            ended = &mut tasks.broker => anyhow::bail!("the broker reader stopped: {ended:?}"),
        }
    }
}
