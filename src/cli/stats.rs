//! `coffer stats`: sizes, deduplication and compression.

use super::common::{self, human_bytes, print_json};
use super::{Global, EXIT_OK};
use coffer::Result;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(g: &Global, _a: &Args) -> Result<i32> {
    let repo = common::open(g)?;
    let s = coffer::stats::stats(&repo)?;
    if g.json {
        print_json(&s);
        return Ok(EXIT_OK);
    }
    println!("snapshots:            {}", s.snapshots);
    println!(
        "restore size (all):   {}",
        human_bytes(s.total_restore_bytes)
    );
    println!("unique data:          {}", human_bytes(s.unique_raw_bytes));
    println!(
        "stored:               {} in {} packs",
        human_bytes(s.unique_stored_bytes),
        s.packs
    );
    println!("repository on disk:   {}", human_bytes(s.repository_bytes));
    println!(
        "blobs:                {} data, {} tree, {} chunk list",
        s.data_blobs, s.tree_blobs, s.chunk_list_blobs
    );
    println!("deduplication ratio:  {:.2}", s.dedup_ratio);
    println!("compression ratio:    {:.2}", s.compression_ratio);
    Ok(EXIT_OK)
}
