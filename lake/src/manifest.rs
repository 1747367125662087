//! The compaction manifest and the rule that readers and re-runs use to reconcile an
//! interrupted compaction.
//!
//! A compaction of one partition goes through these steps (see `compact.rs`):
//!
//! 1. write `_compaction.json` with `state: pending`, the input names and the planned output
//!    names (create-only: a second compaction of the same partition is refused);
//! 2. write every output under a temporary hidden name (`_<output>.tmp`);
//! 3. rewrite the manifest with `state: committed` (the commit point);
//! 4. rename each temporary output to its final name;
//! 5. delete the inputs;
//! 6. delete the manifest.
//!
//! [`hidden`] says which data files a reader must skip at any moment of that sequence so
//! that it sees every record exactly once: before all outputs are visible it reads the inputs
//! (and skips the outputs already renamed); once all are visible it reads the outputs (and
//! skips the inputs not deleted yet). A re-run rolls a `pending` manifest back (deletes the
//! temporary outputs) and a `committed` one forward (finishes steps 4–6).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// Manifest format version.
pub const MANIFEST_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Outputs are being written under temporary names; the inputs are the truth.
    Pending,
    /// Every output is durable; the outputs are the truth once all are renamed.
    Committed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: u32,
    /// Compaction id (also part of the output names).
    pub id: String,
    pub state: State,
    /// Data file names (in this partition) being merged.
    pub inputs: Vec<String>,
    /// Final names of the merged files, in this partition.
    pub outputs: Vec<String>,
    /// Rows in the inputs (= rows in the outputs).
    pub rows: u64,
    /// When the compaction started, RFC 3339.
    pub started: String,
}

impl Manifest {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("manifest serializes")
    }

    pub fn from_json(b: &[u8]) -> Result<Manifest, serde_json::Error> {
        serde_json::from_slice(b)
    }
}

/// Temporary (hidden, non-`.parquet`) name of an output while it is written.
pub fn temp_name(output: &str) -> String {
    format!("_{output}.tmp")
}

/// Data file names in a partition that a reader must skip, given the manifest and the
/// names currently present in the partition.
pub fn hidden<'a>(m: &Manifest, present: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    let present: BTreeSet<&str> = present.into_iter().collect();
    let all_outputs_visible = m.outputs.iter().all(|o| present.contains(o.as_str()));
    if m.state == State::Committed && all_outputs_visible {
        m.inputs.iter().cloned().collect()
    } else {
        m.outputs.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(state: State) -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            id: "x".into(),
            state,
            inputs: vec!["a.parquet".into(), "b.parquet".into()],
            outputs: vec!["c1.parquet".into(), "c2.parquet".into()],
            rows: 10,
            started: "2025-01-01T00:00:00Z".into(),
        }
    }

    /// Walk every step of a compaction and check a reader sees exactly one copy of the data.
    #[test]
    fn every_step_shows_one_copy() {
        let steps: Vec<(State, Vec<&str>)> = vec![
            (State::Pending, vec!["a.parquet", "b.parquet"]),
            (State::Committed, vec!["a.parquet", "b.parquet"]),
            (
                State::Committed,
                vec!["a.parquet", "b.parquet", "c1.parquet"],
            ),
            (
                State::Committed,
                vec!["a.parquet", "b.parquet", "c1.parquet", "c2.parquet"],
            ),
            (
                State::Committed,
                vec!["b.parquet", "c1.parquet", "c2.parquet"],
            ),
            (State::Committed, vec!["c1.parquet", "c2.parquet"]),
        ];
        for (state, present) in steps {
            let h = hidden(&m(state), present.iter().copied());
            let seen: BTreeSet<&str> = present
                .iter()
                .copied()
                .filter(|p| !h.contains(*p))
                .collect();
            let inputs: BTreeSet<&str> = ["a.parquet", "b.parquet"].into();
            let outputs: BTreeSet<&str> = ["c1.parquet", "c2.parquet"].into();
            assert!(
                seen == inputs || seen == outputs,
                "{state:?} {present:?} → {seen:?}"
            );
        }
    }

    #[test]
    fn json_roundtrip() {
        let x = m(State::Committed);
        assert_eq!(Manifest::from_json(&x.to_json()).unwrap(), x);
        assert!(Manifest::from_json(b"{\"version\":1}").is_err());
        assert_eq!(temp_name("c1.parquet"), "_c1.parquet.tmp");
    }
}
