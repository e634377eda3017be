//! [`Tasks`]: background work (prunes, sweeps, timers, deliveries that
//! must not hold up a caller) that stops when the hub closes.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Background tasks that end when the hub closes: each task is dropped at
/// its next `.await` once [`Tasks::shutdown`] is called, and the hub waits
/// (a bounded time) for them to finish.
#[derive(Clone, Default)]
pub struct Tasks {
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl Tasks {
    pub fn new() -> Tasks {
        Tasks::default()
    }

    /// Runs `task` until it finishes or the hub closes.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = task => {}
            }
        });
    }

    /// Runs `tick` every `period` (the first after one period) until the
    /// hub closes. A tick that takes longer than the period delays the
    /// next one rather than piling up.
    pub fn every<F, Fut>(&self, period: Duration, mut tick: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.spawn(async move {
            let mut interval =
                tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                tick().await;
            }
        });
    }

    /// A token cancelled when the hub closes, for work that selects on it.
    pub fn stopping(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Stops every task and waits for them, at most `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        self.stop.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(grace, self.tracker.wait()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_stop_when_the_hub_closes() {
        let tasks = Tasks::new();
        let (tx, mut ticks) = tokio::sync::mpsc::unbounded_channel();
        tasks.every(Duration::from_millis(5), move || {
            let tx = tx.clone();
            async move {
                let _ = tx.send(());
            }
        });
        for _ in 0..3 {
            ticks.recv().await.expect("ticks while the hub runs");
        }
        tasks.shutdown(Duration::from_secs(5)).await;
        // The task, and the sender it holds, are gone: the channel closes
        // once the ticks already sent are read.
        while ticks.recv().await.is_some() {}
    }
}
