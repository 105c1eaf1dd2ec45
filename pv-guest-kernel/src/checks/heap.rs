//! `heap [MIB]`: the kernel heap (`mm::heap`) grows by mapping frames as allocations
//! need them: MIB (default 8) of 64 KiB blocks are allocated, filled with a pattern
//! each and verified, then freed; the same allocations again must reuse the memory
//! without growing the heap further. Counts only, so both hypervisors print the same.

use super::Tally;
use crate::mm::heap;
use alloc::vec::Vec;

const BLOCK_WORDS: usize = 8192;

/// Allocates `blocks` blocks, fills and verifies each; returns how many verified.
fn fill(blocks: usize) -> usize {
    let mut all: Vec<Vec<u64>> = Vec::new();
    for b in 0..blocks {
        let mut block = Vec::with_capacity(BLOCK_WORDS);
        block.extend((0..BLOCK_WORDS as u64).map(|w| ((b as u64) << 32) | w));
        all.push(block);
    }
    all.iter().enumerate().filter(|(b, block)| block.iter().enumerate().all(|(w, &v)| v == ((*b as u64) << 32) | w as u64)).count()
}

pub fn run(command: &str) {
    let mut tally = Tally::new("heap");
    let Some(mib) = super::numeric_argument("heap", command, 8, 1..=256) else { return };
    let blocks = mib as usize * 16;
    let before = heap::pages();
    let verified = fill(blocks);
    tally.line("fill", verified == blocks, format_args!("blocks={blocks} verified={verified}"));
    let grown = heap::pages() - before;
    let enough = grown * 4096 >= mib << 20;
    tally.line("grew_by_mapping", enough, format_args!("enough={}", u8::from(enough)));
    let verified = fill(blocks);
    let grown_again = heap::pages() - before - grown;
    tally.line("refill", verified == blocks, format_args!("blocks={blocks} verified={verified}"));
    tally.line("reuses_freed_memory", grown_again == 0, format_args!("grew_again={grown_again}"));
    tally.finish();
}
