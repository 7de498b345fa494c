//! ringraft: a Raft consensus key-value server.
