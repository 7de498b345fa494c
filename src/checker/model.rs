//! Sequential specifications the checker checks histories against: the [`Model`] trait and its
//! two implementations, a register ([`RegisterModel`]: read, write, cas) and a key-value store
//! ([`KvModel`]: get, put, delete, append, cas). A model describes ONE key: the history is split
//! per key before the search (see `partition.rs`), so a multi-key store is checked as many
//! independent single-key models. Invariant: `step` is a pure function of (state, op).
//! Owned by the checker.

use std::fmt::Debug;
use std::hash::Hash;

use serde::{Deserialize, Serialize};

use super::history::{Op, OpFunction};

/// A sequential specification of one key.
pub trait Model: Sync {
    /// The state of one key. Hashed and compared for the search's memoization.
    type State: Clone + Eq + Hash + Debug + Send + Sync;

    /// Short name, for reports.
    fn name(&self) -> &'static str;

    /// Whether this model has the operation.
    fn supports(&self, f: OpFunction) -> bool;

    /// The state of a key nobody has touched.
    fn init(&self) -> Self::State;

    /// The state after `op` takes effect in `state`, or None if `op` cannot take effect here
    /// with the result it returned (a read that saw another value, a cas whose compare fails).
    fn step(&self, state: &Self::State, op: &Op) -> Option<Self::State>;

    /// The state, for humans (long values cut).
    fn describe(&self, state: &Self::State) -> String;

    /// About how many bytes the state takes (for the search's memory budget).
    fn state_bytes(&self, state: &Self::State) -> usize {
        std::mem::size_of_val(state)
    }
}

/// Bytes of an `Option<String>` state: the struct, its heap bytes, and the allocator's header.
fn string_state_bytes(state: &Option<String>) -> usize {
    const HEAP_BLOCK_OVERHEAD_BYTES: usize = 16;
    std::mem::size_of::<Option<String>>()
        + state
            .as_ref()
            .map_or(0, |s| s.capacity() + HEAP_BLOCK_OVERHEAD_BYTES)
}

/// Which model to check against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// A register per key: read, write, cas.
    Register,
    /// A key-value store: get, put, delete, append, cas (per key).
    Kv,
}

impl ModelKind {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Register => "register",
            ModelKind::Kv => "kv",
        }
    }

    /// The model that fits the functions used: register if only read/write/cas, else kv.
    pub fn infer<I: IntoIterator<Item = OpFunction>>(functions: I) -> ModelKind {
        let kv = functions.into_iter().any(|f| {
            matches!(
                f,
                OpFunction::Get | OpFunction::Put | OpFunction::Delete | OpFunction::Append
            )
        });
        if kv {
            ModelKind::Kv
        } else {
            ModelKind::Register
        }
    }
}

fn show(v: &Option<String>) -> String {
    super::history::show_value(v.as_deref())
}

/// A register: starts empty (nil); read returns the value; write sets it; cas sets it if the
/// value equals `expected`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RegisterModel;

impl Model for RegisterModel {
    type State = Option<String>;

    fn name(&self) -> &'static str {
        "register"
    }

    fn supports(&self, f: OpFunction) -> bool {
        matches!(f, OpFunction::Read | OpFunction::Write | OpFunction::Cas)
    }

    fn init(&self) -> Self::State {
        None
    }

    fn step(&self, state: &Self::State, op: &Op) -> Option<Self::State> {
        match op {
            Op::Read { observed } => (observed == state).then(|| state.clone()),
            Op::Write { value } => Some(Some(value.clone())),
            Op::Cas { expected, new } => (expected == state).then(|| Some(new.clone())),
            Op::Get { .. } | Op::Put { .. } | Op::Delete | Op::Append { .. } => None,
        }
    }

    fn describe(&self, state: &Self::State) -> String {
        show(state)
    }

    fn state_bytes(&self, state: &Self::State) -> usize {
        string_state_bytes(state)
    }
}

/// One key of a key-value store. `None` = absent. Every key starts as `initial` (absent for
/// our own histories; the empty string for the Jepsen kv histories, whose keys "start as the
/// empty string"). append to an absent key appends to the empty string.
#[derive(Debug, Clone, Default)]
pub struct KvModel {
    /// The value of a key nobody has written.
    pub initial: Option<String>,
}

impl Model for KvModel {
    type State = Option<String>;

    fn name(&self) -> &'static str {
        "kv"
    }

    fn supports(&self, f: OpFunction) -> bool {
        matches!(
            f,
            OpFunction::Get
                | OpFunction::Put
                | OpFunction::Delete
                | OpFunction::Append
                | OpFunction::Cas
        )
    }

    fn init(&self) -> Self::State {
        self.initial.clone()
    }

    fn step(&self, state: &Self::State, op: &Op) -> Option<Self::State> {
        match op {
            Op::Get { observed } => (observed == state).then(|| state.clone()),
            Op::Put { value } => Some(Some(value.clone())),
            Op::Delete => Some(None),
            Op::Append { value } => {
                let mut s = state.clone().unwrap_or_default();
                s.push_str(value);
                Some(Some(s))
            }
            Op::Cas { expected, new } => (expected == state).then(|| Some(new.clone())),
            Op::Read { .. } | Op::Write { .. } => None,
        }
    }

    fn describe(&self, state: &Self::State) -> String {
        show(state)
    }

    fn state_bytes(&self, state: &Self::State) -> usize {
        string_state_bytes(state)
    }
}

/// What a key held before the history began.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Initial {
    /// The model's own start (absent / nil; the empty string for Jepsen kv histories).
    #[default]
    Empty,
    /// Unknown: the history was recorded against a store that already held data (a preload,
    /// an earlier run). The first operation that pins the value (a read, a write, a cas that
    /// applied) decides it, once, and every later operation must agree with that choice.
    Unknown,
}

/// The state of a key whose value before the history is unknown, as far as the history has
/// pinned it down so far.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UnknownState {
    /// Nothing pinned yet: any value (or absence) is possible.
    Unknown,
    /// An unknown value followed by these appended bytes (appends before any read).
    Suffix(String),
    /// Pinned: the inner model's state.
    Known(Option<String>),
}

/// Wraps a model whose state is `Option<String>` so that every key starts [`Initial::Unknown`]:
/// the first read may return anything (a read of an appended-to key: anything ending in what
/// was appended), and from then on the inner model decides. Writes, deletes and applied cas
/// operations pin the value too (a cas that applied shows the value was its `expected`).
#[derive(Debug, Clone, Default)]
pub struct UnknownInitial<M> {
    /// The model once the value is known.
    pub inner: M,
}

impl<M: Model<State = Option<String>>> Model for UnknownInitial<M> {
    type State = UnknownState;

    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn supports(&self, f: OpFunction) -> bool {
        self.inner.supports(f)
    }

    fn init(&self) -> Self::State {
        UnknownState::Unknown
    }

    fn step(&self, state: &Self::State, op: &Op) -> Option<Self::State> {
        use UnknownState::*;
        let pinned = |v: Option<String>| self.inner.step(&v, op).map(Known);
        match state {
            Known(s) => self.inner.step(s, op).map(Known),
            Unknown => match op {
                Op::Read { observed } | Op::Get { observed } => pinned(observed.clone()),
                Op::Cas { expected, .. } => pinned(expected.clone()),
                Op::Write { .. } | Op::Put { .. } | Op::Delete => pinned(None),
                Op::Append { value } => Some(Suffix(value.clone())),
            },
            Suffix(sfx) => match op {
                Op::Read { observed } | Op::Get { observed } => match observed {
                    Some(o) if o.ends_with(sfx.as_str()) => pinned(observed.clone()),
                    _ => None,
                },
                Op::Cas { expected, .. } => match expected {
                    Some(e) if e.ends_with(sfx.as_str()) => pinned(expected.clone()),
                    _ => None,
                },
                Op::Write { .. } | Op::Put { .. } | Op::Delete => pinned(None),
                Op::Append { value } => Some(Suffix(format!("{sfx}{value}"))),
            },
        }
    }

    fn describe(&self, state: &Self::State) -> String {
        match state {
            UnknownState::Unknown => "unknown (before the history)".to_string(),
            UnknownState::Suffix(s) => {
                format!(
                    "unknown followed by {}",
                    super::history::show_value(Some(s))
                )
            }
            UnknownState::Known(v) => self.inner.describe(v),
        }
    }

    fn state_bytes(&self, state: &Self::State) -> usize {
        match state {
            UnknownState::Unknown => std::mem::size_of::<UnknownState>(),
            UnknownState::Suffix(s) => string_state_bytes(&Some(s.clone())),
            UnknownState::Known(v) => string_state_bytes(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_steps() {
        let m = RegisterModel;
        let s = m.init();
        assert_eq!(m.step(&s, &Op::Read { observed: None }), Some(None));
        assert_eq!(
            m.step(
                &s,
                &Op::Read {
                    observed: Some("1".into())
                }
            ),
            None
        );
        let s = m.step(&s, &Op::Write { value: "1".into() }).unwrap();
        let cas = Op::Cas {
            expected: Some("1".into()),
            new: "2".into(),
        };
        assert_eq!(m.step(&s, &cas), Some(Some("2".into())));
        assert_eq!(m.step(&Some("3".into()), &cas), None);
        assert!(!m.supports(OpFunction::Append));
    }

    #[test]
    fn kv_steps() {
        let m = KvModel::default();
        let s = m.init();
        let s = m.step(&s, &Op::Append { value: "ab".into() }).unwrap();
        let s = m.step(&s, &Op::Append { value: "c".into() }).unwrap();
        assert_eq!(s.as_deref(), Some("abc"));
        assert!(m
            .step(
                &s,
                &Op::Get {
                    observed: Some("ab".into())
                }
            )
            .is_none());
        let s = m.step(&s, &Op::Delete).unwrap();
        assert_eq!(m.step(&s, &Op::Get { observed: None }), Some(None));
        let jepsen = KvModel {
            initial: Some(String::new()),
        };
        assert!(jepsen
            .step(
                &jepsen.init(),
                &Op::Get {
                    observed: Some(String::new())
                }
            )
            .is_some());
        assert_eq!(
            ModelKind::infer([OpFunction::Read, OpFunction::Cas]),
            ModelKind::Register
        );
        assert_eq!(
            ModelKind::infer([OpFunction::Cas, OpFunction::Append]),
            ModelKind::Kv
        );
    }

    #[test]
    fn unknown_initial_value_is_pinned_once() {
        let m = UnknownInitial {
            inner: KvModel::default(),
        };
        let get = |v: Option<&str>| Op::Get {
            observed: v.map(String::from),
        };
        let s = m.init();
        // Any first read is allowed, and pins the value.
        let s1 = m.step(&s, &get(Some("old"))).unwrap();
        assert!(m.step(&s1, &get(Some("old"))).is_some());
        assert!(m.step(&s1, &get(Some("other"))).is_none());
        assert!(m.step(&s, &get(None)).is_some());
        // An append to an unknown value: a later read must end with what was appended.
        let s2 = m.step(&s, &Op::Append { value: "x".into() }).unwrap();
        assert!(m.step(&s2, &get(Some("oldx"))).is_some());
        assert!(m.step(&s2, &get(Some("xo"))).is_none());
        assert!(m.step(&s2, &get(None)).is_none());
        // A cas that applied pins the old value to its expected value.
        let cas = Op::Cas {
            expected: Some("a".into()),
            new: "b".into(),
        };
        let s3 = m.step(&s, &cas).unwrap();
        assert_eq!(s3, UnknownState::Known(Some("b".into())));
        assert!(m.step(&s3, &cas).is_none());
        // A write forgets the unknown value.
        let s4 = m.step(&s, &Op::Put { value: "p".into() }).unwrap();
        assert!(m.step(&s4, &get(Some("old"))).is_none());
    }
}
