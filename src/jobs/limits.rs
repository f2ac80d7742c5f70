//! Keeping a job off production's back: its work runs on its own thread with a lower CPU
//! and disk priority (inherited by the worker threads it starts and by pg_dump), on a worker
//! pool of the job's size. Upload bandwidth is paced in the backend layer (`throttle`).

use crate::config::{IoPriority, Job};
use crate::error::{Error, Result};

/// Run `work` under the job's limits, on a new thread, and return its result.
pub fn with_limits<T: Send>(job: &Job, work: impl FnOnce() -> T + Send) -> Result<T> {
    std::thread::scope(|scope| {
        let handle = scope.spawn(|| -> Result<T> {
            // Linux keeps nice and I/O priority per thread; threads started from here inherit
            // both, so they must be set before the pool below exists.
            if let Some(n) = job.nice {
                set_nice(n)?;
            }
            if job.io_priority == Some(IoPriority::Idle) {
                set_io_idle()?;
            }
            let mut pool = rayon::ThreadPoolBuilder::new();
            if let Some(n) = job.threads {
                pool = pool.num_threads(n);
            }
            let pool = pool
                .build()
                .map_err(|e| Error::invalid(format!("cannot start worker threads: {e}")))?;
            Ok(pool.install(work))
        });
        handle
            .join()
            .unwrap_or_else(|_| Err(Error::invalid("a job's worker thread panicked")))
    })
}

/// Lower this thread's CPU priority to `nice` (0 to 19).
fn set_nice(nice: u8) -> Result<()> {
    // SAFETY: plain syscalls on the calling thread (tid 0 = this thread for setpriority on Linux).
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, gettid(), nice as libc::c_int) };
    if rc != 0 {
        return Err(Error::io(
            format!("setting nice {nice}"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Give this thread's disk I/O the idle class: it gets the disk only when nothing else wants it
/// (honoured by the BFQ and CFQ schedulers; others ignore it).
fn set_io_idle() -> Result<()> {
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_IDLE: libc::c_long = 3;
    const IOPRIO_CLASS_SHIFT: libc::c_long = 13;
    // SAFETY: ioprio_set takes three integers; 0 as `who` means the calling thread.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0 as libc::c_long,
            IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
        )
    };
    if rc != 0 {
        return Err(Error::io(
            "setting the idle I/O class",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn gettid() -> libc::id_t {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as libc::id_t }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigFile;
    use std::path::Path;

    fn job(extra: &str) -> Job {
        let text =
            format!("[[job]]\nname = \"a\"\npaths = [\"/x\"]\nschedule = \"daily\"\n{extra}");
        ConfigFile::parse(Path::new("t.toml"), &text)
            .unwrap()
            .jobs
            .remove(0)
    }

    fn own_nice() -> i32 {
        unsafe { libc::getpriority(libc::PRIO_PROCESS, gettid()) }
    }

    #[test]
    fn work_runs_with_the_jobs_threads_and_priority() {
        let before = own_nice();
        let (threads, nice, worker_nice) = with_limits(&job("threads = 1\nnice = 15"), || {
            let worker = rayon::join(own_nice, || 0).0;
            (rayon::current_num_threads(), own_nice(), worker)
        })
        .unwrap();
        assert_eq!(threads, 1);
        assert_eq!(nice, 15);
        assert_eq!(worker_nice, 15);
        // The caller's own priority is untouched.
        assert_eq!(own_nice(), before);
    }
}
