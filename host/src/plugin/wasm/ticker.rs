//! The epoch ticker: a thread that advances the engine's epoch every [`EPOCH_TICK`], which is
//! how a running plugin call notices its slice or deadline has passed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::Engine;

/// How often the epoch ticker advances: the granularity of deadlines and of the slices a
/// slow call runs in.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Advances the engine's epoch every `EPOCH_TICK` until the last plugin using it is gone.
pub(super) struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    pub(super) fn start(engine: Engine) -> Arc<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while !thread_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch ticker thread");
        Arc::new(Ticker { stop })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
