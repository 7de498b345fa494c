//! The pure Raft core. Built by issue 4.
