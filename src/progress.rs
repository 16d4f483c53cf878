//! Fleet start and re-sharding as a progress bar (feature `progress`).
//!
//! [`FleetProgressBar`] turns the [`FleetEvent`]s of a
//! [`ShardManager`](crate::ShardManager) into an indicatif bar on a
//! terminal, and into plain log lines (`log::info!`, with key-values) when
//! stderr is not one, such as in a container or piped into a file. Start it
//! as an actor and subscribe it, or feed it events from a bot's own
//! `Handler<FleetEvent>`:
//!
//! ```no_run
//! use actix::prelude::*;
//! use discore::{progress::FleetProgressBar, GatewayEvent, Intents, ManagerConfig, ShardManager, Token};
//! # struct Bot;
//! # impl Actor for Bot { type Context = Context<Self>; }
//! # impl Handler<GatewayEvent> for Bot {
//! #     type Result = ();
//! #     fn handle(&mut self, _: GatewayEvent, _: &mut Context<Self>) {}
//! # }
//!
//! # async fn run(token: Token) -> Result<(), discore::ManagerError> {
//! let config = ManagerConfig::new(token, Intents::GUILDS)
//!     .subscribe_fleet(FleetProgressBar::new().start().recipient());
//! let manager = ShardManager::start(config, Bot.start().recipient()).await?;
//! # Ok(())
//! # }
//! ```

use crate::{FleetEvent, FleetProgress};
use actix::{Actor, Context, Handler};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// The bar's look: what is counted, then the guilds.
const TEMPLATE: &str = "{prefix:>12} [{bar:32}] {pos}/{len} shards ready, {msg}";

/// Shows a fleet's start and re-sharding: an indicatif bar on a terminal,
/// plain log lines otherwise. See the [module](self) documentation.
#[derive(Debug)]
pub struct FleetProgressBar {
    output: Output,
    /// The phase shown: "starting", or "re-sharding" toward a total.
    phase: String,
    /// Shards ready at the last plain line, to write one per tenth.
    last_logged: Option<u32>,
}

#[derive(Debug)]
enum Output {
    /// An indicatif bar, created at the first progress of each phase.
    Bar(Option<ProgressBar>),
    /// `log::info!` lines.
    Plain,
}

impl Default for FleetProgressBar {
    fn default() -> Self {
        Self::new()
    }
}

impl FleetProgressBar {
    /// A bar when stderr is a terminal, plain log lines otherwise.
    pub fn new() -> Self {
        if std::io::stderr().is_terminal() {
            Self::bar()
        } else {
            Self::plain()
        }
    }

    /// Always an indicatif bar on stderr (indicatif hides it by itself
    /// where stderr is no terminal).
    pub fn bar() -> Self {
        Self::with(Output::Bar(None))
    }

    /// Always plain log lines: one per tenth of the shards ready, and one
    /// per fleet event.
    pub fn plain() -> Self {
        Self::with(Output::Plain)
    }

    fn with(output: Output) -> Self {
        Self {
            output,
            phase: "starting".to_owned(),
            last_logged: None,
        }
    }

    /// Whether it draws a bar (rather than log lines).
    pub const fn is_bar(&self) -> bool {
        matches!(self.output, Output::Bar(_))
    }

    /// Shows one fleet event.
    pub fn handle(&mut self, event: &FleetEvent) {
        match event {
            FleetEvent::Progress(progress) => self.progress(progress),
            FleetEvent::Ready(progress) => {
                self.progress(progress);
                self.finish(&format!("fleet ready: {progress}"));
            }
            FleetEvent::ReshardingStarted { from, to } => {
                self.finish_quietly();
                self.phase = "re-sharding".to_owned();
                self.last_logged = None;
                self.line(&format!(
                    "re-sharding from {from} to {to} shards; the old fleet keeps serving"
                ));
            }
            FleetEvent::Resharded { from, to } => {
                self.finish(&format!("switched from {from} to {to} shards"));
                self.phase = "starting".to_owned();
            }
            FleetEvent::ShardRestarted {
                shard,
                attempt,
                resuming,
            } => self.line(&format!(
                "shard {shard} restarting (attempt {attempt}, {})",
                if *resuming { "resuming" } else { "identifying" }
            )),
            FleetEvent::ShardFailed { shard, failure } => {
                self.line(&format!("shard {shard} stopped for good: {failure}"));
            }
            FleetEvent::Stopped(stop) => {
                self.finish_quietly();
                self.line(&format!("the fleet stopped: {stop:?}"));
            }
            other => self.line(&format!("fleet: {other:?}")),
        }
    }

    fn progress(&mut self, progress: &FleetProgress) {
        let guilds = format!(
            "{}/{} guilds",
            progress.guilds_loaded, progress.guilds_expected
        );
        match &mut self.output {
            Output::Bar(bar) => {
                let bar = bar.get_or_insert_with(|| new_bar(&self.phase));
                bar.set_length(u64::from(progress.shards));
                bar.set_position(u64::from(progress.shards_ready));
                bar.set_message(guilds);
            }
            Output::Plain => {
                let step = (progress.shards / 10).max(1);
                let due = match self.last_logged {
                    None => true,
                    Some(last) => {
                        progress.shards_ready >= last.saturating_add(step)
                            || (progress.shards_ready == progress.shards && last != progress.shards)
                    }
                };
                if due {
                    self.last_logged = Some(progress.shards_ready);
                    log::info!(
                        target: "discore::progress",
                        total = progress.total, shards = progress.shards,
                        shards_ready = progress.shards_ready,
                        guilds_loaded = progress.guilds_loaded;
                        "{}: {}/{} shards ready, {guilds}",
                        self.phase, progress.shards_ready, progress.shards
                    );
                }
            }
        }
    }

    /// Ends the bar with `message`, or writes it as a line.
    fn finish(&mut self, message: &str) {
        match &mut self.output {
            Output::Bar(bar) => match bar.take() {
                Some(bar) => bar.finish_with_message(message.to_owned()),
                None => eprintln!("{message}"),
            },
            Output::Plain => log::info!(target: "discore::progress", "{message}"),
        }
    }

    /// Ends the bar where it stands.
    fn finish_quietly(&mut self) {
        if let Output::Bar(bar) = &mut self.output
            && let Some(bar) = bar.take()
        {
            bar.abandon();
        }
    }

    /// A line above the bar, or a log line.
    fn line(&self, message: &str) {
        match &self.output {
            Output::Bar(Some(bar)) => bar.println(message),
            Output::Bar(None) => eprintln!("{message}"),
            Output::Plain => log::info!(target: "discore::progress", "{message}"),
        }
    }
}

fn new_bar(phase: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(TEMPLATE)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let bar =
        ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr()).with_style(style);
    bar.set_prefix(phase.to_owned());
    bar
}

impl Actor for FleetProgressBar {
    type Context = Context<Self>;
}

impl Handler<FleetEvent> for FleetProgressBar {
    type Result = ();

    fn handle(&mut self, event: FleetEvent, _: &mut Context<Self>) {
        FleetProgressBar::handle(self, &event);
    }
}

#[cfg(test)]
mod tests {
    use super::FleetProgressBar;
    use crate::{FleetEvent, FleetProgress};

    fn progress(shards_ready: u32) -> FleetProgress {
        FleetProgress {
            total: 20,
            shards: 20,
            shards_ready,
            guilds_expected: 40,
            guilds_loaded: u64::from(shards_ready) * 2,
            shards_loaded: shards_ready,
        }
    }

    #[test]
    fn plain_lines_are_one_per_tenth() {
        let mut bar = FleetProgressBar::plain();
        let mut logged = Vec::new();
        for ready in 0..=20 {
            bar.handle(&FleetEvent::Progress(progress(ready)));
            logged.push(bar.last_logged);
        }
        logged.dedup();
        assert_eq!(
            logged,
            [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20].map(Some).to_vec()
        );
        bar.handle(&FleetEvent::ReshardingStarted { from: 20, to: 40 });
        assert_eq!(bar.phase, "re-sharding");
        assert_eq!(bar.last_logged, None);
    }

    #[test]
    fn a_bar_follows_the_shards_ready() {
        let mut bar = FleetProgressBar::bar();
        bar.handle(&FleetEvent::Progress(progress(5)));
        let super::Output::Bar(Some(drawn)) = &bar.output else {
            panic!("a bar is drawn");
        };
        assert_eq!(drawn.position(), 5);
        assert_eq!(drawn.length(), Some(20));
        bar.handle(&FleetEvent::Ready(progress(20)));
        assert!(matches!(bar.output, super::Output::Bar(None)), "finished");
    }
}
