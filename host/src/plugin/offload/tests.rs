//! Tests of where a plugin call runs: on the worker, else on the plugin threads (offload.rs).

use super::*;

/// A future that is pending `yields` times (waking itself each time), then ready.
struct Yielding {
    yields: u32,
    on: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Future for Yielding {
    type Output = u32;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
        let name = std::thread::current().name().unwrap_or("").to_owned();
        self.on.lock().unwrap().push(name);
        if self.yields == 0 {
            return Poll::Ready(7);
        }
        self.yields -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

fn block_on<F: Future>(future: F) -> F::Output {
    Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

/// The thread the inline attempt ran on, with its result.
fn inline_on(
    on: &Arc<std::sync::Mutex<Vec<String>>>,
    result: Option<u32>,
) -> impl FnOnce(&()) -> Option<u32> + use<> {
    let on = on.clone();
    move |_| {
        let name = std::thread::current().name().unwrap_or("").to_owned();
        on.lock().unwrap().push(format!("inline on {name}"));
        result
    }
}

#[test]
fn a_call_done_in_its_first_slice_never_leaves_the_caller() {
    let threads = PluginThreads::start(1).unwrap();
    let gate = Gate::new("test", 2);
    let on = Arc::new(std::sync::Mutex::new(Vec::new()));
    let inline = inline_on(&on, Some(7));
    std::thread::Builder::new()
        .name("caller".into())
        .spawn(move || {
            let ran = block_on(gate.run(&threads, (), inline, |()| async {
                unreachable!("a call done inline is not made again")
            }));
            assert_eq!(ran, Ran::Done(7));
            assert!(!gate.is_slow());
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(*on.lock().unwrap(), ["inline on caller"]);
}

#[test]
fn a_call_not_done_inline_is_made_again_on_the_plugin_threads_and_marks_the_plugin_slow() {
    let threads = PluginThreads::start(1).unwrap();
    let gate = Gate::new("test", 2);
    let on = Arc::new(std::sync::Mutex::new(Vec::new()));
    let offload = {
        let on = on.clone();
        move |yields| {
            let on = on.clone();
            move |()| Yielding { yields, on }
        }
    };
    let (first_inline, second_inline) = (inline_on(&on, None), inline_on(&on, Some(1)));
    std::thread::Builder::new()
        .name("caller".into())
        .spawn(move || {
            // Two slices on the plugin threads: slow at once.
            let ran = block_on(gate.run(&threads, (), first_inline, offload(2)));
            assert_eq!(ran, Ran::Done(7));
            assert!(gate.is_slow());
            // A slow plugin's next call starts on the plugin threads, not inline; done
            // in one slice there, the plugin is fast again.
            let ran = block_on(gate.run(&threads, (), second_inline, offload(0)));
            assert_eq!(ran, Ran::Done(7));
            assert!(!gate.is_slow());
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(
        *on.lock().unwrap(),
        ["inline on caller", "plugin", "plugin", "plugin", "plugin"]
    );
}

#[test]
fn one_overrun_slice_does_not_make_a_plugin_slow_but_two_in_a_row_do() {
    let threads = PluginThreads::start(1).unwrap();
    let gate = Gate::new("test", 2);
    let on = Arc::new(std::sync::Mutex::new(Vec::new()));
    let done_in_one_slice = |()| Yielding {
        yields: 0,
        on: on.clone(),
    };
    let ran = block_on(gate.run(&threads, (), inline_on(&on, None), done_in_one_slice));
    assert_eq!(ran, Ran::Done(7));
    assert!(!gate.is_slow(), "one overrun is forgiven");
    let ran = block_on(gate.run(&threads, (), inline_on(&on, None), done_in_one_slice));
    assert_eq!(ran, Ran::Done(7));
    assert!(gate.is_slow(), "two in a row are not");
}

#[test]
fn a_plugin_at_its_limit_is_refused_at_once() {
    let threads = PluginThreads::start(1).unwrap();
    let gate = Arc::new(Gate::new("test", 1));
    let (started, wait_started) = std::sync::mpsc::channel();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let not_inline = |_: &()| None;
    let holder = {
        let (gate, threads) = (gate.clone(), threads.clone());
        std::thread::spawn(move || {
            block_on(gate.run(&threads, (), not_inline, move |()| async move {
                // On the plugin threads: from here on the call holds the plugin's slot.
                started.send(()).unwrap();
                let _ = released.await;
                1
            }))
        })
    };
    wait_started.recv().unwrap();
    let ran = block_on(gate.run(&threads, (), not_inline, |()| async { 2 }));
    assert_eq!(ran, Ran::Busy);
    release.send(()).unwrap();
    assert_eq!(holder.join().unwrap(), Ran::Done(1));
    let ran = block_on(gate.run(&threads, (), not_inline, |()| async { 3 }));
    assert_eq!(ran, Ran::Done(3));
}
