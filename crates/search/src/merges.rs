//! Which segments of the Tantivy index are merged together: never more documents in one merge
//! than [`MAX_MERGED_DOCS`].
//!
//! A merge holds in memory a few bytes for every document it writes (Tantivy keeps each new
//! document's old address for the whole merge, and each old document's new number while it
//! writes a field): measured, merges into 2.7 and 3.0 million documents took 48 and 53 MiB
//! more anonymous memory for their 6 to 8 seconds, about 18 bytes per document. Tantivy's
//! own log merge policy merges segments of up to 10 million documents each, so its merges
//! grow with the index (into 10 million documents: some 180 MiB on top of the server's 45);
//! here segments stop growing at half a million documents, and a merge takes at most ~9 MiB.
//! A search looks at one more segment per half a million messages: a few term lookups each.

use tantivy::index::{SegmentId, SegmentMeta};
use tantivy::merge_policy::{LogMergePolicy, MergeCandidate, MergePolicy};

/// The most documents (deleted ones included: the memory follows them) a merge writes.
pub const MAX_MERGED_DOCS: u32 = 500_000;

/// Tantivy's log merge policy (merge eight segments of a similar size), with every merge it
/// proposes cut into merges of at most [`MAX_MERGED_DOCS`] documents; a segment that fits
/// with no other stays as it is.
#[derive(Debug, Default)]
pub struct BoundedMerges {
    log: LogMergePolicy,
}

impl MergePolicy for BoundedMerges {
    fn compute_merge_candidates(&self, segments: &[SegmentMeta]) -> Vec<MergeCandidate> {
        self.log
            .compute_merge_candidates(segments)
            .into_iter()
            .flat_map(|MergeCandidate(ids)| {
                let proposed: Vec<&SegmentMeta> = segments.iter().filter(|s| ids.contains(&s.id())).collect();
                within(proposed, MAX_MERGED_DOCS)
            })
            .filter(|group| group.len() > 1)
            .map(MergeCandidate)
            .collect()
    }
}

/// `segments` in groups of at most `max_docs` documents each, smallest segments first (a
/// segment larger than that is a group of its own).
pub fn within(mut segments: Vec<&SegmentMeta>, max_docs: u32) -> Vec<Vec<SegmentId>> {
    segments.sort_by_key(|s| s.max_doc());
    let mut groups: Vec<Vec<SegmentId>> = Vec::new();
    let mut docs = 0u64;
    for segment in segments {
        let size = u64::from(segment.max_doc());
        match groups.last_mut() {
            Some(group) if docs + size <= u64::from(max_docs) => group.push(segment.id()),
            _ => {
                groups.push(vec![segment.id()]);
                docs = 0;
            }
        }
        docs += size;
    }
    groups
}

#[cfg(test)]
mod tests {
    use tantivy::Index;
    use tantivy::schema::{STRING, Schema};

    use super::*;

    fn segments(sizes: &[u32]) -> Vec<SegmentMeta> {
        let mut schema = Schema::builder();
        schema.add_text_field("text", STRING);
        let index = Index::create_in_ram(schema.build());
        sizes.iter().map(|&docs| index.new_segment_meta(SegmentId::generate_random(), docs)).collect()
    }

    /// Each group's segment sizes, in the group's order.
    fn sizes<'a>(groups: impl IntoIterator<Item = &'a Vec<SegmentId>>, segments: &[SegmentMeta]) -> Vec<Vec<u32>> {
        let size = |id: &SegmentId| segments.iter().find(|s| s.id() == *id).unwrap().max_doc();
        groups.into_iter().map(|group| group.iter().map(size).collect()).collect()
    }

    /// The candidates' segment sizes, sorted (a policy's order is not part of its answer).
    fn sizes_of(candidates: &[MergeCandidate], segments: &[SegmentMeta]) -> Vec<Vec<u32>> {
        let mut out = sizes(candidates.iter().map(|c| &c.0), segments);
        for group in &mut out {
            group.sort_unstable();
        }
        out.sort();
        out
    }

    #[test]
    fn a_level_of_eight_is_merged_whole_while_it_fits() {
        let metas = segments(&[12_000; 8]);
        let candidates = BoundedMerges::default().compute_merge_candidates(&metas);
        assert_eq!(sizes_of(&candidates, &metas), vec![vec![12_000; 8]]);
    }

    #[test]
    fn a_level_too_large_for_one_merge_is_cut_into_merges_that_fit() {
        let metas = segments(&[100_000; 8]);
        let candidates = BoundedMerges::default().compute_merge_candidates(&metas);
        assert_eq!(sizes_of(&candidates, &metas), vec![vec![100_000; 3], vec![100_000; 5]]);
    }

    #[test]
    fn segments_that_fit_with_no_other_are_left_as_they_are() {
        let mut sizes = vec![300_000; 8];
        sizes.extend([12_000; 8]);
        let metas = segments(&sizes);
        let candidates = BoundedMerges::default().compute_merge_candidates(&metas);
        assert_eq!(sizes_of(&candidates, &metas), vec![vec![12_000; 8]]);
    }

    #[test]
    fn groups_never_pass_the_bound_and_a_larger_segment_is_alone() {
        let metas = segments(&[700_000, 260_000, 250_000, 240_000, 10, 5]);
        let groups = within(metas.iter().collect(), MAX_MERGED_DOCS);
        assert_eq!(sizes(&groups, &metas), vec![vec![5, 10, 240_000, 250_000], vec![260_000], vec![700_000]]);
    }
}
