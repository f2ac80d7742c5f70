//! Uploads finished packs on a thread of their own, so compressing and sealing go on while a
//! pack is being written (to a disk now, to every region later). At most `QUEUE` packs wait
//! besides the one being written: memory stays bounded, and a slow backend slows the backup
//! down instead of filling memory.

use super::FinishedPack;
use crate::backend::{Backend, ObjectKind, ObjectName};
use crate::error::{Error, Result};
use crate::format::index::IndexPack;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

const QUEUE: usize = 1;

enum Job {
    Pack(FinishedPack),
    /// Answered once every pack submitted before it is written.
    Barrier(SyncSender<()>),
}

/// What the upload thread has finished: the index entries of written packs, or the first
/// error (after which nothing more is written).
#[derive(Default)]
struct Done {
    packs: Vec<IndexPack>,
    error: Option<Error>,
}

pub struct Uploader {
    tx: Option<SyncSender<Job>>,
    done: Arc<Mutex<Done>>,
    thread: Option<JoinHandle<()>>,
}

impl Uploader {
    pub fn start(backend: Arc<dyn Backend>) -> Result<Self> {
        let (tx, rx) = sync_channel(QUEUE);
        let done = Arc::new(Mutex::new(Done::default()));
        let thread = {
            let done = done.clone();
            std::thread::Builder::new()
                .name("coffer-upload".into())
                .spawn(move || run(backend, rx, done))
                .map_err(|e| Error::io("starting the upload thread", e))?
        };
        Ok(Uploader {
            tx: Some(tx),
            done,
            thread: Some(thread),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Done> {
        self.done.lock().expect("upload state lock")
    }

    fn send(&self, job: Job) -> Result<()> {
        let tx = self.tx.as_ref().expect("sender lives until drop");
        tx.send(job).map_err(|_| {
            self.failure()
                .unwrap_or_else(|| Error::backend("the upload thread stopped", false))
        })
    }

    fn failure(&self) -> Option<Error> {
        self.lock().error.clone()
    }

    /// Queue a pack; blocks while the queue is full. Fails if an earlier upload failed.
    pub fn submit(&self, pack: FinishedPack) -> Result<()> {
        if let Some(e) = self.failure() {
            return Err(e);
        }
        self.send(Job::Pack(pack))
    }

    /// Index entries of the packs written since the last call.
    pub fn take_written(&self) -> Result<Vec<IndexPack>> {
        let mut done = self.lock();
        if let Some(e) = &done.error {
            return Err(e.clone());
        }
        Ok(std::mem::take(&mut done.packs))
    }

    /// Wait until every pack submitted so far is written.
    pub fn wait(&self) -> Result<()> {
        let (tx, rx) = sync_channel(1);
        self.send(Job::Barrier(tx))?;
        rx.recv()
            .map_err(|_| Error::backend("the upload thread stopped", false))?;
        match self.failure() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for Uploader {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(backend: Arc<dyn Backend>, rx: Receiver<Job>, done: Arc<Mutex<Done>>) {
    for job in rx {
        match job {
            Job::Barrier(reply) => {
                let _ = reply.send(());
            }
            Job::Pack(pack) => {
                if done.lock().expect("upload state lock").error.is_some() {
                    continue; // a failed upload stops the backup: write nothing more
                }
                let name = ObjectName::new(ObjectKind::Pack, pack.id.0);
                let result = backend.put(&name, pack.bytes.into());
                let mut done = done.lock().expect("upload state lock");
                match result {
                    Ok(()) => done.packs.push(pack.index),
                    Err(e) => done.error = Some(e.context(format!("uploading {name}"))),
                }
            }
        }
    }
}
